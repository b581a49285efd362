"""Sub-word alignment for token classification: word tags onto tokenizer pieces, and predictions back onto words."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fwsvd_core.errors import DataError

IGNORED = -100  # the label torch's cross-entropy and the metrics leave out


def token_labels(word_ids: Sequence[int | None], word_tags: Sequence[int]) -> list[int]:
    """The label of each token: the first piece of a word carries the word's tag; the word's other pieces and the
    special tokens get IGNORED (-100), so neither the loss nor the metric counts them twice."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORED if word is None or word == previous else int(word_tags[word]))
        previous = word
    return labels


def first_piece_positions(word_ids: Sequence[int | None], n_words: int) -> np.ndarray:
    """Per word, the position of its first token; -1 for a word with no token (cut by truncation, or one that
    the tokenizer turns into nothing)."""
    positions = np.full(n_words, -1, dtype=np.int64)
    for position, word in enumerate(word_ids):
        if word is not None and positions[word] < 0:
            positions[word] = position
    return positions


def encode_tagged(
    tokenizer, words: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None = None, max_length: int = 128,
):
    """The tokenizer's encoding of word lists (not padded), with 'labels' per token when `tags` are given
    (`token_labels`) and 'word_ids' per sentence, for mapping predictions back with `word_predictions`.

    Needs a fast tokenizer (only those report which word each token comes from).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("Token classification needs a fast tokenizer (one with word_ids()); "
                        f"{type(tokenizer).__name__} is not one.")
    if tags is not None and len(tags) != len(words):
        raise DataError(f"{len(words)} sentences but {len(tags)} tag sequences.")
    encoding = tokenizer([list(w) for w in words], is_split_into_words=True, truncation=True, max_length=max_length)
    word_ids = [encoding.word_ids(i) for i in range(len(words))]
    encoding["word_ids"] = word_ids
    if tags is not None:
        for i, (sentence, sentence_tags) in enumerate(zip(words, tags, strict=True)):
            if len(sentence) != len(sentence_tags):
                raise DataError(f"Sentence {i + 1} has {len(sentence)} words but {len(sentence_tags)} tags.")
        encoding["labels"] = [token_labels(ids, t) for ids, t in zip(word_ids, tags, strict=True)]
    return encoding


def word_predictions(
    token_predictions: Sequence[int] | np.ndarray, word_ids: Sequence[int | None], n_words: int, outside: int = 0,
) -> np.ndarray:
    """Per-word predicted tags from per-token ones: each word takes its first piece's prediction.

    A word with no token, cut off by truncation (or turned into nothing by the tokenizer), is predicted `outside`
    (the index of "O"): it stays in the gold side, so an entity cut off counts as missed and truncation lowers
    recall instead of inflating the score by dropping words from both sides (the common practice).
    """
    predictions = np.asarray(token_predictions)
    positions = first_piece_positions(word_ids, n_words)
    out = np.full(n_words, outside, dtype=np.int64)
    present = positions >= 0
    out[present] = predictions[positions[present]]
    return out


def words_predictions(
    token_predictions: np.ndarray | Sequence[Sequence[int]], word_ids: Sequence[Sequence[int | None]],
    n_words: Sequence[int], outside: int = 0,
) -> list[np.ndarray]:
    """`word_predictions` for a batch: one row of token predictions per sentence (padding after its tokens)."""
    return [word_predictions(row, ids, n, outside)
            for row, ids, n in zip(token_predictions, word_ids, n_words, strict=True)]


def n_cut_words(word_ids: Sequence[int | None], n_words: int) -> int:
    """How many of a sentence's words have no token in the encoding (truncation), for notes."""
    return int((first_piece_positions(word_ids, n_words) < 0).sum())
