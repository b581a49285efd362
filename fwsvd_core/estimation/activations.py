"""Input-activation statistics of every compressible layer, from calibration data of the task.

ASVD scales input channels by their mean absolute activation; SVD-LLM whitens with the input
covariance. Padding tokens are left out of both. Layers that read the same input (query, key and value;
a gated MLP's gate and up projections) share one set of statistics: one Gram matrix instead of three.
"""
from __future__ import annotations

import json
import time
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from fwsvd_core.cache import Check, cache_key, cache_root, computing, expect_shapes, load_tensors, store_tensors
from fwsvd_core.errors import FwsvdError
from fwsvd_core.estimation.distributed import count_over_processes, shard, sum_over_processes, writes_results
from fwsvd_core.estimation.grams import from_upper, gram_upper
from fwsvd_core.estimation.passes import PassPlan, block_groups, joined_key
from fwsvd_core.inputs.batching import CancelFn, ProgressFn, iter_batches
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.exclusive import model_lock
from fwsvd_core.inputs.families import encode
from fwsvd_core.inputs.layers import LayerInfo, require_layers
from fwsvd_core.inputs.memory import MemoryEstimate
from fwsvd_core.inputs.models import model_fingerprint


@dataclass
class ActivationStats:
    mean_abs: dict[str, torch.Tensor]  # [in] per layer
    second_moment: dict[str, torch.Tensor]  # [in, in] per layer: X^T X / tokens
    n_examples: int
    n_tokens: dict[str, int]
    seconds: float
    key: str = ""
    shared_with: dict[str, str] = field(default_factory=dict)  # layer -> the layer whose input (and statistics) it shares

    @classmethod
    def merged(cls, parts: list[ActivationStats]) -> ActivationStats:
        """The statistics of every layer from those of groups of layers (`estimation.passes`; layers sharing an input
        share statistics within their group, and a group cut inside a block computes its own)."""
        return cls({n: t for p in parts for n, t in p.mean_abs.items()},
                   {n: t for p in parts for n, t in p.second_moment.items()}, min(p.n_examples for p in parts),
                   {n: c for p in parts for n, c in p.n_tokens.items()}, sum(p.seconds for p in parts),
                   joined_key([p.key for p in parts]) or "", {n: o for p in parts for n, o in p.shared_with.items()})


