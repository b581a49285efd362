"""A per-layer predictor of how much task loss plain SVD costs compared with Fisher-weighted SVD.

Truncating a layer changes its weight by dW. A second-order expansion of the task loss around the
fine-tuned weights, with the empirical Fisher as the curvature, predicts the loss increase as
g.dW + 0.5 dW^T F dW. The predictor is that estimate for the SVD truncation minus the same estimate for
the truncation by a Fisher-weighted method (FWSVD by default) at the same rank: the loss that weighting is
predicted to save. Two forms:

- `diagonal`: only the stored diagonal Fisher I, 0.5 * sum_ij I_ij dW_ij^2. Instant.
- `full`: the first-order term and the full empirical Fisher of the layer, from one more pass of
  per-example gradients over calibration examples (`fisher.directional_fisher`). Off-diagonal
  curvature is what the diagonal leaves out.
- `kfac` and `nearest`: the Fisher as a Kronecker product A (x) B (`estimation.kronecker`), so the
  curvature term is 0.5 tr(dW^T B dW A). Instant once the session has the factors.

Neither evaluates a compressed model. `validate_predictor` does: it compresses each layer alone with
SVD and with the weighted method, measures the task loss per example, and rank-correlates. It also reports how
reproducible the measurement itself is (split-half reliability over examples), which bounds any
predictor's correlation with it.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import bootstrap, spearmanr

from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.evaluation import example_stats
from fwsvd_core.estimation.fisher import directional_fisher
from fwsvd_core.inputs.batching import CancelFn, ProgressFn
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.families import family_of, improvement

PREDICTORS = {"diagonal": "predicted SVD excess (diagonal)", "full": "predicted SVD excess (full)",
              "kfac": "predicted SVD excess (K-FAC)", "nearest": "predicted SVD excess (nearest Kronecker)"}


def weighted_loss_column(weighted: str) -> str:
    """The name of the column holding the weighted method's predicted loss (the method named, whichever it is)."""
    return f"predicted {weighted} loss"


def score_gain_column(weighted: str) -> str:
    """The name of the column holding the weighted method's measured score gain over SVD (in the metric's direction:
    a lower perplexity is a gain)."""
    return f"measured score gain of {weighted}"


@dataclass(frozen=True)
class Agreement:
    """How one predictor's ranking of the layers agrees with the measurement (Spearman's rho)."""

    with_loss: float  # with the measured extra loss of SVD over the weighted method
    low: float  # 95% bootstrap interval of `with_loss`, resampling the scored examples
    high: float
    with_score: float  # with the measured score gain of the weighted method (in the metric's direction)


@dataclass(frozen=True)
class PredictorValidation:
    """The outcome of `validate_predictor`: per predictor its agreement, and how reproducible the measurement is."""

    layers: int
    examples_scored: int
    reliability: float  # split-half reliability: no predictor can correlate much above its square root
    agreement: dict[str, Agreement]  # by predictor name (a key of PREDICTORS)

    def as_dict(self) -> dict:
        return asdict(self)


