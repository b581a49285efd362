"""The singular-value group ablation of the FWSVD paper: drop one group of components, measure the score drop."""
from __future__ import annotations

import numpy as np
import pandas as pd

from fwsvd_core.compression.apply import with_weights
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.inputs.batching import CancelFn, ProgressFn
from fwsvd_core.inputs.data import TaskData


def component_groups(k: int, n_groups: int = 10) -> list[np.ndarray]:
    """Indices 0..k-1 (largest singular value first) cut into `n_groups` nearly equal groups."""
    return np.array_split(np.arange(k), n_groups)


def group_ablation(
    session: CompressionSession, eval_data: TaskData, method: str = "svd", n_groups: int = 10,
    subsample: int | None = None, batch_size: int = 64, progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> pd.DataFrame:
    """Score with group g of every layer's components removed, for each g; one row per group."""
    factors = session.factors(method)
    tokenizer = session.loaded.tokenizer
    dense = evaluate(session.model, tokenizer, eval_data, batch_size, subsample=subsample, cancel=cancel)
    rows = []
    for g in range(n_groups):
        weights = {}
        for layer in session.layers:
            f = factors[layer.name]
            idx = component_groups(f.max_rank, n_groups)[g]
            weights[layer.name] = f.reconstruct(f.max_rank) - f.left[:, idx] @ f.right[idx]
        result = evaluate(with_weights(session.model, weights), tokenizer, eval_data, batch_size,
                          subsample=subsample, cancel=cancel)
        rows.append({"group": g + 1, "components": f"{100 * g // n_groups}-{100 * (g + 1) // n_groups}% of the spectrum",
                     "score": result.score,
                     "drop": dense.score - result.score, "metric": result.primary_metric})
        if progress is not None:
            progress(g + 1, n_groups)
    return pd.DataFrame(rows)
