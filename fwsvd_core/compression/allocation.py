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

`exact-spectral` and `exact-sensitivity` read the same two curves but solve the budget exactly instead of
greedily: an integer program (`scipy.optimize.milp`) with one binary per (layer, candidate rank), one chosen
per layer, total parameters within the budget, minimising the summed predicted loss (`allocate_exact`).
Greedy buying is optimal only on convex curves; measured curves are not always convex.
"""
from __future__ import annotations

import contextlib
import heapq
import json
import os
import sys
from collections.abc import Callable, Iterator

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

# allocator -> (loss model giving the per-layer curves, solver); `uniform` needs neither
_PLANS = {"spectral": ("spectral", "greedy"), "sensitivity": ("sensitivity", "greedy"),
          "exact-spectral": ("spectral", "exact"), "exact-sensitivity": ("sensitivity", "exact")}
ALLOCATORS = ("uniform", *_PLANS)
SENSITIVITY_RATIOS = (0.05, 0.15, 0.3, 0.5)
FLOOR_FRACTION = 0.75
# the exact allocator's candidates: every rank of a layer whose break-even rank is at most EVERY_RANK_UP_TO; above
# it every rank up to FINE_RANKS, then every RANK_STEP-th (tensor-core friendly), the break-even rank and the dense layer
EVERY_RANK_UP_TO = 1024
FINE_RANKS = 64
RANK_STEP = 8
# HiGHS stops once its solution is proven within this relative gap of the optimum: 1e-4 solves a 7B model's 224 layers
# in seconds (gap 0 takes ten times longer for a predicted loss lower by about one part in 10^7)
OPTIMALITY_GAP = 1e-4


def loss_model(allocator: str) -> str | None:
    """The per-layer loss curves `allocator` reads: "spectral", "sensitivity", or None (`uniform`)."""
    return _PLANS[allocator][0] if allocator in _PLANS else None


def needs_calibration(allocator: str) -> bool:
    """Whether `allocator` measures losses on calibration data (the training split)."""
    return loss_model(allocator) == "sensitivity"


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


def predicted_loss(layers: list[LayerInfo], curves: dict[str, np.ndarray], ranks: RankMap) -> float:
    """The summed predicted loss of `ranks` on `curves` (a rank past break-even is the dense layer)."""
    return float(sum(curves[l.name][l.max_rank if ranks[l.name] > l.break_even_rank else ranks[l.name]] for l in layers))


def candidate_ranks(layer: LayerInfo, floor: int = 1, step: int | None = None) -> list[int]:
    """The ranks the exact allocator chooses among for `layer`, from `floor` up: factorized ranks up to break-even
    (every rank, or past FINE_RANKS every `step`-th, plus the break-even rank), then the dense layer.

    `step=None` picks every rank for layers whose break-even rank is at most EVERY_RANK_UP_TO, else RANK_STEP.
    """
    top = layer.break_even_rank
    lo = max(1, floor)
    if lo > top:  # factorizing never saves here (or the floor is past break-even): the layer stays dense
        return [layer.max_rank]
    step = step or (1 if top <= EVERY_RANK_UP_TO else RANK_STEP)
    ranks = [r for r in range(lo, top + 1) if step == 1 or r <= FINE_RANKS or r % step == 0]
    return sorted({lo, *ranks, top, layer.max_rank})


def allocate_exact(layers: list[LayerInfo], curves: dict[str, np.ndarray], budget: int,
                   floor: RankMap | None = None, step: int | None = None, time_limit: float = 60.0,
                   gap: float = OPTIMALITY_GAP) -> RankMap:
    """Ranks within `budget` weight parameters minimising the summed `curves` (see `allocate_greedy` for both), by an
    integer program over each layer's `candidate_ranks`: optimal when every rank is a candidate, else optimal on the
    grid, after which leftover budget buys single-rank steps greedily. Never predicts more loss than `allocate_greedy`:
    its ranks are candidates too.
    """
    lowest = {l.name: max(1, min((floor or {}).get(l.name, 1), l.max_rank)) for l in layers}
    if compressed_params(layers, lowest) > budget:
        if floor:
            return allocate_exact(layers, curves, budget, None, step, time_limit, gap)
        raise RankError(f"The budget of {budget:,} parameters is below rank 1 everywhere "
                        f"({compressed_params(layers, lowest):,}).")
    greedy = allocate_greedy(layers, curves, budget, floor)
    options = []
    for l in layers:
        chosen = greedy[l.name] if greedy[l.name] <= l.break_even_rank else l.max_rank
        options.append(sorted({*candidate_ranks(l, lowest[l.name], step), chosen}))
    ranks = _solve_choice_program(layers, curves, options, budget, time_limit, gap) or greedy
    topped = allocate_greedy(layers, curves, budget, ranks)  # grid: the leftover buys single-rank steps
    best = min((ranks, topped, greedy), key=lambda candidate: predicted_loss(layers, curves, candidate))
    return {l.name: best[l.name] for l in layers}


def _solve_choice_program(layers: list[LayerInfo], curves: dict[str, np.ndarray], options: list[list[int]],
                          budget: int, time_limit: float, gap: float) -> RankMap | None:
    """One rank of `options[i]` per layer, within `budget`, minimising the summed loss; None if HiGHS finds none."""
    from scipy import sparse  # on first use: the command line's --help stays light
    from scipy.optimize import Bounds, LinearConstraint, milp

    sizes = np.array([len(o) for o in options])
    group = np.repeat(np.arange(len(layers)), sizes)
    cost = np.concatenate([[l.compressed_params(r) for r in o] for l, o in zip(layers, options, strict=True)])
    loss = np.concatenate([np.asarray(curves[l.name], dtype=np.float64)[o] for l, o in zip(layers, options, strict=True)])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    # each layer's cheapest option is paid anyway: the program sees only what more costs and saves, in O(1) units
    base_cost = np.minimum.reduceat(cost, starts)
    extra_cost = (cost - base_cost[group]).astype(np.float64)
    gains = loss - np.minimum.reduceat(loss, starts)[group]
    scale = float(gains.max()) or 1.0
    one_each = LinearConstraint(sparse.csr_array((np.ones(len(group)), (group, np.arange(len(group))))), 1, 1)
    room = float(budget - int(base_cost.sum()))
    for _ in range(4):  # HiGHS meets constraints to a tolerance: tighten by any overshoot and solve again
        within = LinearConstraint(extra_cost[None, :], -np.inf, room)
        with _native_stdout_silenced():
            result = milp(gains / scale, integrality=np.ones(len(group)), bounds=Bounds(0, 1),
                          constraints=[one_each, within], options={"mip_rel_gap": gap, "time_limit": time_limit})
        if result.x is None:
            return None
        picked = np.flatnonzero(result.x > 0.5)
        ranks = {layers[group[i]].name: options[group[i]][i - starts[group[i]]] for i in picked}
        spent = compressed_params(layers, ranks) if len(ranks) == len(layers) else budget + 1
        if spent <= budget:
            return ranks
        room -= spent - budget
    return None


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """File descriptor 1 to /dev/null while inside: scipy's HiGHS prints solver traces from C++ despite disp=False."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


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
    model, solver = _PLANS[allocator]
    if model == "spectral":
        curves = spectral_curves(session, method)
    else:
        if calibration is None:
            raise ValueError(f"The {allocator} allocator needs calibration data (the training split).")
        curves = sensitivity_curves(session.layers, sensitivity_table(session, calibration, method, **sensitivity_kwargs))
    solve = allocate_exact if solver == "exact" else allocate_greedy
    return solve(session.layers, curves, budget, floor)
