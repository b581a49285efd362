"""The empirical Fisher of every compressible weight, from the task loss."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from fwsvd_core.cache import (
    cache_key,
    cache_root,
    cache_writable,
    computing,
    expect_shapes,
    load_tensors,
    store_tensors,
)
from fwsvd_core.errors import FisherError, FwsvdError, InsufficientMemoryError
from fwsvd_core.estimation.distributed import count_over_processes, shard, sum_over_processes, writes_results
from fwsvd_core.estimation.gradients import GradientBatch, gradient_batches
from fwsvd_core.estimation.passes import PassPlan, block_groups, joined_key
from fwsvd_core.inputs.batching import CancelFn, ProgressFn
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.layers import LayerInfo, execution_device, require_layers
from fwsvd_core.inputs.memory import CHUNK_ELEMENTS, ESTIMATORS, FISHER_FORMS, MemoryEstimate, check_fisher
from fwsvd_core.inputs.models import model_fingerprint


@dataclass
class FisherResult:
    """Fisher per layer as [out, in] float32 tensors on the CPU, and how it was estimated.

    The low-memory form (`form == 'profiles'`) keeps only each layer's row sums [out] and column sums [in]:
    all FWSVD needs, for models whose element-wise Fisher would not fit; `per_layer` is then empty.
    """

    per_layer: dict[str, torch.Tensor]
    estimator: str
    n_examples: int
    n_skipped: int
    split: str
    source: str
    seconds: float
    from_cache: bool = False
    key: str | None = None  # the cache key: names this Fisher in the keys of what is derived from it
    notes: list[str] = field(default_factory=list)
    rows: dict[str, torch.Tensor] = field(default_factory=dict)  # [out] per layer (the low-memory form)
    cols: dict[str, torch.Tensor] = field(default_factory=dict)  # [in] per layer (the low-memory form)

    @classmethod
    def merged(cls, parts: list[FisherResult]) -> FisherResult:
        """The Fisher of every layer from the Fishers of groups of layers (`estimation.passes`). An example with a
        non-finite gradient is skipped by the pass whose layers it reached, so the counts are the most any skipped."""
        first = parts[0]
        notes = [*dict.fromkeys(n for p in parts for n in p.notes),
                 f"computed in {len(parts)} passes over the data, a group of blocks (or layers) each"]
        return cls({n: t for p in parts for n, t in p.per_layer.items()}, first.estimator,
                   min(p.n_examples for p in parts), max(p.n_skipped for p in parts), first.split, first.source,
                   sum(p.seconds for p in parts), all(p.from_cache for p in parts), joined_key([p.key for p in parts]),
                   notes, {n: t for p in parts for n, t in p.rows.items()}, {n: t for p in parts for n, t in p.cols.items()})

    @property
    def form(self) -> str:
        return "profiles" if self.rows and not self.per_layer else "full"

    def row_sums(self, name: str) -> torch.Tensor:
        """The Fisher summed over each output row of the layer: [out]."""
        return self.rows[name] if name in self.rows else self.per_layer[name].sum(dim=1)

    def col_sums(self, name: str) -> torch.Tensor:
        """The Fisher summed over each input column of the layer: [in]."""
        return self.cols[name] if name in self.cols else self.per_layer[name].sum(dim=0)

    def element_wise(self, name: str, purpose: str = "this") -> torch.Tensor:
        """The layer's [out, in] Fisher; a clear error for the low-memory form, which does not keep it."""
        if name not in self.per_layer:
            raise FwsvdError(f"{purpose} needs the element-wise Fisher, and this one is the low-memory form (row and "
                             "column sums only). Estimate the full Fisher (--fisher-form full) where it fits.")
        return self.per_layer[name]

    def mass(self) -> dict[str, float]:
        """Total Fisher per layer."""
        names = self.per_layer or self.rows
        return {name: float(self.row_sums(name).sum()) for name in names}


