"""Causal language modelling: next-token prediction on text, judged by perplexity (lower is better).

Text comes from the hub (WikiText-2 raw), a local .txt or JSON-lines file, or, offline, the GLUE sentences (real
English). `prepare` cuts a split into the LLM papers' calibration and evaluation unit: the whole text tokenized
once and cut into non-overlapping windows of L tokens (the last, shorter piece dropped), one example per window.
An example's loss is the mean next-token cross-entropy over its window, exactly `model(ids, labels=ids).loss`; the
per-sample Fisher is per sequence, the Kronecker factors are token sums. Perplexity is exp of the mean token loss
over every window of the split.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.batching import Encoded
from fwsvd_core.inputs.data import TaskData, default_glue_dir
from fwsvd_core.inputs.families.registry import Family, register
from fwsvd_core.inputs.hub import hub_reachable
from fwsvd_core.inputs.synthetic import synthetic_task_data
from fwsvd_core.inputs.tasks import TaskSpec, get_task, register_task
from fwsvd_core.inputs.token_alignment import IGNORED

TEXT_SUFFIXES = (".txt", ".text", ".md", ".raw")
JSON_SUFFIXES = (".json", ".jsonl")
LOCAL_NAMES = {"train": ("train", "wiki.train"), "dev": ("dev", "valid", "validation", "wiki.valid"),
               "test": ("test", "wiki.test")}
TEXT_HINT = ("Local options: a .txt file (paragraphs separated by blank lines) or JSON lines with a 'text' field, "
             "or a folder with train/dev files; or a GLUE folder, whose sentences serve as English text.")

WIKITEXT2 = register_task(TaskSpec(
    "wikitext2", ("text",), (), ("perplexity", "loss"), "perplexity", "Salesforce/wikitext", "wikitext-2-raw-v1",
    {"train": "train", "dev": "validation", "test": "test"}, None, aliases=("wikitext", "wikitext-2", "lm"),
    family="causal-lm",
))


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]


def _read_text_file(path: Path) -> list[str]:
    """Paragraphs of a text file, or the 'text' field of each JSON line (or of each record of a JSON list)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read {path}: {exc}") from None
    return _texts(raw, path)


def read_uploaded_text(task: TaskSpec, name: str, content: bytes, skip_bad_rows: bool = False) -> TaskData:
    """An uploaded text or JSON-lines file (its bytes and file name) as one split of text."""
    try:
        raw = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name} is not UTF-8 text: {exc}") from None
    texts = _texts(raw, Path(name))
    if not texts:
        raise DataError(f"{name} holds no text. {TEXT_HINT}")
    return TaskData(task, "file", texts, None, np.zeros(len(texts)), f"uploaded text file {name}")


def _texts(raw: str, path: Path) -> list[str]:
    if path.suffix.lower() not in JSON_SUFFIXES:
        return _paragraphs(raw)
    try:
        records = json.loads(raw) if raw.lstrip().startswith("[") else [json.loads(line) for line in raw.splitlines()
                                                                        if line.strip()]
    except ValueError as exc:
        raise DataError(f"{path} is not JSON lines with a 'text' field: {exc}") from None
    texts = [r.get("text") for r in records if isinstance(r, dict)]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise DataError(f"{path}: every record needs a 'text' string. {TEXT_HINT}")
    return [str(t) for t in texts if str(t).strip()]


def _local_texts(folder: Path, split: str) -> tuple[list[str], str]:
    if folder.is_file():
        return _read_text_file(folder), f"text file {folder.name}"
    if folder.is_dir() and (folder / "SST-2").is_dir():  # a GLUE folder: its sentences are real English
        return _glue_sentences(folder, split)
    for name in LOCAL_NAMES.get(split, (split,)):
        for suffix in (*TEXT_SUFFIXES, *JSON_SUFFIXES, ".tokens"):
            if (folder / f"{name}{suffix}").is_file():
                return _read_text_file(folder / f"{name}{suffix}"), f"text file {name}{suffix}"
    raise DataError(f"{folder} has no {split} text file. {TEXT_HINT}")


