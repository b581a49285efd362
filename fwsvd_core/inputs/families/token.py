"""Token classification (NER, the FWSVD paper's CoNLL-2003): a tag per word.

The first piece of each word carries its tag, the other pieces and the special tokens are ignored by the loss and
the metric. An example's loss is the mean cross-entropy over its tagged pieces; the metrics are entity-level
precision, recall and F1 with CoNLL semantics (seqeval's) and token accuracy over words, all higher-is-better.
Data: CoNLL-2003 from the hub, local CoNLL-format or JSON files, or a generated task when neither is at hand.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.batching import Encoded, accepts_token_types, collate_token_targets
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.entity_metrics import scores_from_statistics, sentence_statistics
from fwsvd_core.inputs.families.registry import Family, register
from fwsvd_core.inputs.families.sequence import task_to_model
from fwsvd_core.inputs.hub import hub_reachable
from fwsvd_core.inputs.labels import generic_label_number, map_labels
from fwsvd_core.inputs.synthetic_ner import synthetic_ner_sentences
from fwsvd_core.inputs.tasks import TaskSpec, register_task
from fwsvd_core.inputs.token_alignment import IGNORED, encode_tagged
from fwsvd_core.inputs.token_data import (
    CONLL2003_HUB,
    CONLL2003_LABELS,
    HUB_SPLITS,
    TaggedSentences,
    load_hub_tagged,
    ordered_label_names,
    read_tagged_file,
)

SYNTHETIC_SIZES = {"train": 2000, "dev": 500, "test": 500}
# the names a split's file may have in a local folder (CoNLL-2003's own distribution: eng.train, eng.testa, ...)
LOCAL_NAMES = {"train": ("train", "eng.train"), "dev": ("dev", "valid", "validation", "eng.testa"),
               "test": ("test", "eng.testb")}
LOCAL_SUFFIXES = ("", ".txt", ".conll", ".iob", ".json", ".jsonl")

CONLL2003 = register_task(TaskSpec(
    "conll2003", ("tokens",), CONLL2003_LABELS, ("f1", "precision", "recall", "accuracy"), "f1",
    CONLL2003_HUB, "", dict(HUB_SPLITS), None, aliases=("conll", "ner"), family="token-classification",
))


def encode_words(tokenizer, data: TaskData, max_length: int = 128, model=None) -> Encoded:
    """Token ids of every sentence, with each token's target (its word's tag on the first piece, else ignored)."""
    out = encode_tagged(tokenizer, data.text_a, [list(tags) for tags in data.labels], max_length)
    keep_types = "token_type_ids" in out and (model is None or accepts_token_types(model))
    extra = {"token_type_ids": out["token_type_ids"]} if keep_types else {}
    return Encoded(out["input_ids"], extra, token_targets=out["labels"])


def _targets(data: TaskData, model: nn.Module, indices, encoded: Encoded, batch: dict) -> torch.Tensor:
    """[B, tokens]: the tag of each word's first piece, as the model's output index; -100 elsewhere."""
    to_model = task_to_model(model, data.task)
    tags = collate_token_targets(encoded, indices, batch["attention_mask"].cpu())
    return torch.where(tags == IGNORED, tags, to_model[tags.clamp(min=0)])


def _example_losses(logits: torch.Tensor, targets: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """Each sentence's mean cross-entropy over its tagged pieces (0 for a sentence with none)."""
    per_token = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORED, reduction="none")
    counted = (targets != IGNORED).sum(dim=1)
    return per_token.sum(dim=1) / counted.clamp(min=1)


def _batch_stats(logits: torch.Tensor, targets: torch.Tensor, data: TaskData, indices, model: nn.Module) -> np.ndarray:
    """Per sentence the entity and word counts that add up (`entity_metrics.sentence_statistics`). A word cut off
    by truncation is predicted "O": it stays on the gold side, so truncation cannot raise the score."""
    to_task = np.asarray(map_labels(model.config, data.task).model_to_task)
    predicted = logits.argmax(dim=-1).cpu().numpy()
    scored = (targets != IGNORED).cpu().numpy()
    outside = data.task.label_names.index("O") if "O" in data.task.label_names else 0
    gold, guesses = [], []
    for row, i in enumerate(indices):
        words = np.asarray(data.labels[i], dtype=np.int64)
        guess = np.full(len(words), outside, dtype=np.int64)
        first_pieces = to_task[predicted[row][scored[row]]]  # in word order: truncation cuts the last words
        guess[: len(first_pieces)] = first_pieces
        gold.append(words)
        guesses.append(guess)
    return sentence_statistics([g.tolist() for g in gold], [g.tolist() for g in guesses],
                               data.task.label_names).astype(np.float64)


