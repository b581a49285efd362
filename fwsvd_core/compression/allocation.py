"""Per-layer ranks under a parameter budget: beyond a uniform ratio.

Both allocators give every layer a curve, the predicted (or measured) increase of the task loss at each
rank, and hand the curves to one greedy allocator: start every layer at rank 1 and keep buying the step
(one more rank, or back to the dense layer past break-even) with the largest loss decrease per parameter
until no step fits the budget.

- `spectral`: closed form, no task evaluation. A second-order expansion of the loss with the empirical
  Fisher as curvature gives 0.5 * sum_ij I_ij dW_ij^2; with I approximated by its row and column sums
  this is the tail energy of the weighted spectrum FWSVD decomposes, scaled back to loss units.
- `sensitivity`: measured. Each layer alone is compressed at a few rank ratios and the task loss on
  calibration examples of the training split is measured (a per-layer table, cached); the curve
  interpolates between those ranks.
"""
from __future__ import annotations

import heapq
import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from fwsvd_core.cache import cache_key, cache_root, computing, store_bytes
from fwsvd_core.compression.methods import canonical_method, get_method
from fwsvd_core.compression.ranks import (
    RankMap,
    compressed_params,
    original_params,
    ranks_for_param_ratio,
    uniform_ranks,
)
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.errors import RankError
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.inputs.batching import CancelFn
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.layers import LayerInfo

ALLOCATORS = ("uniform", "spectral", "sensitivity")
SENSITIVITY_RATIOS = (0.05, 0.15, 0.3, 0.5)
FLOOR_FRACTION = 0.75


def allocate_greedy(layers: list[LayerInfo], curves: dict[str, np.ndarray], budget: int,
                    floor: RankMap | None = None) -> RankMap:
    """Ranks whose weight parameters stay within `budget`, spending it where each parameter buys the most.

    `curves[name][r]` is the loss at rank r (0..max rank; the value at max rank is the dense layer).
    Every layer starts at its `floor` rank (default 1).
    """
    ranks = {l.name: max(1, min((floor or {}).get(l.name, 1), l.max_rank)) for l in layers}
    spent = compressed_params(layers, ranks)
    if spent > budget:
        if floor:
            return allocate_greedy(layers, curves, budget)
        raise RankError(f"The budget of {budget:,} parameters is below rank 1 everywhere ({spent:,}).")

    def next_step(layer: LayerInfo):
        r, curve = ranks[layer.name], curves[layer.name]
        if r >= layer.max_rank:
            return None
        to = r + 1 if r < layer.break_even_rank else layer.max_rank  # past break-even only the dense layer pays
        cost = layer.compressed_params(to) - layer.compressed_params(r)
        gain = float(curve[r] - curve[to])
        return (-gain / max(cost, 1), layer.name, to, cost)

    by_name = {l.name: l for l in layers}
    heap = [s for s in (next_step(l) for l in layers) if s is not None]
    heapq.heapify(heap)
    while heap:
        _, name, to, cost = heapq.heappop(heap)
        if spent + cost > budget:
            continue  # this layer's next step does not fit; cheaper steps of other layers may
        ranks[name] = to
        spent += cost
        step = next_step(by_name[name])
        if step is not None:
            heapq.heappush(heap, step)
    return ranks


def spectral_source(method: str) -> str:
    """The method whose spectra give `method`'s loss curves: its own when they convert to loss units, else
    FWSVD-input's (methods without a loss scale of their own: plain, activation-weighted, iterative)."""
    chosen = get_method(method)
    return chosen.name if chosen.loss_scale is not None and not chosen.per_rank else "fwsvd-input"


def spectral_curves(session: CompressionSession, method: str = "fwsvd-input") -> dict[str, np.ndarray]:
    """Predicted loss increase per rank from the spectrum of the weighted matrix (no evaluation)."""
    if session.fisher is None:
        raise ValueError("The spectral allocator needs the Fisher: estimate it first.")
    base = get_method(spectral_source(method))
    curves = {}
    for layer in session.layers:
        s = session.factors(base.name)[layer.name].spectrum.double().cpu().numpy()
        tail = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]])  # tail[r] = sum_{i>=r} s_i^2
        total = float(session.fisher.row_sums(layer.name).double().sum())
        scale = base.loss_scale(layer.out_features, layer.in_features, total) if base.loss_scale else 1.0
        curves[layer.name] = 0.5 * scale * tail
    return curves


