"""Task metrics and bootstrap confidence intervals."""
from __future__ import annotations

import numpy as np

from fwsvd_core.inputs.families import family_of
from fwsvd_core.inputs.families.sequence import batched_metric, compute_metrics
from fwsvd_core.inputs.tasks import TaskSpec

__all__ = ["batched_metric", "bootstrap_interval", "compute_metrics", "stats_interval"]


def bootstrap_interval(
    task: TaskSpec, preds: np.ndarray, labels: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of a sequence task's primary metric, resampling (prediction, label) pairs."""
    return stats_interval(task, np.stack([preds, labels], axis=1).astype(np.float64), n_boot, level, seed)


def stats_interval(task: TaskSpec, stats: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the task's primary metric, resampling the examples' statistics (rows of
    `stats`, as the task's family computes them)."""
    from scipy.stats import bootstrap  # scipy.stats takes most of a second to import: on first use

    family = family_of(task)
    result = bootstrap((np.arange(len(stats)),), lambda rows, axis=-1: family.resampled_primary(task, stats[rows]),
                       vectorized=True, n_resamples=n_boot, confidence_level=level, method="percentile",
                       rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
