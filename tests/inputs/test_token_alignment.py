"""Sub-word alignment with the real MiniLM tokenizer: first pieces carry the tags, predictions come back per word."""
import numpy as np
import pytest
from transformers import AutoTokenizer

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.token_alignment import (
    IGNORED,
    encode_tagged,
    n_cut_words,
    token_labels,
    word_predictions,
    words_predictions,
)

WORDS = [["Kowalczykowski", "visited", "Reykjavik", "yesterday"], ["Oslo", "is", "cold"]]
TAGS = [[1, 0, 5, 0], [5, 0, 0]]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return AutoTokenizer.from_pretrained(minilm_dir)


def test_the_first_piece_of_each_word_carries_its_tag_and_the_rest_is_ignored(tokenizer):
    encoding = encode_tagged(tokenizer, WORDS, TAGS, max_length=64)
    for i, words in enumerate(WORDS):
        ids, labels = encoding["word_ids"][i], encoding["labels"][i]
        assert ids == encoding.word_ids(i) and len(labels) == len(encoding["input_ids"][i])
        # a loop over words, piece by piece, as a reference
        expected = [IGNORED]  # [CLS]
        for w, word in enumerate(words):
            pieces = tokenizer.tokenize(word)
            assert pieces
            expected += [TAGS[i][w]] + [IGNORED] * (len(pieces) - 1)
        expected.append(IGNORED)  # [SEP]
        assert labels == expected
    # the long names really are split into several pieces, so the test shows something
    assert len(tokenizer.tokenize("Kowalczykowski")) > 1 and sum(label != IGNORED for label in encoding["labels"][0]) == 4


def test_predictions_come_back_per_word_from_the_first_piece(tokenizer):
    encoding = encode_tagged(tokenizer, WORDS, max_length=64)
    assert "labels" not in encoding
    ids = encoding["word_ids"][0]
    # each token predicts 10 * its word + 1, other pieces something else: the word's value must come from its first
    seen, token_preds = set(), []
    for word in ids:
        token_preds.append(7 if word is None or word in seen else 10 * word + 1)
        seen.add(word)
    assert list(word_predictions(token_preds, ids, 4)) == [1, 11, 21, 31]
    padded = np.full((2, 40), 3)
    padded[0, :len(token_preds)] = token_preds
    rows = words_predictions(padded, encoding["word_ids"], [4, 3])
    assert [list(r) for r in rows] == [[1, 11, 21, 31], [3, 3, 3]]


def test_words_cut_by_truncation_are_predicted_o_so_their_entities_count_as_missed(tokenizer):
    encoding = encode_tagged(tokenizer, WORDS[:1], TAGS[:1], max_length=5)
    ids = encoding["word_ids"][0]
    kept = {w for w in ids if w is not None}
    assert 0 < len(kept) < 4 and n_cut_words(ids, 4) == 4 - len(kept)
    predictions = word_predictions([5] * len(ids), ids, 4, outside=0)
    assert len(predictions) == 4  # every gold word keeps a prediction
    assert all(predictions[w] == (5 if w in kept else 0) for w in range(4))


def test_a_word_the_tokenizer_turns_into_nothing_is_predicted_o(tokenizer):
    words = [["Oslo", "\u200b", "cold"]]  # a zero-width space has no piece
    encoding = encode_tagged(tokenizer, words, [[5, 0, 0]])
    ids = encoding["word_ids"][0]
    assert 1 not in ids and n_cut_words(ids, 3) == 1
    assert list(word_predictions([5] * len(ids), ids, 3, outside=0)) == [5, 0, 5]
    assert token_labels(ids, [5, 0, 0]) == [IGNORED, 5, 0, IGNORED]


def test_mismatched_words_and_tags_and_slow_tokenizers_are_refused(tokenizer, minilm_dir):
    with pytest.raises(DataError, match="Sentence 2 has 3 words but 2 tags"):
        encode_tagged(tokenizer, WORDS, [TAGS[0], [5, 0]])
    with pytest.raises(DataError, match="2 sentences but 1 tag"):
        encode_tagged(tokenizer, WORDS, TAGS[:1])

    class Slow:
        is_fast = False

    with pytest.raises(DataError, match="fast tokenizer"):
        encode_tagged(Slow(), WORDS, TAGS)
