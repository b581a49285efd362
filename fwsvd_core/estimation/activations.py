"""Input-activation statistics of every compressible layer, from calibration data of the task.

ASVD scales input channels by their mean absolute activation; SVD-LLM whitens with the input
covariance. Padding tokens are left out of both.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch
from torch import nn

from fwsvd_core.cache import cache_key, cache_root, expect_shapes, load_tensors, store_tensors
from fwsvd_core.inputs.batching import CancelFn, ProgressFn, encode, iter_batches
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.layers import LayerInfo, require_layers
from fwsvd_core.inputs.models import model_fingerprint


@dataclass
class ActivationStats:
    mean_abs: dict[str, torch.Tensor]  # [in] per layer
    second_moment: dict[str, torch.Tensor]  # [in, in] per layer: X^T X / tokens
    n_examples: int
    n_tokens: dict[str, int]
    seconds: float
    key: str = ""


def collect_activation_stats(
    model: nn.Module, tokenizer, data: TaskData, layers: list[LayerInfo] | None = None, batch_size: int = 32,
    max_length: int = 128, progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> ActivationStats:
    start = time.perf_counter()
    layers = layers or require_layers(model)
    device = next(model.parameters()).device
    sums = {l.name: torch.zeros(l.in_features, device=device, dtype=torch.float64) for l in layers}
    grams = {l.name: torch.zeros(l.in_features, l.in_features, device=device, dtype=torch.float64) for l in layers}
    tokens = {l.name: 0 for l in layers}
    mask: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module, args, output):
            x = args[0].detach()
            keep = mask["tokens"].reshape(-1) if x.numel() // x.shape[-1] == mask["tokens"].numel() else None
            x = x.reshape(-1, x.shape[-1])
            if keep is not None:
                x = x[keep]
            x = x.double()
            sums[name] += x.abs().sum(dim=0)
            grams[name] += x.T @ x
            tokens[name] += x.shape[0]
        return hook

    modules = dict(model.named_modules())
    handles = [modules[l.name].register_forward_hook(hook_for(l.name)) for l in layers]
    try:
        encoded = encode(tokenizer, data, max_length, model)
        with torch.inference_mode():
            for _, batch in iter_batches(tokenizer, encoded, batch_size, device, progress, cancel):
                mask["tokens"] = batch["attention_mask"].bool()
                model(**batch)
    finally:
        for h in handles:
            h.remove()
    mean_abs = {n: (sums[n] / max(tokens[n], 1)).float().cpu() for n in sums}
    second = {n: (grams[n] / max(tokens[n], 1)).float().cpu() for n in grams}
    return ActivationStats(mean_abs, second, len(data), tokens, time.perf_counter() - start)


def estimate_activation_stats(
    model: nn.Module, tokenizer, data: TaskData, n_examples: int | None = 256, seed: int = 0,
    layers: list[LayerInfo] | None = None, max_length: int = 128, fingerprint: str | None = None,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None, use_cache: bool = True,
) -> ActivationStats:
    """Statistics over a seeded sample of `n_examples`, read from the on-disk cache when computed before."""
    layers = layers or require_layers(model)
    part = data.sample(n_examples, seed)
    key = cache_key(kind="activations", model=fingerprint or model_fingerprint(model), task=data.task.name,
                    examples=part.content_digest(), max_length=max_length, layers=[l.name for l in layers])
    path = cache_root() / "activations" / f"{key}.safetensors"
    shapes: dict[str, tuple[int, ...]] = {f"mean_abs/{l.name}": (l.in_features,) for l in layers}
    shapes.update({f"second/{l.name}": (l.in_features, l.in_features) for l in layers})
    if use_cache and (hit := load_tensors(path, expect_shapes(shapes))) is not None:
        tensors, meta = hit
        names = [l.name for l in layers]
        return ActivationStats({n: tensors[f"mean_abs/{n}"] for n in names}, {n: tensors[f"second/{n}"] for n in names},
                               int(meta["n_examples"]), json.loads(meta["n_tokens"]), float(meta["seconds"]), key)
    stats = collect_activation_stats(model, tokenizer, part, layers, max_length=max_length, progress=progress,
                                     cancel=cancel)
    stats.key = key
    if use_cache:
        tensors = {f"mean_abs/{n}": t for n, t in stats.mean_abs.items()}
        tensors.update({f"second/{n}": t for n, t in stats.second_moment.items()})
        store_tensors(path, tensors, {"n_examples": str(stats.n_examples), "n_tokens": json.dumps(stats.n_tokens),
                                     "seconds": f"{stats.seconds:.3f}"})
    return stats