def _accumulate_profiles(batch: GradientBatch, estimator: str, rows: dict[str, torch.Tensor],
                         cols: dict[str, torch.Tensor]) -> None:
    """Row and column sums of the squared per-example gradients without forming any [out, in] gradient.

    For one example with layer inputs X [T, in] and output gradients Gam [T, out], the gradient is
    Gam^T X, so its squared row norms are diag(Gam^T (X X^T) Gam) and its squared column norms
    diag(X^T (Gam Gam^T) X): T x T token Gram matrices instead of an out x in matrix.
    """
    for name in rows:
        x = batch.inputs[name].to(rows[name].device).float()
        g = batch.grads[name].to(rows[name].device).float()
        n_good, tokens = batch.n_good, x.shape[1]
        if estimator == "batch":  # one [out, in] product per batch, for this layer only
            product = (g.reshape(-1, g.shape[-1]).T @ x.reshape(-1, x.shape[-1]) / n_good).square_()
            rows[name] += product.sum(dim=1)
            cols[name] += product.sum(dim=0)
            continue
        step = max(1, CHUNK_ELEMENTS // (tokens * (2 * tokens + g.shape[-1] + x.shape[-1])))
        for start in range(0, n_good, step):
            xs, gs = x[start : start + step], g[start : start + step]
            rows[name] += (gs * torch.bmm(torch.bmm(xs, xs.transpose(1, 2)), gs)).sum(dim=(0, 1))
            cols[name] += (xs * torch.bmm(torch.bmm(gs, gs.transpose(1, 2)), xs)).sum(dim=(0, 1))


def _accumulate_batch(batch: GradientBatch, estimator: str, sums: dict[str, torch.Tensor]) -> None:
    for name, sums_l in sums.items():
        # float32: half-precision sums lose the small terms
        x, g = (batch.inputs[name].to(sums_l.device).float(), batch.grads[name].to(sums_l.device).float())
        n_good = batch.n_good
        out_f, in_f = sums_l.shape
        if estimator == "batch":
            sums_l += (g.reshape(-1, out_f).T @ x.reshape(-1, in_f) / n_good) ** 2
            continue
        step = max(1, CHUNK_ELEMENTS // (out_f * in_f))
        for start in range(0, n_good, step):
            per_example = torch.bmm(g[start : start + step].transpose(1, 2), x[start : start + step])
            sums_l += per_example.square_().sum(dim=0)


def compute_fisher(
    model: nn.Module, tokenizer, data: TaskData, layers: list[LayerInfo] | None = None,
    estimator: str = "per-sample", batch_size: int = 16, max_length: int = 128,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None, form: str = "full",
) -> FisherResult:
    """Fisher over all of `data` (uncached). Examples whose loss or gradients are not finite are skipped.

    In a torch.distributed group each process sums its shard of `data` and the sums are added up: the
    per-sample estimator equals the single-process result (the batch estimator's batches are formed per process).
    """
    if estimator not in ESTIMATORS:
        raise FwsvdError(f"Unknown Fisher estimator {estimator!r}; choose from {ESTIMATORS}.")
    if form not in FISHER_FORMS:
        raise FwsvdError(f"Unknown Fisher form {form!r}; choose from {FISHER_FORMS}.")
    if len(data) == 0:
        raise FwsvdError("The Fisher needs at least one example.")
    start = time.perf_counter()
    layers = layers or require_layers(model)
    # each layer's sum on its own device: accelerate's device_map may spread the layers over several
    sums = {k: torch.zeros(shape, device=execution_device(model.get_submodule(k.partition("/")[2] or k)))
            for k, shape in _flat_shapes(layers, form).items()}
    _, rows, cols = _from_flat(sums, form)
    n_good = n_batches = 0
    for batch in gradient_batches(model, tokenizer, shard(data), layers, batch_size, max_length, progress, cancel):
        if batch.n_good:
            if form == "full":
                _accumulate_batch(batch, estimator, sums)
            else:
                _accumulate_profiles(batch, estimator, rows, cols)
            n_batches += 1
        n_good += batch.n_good
    sum_over_processes(sums)
    n_good, n_batches = count_over_processes(n_good, n_batches)
    denom = max(n_good if estimator == "per-sample" else n_batches, 1)
    averaged = {k: torch.nan_to_num(s / denom, nan=0.0, posinf=0.0).cpu() for k, s in sums.items()}
    notes = [] if n_good else ["no example gave a finite gradient: the Fisher is all zeros"]
    per_layer, rows, cols = _from_flat(averaged, form)
    return FisherResult(per_layer, estimator, n_good, len(data) - n_good, data.split, data.source,
                        time.perf_counter() - start, notes=notes, rows=rows, cols=cols)


def fisher_estimate(layers: list[LayerInfo], form: str = "full") -> MemoryEstimate:
    """The memory the Fisher of `layers` takes while it is estimated: float32 sums and the averaged result, element-wise
    ('full') or each layer's row and column sums ('profiles')."""
    elements = sum(l.out_features * l.in_features if form == "full" else l.out_features + l.in_features for l in layers)
    return MemoryEstimate(f"Fisher ({form})", {"sums": 4 * elements, "result": 4 * elements})


def _flat_shapes(layers: list[LayerInfo], form: str) -> dict[str, tuple[int, ...]]:
    """The tensors a Fisher of this form is made of, by name: [out, in] per layer, or 'rows/' and 'cols/' sums."""
    if form == "full":
        return {l.name: (l.out_features, l.in_features) for l in layers}
    return {**{f"rows/{l.name}": (l.out_features,) for l in layers},
            **{f"cols/{l.name}": (l.in_features,) for l in layers}}


def _from_flat(tensors: dict[str, torch.Tensor], form: str) -> tuple[dict[str, torch.Tensor], ...]:
    """FisherResult's per_layer, rows and cols from the flat tensors of `_flat_shapes` (the same tensors)."""
    if form == "full":
        return tensors, {}, {}
    rows, cols = ({k.partition("/")[2]: v for k, v in tensors.items() if k.startswith(part + "/")}
                  for part in ("rows", "cols"))
    return {}, rows, cols


def _to_flat(fisher: FisherResult) -> dict[str, torch.Tensor]:
    """The flat tensors of `_flat_shapes` from a FisherResult (the inverse of `_from_flat`)."""
    return fisher.per_layer or {**{f"rows/{n}": v for n, v in fisher.rows.items()},
                                **{f"cols/{n}": v for n, v in fisher.cols.items()}}


def directional_fisher(
    model: nn.Module, tokenizer, data: TaskData, directions: dict[str, dict[str, torch.Tensor]],
    layers: list[LayerInfo] | None = None, batch_size: int = 16, max_length: int = 128,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> dict[str, dict[str, tuple[float, float]]]:
    """For each layer and each weight change dW [out, in] of it: the mean over examples of g.dW and of (g.dW)^2.

    g is an example's gradient of the task loss with respect to the layer's weight, so the second number
    is dW^T F dW with the full empirical Fisher F of the layer, off-diagonal terms included, and the
    first is the first-order change of the loss. g.dW = sum over tokens of g_out . (dW x), so no
    per-example gradient matrix is ever formed. `directions[layer][label]` names each change.
    """
    if len(data) == 0:
        raise FwsvdError("The directional Fisher needs at least one example.")
    known = layers or require_layers(model)
    if unknown := sorted(set(directions) - {l.name for l in known}):
        raise FwsvdError(f"No compressible layer is named {', '.join(unknown)}.")
    layers = [l for l in known if l.name in directions]
    sums = {n: {k: [0.0, 0.0] for k in d} for n, d in directions.items()}
    device = next(model.parameters()).device
    moved = {n: {k: dw.to(device=device, dtype=torch.float32) for k, dw in d.items()} for n, d in directions.items()}
    n_good = 0
    for batch in gradient_batches(model, tokenizer, data, layers, batch_size, max_length, progress, cancel):
        with torch.no_grad():
            for name, by_label in sums.items():
                x, g = batch.inputs[name].float(), batch.grads[name].float()
                for label, acc in by_label.items():
                    projection = ((x @ moved[name][label].T) * g).sum(dim=(1, 2)).double()
                    acc[0] += float(projection.sum())
                    acc[1] += float(projection.square().sum())
        n_good += batch.n_good
    n = max(n_good, 1)
    return {name: {label: (acc[0] / n, acc[1] / n) for label, acc in by_label.items()} for name, by_label in sums.items()}


def estimate_fisher(
    model: nn.Module, tokenizer, data: TaskData, n_examples: int | None = 256, estimator: str = "per-sample",
    seed: int = 0, batch_size: int = 16, max_length: int = 128, layers: list[LayerInfo] | None = None,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
    use_cache: bool = True, fingerprint: str | None = None, allow_degenerate: bool = False, form: str = "auto",
    blocks_per_pass: int | PassPlan | None = None,
) -> FisherResult:
    """Fisher over a seeded sample of `n_examples`, read from the on-disk cache when it was computed before.

    The cache key holds the content of the examples used, not where they came from: an edited data file
    gives a new Fisher. An unusable Fisher (see `require_usable_fisher`) is an error unless `allow_degenerate`.
    `form` 'auto' keeps the element-wise Fisher where the memory estimate says it fits, else only each
    layer's row and column sums ('profiles'); 'full' and 'profiles' choose. `blocks_per_pass` computes it for that
    many blocks per pass over the data (or in a `PassPlan`'s groups), each group cached as it is finished
    (`estimation.passes`).
    """
    layers = layers or require_layers(model)
    if len(groups := block_groups(layers, blocks_per_pass)) > 1:
        return FisherResult.merged([estimate_fisher(
            model, tokenizer, data, n_examples, estimator, seed, batch_size, max_length, group, progress, cancel,
            use_cache, fingerprint, allow_degenerate, form) for group in groups])
    part = data.sample(n_examples, seed)
    config = getattr(model, "config", None)
    device = next(model.parameters()).device
    notes = []
    fits = False  # the memory estimate was checked already for the form chosen
    if form == "auto":
        form = "full"
        if config is not None:
            try:
                check_fisher(config, device, batch_size, max_length, estimator)
                fits = True
            except InsufficientMemoryError as exc:
                form = "profiles"
                notes.append(f"the element-wise Fisher would not fit ({str(exc).splitlines()[0]}): this is the "
                             "low-memory Fisher, each layer's row and column sums (FWSVD works from them; TFWSVD, "
                             "the heatmaps and the diagonal predictor need the element-wise one)")
    if form not in FISHER_FORMS:
        raise FwsvdError(f"Unknown Fisher form {form!r}; choose from auto, {', '.join(FISHER_FORMS)}.")
    key = cache_key(
        kind="fisher", model=fingerprint or model_fingerprint(model, tokenizer), task=data.task.name,
        examples=part.content_digest(), estimator=estimator, max_length=max_length,
        batch_size=batch_size if estimator == "batch" else None, layers=[l.name for l in layers],
        **({"form": form} if form != "full" else {}),  # full-form keys stay those of earlier versions
    )
    path = cache_root() / "fisher" / f"{key}.safetensors"
    # a second process asking for this Fisher waits for the first one's and reads it from the cache
    with computing(path, enabled=use_cache, cancel=cancel):
        if use_cache and (hit := load_tensors(path, expect_shapes(_flat_shapes(layers, form)))) is not None:
            tensors, meta = hit
            per_layer, rows, cols = _from_flat(tensors, form)
            result = FisherResult(per_layer, estimator, int(meta["n_examples"]), int(meta["n_skipped"]), data.split,
                                  data.source, float(meta["seconds"]), from_cache=True, key=key, rows=rows, cols=cols)
        else:
            # what would make the work fail or be lost is checked before the work
            if config is not None and not fits:
                check_fisher(config, device, batch_size, max_length, estimator, form=form)
            write_cache = use_cache and cache_writable()
            result = compute_fisher(model, tokenizer, part, layers, estimator, batch_size, max_length, progress, cancel,
                                    form=form)
            result.key = key
            if use_cache and not write_cache:
                result.notes.append(f"the cache folder {cache_root()} cannot be written: this Fisher is kept in memory "
                                    "only")
            elif write_cache and writes_results() and (warning := store_tensors(
                    path, _to_flat(result), {"n_examples": str(result.n_examples), "n_skipped": str(result.n_skipped),
                                   "seconds": f"{result.seconds:.3f}", "estimator": estimator, "form": form})):
                result.notes.append(warning)
    result.notes[:0] = notes
    require_usable_fisher(result, allow_degenerate)
    return result


def require_usable_fisher(fisher: FisherResult, allow_degenerate: bool = False) -> None:
    """Refuse a Fisher that is all zero or from which most examples were skipped: every Fisher-weighted method
    would silently become plain SVD. With `allow_degenerate`, a warning goes into its notes instead."""
    total = fisher.n_examples + fisher.n_skipped
    problem = ""
    if fisher.n_examples == 0 or not any(mass > 0 for mass in fisher.mass().values()):
        problem = (f"the Fisher is all zero ({fisher.n_skipped} of {total} examples gave a loss or gradient that is "
                   "not finite)")
    elif fisher.n_skipped * 2 > total:
        problem = f"{fisher.n_skipped} of {total} examples were skipped: their loss or gradient is not finite"
    if not problem:
        return
    if not allow_degenerate:
        raise FisherError(f"Unusable Fisher: {problem}. Fisher-weighted methods would quietly turn into plain SVD. "
                          "Check the model's outputs and the data, or continue anyway with --allow-degenerate-fisher "
                          "(in the dashboard: 'Use this Fisher anyway').")
    fisher.notes.append(f"used although {problem}")
