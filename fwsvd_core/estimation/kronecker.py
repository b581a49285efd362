"""Kronecker factors of every compressible layer's empirical Fisher: F ~ A (x) B, A over inputs, B over outputs.

With G_n = Gam_n^T X_n the gradient of example n's loss with respect to a layer's [out, in] weight, the
layer's empirical Fisher is F = 1/N sum_n vec(G_n) vec(G_n)^T (columns of G stacked). Two approximations:

- `kfac` (K-FAC): tokens taken as independent, A = mean over tokens of x x^T and B = 1/N sum over tokens of
  g g^T (padding left out), so that A (x) B has the scale of F.
- `nearest` (GFWSVD, Chekalina et al. 2025): the Kronecker product nearest to F in the Frobenius norm, the
  top singular pair of F rearranged, found by power iterations started from K-FAC:
  B <- 1/N sum_n G_n A G_n^T and A <- 1/N sum_n G_n^T B G_n, one pass over the data each. Since
  G_n A G_n^T = Gam_n^T (X_n A X_n^T) Gam_n, no per-example gradient matrix is formed.

Both are in loss units: 0.5 tr(dW^T B dW A) approximates the loss a weight change dW costs.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fwsvd_core.cache import (
    StoredTensors,
    cache_key,
    cache_root,
    cache_writable,
    computing,
    expect_shapes,
    load_tensors,
    store_tensors,
)
from fwsvd_core.errors import FwsvdError
from fwsvd_core.estimation.distributed import count_over_processes, shard, sum_over_processes, writes_results
from fwsvd_core.estimation.gradients import GradientBatch, gradient_batches
from fwsvd_core.estimation.grams import from_upper, gram_upper
from fwsvd_core.estimation.passes import PassPlan, block_groups, chained, joined_key
from fwsvd_core.inputs.batching import CancelFn, ProgressFn
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.layers import LayerInfo, execution_device, require_layers
from fwsvd_core.inputs.memory import MemoryEstimate, require_fits
from fwsvd_core.inputs.models import model_fingerprint

KINDS = ("kfac", "nearest")
DEFAULT_ITERATIONS = 3
# The running sums of the Gram matrices. Each batch's Gram matrix is a float32 product; summing them in float32 too
# moved demo:lm's factors by 2.6e-7 at most (relative) over 256 batches, against 0.08-0.75 between the factors of two
# halves of the windows, and a kfac factorization by 1e-4 of its own error (`benchmarks/results/accumulation.md`),
# for half the memory of float64 sums: LLaMA-7B's statistics take 32 passes on 24 GB instead of 64.
ACCUMULATION = torch.float32


@dataclass
class KroneckerFactors:
    """Per layer and kind: A [in, in] and B [out, out], float32 on the CPU, F ~ A (x) B.

    `change[i]` is the largest change of a layer's unit-norm A over the two half-steps up to pass i (how far from
    converged; the first against K-FAC's). `path` is the cache entry they were stored in, if any.
    """

    inputs: Mapping[str, Mapping[str, torch.Tensor]]  # kind -> layer -> A
    outputs: Mapping[str, Mapping[str, torch.Tensor]]  # kind -> layer -> B
    n_examples: int
    n_skipped: int
    iterations: int
    seconds: float
    change: list[float] = field(default_factory=list)
    key: str | None = None
    from_cache: bool = False
    path: Path | None = None

    @classmethod
    def merged(cls, parts: list[KroneckerFactors]) -> KroneckerFactors:
        """The factors of every layer from those of groups of layers (`estimation.passes`), each group's still where
        it was (in memory, or on disk); a power iteration's change is the largest any group's layers moved."""
        kinds = parts[0].inputs.keys()
        return cls({k: chained([p.inputs[k] for p in parts]) for k in kinds},
                   {k: chained([p.outputs[k] for p in parts]) for k in kinds},
                   min(p.n_examples for p in parts), max(p.n_skipped for p in parts), parts[0].iterations,
                   sum(p.seconds for p in parts), [max(c) for c in zip(*(p.change for p in parts), strict=True)],
                   joined_key([p.key for p in parts]), all(p.from_cache for p in parts))

    def on_disk(self) -> KroneckerFactors:
        """The same factors read from their cache entry layer by layer, none held in memory (itself when they were
        not stored)."""
        if (path := self.path) is None:
            return self

        def stored(side: str, source: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, Mapping[str, torch.Tensor]]:
            return {kind: StoredTensors(path, {n: f"{kind}/{side}/{n}" for n in layers})
                    for kind, layers in source.items()}
        return KroneckerFactors(stored("in", self.inputs), stored("out", self.outputs), self.n_examples,
                                self.n_skipped, self.iterations, self.seconds, self.change, self.key, self.from_cache,
                                self.path)

    def pair(self, name: str, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) of one layer."""
        if kind not in KINDS:
            raise FwsvdError(f"Unknown Kronecker factors {kind!r}; choose from {KINDS}.")
        if name not in self.inputs.get(kind, {}):
            raise FwsvdError(f"No {kind} Kronecker factors for {name}"
                             + (" (estimated with no power iteration)." if kind == "nearest" else "."))
        return self.inputs[kind][name], self.outputs[kind][name]


