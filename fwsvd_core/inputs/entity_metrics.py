"""Entity-level precision, recall and F1 (CoNLL semantics, through seqeval) and token accuracy over words."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

# columns of `sentence_statistics`: they add up over sentences
TRUE_POSITIVES, PREDICTED, GOLD, CORRECT_WORDS, WORDS = range(5)
STATISTICS = ("true_positives", "predicted_entities", "gold_entities", "correct_words", "words")


def tag_names(sequences: Sequence[Sequence[int]] | Sequence[np.ndarray], label_names: Sequence[str]) -> list[list[str]]:
    """Tag indices as tag names, one list per sentence."""
    return [[label_names[int(i)] for i in sentence] for sentence in sequences]


def _as_names(sequences, label_names: Sequence[str] | None) -> list[list[str]]:
    if label_names is None:
        return [list(map(str, s)) for s in sequences]
    return tag_names(sequences, label_names)


def _entities(tags: list[str]) -> set[tuple[str, int, int]]:
    from seqeval.metrics.sequence_labeling import get_entities  # seqeval imports scikit-learn: on first use

    with warnings.catch_warnings():  # seqeval warns about tags it reads as O; the metric reads them the same way
        warnings.simplefilter("ignore", UserWarning)
        return set(get_entities(tags))


def sentence_statistics(
    gold: Sequence[Sequence], predicted: Sequence[Sequence], label_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Per sentence (rows) the counts that add up over sentences (columns, `STATISTICS`): entities found exactly
    (type and span), predicted entities, gold entities, words tagged right, words.

    Entities are seqeval's own (`get_entities`, its default mode, as `seqeval.metrics.f1_score` reads them), so
    summed rows give its micro scores exactly (`scores_from_statistics`); a bootstrap resamples rows. Tags are
    names, or indices into `label_names`.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted ones.")
    gold_names, predicted_names = _as_names(gold, label_names), _as_names(predicted, label_names)
    out = np.zeros((len(gold_names), len(STATISTICS)), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold_names, predicted_names, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"Sentence {i + 1}: {len(g)} gold tags but {len(p)} predicted ones.")
        gold_entities, predicted_entities = _entities(g), _entities(p)
        out[i, TRUE_POSITIVES] = len(gold_entities & predicted_entities)
        out[i, PREDICTED] = len(predicted_entities)
        out[i, GOLD] = len(gold_entities)
        out[i, CORRECT_WORDS] = sum(a == b for a, b in zip(g, p, strict=True))
        out[i, WORDS] = len(g)
    return out


def scores_from_statistics(totals: np.ndarray) -> dict[str, float | np.ndarray]:
    """{precision, recall, f1, accuracy} from summed `sentence_statistics` (shape (5,), or (..., 5) for many
    resamples at once, giving arrays). 0 where a denominator is 0, as seqeval with zero_division=0; the F1 is
    computed the way seqeval does (2PR / (P + R)), so the numbers agree to the last bit."""
    t = np.asarray(totals, dtype=np.float64)
    tp, predicted, gold, correct, words = (t[..., k] for k in range(5))
    precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1.0), 0.0)
    recall = np.where(gold > 0, tp / np.where(gold > 0, gold, 1.0), 0.0)
    denominator = precision + recall
    f1 = 2.0 * precision * recall / np.where(denominator == 0, 1.0, denominator)
    accuracy = np.where(words > 0, correct / np.where(words > 0, words, 1.0), 0.0)
    scores: dict[str, float | np.ndarray] = {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}
    if t.ndim == 1:
        return {k: float(v) for k, v in scores.items()}
    return scores


def entity_scores(
    gold: Sequence[Sequence], predicted: Sequence[Sequence], label_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 (seqeval's default, CoNLL mode) and token accuracy over words."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    g, p = _as_names(gold, label_names), _as_names(predicted, label_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return {
            "precision": float(precision_score(g, p, zero_division=0)),
            "recall": float(recall_score(g, p, zero_division=0)),
            "f1": float(f1_score(g, p, zero_division=0)),
            "accuracy": float(accuracy_score(g, p)) if any(g) else 0.0,
        }
