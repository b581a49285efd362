"""Entity scores: per-sentence statistics that add up give seqeval's micro scores exactly, broken B/I sequences too."""
import numpy as np
import pytest
import seqeval.metrics as reference

from fwsvd_core.inputs.entity_metrics import (
    STATISTICS,
    entity_scores,
    scores_from_statistics,
    sentence_statistics,
)
from fwsvd_core.inputs.token_data import CONLL2003_LABELS

# hand-made gold and predicted sentences; the predictions break the IOB rules in the ways taggers do
GOLD = [
    ["B-PER", "I-PER", "O", "B-LOC"],
    ["B-ORG", "I-ORG", "I-ORG", "O", "B-MISC"],
    ["O", "O", "O"],
    ["B-LOC", "B-LOC", "I-LOC", "O"],  # two adjacent entities of one type
    ["I-PER", "I-PER", "O", "B-ORG"],  # gold itself broken: I- without B-
    ["B-PER", "O"],
]
PREDICTED = [
    ["B-PER", "I-PER", "O", "B-LOC"],  # all right
    ["B-ORG", "I-LOC", "I-ORG", "O", "I-MISC"],  # a type switch inside an entity; I- opening an entity
    ["O", "I-ORG", "O"],  # an entity from nothing
    ["B-LOC", "I-LOC", "I-LOC", "O"],  # two entities merged into one
    ["B-PER", "I-PER", "O", "B-ORG"],  # the broken gold read as seqeval reads it
    ["O", "O"],  # missed
]


def reference_scores(gold, predicted):
    kw = dict(zero_division=0)
    return {"precision": reference.precision_score(gold, predicted, **kw),
            "recall": reference.recall_score(gold, predicted, **kw),
            "f1": reference.f1_score(gold, predicted, **kw),
            "accuracy": reference.accuracy_score(gold, predicted)}


def test_summed_statistics_equal_seqeval_exactly_on_broken_sequences():
    stats = sentence_statistics(GOLD, PREDICTED)
    assert stats.shape == (len(GOLD), len(STATISTICS))
    assert scores_from_statistics(stats.sum(axis=0)) == reference_scores(GOLD, PREDICTED)
    assert entity_scores(GOLD, PREDICTED) == reference_scores(GOLD, PREDICTED)
    # the scores are not trivial: some right, some wrong
    assert 0 < reference.f1_score(GOLD, PREDICTED) < 1


def test_per_sentence_counts_are_those_of_seqevals_entities():
    stats = sentence_statistics(GOLD, PREDICTED)
    # sentence 2: gold ORG(0-2), MISC(4); predicted ORG(0), LOC(1), ORG(2), MISC(4): only MISC matches
    assert list(stats[1]) == [1, 4, 2, 3, 5]
    # sentence 4: gold LOC(0), LOC(1-2); predicted LOC(0-2): nothing matches
    assert list(stats[3]) == [0, 1, 2, 3, 4]
    # sentence 5: gold I-PER I-PER is one PER entity, as the prediction's B-PER I-PER
    assert list(stats[4]) == [2, 2, 2, 3, 4]  # the first word's tag differs (I-PER, B-PER): 3 of 4 right


def test_random_tag_sequences_and_any_resample_agree_with_seqeval():
    rng = np.random.default_rng(0)
    gold = [[str(rng.choice(CONLL2003_LABELS)) for _ in range(rng.integers(1, 12))] for _ in range(60)]
    predicted = [[t if rng.random() < 0.6 else str(rng.choice(CONLL2003_LABELS)) for t in g] for g in gold]
    stats = sentence_statistics(gold, predicted)
    for _ in range(5):
        rows = rng.integers(0, len(gold), len(gold))
        ours = scores_from_statistics(stats[rows].sum(axis=0))
        assert ours == reference_scores([gold[i] for i in rows], [predicted[i] for i in rows])


def test_many_resamples_at_once_give_arrays_of_the_same_scores():
    stats = sentence_statistics(GOLD, PREDICTED)
    rng = np.random.default_rng(1)
    rows = rng.integers(0, len(GOLD), (4, len(GOLD)))
    batched = scores_from_statistics(stats[rows].sum(axis=1))
    for k in range(4):
        one = scores_from_statistics(stats[rows[k]].sum(axis=0))
        assert all(batched[name][k] == one[name] for name in one)


def test_tags_as_indices_and_empty_cases():
    index = {name: i for i, name in enumerate(CONLL2003_LABELS)}
    gold = [np.array([index[t] for t in s]) for s in GOLD]
    predicted = [[index[t] for t in s] for s in PREDICTED]
    assert (sentence_statistics(gold, predicted, CONLL2003_LABELS) == sentence_statistics(GOLD, PREDICTED)).all()
    assert entity_scores(gold, predicted, CONLL2003_LABELS) == entity_scores(GOLD, PREDICTED)
    # nothing predicted and nothing to find: zeros, as seqeval with zero_division=0
    assert scores_from_statistics(sentence_statistics([["O"]], [["O"]]).sum(axis=0)) == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 1.0}


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="Sentence 1"):
        sentence_statistics([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="gold sentences"):
        sentence_statistics([["O"]], [])
