"""Task score of a model on a split."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fwsvd_core.estimation.losses import per_example_loss, task_targets
from fwsvd_core.estimation.metrics import bootstrap_interval, compute_metrics
from fwsvd_core.inputs.batching import CancelFn, ProgressFn, encode, iter_batches
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.exclusive import model_lock
from fwsvd_core.inputs.labels import LabelMapping, map_labels
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


def predict(
    model: nn.Module, tokenizer, data: TaskData, mapping: LabelMapping, batch_size: int = 64, max_length: int = 128,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> np.ndarray:
    """Predictions in the task's label space (class indices, or floats for regression), in data order."""
    return predict_with_loss(model, tokenizer, data, mapping, batch_size, max_length, progress, cancel)[0]


def predict_with_loss(
    model: nn.Module, tokenizer, data: TaskData, mapping: LabelMapping, batch_size: int = 64, max_length: int = 128,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (as `predict`) and each example's task loss."""
    device, dtype = next(model.parameters()).device, model_dtype(model)
    encoded = encode(tokenizer, data, max_length, model)
    out = np.empty(len(data), dtype=np.float32 if data.task.is_regression else np.int64)
    losses = np.empty(len(data), dtype=np.float64)
    to_task = torch.tensor(mapping.model_to_task, device=device)
    with model_lock(model):  # another pass's hooks would record these forward calls
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for idx, batch in iter_batches(tokenizer, encoded, batch_size, device, progress, cancel):
                    with autocast_to(device, dtype):
                        logits = model(**batch).logits
                    pred = logits[:, 0] if data.task.is_regression else to_task[logits.argmax(dim=-1)]
                    out[idx] = pred.float().cpu().numpy() if data.task.is_regression else pred.cpu().numpy()
                    targets = task_targets(data, model, idx).to(device)
                    losses[idx] = per_example_loss(logits, targets, data.task.is_regression).double().cpu().numpy()
        finally:
            model.train(was_training)
    return out, losses


def evaluate(
    model: nn.Module, tokenizer, data: TaskData, batch_size: int = 64, max_length: int = 128,
    subsample: int | None = None, seed: int = 0,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> EvalResult:
    """Score `model` on `data`; with `subsample`, on a seeded random subset, with a bootstrap interval."""
    start = time.perf_counter()
    mapping = map_labels(model.config, data.task)
    part = data.sample(subsample, seed)
    preds, losses = predict_with_loss(model, tokenizer, part, mapping, batch_size, max_length, progress, cancel)
    metrics = compute_metrics(data.task, preds, part.labels)
    interval = bootstrap_interval(data.task, preds, part.labels, seed=seed) if len(part) < len(data) else None
    return EvalResult(metrics, data.task.primary_metric, len(part), len(data), interval,
                      time.perf_counter() - start, mapping.message, float(np.mean(losses)))
