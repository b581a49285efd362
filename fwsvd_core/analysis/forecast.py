"""The score a rank map is predicted to reach, before any compressed model is evaluated.

The allocators already give every layer a curve of the task loss it costs at each rank (closed form from
the weighted spectra, or interpolated from measured single-layer losses). Adding the curves at the chosen
ranks predicts the loss increase of the whole rank map; a slope, fitted on the runs measured so far, turns
it into a score. Evaluating a rank map is seconds; this is microseconds, so it can follow every edit.

A score drop is the score lost in the metric's own direction (a rise of perplexity is a drop), so the slope is
positive for every metric and the predicted score moves away from the dense one in the direction that is worse.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fwsvd_core.analysis.direction import score_changed_by, score_lost
from fwsvd_core.compression.ranks import RankMap, uniform_ranks
from fwsvd_core.inputs.layers import LayerInfo

# score lost per unit of predicted loss increase before any run is measured: a placeholder the first
# measured run replaces (the page says the prediction is uncalibrated until then)
DEFAULT_SLOPE = 1.0


@dataclass(frozen=True)
class Forecast:
    loss_increase: float  # predicted increase of the mean task loss
    score: float  # predicted task score
    slope: float  # score lost per unit of loss increase
    calibrated_on: int  # measured runs the slope was fitted on (0: the default slope)


def predicted_loss_increase(layers: list[LayerInfo], curves: Mapping[str, np.ndarray], ranks: RankMap) -> float:
    """Sum over layers of the loss each one's curve predicts at its rank (full rank costs nothing)."""
    total = 0.0
    for layer in layers:
        rank = min(max(int(ranks.get(layer.name, layer.max_rank)), 0), layer.max_rank)
        curve = curves[layer.name]
        total += float(curve[rank] - curve[layer.max_rank])
    return total


def fitted_slope(runs: Iterable[tuple[float, float]]) -> tuple[float, int]:
    """Least-squares slope through the origin of score drop against predicted loss increase, and the runs used.

    `runs` are (predicted loss increase, measured score drop) pairs; runs predicted to cost nothing carry no
    information about the slope and are left out. A negative fit (more loss, better score) is clamped to 0.
    """
    pairs = [(float(x), float(y)) for x, y in runs if np.isfinite(x) and np.isfinite(y) and x > 0]
    if not pairs:
        return DEFAULT_SLOPE, 0
    x, y = np.array(pairs).T
    return max(float((x * y).sum() / (x * x).sum()), 0.0), len(pairs)


def sweep_dense_score(sweep: pd.DataFrame, metric: str) -> float | None:
    """A sweep's dense score, on the examples its rows were scored on: its first dense row (the model as stored,
    which the rows compress; a float32 copy may follow it). None for a sweep without one."""
    dense = sweep.loc[sweep["method"] == "dense", metric]
    return None if dense.empty else float(dense.iloc[0])


def sweep_runs(layers: list[LayerInfo], curves: Mapping[str, np.ndarray], sweep: pd.DataFrame, method: str,
               metric: str) -> list[tuple[float, float]]:
    """(predicted loss increase, measured score drop) of a sweep's rows of `method` at uniform rank ratios, each
    drop against the sweep's own dense row (scored on the same examples) in `metric`'s direction: measured runs the
    slope can be fitted on."""
    reference = sweep_dense_score(sweep, metric)
    if reference is None or "rank ratio" not in sweep:
        return []
    rows = sweep[(sweep["method"] == method) & (sweep.get("allocator", "uniform") == "uniform")
                 & sweep["rank ratio"].notna()]
    return [(predicted_loss_increase(layers, curves, uniform_ranks(layers, float(row["rank ratio"]))),
             score_lost(metric, reference, float(row[metric]))) for _, row in rows.iterrows()]


def measured_run(metric: str, loss_increase: float, dense_score: float, score: float) -> tuple[float, float]:
    """One run the slope can be fitted on: its predicted loss increase and the score it lost against the dense
    score on the same examples, in `metric`'s direction."""
    return loss_increase, score_lost(metric, dense_score, score)


def forecast(layers: list[LayerInfo], curves: Mapping[str, np.ndarray], ranks: RankMap, dense_score: float,
             runs: Iterable[tuple[float, float]] = (), metric: str | None = None) -> Forecast:
    """The predicted loss increase and score of `ranks`, the slope calibrated on `runs` (see `fitted_slope`): the
    score lies that much worse than `dense_score` in `metric`'s direction (above it for perplexity). Without a
    metric the score is read as higher-is-better."""
    loss = predicted_loss_increase(layers, curves, ranks)
    slope, used = fitted_slope(runs)
    score = dense_score - slope * loss if metric is None else score_changed_by(metric, dense_score, slope * loss)
    return Forecast(loss, score, slope, used)
