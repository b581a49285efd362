"""The singular-value group ablation of the FWSVD paper: drop one group of components, measure the score lost (a drop
of accuracy, a rise of perplexity: in the metric's own direction, so a positive drop is always a worse score)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from fwsvd_core.analysis.direction import score_lost
from fwsvd_core.compression.apply import with_weights
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.evaluation import example_stats
from fwsvd_core.inputs.batching import CancelFn, ProgressFn
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.families import family_of, higher_is_better
from fwsvd_core.inputs.tasks import TaskSpec


def component_groups(k: int, n_groups: int = 10) -> list[np.ndarray]:
    """Indices 0..k-1 (largest singular value first) cut into `n_groups` nearly equal groups."""
    return np.array_split(np.arange(k), n_groups)


def paired_drop_interval(task: TaskSpec, before: np.ndarray, after: np.ndarray, n_boot: int = 1000,
                         level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the primary metric's drop from `before` to `after` (the score lost, in the
    metric's direction), the examples' statistics on the same examples, resampled together (paired: far tighter than
    two separate intervals)."""
    family = family_of(task)
    sign = 1.0 if higher_is_better(task.primary_metric) else -1.0
    result = bootstrap((np.arange(len(before)),),
                       lambda rows, axis=-1: sign * (family.resampled_primary(task, before[rows])
                                                     - family.resampled_primary(task, after[rows])),
                       vectorized=True, n_resamples=n_boot, confidence_level=level, method="percentile",
                       rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def group_ablation(
    session: CompressionSession, eval_data: TaskData, method: str = "svd", n_groups: int = 10,
    subsample: int | None = None, batch_size: int = 64, progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> pd.DataFrame:
    """Score with group g of every layer's components removed, for each g; one row per group, with the drop (the score
    lost, in the metric's direction) and its paired 95% bootstrap interval over the scored examples."""
    factors = session.factors(method)
    tokenizer = session.loaded.tokenizer
    part = eval_data.sample(subsample, 0)  # the examples evaluate(subsample=...) scores
    dense_stats, _ = example_stats(session.model, tokenizer, part, batch_size, cancel=cancel)
    rows = []
    for g in range(n_groups):
        weights = {}
        for layer in session.layers:
            f = factors[layer.name]
            idx = component_groups(f.max_rank, n_groups)[g]
            weights[layer.name] = f.reconstruct(f.max_rank) - f.left[:, idx] @ f.right[idx]
        stats, _ = example_stats(with_weights(session.model, weights), tokenizer, part, batch_size, cancel=cancel)
        score, dense = (family_of(part.task).metrics(part.task, s)[part.task.primary_metric] for s in (stats, dense_stats))
        low, high = paired_drop_interval(part.task, dense_stats, stats)
        rows.append({"group": g + 1, "components": f"{100 * g // n_groups}-{100 * (g + 1) // n_groups}% of the spectrum",
                     "score": score, "drop": score_lost(part.task.primary_metric, dense, score),
                     "drop low": low, "drop high": high,
                     "examples": len(part), "metric": part.task.primary_metric})
        if progress is not None:
            progress(g + 1, n_groups)
    return pd.DataFrame(rows)
