"""The singular-value group ablation with the paired interval of each drop (issue 23, 11)."""
import numpy as np

from fwsvd_core.analysis.ablation import group_ablation, paired_drop_interval
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.inputs.tasks import get_task


def test_each_drop_has_a_paired_interval_around_it_on_the_scored_examples(tiny_session, sst2_small):
    dev = sst2_small[1]
    table = group_ablation(tiny_session, dev, "svd", n_groups=4, subsample=60)
    assert list(table["examples"]) == [60] * 4
    assert (table["drop low"] <= table["drop"] + 1e-9).all() and (table["drop"] <= table["drop high"] + 1e-9).all()
    dense = evaluate(tiny_session.model, tiny_session.loaded.tokenizer, dev, subsample=60)
    assert np.allclose(table["drop"], dense.score - table["score"])  # the same examples as evaluate's subsample


def test_a_paired_interval_is_zero_wide_when_nothing_changes_and_tighter_than_two_separate_ones():
    task = get_task("sst2")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    before = np.stack([labels, labels], axis=1).astype(float)  # (prediction, label): all right
    assert paired_drop_interval(task, before, before) == (0.0, 0.0)
    flipped = before.copy()
    flipped[:10, 0] = 1 - flipped[:10, 0]  # ten examples now wrong: a drop of 0.05
    low, high = paired_drop_interval(task, before, flipped)
    assert 0 < low <= 0.05 <= high < 0.1


def test_a_perplexity_drop_is_its_rise_and_its_paired_interval_follows():
    """Issue 24, 4: a drop is the score lost in the metric's direction: for perplexity, compressed minus dense."""
    task = get_task("wikitext2")
    rng = np.random.default_rng(0)
    before = np.stack([rng.uniform(60, 80, 200), np.full(200, 23.0)], axis=1)  # (summed loss, tokens) per window
    after = before + np.stack([rng.uniform(0, 10, 200), np.zeros(200)], axis=1)  # every window's loss rose
    low, high = paired_drop_interval(task, before, after)
    rise = np.exp(after[:, 0].sum() / after[:, 1].sum()) - np.exp(before[:, 0].sum() / before[:, 1].sum())
    assert 0 < low <= rise <= high
    assert paired_drop_interval(task, after, before)[1] < 0  # a fall of perplexity: no drop, a gain


def test_the_ablation_of_a_language_model_measures_rises_of_perplexity(tiny_lm_session, lm_windows):
    dev = lm_windows[1]
    table = group_ablation(tiny_lm_session, dev, "svd", n_groups=3, subsample=30)
    dense = evaluate(tiny_lm_session.model, tiny_lm_session.loaded.tokenizer, dev, subsample=30)
    assert dense.primary_metric == "perplexity" and set(table["metric"]) == {"perplexity"}
    assert np.allclose(table["drop"], table["score"] - dense.score)
    assert (table["drop low"] <= table["drop"] + 1e-6).all() and (table["drop"] <= table["drop high"] + 1e-6).all()