def kronecker_estimate(layers: list[LayerInfo], iterations: int = DEFAULT_ITERATIONS) -> MemoryEstimate:
    """The memory the factors take while they are estimated: the running sums (each layer's float32 result takes its
    sum's place as it is finished, with two temporaries of one layer's size), with power iterations the K-FAC
    results, the iterates and the nearest product's results besides."""
    elements = sum(l.in_features**2 + l.out_features**2 for l in layers)
    largest = max((max(l.in_features, l.out_features) ** 2 for l in layers), default=0)
    size = ACCUMULATION.itemsize
    parts = {f"running sums ({str(ACCUMULATION).removeprefix('torch.')})": size * elements,
             "finishing one layer": 2 * size * largest}
    if iterations:
        parts["results"] = 4 * 2 * elements
        parts["iterates"] = 4 * 2 * elements
    return MemoryEstimate("Kronecker factors of the Fisher", parts)


def _masked(batch: GradientBatch, name: str, device: torch.device, tensor: torch.Tensor | None = None) -> torch.Tensor:
    """The layer's inputs of this batch (or `tensor`, its output gradients), float32, padding tokens zeroed."""
    mask = batch.token_mask(name).to(device=device, dtype=torch.float32)
    return (batch.inputs[name] if tensor is None else tensor).to(device).float() * mask


def _input_key(batch: GradientBatch, name: str) -> tuple:
    """What tells layers that read the very same input tensor (query, key and value; gate and up) in this batch."""
    x = batch.inputs[name]
    return x.data_ptr(), tuple(x.shape), x.stride(), x.dtype, x.device


def _kfac_pass(batches, layers: list[LayerInfo], devices: dict[str, torch.device]):
    sums_in = {l.name: torch.zeros(l.in_features, l.in_features, dtype=ACCUMULATION, device=devices[l.name])
               for l in layers}
    sums_out = {l.name: torch.zeros(l.out_features, l.out_features, dtype=ACCUMULATION, device=devices[l.name])
                for l in layers}
    tokens = dict.fromkeys(sums_in, 0)
    n_good = 0
    for batch in batches:
        n_good += batch.n_good
        input_grams: dict[tuple, torch.Tensor] = {}  # one X^T X for the layers that read one input
        for name in sums_in:
            key = (*_input_key(batch, name), devices[name])
            if (gram := input_grams.get(key)) is None:
                gram = input_grams[key] = gram_upper(_masked(batch, name, devices[name]).flatten(0, -2))
            sums_in[name] += gram  # upper triangles: the sums are filled in once, at the end
            sums_out[name] += gram_upper(_masked(batch, name, devices[name], batch.grads[name]).flatten(0, -2))
            tokens[name] += int(batch.token_mask(name).sum())
    return sums_in, sums_out, tokens, n_good