def svd_failure_scores(
    session: CompressionSession, rank_ratio: float = 0.1, weighted: str = "fwsvd-input",
    calibration: TaskData | None = None, n_examples: int = 256, seed: int = 0,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> pd.DataFrame:
    """Per layer: the predicted loss increase of SVD and of the `weighted` method at `rank_ratio`, and their difference.

    With `calibration` (training examples), also the `full` predictor from `n_examples` of them; with the
    session's Kronecker factors, the `kfac` and `nearest` predictors.
    """
    if session.fisher is None:
        raise ValueError("The predictor needs the Fisher: estimate it first.")
    rows, changes = [], {}
    ranks = uniform_ranks(session.layers, rank_ratio)
    for layer in session.layers:
        rank = ranks[layer.name]
        w = session.weight(layer.name).float()
        f = session.fisher.element_wise(layer.name, "The predictor of SVD failure").to(w.device)
        changes[layer.name] = {m: session.factors(m)[layer.name].reconstruct(rank) - w for m in ("svd", weighted)}
        svd, fw = (0.5 * float((f * changes[layer.name][m].square()).sum()) for m in ("svd", weighted))
        row = {"layer": layer.name, "block": layer.block, "role": layer.role, "rank": rank,
               "predicted SVD loss": svd, weighted_loss_column(weighted): fw, PREDICTORS["diagonal"]: svd - fw}
        if session.kronecker is not None:
            for kind in session.kronecker.inputs:
                a, b = (t.to(w.device) for t in session.kronecker.pair(layer.name, kind))
                svd_k, fw_k = (0.5 * float(((b @ dw) * (dw @ a)).sum()) for dw in changes[layer.name].values())
                row[PREDICTORS[kind]] = svd_k - fw_k
        rows.append(row)
    table = pd.DataFrame(rows)
    if calibration is not None:
        part = calibration.sample(n_examples, seed)
        moments = directional_fisher(session.model, session.loaded.tokenizer, part, changes, session.layers,
                                     progress=progress, cancel=cancel)

        def taylor(name: str, method: str) -> float:
            first, second = moments[name][method]
            return first + 0.5 * second

        table[PREDICTORS["full"]] = [taylor(n, "svd") - taylor(n, weighted) for n in table["layer"]]
    return table


def split_half_reliability(differences: np.ndarray, repeats: int = 20, seed: int = 0) -> float:
    """How reproducible a per-layer ranking measured on examples is: Spearman-Brown corrected split-half correlation.

    `differences` is [layers, examples]. A predictor's expected correlation with the measurement is at
    most about the square root of this.
    """
    rng = np.random.default_rng(seed)
    n = differences.shape[1]
    if n < 4 or differences.shape[0] < 3:
        return float("nan")
    halves = []
    for _ in range(repeats):
        order = rng.permutation(n)
        a, b = differences[:, order[: n // 2]].mean(axis=1), differences[:, order[n // 2 :]].mean(axis=1)
        halves.append(_spearman(a, b))
    r = float(np.nanmean(halves))
    return 2 * r / (1 + r) if r > -1 else float("nan")


def _spearman(a, b) -> float:
    """Spearman's rho; 0 where it is undefined (a constant input, as when no layer's rank changes anything)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = spearmanr(a, b)[0]
    return float(value) if np.isfinite(value) else 0.0


def validate_predictor(
    session: CompressionSession, eval_data: TaskData, rank_ratio: float = 0.1, weighted: str = "fwsvd-input",
    calibration: TaskData | None = None, n_examples: int = 256, subsample: int | None = None, seed: int = 0,
    bootstrap_samples: int = 200, progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> tuple[pd.DataFrame, PredictorValidation]:
    """Measure, for each layer alone, the loss and score of SVD and `weighted`; rank-correlate with the predictors.

    Returns the table and, per predictor, the Spearman correlation with the measured extra loss of SVD
    (with a percentile-bootstrap 95% interval over the scored examples) and with the measured score gain of
    the weighted method, plus the split-half reliability of the measurement.
    """
    table = svd_failure_scores(session, rank_ratio, weighted, calibration, n_examples, seed, cancel=cancel)
    part = eval_data.sample(subsample, seed)
    tokenizer = session.loaded.tokenizer
    family = family_of(part.task)
    differences, score_gains = [], []
    for i, row in table.iterrows():
        losses, scores = {}, {}
        for method in ("svd", weighted):
            model = session.compress(method, {row["layer"]: int(row["rank"])})
            rows, losses[method] = example_stats(model, tokenizer, part, cancel=cancel)
            scores[method] = family.metrics(part.task, rows)[part.task.primary_metric]
        differences.append(losses["svd"] - losses[weighted])
        score_gains.append(improvement(part.task.primary_metric, scores["svd"], scores[weighted]))
        if progress is not None:
            progress(i + 1, len(table))
    diff = np.stack(differences)
    table["measured SVD excess loss"] = diff.mean(axis=1)
    table["standard error"] = diff.std(axis=1, ddof=1) / np.sqrt(diff.shape[1]) if diff.shape[1] > 1 else np.nan
    table[score_gain_column(weighted)] = score_gains
    measured = table["measured SVD excess loss"].to_numpy()
    agreement = {}
    for name, column in PREDICTORS.items():
        if column not in table:
            continue
        predicted = table[column].to_numpy()
        interval = bootstrap((np.arange(diff.shape[1]),), lambda idx, p=predicted: _spearman(p, diff[:, idx].mean(axis=1)),
                             n_resamples=bootstrap_samples, vectorized=False, method="percentile",
                             rng=np.random.default_rng(seed)).confidence_interval
        agreement[name] = Agreement(_spearman(predicted, measured), float(interval.low), float(interval.high),
                                    _spearman(predicted, table[score_gain_column(weighted)]))
    stats = PredictorValidation(len(table), diff.shape[1], split_half_reliability(diff, seed=seed), agreement)
    return table, stats
