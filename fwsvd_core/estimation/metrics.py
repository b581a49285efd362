"""Task metrics and bootstrap confidence intervals."""
from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap, pearsonr, rankdata, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from fwsvd_core.inputs.tasks import TaskSpec


def _metric(name: str, preds: np.ndarray, labels: np.ndarray) -> float:
    if name == "accuracy":
        return float(accuracy_score(labels, preds))
    if name == "f1":
        return float(f1_score(labels, preds, zero_division=0.0))
    if name == "mcc":
        return float(matthews_corrcoef(labels, preds))
    if name in ("pearson", "spearman"):
        if np.std(preds) == 0 or np.std(labels) == 0:
            return 0.0  # a constant prediction carries no correlation; scipy would return NaN
        fn = pearsonr if name == "pearson" else spearmanr
        return float(fn(preds, labels)[0])
    raise ValueError(f"unknown metric {name}")


def compute_metrics(task: TaskSpec, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {m: _metric(m, preds, labels) for m in task.metrics}


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r along the last axis; 0 where either side is constant (as `_metric`)."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    scale = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (a * b).sum(axis=-1) / np.where(scale > 0, scale, 1.0), 0.0)


def batched_metric(name: str, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`_metric` of every row at once (resamples along the first axes, examples along the last); F1 and MCC for
    binary labels, the tasks that use them. The bootstrap calls this: a thousand resamples cost one array pass."""
    if name == "accuracy":
        return (preds == labels).mean(axis=-1)
    if name in ("pearson", "spearman"):
        p, y = preds.astype(np.float64), labels.astype(np.float64)
        if name == "spearman":
            p, y = rankdata(p, axis=-1), rankdata(y, axis=-1)
        return _correlation(p, y)
    if name in ("f1", "mcc"):
        p, y = preds == 1, labels == 1
        tp, tn = (p & y).sum(axis=-1), (~p & ~y).sum(axis=-1)
        fp, fn = (p & ~y).sum(axis=-1), (~p & y).sum(axis=-1)
        if name == "f1":
            return np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        scale = np.sqrt(((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).astype(np.float64))
        return np.where(scale > 0, (tp * tn - fp * fn) / np.where(scale > 0, scale, 1.0), 0.0)
    raise ValueError(f"unknown metric {name}")


def bootstrap_interval(
    task: TaskSpec, preds: np.ndarray, labels: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the task's primary metric, resampling (prediction, label) pairs."""
    result = bootstrap((preds, labels), lambda p, y, axis=-1: batched_metric(task.primary_metric, p, y), paired=True,
                       vectorized=True, n_resamples=n_boot, confidence_level=level, method="percentile",
                       rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