def _power_pass(batches, current_in: dict[str, torch.Tensor], current_out: dict[str, torch.Tensor],
                devices: dict[str, torch.device]):
    """One pass: sum_n G_n A G_n^T and sum_n G_n^T B G_n for every layer, from token Gram matrices."""
    new_out = {n: torch.zeros_like(b, dtype=ACCUMULATION) for n, b in current_out.items()}
    new_in = {n: torch.zeros_like(a, dtype=ACCUMULATION) for n, a in current_in.items()}
    for batch in batches:
        for name in new_in:
            x, g = _masked(batch, name, devices[name]), _masked(batch, name, devices[name], batch.grads[name])
            a, b = current_in[name], current_out[name]
            k_in = torch.bmm(x @ a, x.transpose(1, 2))  # X_n A X_n^T: [B, T, T]
            new_out[name] += g.reshape(-1, g.shape[-1]).T @ torch.bmm(k_in, g).reshape(-1, g.shape[-1])
            k_out = torch.bmm(g @ b, g.transpose(1, 2))  # Gam_n B Gam_n^T
            new_in[name] += x.reshape(-1, x.shape[-1]).T @ torch.bmm(k_out, x).reshape(-1, x.shape[-1])
    return new_in, new_out


def _symmetric(m: torch.Tensor) -> torch.Tensor:
    return 0.5 * (m + m.T)


def _averaged(sums: dict[str, torch.Tensor], divisors: Sequence[float]) -> dict[str, torch.Tensor]:
    """Each layer's summed upper triangle as its full symmetric average, float32, made one layer at a time; each sum
    leaves `sums` as its result is made (in its place when the sums are float32), so the two never coexist whole."""
    averaged = {}
    for name, divisor in zip(list(sums), divisors, strict=True):
        total = sums.pop(name)
        averaged[name] = from_upper(total, in_place=True).div_(max(divisor, 1.0)).float()
        del total
    return averaged


