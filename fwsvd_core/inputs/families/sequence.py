"""Sequence classification and regression (GLUE): one label, or one score, per text or text pair.

The loss is cross-entropy (squared error for regression) of the example's logits; the metrics are the GLUE ones
(accuracy, F1, MCC; Pearson and Spearman for regression), all higher-is-better.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fwsvd_core.inputs.batching import Encoded, accepts_token_types
from fwsvd_core.inputs.data import TaskData, load_file, load_sequence_data
from fwsvd_core.inputs.families.registry import Family, register
from fwsvd_core.inputs.labels import map_labels
from fwsvd_core.inputs.synthetic import synthetic_task_data
from fwsvd_core.inputs.tasks import TaskSpec

SYNTHETIC_SIZES = {"train": 2000, "dev": 500}


def load_texts(task: TaskSpec, split: str, source: str = "auto", data_dir=None, skip_bad_rows: bool = False) -> TaskData:
    """One split from a local GLUE folder ('glue' or 'local'), a CSV/TSV/JSON file with the task's text columns and a
    'label' column ('local'), the hub, 'auto' (the folder first), or the generated stand-in task ('synthetic', for sst2
    and stsb)."""
    if source == "synthetic":
        return synthetic_task_data(task.name, split, SYNTHETIC_SIZES.get(split, 500))
    if source == "local" and data_dir and Path(data_dir).is_file():  # one file of the split: the task's own columns
        return load_file(task, Path(data_dir), task.text_columns, "label", split, skip_bad_rows=skip_bad_rows)
    return load_sequence_data(task, split, "glue" if source == "local" else source, data_dir, skip_bad_rows)


def encode_texts(tokenizer, data: TaskData, max_length: int = 128, model=None) -> Encoded:
    """Token ids of every text (or text pair); token types only where the model takes them."""
    args = (data.text_a,) if data.text_b is None else (data.text_a, data.text_b)
    out = tokenizer(*args, truncation=True, max_length=max_length)
    keep_types = "token_type_ids" in out and (model is None or accepts_token_types(model))
    extra = {"token_type_ids": out["token_type_ids"]} if keep_types else {}
    return Encoded(out["input_ids"], extra)


def task_to_model(model: nn.Module, task: TaskSpec) -> torch.Tensor:
    """For each of the task's labels, the model's output that stands for it."""
    to_task = map_labels(model.config, task).model_to_task
    to_model = torch.empty(len(to_task), dtype=torch.long)
    to_model[list(to_task)] = torch.arange(len(to_task))
    return to_model


def task_targets(data: TaskData, model: nn.Module, indices) -> torch.Tensor:
    """Labels of the chosen examples, in the model's output order."""
    labels = torch.as_tensor(data.labels[indices])
    if data.task.is_regression:
        return labels.float()
    return task_to_model(model, data.task)[labels.long()]


def per_example_loss(logits: torch.Tensor, targets: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return (logits[:, 0].float() - targets.float()) ** 2
    return F.cross_entropy(logits.float(), targets, reduction="none")


def _batch_stats(logits: torch.Tensor, targets: torch.Tensor, data: TaskData, indices, model: nn.Module) -> np.ndarray:
    """[B, 2]: each example's prediction and label, both in the task's label space."""
    task = data.task
    if task.is_regression:
        preds = logits[:, 0].float()
    else:
        to_task = torch.tensor(map_labels(model.config, task).model_to_task, device=logits.device)
        preds, targets = to_task[logits.argmax(dim=-1)], to_task[targets]
    return torch.stack([preds.double(), targets.double()], dim=1).cpu().numpy()


def _metric(name: str, preds: np.ndarray, labels: np.ndarray) -> float:
    # imported when a split is first scored: scipy and scikit-learn take a second to import, which `--help` need not pay
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if name == "accuracy":
        return float(accuracy_score(labels, preds))
    if name == "f1":
        return float(f1_score(labels, preds, zero_division=0.0))
    if name == "mcc":
        return float(matthews_corrcoef(labels, preds))
    if name in ("pearson", "spearman"):
        if np.std(preds) == 0 or np.std(labels) == 0:
            return 0.0  # a constant prediction carries no correlation; scipy would return NaN
        fn = pearsonr if name == "pearson" else spearmanr
        return float(fn(preds, labels)[0])
    raise ValueError(f"unknown metric {name}")


def compute_metrics(task: TaskSpec, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {m: _metric(m, preds, labels) for m in task.metrics}


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r along the last axis; 0 where either side is constant (as `_metric`)."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    scale = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (a * b).sum(axis=-1) / np.where(scale > 0, scale, 1.0), 0.0)


def batched_metric(name: str, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`_metric` of every row at once (resamples along the first axes, examples along the last); F1 and MCC for
    binary labels, the tasks that use them. The bootstrap calls this: a thousand resamples cost one array pass."""
    from scipy.stats import rankdata

    if name == "accuracy":
        return (preds == labels).mean(axis=-1)
    if name in ("pearson", "spearman"):
        p, y = preds.astype(np.float64), labels.astype(np.float64)
        if name == "spearman":
            p, y = rankdata(p, axis=-1), rankdata(y, axis=-1)
        return _correlation(p, y)
    if name in ("f1", "mcc"):
        p, y = preds == 1, labels == 1
        tp, tn = (p & y).sum(axis=-1), (~p & ~y).sum(axis=-1)
        fp, fn = (p & ~y).sum(axis=-1), (~p & y).sum(axis=-1)
        if name == "f1":
            return np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        scale = np.sqrt(((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).astype(np.float64))
        return np.where(scale > 0, (tp * tn - fp * fn) / np.where(scale > 0, scale, 1.0), 0.0)
    raise ValueError(f"unknown metric {name}")


def _as_task_values(task: TaskSpec, values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32) if task.is_regression else values.astype(np.int64)


SEQUENCE = register(Family(
    name="sequence-classification",
    description="a label (or a score) per text or text pair: GLUE",
    auto_class="AutoModelForSequenceClassification",
    class_suffixes=("ForSequenceClassification",),
    pipeline_tag="text-classification",
    load=load_texts,
    encode=encode_texts,
    targets=lambda data, model, indices, encoded, batch: task_targets(data, model, indices),
    example_losses=lambda logits, targets, task: per_example_loss(logits, targets, task.is_regression),
    batch_stats=_batch_stats,
    metrics=lambda task, stats: compute_metrics(task, _as_task_values(task, stats[:, 0]),
                                                _as_task_values(task, stats[:, 1])),
    resampled_primary=lambda task, stats: batched_metric(task.primary_metric, stats[..., 0], stats[..., 1]),
    order=0,
))
