"""Task metrics and bootstrap confidence intervals."""
from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap, pearsonr, spearmanr
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


def bootstrap_interval(
    task: TaskSpec, preds: np.ndarray, labels: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the task's primary metric, resampling (prediction, label) pairs."""
    result = bootstrap((preds, labels), lambda p, y: _metric(task.primary_metric, p, y), paired=True,
                       vectorized=False, n_resamples=n_boot, confidence_level=level, method="percentile",
                       rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