def _glue_sentences(folder: Path, split: str) -> tuple[list[str], str]:
    from fwsvd_core.inputs.data import load_glue_folder

    sentences = load_glue_folder(get_task("sst2"), folder, "train" if split == "train" else "dev").text_a
    return list(sentences), f"GLUE SST-2 {split} sentences as text ({folder.name})"


def load_text(task: TaskSpec, split: str, source: str = "auto", data_dir: str | Path | None = None,
              skip_bad_rows: bool = False) -> TaskData:
    """One split of text: 'hub' (the task's data set), 'local' or 'glue' (`data_dir`: a text/JSON-lines file, a
    folder with train/dev files, or a GLUE folder), 'synthetic' (generated sentences, labelled as such), or 'auto'
    (the local folder when given, else the hub, else the GLUE folder of FWSVD_DATA_DIR)."""
    if source == "auto":
        source = "local" if data_dir else "hub" if hub_reachable() else "local"
        data_dir = data_dir or default_glue_dir()
        if source == "local" and data_dir is None:
            raise DataError(f"No text at hand: the hub cannot be reached and no local folder is set. {TEXT_HINT}")
    if source == "hub":
        texts, origin = _hub_texts(task, split)
    elif source in ("local", "glue"):
        if not data_dir:
            raise DataError(f"Name a text file or folder. {TEXT_HINT}")
        texts, origin = _local_texts(Path(data_dir), split)
    elif source == "synthetic":
        texts = list(synthetic_task_data("sst2", "train" if split == "train" else "dev", 2000).text_a)
        origin = "synthetic sentences (generated by FWSVD Studio, not real text)"
    else:
        raise DataError(f"Unknown data source {source!r}: use 'auto', 'local', 'hub' or 'synthetic'.")
    if not texts:
        raise DataError(f"The {split} text of {task.name} is empty ({origin}).")
    return TaskData(task, split, texts, None, np.zeros(len(texts)), origin)  # no labels: a placeholder per example


def _hub_texts(task: TaskSpec, split: str) -> tuple[list[str], str]:
    if not hub_reachable():
        raise DataError(f"The Hugging Face hub cannot be reached (offline). {TEXT_HINT}")
    import datasets

    try:
        ds = datasets.load_dataset(task.hub_path, task.hub_config or None, split=task.hub_splits[split])
    except Exception as exc:  # datasets raises many kinds; the user needs the message
        raise DataError(f"Could not load {task.hub_path} from the hub: {exc}") from None
    if "text" not in ds.column_names:
        raise DataError(f"{task.hub_path} has no 'text' column; it has {ds.column_names}.")
    # WikiText's lines are joined as the papers join them, so the windows cut the same text
    return ["\n\n".join(ds["text"])], f"hub {task.hub_path}/{task.hub_config}:{task.hub_splits[split]}"


