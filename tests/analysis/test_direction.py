"""Issue 24, 4: a metric's direction as the families declare it, in the words and signs the analysis uses."""
import pytest

from fwsvd_core.analysis.direction import (
    best_first_ascending,
    direction_words,
    loss_title,
    loss_word,
    score_changed_by,
    score_lost,
    score_title,
)


def test_perplexity_reads_lower_is_better_and_accuracy_higher():
    assert score_title("perplexity") == "perplexity (lower is better)"
    assert score_title("accuracy") == "accuracy (higher is better)"
    assert direction_words("loss") == "lower is better" and direction_words("f1") == "higher is better"
    assert best_first_ascending("perplexity") and not best_first_ascending("accuracy")
    assert (loss_word("perplexity"), loss_word("accuracy")) == ("rise", "drop")
    assert loss_title("perplexity") == "perplexity rise (compressed - dense; lower is better)"
    assert loss_title("accuracy") == "accuracy drop (dense - compressed; higher is better)"


def test_the_score_lost_is_positive_when_the_score_is_worse_in_either_direction():
    assert score_lost("perplexity", 20.0, 26.0) == pytest.approx(6.0)  # a rise of perplexity is a loss
    assert score_lost("perplexity", 20.0, 18.0) == pytest.approx(-2.0)
    assert score_lost("accuracy", 0.9, 0.8) == pytest.approx(0.1)
    assert score_changed_by("perplexity", 20.0, 6.0) == pytest.approx(26.0)
    assert score_changed_by("accuracy", 0.9, 0.1) == pytest.approx(0.8)
