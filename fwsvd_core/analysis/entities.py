"""A sentence's named entities as a token classifier marks them: a tag per word, and the text cut into entities."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.families import encode
from fwsvd_core.inputs.labels import map_labels
from fwsvd_core.inputs.tasks import TaskSpec
from fwsvd_core.inputs.token_alignment import IGNORED
from fwsvd_core.inputs.token_data import tag_array

OUTSIDE = "O"


@dataclass(frozen=True)
class Span:
    """A run of words: an entity of `kind`, or plain text (`kind` None)."""

    text: str
    kind: str | None


def word_tags(model: nn.Module, tokenizer, task: TaskSpec, words: list[str], max_length: int = 128) -> list[tuple[str, str]]:
    """(word, tag) for each word of a sentence: the model's most likely tag on the word's first piece, mapped to
    the task's tag names; a word cut off by `max_length` is tagged 'O'."""
    words = [w for w in words if w.strip()]
    if not words:
        raise DataError("Type a sentence to tag.")
    placeholder = task.label_names.index(OUTSIDE) if OUTSIDE in task.label_names else 0
    data = TaskData(task, "sentence", [words], None, tag_array([[placeholder] * len(words)]), "sentence")
    encoded = encode(tokenizer, data, max_length, model)
    device = next(model.parameters()).device
    inputs = {"input_ids": torch.tensor([encoded.input_ids[0]], device=device)}
    inputs.update({name: torch.tensor([values[0]], device=device) for name, values in encoded.extra.items()})
    with torch.no_grad():
        predicted = model(**inputs).logits[0].argmax(dim=-1).tolist()
    to_task = map_labels(model.config, task).model_to_task
    targets = encoded.token_targets[0] if encoded.token_targets is not None else []
    tags = [task.label_names[to_task[predicted[i]]] for i, t in enumerate(targets) if t != IGNORED]
    tags += [OUTSIDE] * (len(words) - len(tags))
    return list(zip(words, tags, strict=True))


def entity_spans(tagged: list[tuple[str, str]]) -> list[Span]:
    """The sentence cut into its entities (CoNLL semantics, as seqeval reads tags: an I- tag after another type
    starts an entity) and the plain text between them."""
    from seqeval.metrics.sequence_labeling import get_entities

    words = [w for w, _ in tagged]
    spans, at = [], 0
    for kind, start, end in get_entities([t for _, t in tagged]):
        if start > at:
            spans.append(Span(" ".join(words[at:start]), None))
        spans.append(Span(" ".join(words[start:end + 1]), kind))
        at = end + 1
    if at < len(words):
        spans.append(Span(" ".join(words[at:]), None))
    return spans