def sensitivity_table(
    session: CompressionSession, calibration: TaskData, method: str = "fwsvd-input",
    ratios: tuple[float, ...] = SENSITIVITY_RATIOS, n_examples: int = 128, seed: int = 0,
    progress: Callable[[int, int], None] | None = None, cancel: CancelFn | None = None,
) -> pd.DataFrame:
    """Calibration loss with each layer alone compressed at each rank ratio (cached on disk)."""
    method = canonical_method(method)
    part = calibration.sample(n_examples, seed)
    key = cache_key(kind="sensitivity", model=session.loaded.fingerprint, method=method,
                    fisher=None if session.fisher is None else session.fisher.key, ratios=list(ratios),
                    examples=part.content_digest(), layers=[l.name for l in session.layers])
    path = cache_root() / "sensitivity" / f"{key}.json"
    with computing(path, cancel=cancel):  # one process measures, the others read its table
        if path.is_file():
            try:
                return pd.DataFrame(json.loads(path.read_text()))
            except ValueError:
                path.unlink(missing_ok=True)  # a corrupt entry is measured again
        tokenizer = session.loaded.tokenizer
        dense = evaluate(session.model, tokenizer, part, cancel=cancel).loss
        rows, total, done = [], len(session.layers) * len(ratios), 0
        ranks_at = {ratio: uniform_ranks(session.layers, ratio) for ratio in ratios}
        for layer in session.layers:
            for ratio in ratios:
                rank = ranks_at[ratio][layer.name]
                model = session.compress(method, {layer.name: rank})
                loss = evaluate(model, tokenizer, part, cancel=cancel).loss
                rows.append({"layer": layer.name, "rank ratio": ratio, "rank": rank, "loss increase": loss - dense})
                done += 1
                if progress is not None:
                    progress(done, total)
        store_bytes(path, json.dumps(rows).encode())
        return pd.DataFrame(rows)


def sensitivity_curves(layers: list[LayerInfo], table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Loss increase at every rank, interpolated between the measured ranks, never rising with rank."""
    curves = {}
    for layer in layers:
        rows = table[table["layer"] == layer.name].sort_values("rank")
        known_r = np.concatenate([[0], rows["rank"].to_numpy(), [layer.max_rank]])
        worst = max(float(rows["loss increase"].max()), 0.0) if len(rows) else 0.0
        known_v = np.concatenate([[worst * 2 + 1e-9], np.maximum(rows["loss increase"].to_numpy(), 0.0), [0.0]])
        curve = np.interp(np.arange(layer.max_rank + 1), known_r, known_v)
        curves[layer.name] = np.minimum.accumulate(curve)  # more rank never predicts more loss
    return curves


def allocate(
    session: CompressionSession, allocator: str, param_ratio: float, method: str = "fwsvd-input",
    calibration: TaskData | None = None, floor_fraction: float = FLOOR_FRACTION, **sensitivity_kwargs,
) -> RankMap:
    """Ranks within `param_ratio` (kept / original weights of the compressible layers) by the named allocator.

    No layer gets less than `floor_fraction` of the uniform allocation's rank: the loss curves are
    second-order or interpolated estimates, least trustworthy far from the ranks they were made at.
    """
    if allocator not in ALLOCATORS:
        raise RankError(f"Unknown allocator {allocator!r}; choose from {', '.join(ALLOCATORS)}.")
    if not 0.0 < param_ratio <= 1.0:
        raise RankError(f"The parameter ratio must be in (0, 1], got {param_ratio}.")
    if allocator == "uniform":
        return ranks_for_param_ratio(session.layers, param_ratio)[0]
    budget = int(param_ratio * original_params(session.layers))
    uniform = ranks_for_param_ratio(session.layers, param_ratio)[0]
    floor = {name: int(floor_fraction * r) for name, r in uniform.items()}
    if allocator == "spectral":
        curves = spectral_curves(session, method)
    else:
        if calibration is None:
            raise ValueError("The sensitivity allocator needs calibration data (the training split).")
        curves = sensitivity_curves(session.layers, sensitivity_table(session, calibration, method, **sensitivity_kwargs))
    return allocate_greedy(session.layers, curves, budget, floor)