def collect_activation_stats(
    model: nn.Module, tokenizer, data: TaskData, layers: list[LayerInfo] | None = None, batch_size: int = 32,
    max_length: int = 128, progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> ActivationStats:
    """Mean |x| and X^T X / tokens of each layer's input over `data` (uncached; data-parallel in a process group)."""
    start = time.perf_counter()
    layers = layers or require_layers(model)
    n_examples, data = len(data), shard(data)
    device = next(model.parameters()).device
    sums: dict[str, torch.Tensor] = {}
    grams: dict[str, torch.Tensor] = {}
    tokens = {l.name: 0 for l in layers}
    mask: dict[str, torch.Tensor] = {}
    # this forward pass: id of an input tensor -> (a weak reference to it, the first layer that read it); the
    # reference tells the same tensor from a later one that reuses a freed tensor's id or memory
    read_by: dict[int, tuple[weakref.ref, str]] = {}
    shared_with: dict[str, str] = {}

    def hook_for(name: str):
        def hook(module, args, output):
            entry = read_by.get(id(args[0]))
            if entry is None or entry[0]() is not args[0]:
                read_by[id(args[0])] = entry = (weakref.ref(args[0]), name)
            owner = entry[1]
            if owner != name:
                shared_with[name] = owner  # the same input: its statistics are the owner's
                return
            if name in shared_with:
                raise FwsvdError(f"{name} shared its input with {shared_with[name]} in one batch but not in another; "
                                 "its statistics cannot be shared.")
            x = args[0].detach()
            keep = mask["tokens"].reshape(-1) if x.numel() // x.shape[-1] == mask["tokens"].numel() else None
            x = x.reshape(-1, x.shape[-1])
            if keep is not None:
                x = x[keep]
            x = x.double()
            if name not in sums:  # on the layer's own device: accelerate may spread layers over several
                sums[name] = torch.zeros(x.shape[1], device=x.device, dtype=torch.float64)
                grams[name] = torch.zeros(x.shape[1], x.shape[1], device=x.device, dtype=torch.float64)
            sums[name] += x.abs().sum(dim=0)
            grams[name] += gram_upper(x)  # upper triangles, filled in at the end
            tokens[name] += x.shape[0]
        return hook

    modules = dict(model.named_modules())
    with model_lock(model):  # these hooks must see this pass's forward calls only
        handles = [modules[l.name].register_forward_hook(hook_for(l.name)) for l in layers]
        try:
            encoded = encode(tokenizer, data, max_length, model)
            with torch.inference_mode():
                for _, batch in iter_batches(tokenizer, encoded, batch_size, device, progress, cancel):
                    mask["tokens"] = batch["attention_mask"].bool()
                    read_by.clear()
                    model(**batch)
        finally:
            for h in handles:
                h.remove()
    if missing := [l.name for l in layers if l.name not in sums and l.name not in shared_with]:
        raise FwsvdError(f"No input reached {missing[:3]} during the calibration pass.")
    sum_over_processes(sums)
    sum_over_processes(grams)
    tokens = dict(zip(tokens, count_over_processes(*tokens.values()), strict=True))
    mean_abs = {n: (sums[n] / max(tokens[n], 1)).float().cpu() for n in sums}
    second = {n: (from_upper(grams[n]) / max(tokens[n], 1)).float().cpu() for n in grams}
    for name, owner in shared_with.items():
        mean_abs[name], second[name], tokens[name] = mean_abs[owner], second[owner], tokens[owner]
    return ActivationStats(mean_abs, second, n_examples, tokens, time.perf_counter() - start, shared_with=shared_with)


def activation_estimate(layers: list[LayerInfo]) -> MemoryEstimate:
    """The memory the statistics take while they are collected: float64 sums and Gram matrices, float32 results."""
    elements = sum(l.in_features**2 + l.in_features for l in layers)
    return MemoryEstimate("calibration activation statistics",
                          {"running sums (float64)": 8 * elements, "results": 4 * elements})


def _cache_check(layers: list[LayerInfo]) -> Check:
    """An entry holds a sharing map (each layer's owner index) and the owners' statistics, shaped to fit."""
    def check(tensors: dict[str, torch.Tensor]) -> str:
        owners = tensors.get("owner")
        if owners is None or tuple(owners.shape) != (len(layers),):
            return "no sharing map for these layers"
        index = [int(i) for i in owners]
        if any(not 0 <= o < len(layers) or index[o] != o or layers[o].in_features != l.in_features
               for l, o in zip(layers, index, strict=True)):
            return "a broken sharing map"
        own = [l for l, o in zip(layers, index, strict=True) if layers[o] is l]
        shapes: dict[str, tuple[int, ...]] = {"owner": (len(layers),)}
        shapes.update({f"mean_abs/{l.name}": (l.in_features,) for l in own})
        shapes.update({f"second/{l.name}": (l.in_features, l.in_features) for l in own})
        return expect_shapes(shapes)(tensors)
    return check


def estimate_activation_stats(
    model: nn.Module, tokenizer, data: TaskData, n_examples: int | None = 256, seed: int = 0,
    layers: list[LayerInfo] | None = None, max_length: int = 128, fingerprint: str | None = None,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None, use_cache: bool = True,
    blocks_per_pass: int | PassPlan | None = None,
) -> ActivationStats:
    """Statistics over a seeded sample of `n_examples`, read from the on-disk cache when computed before
    (`blocks_per_pass`: that many blocks per pass over the data, `estimation.passes`)."""
    layers = layers or require_layers(model)
    if len(groups := block_groups(layers, blocks_per_pass)) > 1:
        return ActivationStats.merged([estimate_activation_stats(
            model, tokenizer, data, n_examples, seed, group, max_length, fingerprint, progress, cancel, use_cache)
            for group in groups])
    part = data.sample(n_examples, seed)
    key = cache_key(kind="activations", model=fingerprint or model_fingerprint(model, tokenizer), task=data.task.name,
                    examples=part.content_digest(), max_length=max_length, layers=[l.name for l in layers], shared=True)
    path = cache_root() / "activations" / f"{key}.safetensors"
    with computing(path, enabled=use_cache, cancel=cancel):  # one process computes, the others read its result
        if use_cache and (hit := load_tensors(path, _cache_check(layers))) is not None:
            tensors, meta = hit
            owner = {l.name: layers[int(i)].name for l, i in zip(layers, tensors["owner"], strict=True)}
            return ActivationStats({n: tensors[f"mean_abs/{o}"] for n, o in owner.items()},
                                   {n: tensors[f"second/{o}"] for n, o in owner.items()},
                                   int(meta["n_examples"]), json.loads(meta["n_tokens"]), float(meta["seconds"]), key,
                                   {n: o for n, o in owner.items() if n != o})
        stats = collect_activation_stats(model, tokenizer, part, layers, max_length=max_length, progress=progress,
                                         cancel=cancel)
        stats.key = key
        if use_cache and writes_results():
            position = {l.name: i for i, l in enumerate(layers)}
            owners = [position[stats.shared_with.get(l.name, l.name)] for l in layers]
            tensors = {"owner": torch.tensor(owners, dtype=torch.int64)}
            tensors.update({f"mean_abs/{n}": t for n, t in stats.mean_abs.items() if n not in stats.shared_with})
            tensors.update({f"second/{n}": t for n, t in stats.second_moment.items() if n not in stats.shared_with})
            store_tensors(path, tensors, {"n_examples": str(stats.n_examples), "n_tokens": json.dumps(stats.n_tokens),
                                         "seconds": f"{stats.seconds:.3f}"})
        return stats
