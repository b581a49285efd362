"""A sentence's entities as a token classifier marks them: the tag of each word's first piece, cut into spans."""
from pathlib import Path

import pytest
import torch

from fwsvd_core.analysis.entities import Span, entity_spans, word_tags
from fwsvd_core.errors import DataError
from fwsvd_core.inputs.labels import map_labels
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model

CONLL = get_task("conll2003")
WORDS = ["Angela", "Merkel", "visited", "Siemens", "in", "Munich", "yesterday"]


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny BERT tagger whose outputs are CoNLL-2003's tags in reverse order (so the mapping matters)."""
    from conftest import tiny_config
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    torch.manual_seed(0)
    names = list(reversed(CONLL.label_names))
    config = tiny_config("bert", num_labels=len(names))
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}
    folder = tmp_path_factory.mktemp("tagger") / "bert"
    AutoModelForTokenClassification.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


def test_each_word_gets_the_argmax_tag_of_its_first_piece(tagger_dir):
    loaded = load_model(tagger_dir, device="cpu")
    tok, model = loaded.tokenizer, loaded.model
    tagged = word_tags(model, tok, CONLL, WORDS)
    # the reference: each word's first piece found by the tokenizer's own word ids
    enc = tok(WORDS, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**enc).logits[0].argmax(-1).tolist()
    to_task = map_labels(model.config, CONLL).model_to_task
    first = {}
    for position, word in enumerate(enc.word_ids()):
        if word is not None and word not in first:
            first[word] = position
    expected = [CONLL.label_names[to_task[predicted[first[i]]]] for i in range(len(WORDS))]
    assert [w for w, _ in tagged] == WORDS and [t for _, t in tagged] == expected


def test_words_past_the_length_are_outside(tagger_dir):
    loaded = load_model(tagger_dir, device="cpu")
    tagged = word_tags(loaded.model, loaded.tokenizer, CONLL, WORDS, max_length=5)  # [CLS] + 3 pieces + [SEP]
    assert len(tagged) == len(WORDS) and all(t == "O" for _, t in tagged[3:])
    with pytest.raises(DataError, match="sentence"):
        word_tags(loaded.model, loaded.tokenizer, CONLL, [" "])


def test_spans_follow_conll_semantics_broken_sequences_included():
    tagged = list(zip(["EU", "rejects", "German", "call", "to", "New", "York", "boycott", "Peter"],
                      ["B-ORG", "O", "I-MISC", "O", "O", "B-LOC", "I-LOC", "I-PER", "B-PER"], strict=True))
    assert entity_spans(tagged) == [Span("EU", "ORG"), Span("rejects", None), Span("German", "MISC"),
                                    Span("call to", None), Span("New York", "LOC"), Span("boycott", "PER"),
                                    Span("Peter", "PER")]
    assert entity_spans([("a", "O"), ("b", "O")]) == [Span("a b", None)]
