"""Task score of a model on a split."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fwsvd_core.estimation.metrics import stats_interval
from fwsvd_core.inputs.batching import CancelFn, ProgressFn, iter_batches
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.exclusive import model_lock
from fwsvd_core.inputs.families import family_of, label_mapping
from fwsvd_core.inputs.precision import autocast_to, model_dtype


@dataclass
class EvalResult:
    metrics: dict[str, float]
    primary_metric: str
    n_examples: int
    n_total: int
    interval: tuple[float, float] | None  # 95% bootstrap interval of the primary metric, when subsampled
    seconds: float
    label_message: str
    loss: float = float("nan")  # mean task loss (cross-entropy, or squared error for regression)

    @property
    def score(self) -> float:
        return self.metrics[self.primary_metric]

    def describe(self) -> str:
        text = f"{self.primary_metric} {self.score:.4f} on {self.n_examples} examples"
        if self.interval is not None:
            text += f" (subsample of {self.n_total}; 95% CI {self.interval[0]:.4f}-{self.interval[1]:.4f})"
        return text


def example_stats(
    model: nn.Module, tokenizer, data: TaskData, batch_size: int = 64, max_length: int = 128,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each example's statistics, from which its family computes the metrics (for sequence tasks: the prediction
    and the label, in the task's label space), and each example's task loss, in data order."""
    device, dtype = next(model.parameters()).device, model_dtype(model)
    family = family_of(data.task)
    encoded = family.encode(tokenizer, data, max_length, model)
    stats: np.ndarray | None = None
    losses = np.empty(len(data), dtype=np.float64)
    with model_lock(model):  # another pass's hooks would record these forward calls
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for idx, batch in iter_batches(tokenizer, encoded, batch_size, device, progress, cancel):
                    with autocast_to(device, dtype):
                        logits = model(**batch).logits
                    targets = family.targets(data, model, idx, encoded, batch).to(device)
                    rows = family.batch_stats(logits, targets, data, idx, model)
                    if stats is None:
                        stats = np.empty((len(data), rows.shape[1]), dtype=np.float64)
                    stats[idx] = rows
                    losses[idx] = family.example_losses(logits, targets, data.task).double().cpu().numpy()
        finally:
            model.train(was_training)
    return (np.empty((0, 0)) if stats is None else stats), losses


def predict(
    model: nn.Module, tokenizer, data: TaskData, batch_size: int = 64, max_length: int = 128,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> np.ndarray:
    """A sequence task's predictions in its label space (class indices, or floats for regression), in data order."""
    stats = example_stats(model, tokenizer, data, batch_size, max_length, progress, cancel)[0]
    return stats[:, 0].astype(np.float32 if data.task.is_regression else np.int64)


def evaluate(
    model: nn.Module, tokenizer, data: TaskData, batch_size: int = 64, max_length: int = 128,
    subsample: int | None = None, seed: int = 0,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> EvalResult:
    """Score `model` on `data`; with `subsample`, on a seeded random subset, with a bootstrap interval."""
    start = time.perf_counter()
    mapping = label_mapping(model.config, data.task)
    part = data.sample(subsample, seed)
    stats, losses = example_stats(model, tokenizer, part, batch_size, max_length, progress, cancel)
    metrics = family_of(data.task).metrics(data.task, stats)
    interval = stats_interval(data.task, stats, seed=seed) if len(part) < len(data) else None
    return EvalResult(metrics, data.task.primary_metric, len(part), len(data), interval,
                      time.perf_counter() - start, mapping.message if mapping else "outputs are the vocabulary",
                      float(np.mean(losses)))
