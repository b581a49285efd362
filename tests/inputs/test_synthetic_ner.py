"""The generated NER task: deterministic, valid IOB2, several types, ambiguous words, adjacent entities, not trivial."""
import itertools
from collections import Counter, defaultdict

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.entity_metrics import entity_scores
from fwsvd_core.inputs.synthetic_ner import synthetic_ner, synthetic_ner_sentences
from fwsvd_core.inputs.token_data import CONLL2003_LABELS, iob1_to_iob2


@pytest.fixture(scope="module")
def train():
    return synthetic_ner("train", 3000, seed=0)


@pytest.fixture(scope="module")
def dev():
    return synthetic_ner("dev", 1000, seed=0)


def test_the_same_seed_gives_the_same_sentences_and_splits_differ(train):
    assert synthetic_ner("train", 3000, seed=0) == train
    assert synthetic_ner("train", 200, seed=1) != synthetic_ner("train", 200, seed=0)
    dev_words, _ = synthetic_ner("dev", 200, seed=0)
    assert dev_words != train[0][:200]


def test_every_sentence_is_valid_iob2_with_conll_tags(train):
    for words, tags in zip(*train, strict=True):
        assert words and len(words) == len(tags)
        assert set(tags) <= set(CONLL2003_LABELS)
        assert iob1_to_iob2(tags) == tags  # no I- that does not continue its entity
        assert all(w.strip() and " " not in w for w in words)


def test_four_types_multi_word_entities_and_adjacent_entities_of_one_type(train):
    entities = Counter()
    multi_word, adjacent = Counter(), 0
    for tags in train[1]:
        found = get_entities(tags)
        entities.update(kind for kind, _, _ in found)
        multi_word.update(kind for kind, start, end in found if end > start)
        adjacent += any(a[0] == b[0] and a[2] + 1 == b[1] for a, b in itertools.pairwise(found))
    assert all(entities[k] > 100 for k in ("PER", "ORG", "LOC", "MISC"))
    assert all(multi_word[k] > 20 for k in ("PER", "ORG", "LOC", "MISC"))
    assert adjacent > 50  # a B-X right after an X entity


def test_the_same_word_is_an_entity_of_several_types_or_none(train):
    kinds = defaultdict(set)
    for words, tags in zip(*train, strict=True):
        for word, tag in zip(words, tags, strict=True):
            kinds[word.lower()].add(tag[2:] if tag != "O" else "O")
    assert {"PER", "LOC"} <= kinds["jordan"] and {"PER", "LOC"} <= kinds["washington"]
    assert {"ORG", "O"} <= kinds["apple"] and {"LOC", "O"} <= kinds["turkey"] and {"ORG", "LOC"} <= kinds["chelsea"]


def test_capitalisation_varies_as_in_real_text(train):
    entity_words = [w for words, tags in zip(*train, strict=True) for w, t in zip(words, tags, strict=True) if t != "O"]
    assert any(w.isupper() and len(w) > 3 for w in entity_words)  # headlines in capitals
    assert any(w.islower() for w in entity_words)  # user text without capitals
    assert sum(w[0].isupper() for w in entity_words) > 0.8 * len(entity_words)


def test_dev_holds_names_train_never_shows(train, dev):
    seen = {w for words in train[0] for w in words}
    unseen = {w for words, tags in zip(*dev, strict=True) for w, t in zip(words, tags, strict=True)
              if t != "O" and w not in seen}
    assert len(unseen) > 10


def test_remembering_each_words_most_frequent_tag_is_far_from_solving_it(train, dev):
    counts = defaultdict(Counter)
    for words, tags in zip(*train, strict=True):
        for word, tag in zip(words, tags, strict=True):
            counts[word][tag] += 1
    guess = [[counts[w].most_common(1)[0][0] if w in counts else "O" for w in words] for words in dev[0]]
    assert 0.3 < entity_scores(dev[1], guess)["f1"] < 0.85


def test_tagged_sentences_and_bad_arguments():
    sentences = synthetic_ner_sentences("dev", 5, seed=2)
    words, tags = synthetic_ner("dev", 5, seed=2)
    assert sentences.words == words and sentences.label_names == CONLL2003_LABELS
    assert [[CONLL2003_LABELS[i] for i in t] for t in sentences.tags] == tags and "synthetic" in sentences.source
    with pytest.raises(DataError, match="splits"):
        synthetic_ner("validation", 5)
    with pytest.raises(DataError, match="positive"):
        synthetic_ner("train", 0)
