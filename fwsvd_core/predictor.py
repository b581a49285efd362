"""A per-layer predictor of how much task loss plain SVD costs compared with Fisher-weighted SVD.

With the empirical Fisher as the curvature of the task loss, changing a layer's weights by dW raises the
loss by about 0.5 * sum_ij I_ij dW_ij^2. The predictor is that estimate for the SVD truncation minus the
same estimate for the FWSVD truncation at the same rank: the loss that weighting is predicted to save.
It needs only the weights and the Fisher, no task evaluation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .batching import CancelFn, ProgressFn
from .data import TaskData
from .evaluation import evaluate
from .session import CompressionSession


def _expected_loss_increase(weight, fisher, factors, rank: int) -> float:
    residual = weight - factors.reconstruct(rank)
    return 0.5 * float((fisher * residual * residual).sum())


def svd_failure_scores(session: CompressionSession, rank_ratio: float = 0.25, weighted: str = "fwsvd-input") -> pd.DataFrame:
    """Per layer: predicted loss increase of SVD and of FWSVD at `rank_ratio`, and their difference."""
    if session.fisher is None:
        raise ValueError("The predictor needs the Fisher: estimate it first.")
    rows = []
    for layer in session.layers:
        rank = max(1, round(rank_ratio * layer.max_rank))
        w = session.weight(layer.name).float()
        f = session.fisher.per_layer[layer.name].to(w.device)
        svd = _expected_loss_increase(w, f, session.factors("svd")[layer.name], rank)
        fw = _expected_loss_increase(w, f, session.factors(weighted)[layer.name], rank)
        rows.append({"layer": layer.name, "block": layer.block, "role": layer.role, "rank": rank,
                     "predicted SVD loss": svd, "predicted FWSVD loss": fw, "predicted SVD excess": svd - fw})
    return pd.DataFrame(rows)


def validate_predictor(
    session: CompressionSession, eval_data: TaskData, rank_ratio: float = 0.25, weighted: str = "fwsvd-input",
    subsample: int | None = None, progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Measure, per layer alone, the loss and score of SVD and FWSVD; rank-correlate with the predictor."""
    table = svd_failure_scores(session, rank_ratio, weighted)
    tokenizer = session.loaded.tokenizer
    measured = []
    for i, row in table.iterrows():
        result = {}
        for method in ("svd", weighted):
            model = session.compress(method, {row["layer"]: int(row["rank"])})
            result[method] = evaluate(model, tokenizer, eval_data, subsample=subsample, cancel=cancel)
        measured.append({"measured SVD excess loss": result["svd"].loss - result[weighted].loss,
                         "measured score gain of FWSVD": result[weighted].score - result["svd"].score})
        if progress is not None:
            progress(i + 1, len(table))
    table = pd.concat([table, pd.DataFrame(measured)], axis=1)
    correlation = {
        "spearman vs loss": float(spearmanr(table["predicted SVD excess"], table["measured SVD excess loss"])[0]),
        "spearman vs score": float(spearmanr(table["predicted SVD excess"], table["measured score gain of FWSVD"])[0]),
    }
    return table, {k: (v if np.isfinite(v) else 0.0) for k, v in correlation.items()}
