"""How a metric's direction reads: which score is best, how much a score lost, and the words on an axis.

The families declare which metrics are lower-is-better (perplexity, a loss); everything that picks a best score,
measures a drop or titles a score axis asks here, never assumes accuracy.
"""
from __future__ import annotations

from fwsvd_core.inputs.families import higher_is_better, improvement


def direction_words(metric: str) -> str:
    """'higher is better' or 'lower is better', as the metric's family declares."""
    return "higher is better" if higher_is_better(metric) else "lower is better"


def score_title(metric: str) -> str:
    """An axis or column title naming the metric and its direction: 'perplexity (lower is better)'."""
    return f"{metric} ({direction_words(metric)})"


def score_lost(metric: str, reference: float, value: float) -> float:
    """How much worse `value` is than `reference` in the metric's own direction (a rise of perplexity is a loss)."""
    return -improvement(metric, reference, value)


def score_changed_by(metric: str, reference: float, lost: float) -> float:
    """The score `lost` worse than `reference`: below it for accuracy, above it for perplexity."""
    return reference - lost if higher_is_better(metric) else reference + lost


def loss_word(metric: str) -> str:
    """What a loss of score is called in this metric: a 'drop' of accuracy, a 'rise' of perplexity."""
    return "drop" if higher_is_better(metric) else "rise"


def loss_title(metric: str) -> str:
    """An axis title for the score lost: 'accuracy drop (dense - compressed; higher is better)', 'perplexity rise
    (compressed - dense; lower is better)'."""
    order = "dense - compressed" if higher_is_better(metric) else "compressed - dense"
    return f"{metric} {loss_word(metric)} ({order}; {direction_words(metric)})"


def best_first_ascending(metric: str) -> bool:
    """The `ascending` that sorts by the metric with the best score first."""
    return not higher_is_better(metric)