def windows(tokenizer, data: TaskData, length: int) -> TaskData:
    """The split as non-overlapping windows of `length` tokens of its whole text (paragraphs joined by a blank
    line, tokenized once, the tokenizer's own start token kept, the shorter last piece dropped unless it is the
    only one): the unit the LLM papers calibrate and measure perplexity on."""
    if length < 2:
        raise DataError(f"A window needs at least 2 tokens (one to read, one to predict), got {length}.")
    if data.text_a and not isinstance(data.text_a[0], str):
        return data  # windows already
    # one long text on purpose: the tokenizer's warning about lengths past the model's positions does not apply
    ids = tokenizer("\n\n".join(data.text_a), add_special_tokens=_starts_with_bos(tokenizer), verbose=False)["input_ids"]
    count = max(1, len(ids) // length)
    cut = [ids[i * length:(i + 1) * length] for i in range(count)]
    return TaskData(data.task, data.split, cut, None, np.zeros(count),
                    f"{data.source}, {count} windows of {min(length, len(ids))} tokens", list(data.notes))


def _starts_with_bos(tokenizer) -> bool:
    """Whether the tokenizer's special tokens are a start-of-text marker only (LLaMA's <s>), which the papers keep;
    an encoder's [CLS] ... [SEP] pair (MiniLM run as a decoder) would put [SEP] in the middle of the text."""
    return tokenizer.bos_token_id is not None and tokenizer.sep_token_id is None


def describe_windows(data: TaskData, n: int) -> str:
    """n windows as the LLM papers state calibration data: 'N sequences x L tokens' (texts before they are cut)."""
    if data.text_a and not isinstance(data.text_a[0], str):
        return f"{n} sequences x {len(data.text_a[0])} tokens"
    return f"{n} texts"


def encode_text(tokenizer, data: TaskData, max_length: int = 128, model=None) -> Encoded:
    """Token ids per example: the windows as they are (cut to `max_length`), or each text tokenized alone."""
    if data.text_a and not isinstance(data.text_a[0], str):
        return Encoded([list(w)[:max_length] for w in data.text_a], {})
    out = tokenizer(list(data.text_a), truncation=True, max_length=max_length,
                    add_special_tokens=_starts_with_bos(tokenizer))
    return Encoded(out["input_ids"], {})


def _targets(data: TaskData, model: nn.Module, indices, encoded: Encoded, batch: dict) -> torch.Tensor:
    """The input ids, -100 at padding: the loss predicts each from the ones before it."""
    ids = batch["input_ids"].clone()
    ids[batch["attention_mask"] == 0] = IGNORED
    return ids


def _token_losses(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T-1] next-token losses (0 where ignored) and [B] counts of predicted tokens."""
    predicted, wanted = logits[:, :-1].float(), targets[:, 1:]
    losses = F.cross_entropy(predicted.transpose(1, 2), wanted, ignore_index=IGNORED, reduction="none")
    return losses, (wanted != IGNORED).sum(dim=1)


def _example_losses(logits: torch.Tensor, targets: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    losses, counts = _token_losses(logits, targets)
    return losses.sum(dim=1) / counts.clamp(min=1)


def _batch_stats(logits: torch.Tensor, targets: torch.Tensor, data: TaskData, indices, model: nn.Module) -> np.ndarray:
    """[B, 2]: each window's summed next-token loss and the number of tokens it predicts."""
    losses, counts = _token_losses(logits, targets)
    return torch.stack([losses.sum(dim=1).double(), counts.double()], dim=1).cpu().numpy()


def _metrics(task: TaskSpec, stats: np.ndarray) -> dict[str, float]:
    loss = float(stats[:, 0].sum() / max(stats[:, 1].sum(), 1.0))
    return {"perplexity": math.exp(loss), "loss": loss}


def _resampled(task: TaskSpec, stats: np.ndarray) -> np.ndarray:
    loss = stats[..., 0].sum(axis=-1) / np.maximum(stats[..., 1].sum(axis=-1), 1.0)
    return np.exp(loss) if task.primary_metric == "perplexity" else loss


def task_for_text_files(model_config, files: Sequence[Path]) -> TaskSpec:
    """A language-modelling task for a user's text files, judged as WikiText-2 is (perplexity over windows)."""
    return replace(WIKITEXT2, name=Path(files[0]).stem, hub_path="", hub_config="", hub_splits={}, aliases=())


CAUSAL_LM = register(Family(
    name="causal-lm",
    description="next-token prediction on text, judged by perplexity (lower is better)",
    auto_class="AutoModelForCausalLM",
    class_suffixes=("ForCausalLM", "LMHeadModel"),
    pipeline_tag="text-generation",
    load=load_text,
    prepare=windows,
    encode=encode_text,
    targets=_targets,
    example_losses=_example_losses,
    batch_stats=_batch_stats,
    metrics=_metrics,
    resampled_primary=_resampled,
    lower_is_better=frozenset({"perplexity", "loss"}),
    uses_labels=False,
    order=2,
    sample_view="continuation",
    example_unit="window",
    local_data="text file or folder (or GLUE folder)",
    read_upload=read_uploaded_text,
    describe_size=describe_windows,
    task_for_files=task_for_text_files,
))