def compute_kronecker(
    model: nn.Module, tokenizer, data: TaskData, layers: list[LayerInfo] | None = None,
    iterations: int = DEFAULT_ITERATIONS, batch_size: int = 16, max_length: int = 128,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> KroneckerFactors:
    """K-FAC factors from one pass over `data`, then `iterations` power-iteration passes to the nearest Kronecker
    product (uncached; data-parallel in a process group). Examples with a loss or gradient that is not finite
    are left out."""
    if len(data) == 0:
        raise FwsvdError("The Kronecker factors need at least one example.")
    if iterations < 0:
        raise FwsvdError(f"The number of power iterations must be 0 or more, not {iterations}.")
    start = time.perf_counter()
    layers = layers or require_layers(model)
    devices = {l.name: execution_device(model.get_submodule(l.name)) for l in layers}
    require_fits(kronecker_estimate(layers, iterations), next(iter(devices.values())),
                 ["estimate them for fewer layers", "use FWSVD or SVD-LLM, whose statistics are vectors or one Gram "
                  "matrix per layer"])
    part = shard(data)
    passes = iterations + 1

    def batches(i: int):
        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(i * total + done, passes * total)
        return gradient_batches(model, tokenizer, part, layers, batch_size, max_length, report, cancel)

    sums_in, sums_out, tokens, n_good = _kfac_pass(batches(0), layers, devices)
    sum_over_processes(sums_in)
    sum_over_processes(sums_out)
    n_good, *counts = count_over_processes(n_good, *tokens.values())
    n = max(n_good, 1)
    kfac_in = _averaged(sums_in, counts)
    kfac_out = _averaged(sums_out, [n] * len(sums_out))
    inputs = {"kfac": {k: a.cpu() for k, a in kfac_in.items()}}
    outputs = {"kfac": {k: b.cpu() for k, b in kfac_out.items()}}
    change: list[float] = []
    if iterations:
        # unit Frobenius norm on both sides; the scale of F goes to B at the end
        current_in = {k: a / (a.norm() or 1.0) for k, a in kfac_in.items()}
        current_out = {k: b / (b.norm() or 1.0) for k, b in kfac_out.items()}
        scale = dict.fromkeys(current_in, 0.0)
        # each pass updates A from B and B from A at once: two interleaved power iterations, so A is compared with
        # its value two passes before (K-FAC's for the first pass)
        earlier_in = dict(current_in)
        for i in range(iterations):
            new_in, new_out = _power_pass(batches(i + 1), current_in, current_out, devices)
            sum_over_processes(new_in)
            sum_over_processes(new_out)
            steps = []
            for name in current_in:
                a, b = _symmetric(new_in[name] / n).float(), _symmetric(new_out[name] / n).float()
                scale[name] = float(b.norm())  # the singular value, with the unit-norm A it was made from
                a_unit, b_unit = a / (a.norm() or 1.0), b / (b.norm() or 1.0)
                steps.append(float((a_unit - earlier_in[name]).norm()))
                earlier_in[name] = current_in[name]
                current_in[name], current_out[name] = a_unit, b_unit
            change.append(max(steps))
        inputs["nearest"] = {k: a.cpu() for k, a in current_in.items()}
        outputs["nearest"] = {k: (b * scale[k]).cpu() for k, b in current_out.items()}
    return KroneckerFactors(inputs, outputs, n_good, len(data) - n_good, iterations, time.perf_counter() - start, change)


def _shapes(layers: list[LayerInfo], iterations: int) -> dict[str, tuple[int, ...]]:
    kinds = KINDS if iterations else KINDS[:1]
    shapes: dict[str, tuple[int, ...]] = {}
    for kind in kinds:
        shapes.update({f"{kind}/in/{l.name}": (l.in_features, l.in_features) for l in layers})
        shapes.update({f"{kind}/out/{l.name}": (l.out_features, l.out_features) for l in layers})
    return shapes


def estimate_kronecker(
    model: nn.Module, tokenizer, data: TaskData, n_examples: int | None = 256, seed: int = 0,
    iterations: int = DEFAULT_ITERATIONS, batch_size: int = 16, max_length: int = 128,
    layers: list[LayerInfo] | None = None, fingerprint: str | None = None, progress: ProgressFn | None = None,
    cancel: CancelFn | None = None, use_cache: bool = True, blocks_per_pass: int | PassPlan | None = None,
) -> KroneckerFactors:
    """Kronecker factors over a seeded sample of `n_examples` (the Fisher's sample for the same seed), cached on disk
    (`blocks_per_pass`: that many blocks per pass over the data, `estimation.passes`)."""
    layers = layers or require_layers(model)
    if len(groups := block_groups(layers, blocks_per_pass)) > 1:
        # each group's factors go to the cache as they are finished and are read back from there layer by layer
        return KroneckerFactors.merged([estimate_kronecker(
            model, tokenizer, data, n_examples, seed, iterations, batch_size, max_length, group, fingerprint, progress,
            cancel, use_cache).on_disk() for group in groups])
    part = data.sample(n_examples, seed)
    key = cache_key(kind="kronecker", model=fingerprint or model_fingerprint(model, tokenizer), task=data.task.name,
                    examples=part.content_digest(), max_length=max_length, iterations=iterations,
                    layers=[l.name for l in layers])
    path = cache_root() / "kronecker" / f"{key}.safetensors"
    with computing(path, enabled=use_cache, cancel=cancel):  # one process computes, the others read its result
        if use_cache and (hit := load_tensors(path, expect_shapes(_shapes(layers, iterations)))) is not None:
            tensors, meta = hit
            inputs: dict[str, dict[str, torch.Tensor]] = {}
            outputs: dict[str, dict[str, torch.Tensor]] = {}
            for flat, tensor in tensors.items():
                kind, side, name = flat.split("/", 2)
                (inputs if side == "in" else outputs).setdefault(kind, {})[name] = tensor
            return KroneckerFactors(inputs, outputs, int(meta["n_examples"]), int(meta["n_skipped"]), iterations,
                                    float(meta["seconds"]), [float(c) for c in meta["change"].split(",") if c], key, True,
                                    path)
        result = compute_kronecker(model, tokenizer, part, layers, iterations, batch_size, max_length, progress, cancel)
        result.key = key
        if use_cache and cache_writable() and writes_results():
            tensors = {f"{kind}/{side}/{name}": t for kind in result.inputs
                       for side, source in (("in", result.inputs), ("out", result.outputs))
                       for name, t in source[kind].items()}
            failed = store_tensors(path, tensors, {"n_examples": str(result.n_examples),
                                                   "n_skipped": str(result.n_skipped), "seconds": f"{result.seconds:.3f}",
                                                   "change": ",".join(f"{c:.6g}" for c in result.change)})
            result.path = None if failed else path
        return result
