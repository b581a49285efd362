"""The task loss per example, and the targets it compares with, in the model's output order."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.labels import map_labels


def task_targets(data: TaskData, model: nn.Module, indices) -> torch.Tensor:
    """Labels of the chosen examples, in the model's output order."""
    labels = torch.as_tensor(data.labels[indices])
    if data.task.is_regression:
        return labels.float()
    to_task = map_labels(model.config, data.task).model_to_task
    to_model = torch.empty(len(to_task), dtype=torch.long)
    to_model[list(to_task)] = torch.arange(len(to_task))
    return to_model[labels.long()]


def per_example_loss(logits: torch.Tensor, targets: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return (logits[:, 0].float() - targets.float()) ** 2
    return F.cross_entropy(logits.float(), targets, reduction="none")