def _local_file(folder: Path, split: str) -> Path:
    if folder.is_file():
        return folder
    for name in LOCAL_NAMES.get(split, (split,)):
        for suffix in LOCAL_SUFFIXES:
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    wanted = ", ".join(f"{n}{s or ''}" for n in LOCAL_NAMES.get(split, (split,))[:2] for s in (".txt", ".json"))
    raise DataError(f"{folder} has no {split} file for a token-classification task (looked for {wanted}, ...).")


def load_tagged(task: TaskSpec, split: str, source: str = "auto", data_dir: str | Path | None = None,
                skip_bad_rows: bool = False) -> TaskData:
    """One split of a token-classification task from `source`: 'local' (or 'glue': a folder with train/dev files,
    or one file), 'hub', 'synthetic' (the generated task), or 'auto': the local folder when one is given, else the
    hub when it can be reached, else the generated task (its source says so)."""
    if source == "auto":
        source = "local" if data_dir else "hub" if hub_reachable() else "synthetic"
    if source == "synthetic":
        if split not in SYNTHETIC_SIZES:
            raise DataError(f"The generated NER task has splits {list(SYNTHETIC_SIZES)}, not {split!r}.")
        sentences: TaggedSentences = synthetic_ner_sentences(split, SYNTHETIC_SIZES[split])
        if sentences.label_names != task.label_names:
            raise DataError(f"The generated NER task tags {list(sentences.label_names)}; task {task.name} has "
                            f"{list(task.label_names)}.")
    elif source in ("local", "glue"):
        if not data_dir:
            raise DataError("Name the folder (or file) that holds the tagged sentences.")
        sentences = read_tagged_file(_local_file(Path(data_dir), split), label_names=task.label_names,
                                     skip_bad_rows=skip_bad_rows)
    elif source == "hub":
        sentences = load_hub_tagged(split, task.hub_path or CONLL2003_HUB, skip_bad_rows)
        if tuple(sentences.label_names) != tuple(task.label_names):
            raise DataError(f"{sentences.source} tags {list(sentences.label_names)}; task {task.name} expects "
                            f"{list(task.label_names)}.")
    else:
        raise DataError(f"Unknown data source {source!r}: use 'auto', 'local', 'hub' or 'synthetic'.")
    return sentences.to_task_data(task, split)


def task_for_tagged_files(model_config, files: Sequence[Path]) -> TaskSpec:
    """A token-classification task for a user's tagged files (CoNLL format or JSON): tagged with the model's own tag
    list when its config names one (a fine-tuned NER model does), else with the tags the files use."""
    id2label = getattr(model_config, "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label)]
    if not names or any(generic_label_number(n) is not None for n in names):
        found: set[str] = set()
        for path in files:
            found.update(read_tagged_file(path).label_names)
        names = list(ordered_label_names(found))
    return TaskSpec(Path(files[0]).stem, ("tokens",), tuple(names), CONLL2003.metrics, CONLL2003.primary_metric,
                    "", "", {}, None, family="token-classification")


TOKEN = register(Family(
    name="token-classification",
    description="a tag per word: named entities (CoNLL-2003)",
    auto_class="AutoModelForTokenClassification",
    class_suffixes=("ForTokenClassification",),
    pipeline_tag="token-classification",
    load=load_tagged,
    encode=encode_words,
    targets=_targets,
    example_losses=_example_losses,
    batch_stats=_batch_stats,
    metrics=lambda task, stats: {k: float(v) for k, v in scores_from_statistics(stats.sum(axis=0)).items()},
    resampled_primary=lambda task, stats: np.asarray(scores_from_statistics(stats.sum(axis=-2))[task.primary_metric]),
    order=1,
    sample_view="entities",
    task_for_files=task_for_tagged_files,
    local_data="CoNLL or JSON file or folder",
    read_upload=lambda task, name, content, skip_bad_rows: read_tagged_file(
        content, name, task.label_names, skip_bad_rows).to_task_data(task, "file"),
))
