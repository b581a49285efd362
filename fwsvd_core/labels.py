"""Matching a model's output labels to a task's label order."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import LabelMappingError
from .tasks import TaskSpec

_GENERIC = re.compile(r"^label_?\d+$")
_SYNONYMS = {
    "neg": "negative", "pos": "positive", "entail": "entailment", "contradict": "contradiction",
    "notentailment": "notentailment", "nonentailment": "notentailment", "unacceptable": "unacceptable",
    "equivalent": "equivalent", "notequivalent": "notequivalent", "duplicate": "duplicate",
    "notduplicate": "notduplicate",
}


def _norm(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    return _SYNONYMS.get(key, key)


@dataclass(frozen=True)
class LabelMapping:
    """`model_to_task[i]` is the task's class index for the model's output i."""

    model_to_task: tuple[int, ...]
    how: str  # "names", "identity (generic names)", "regression"
    message: str


def map_labels(model_config, task: TaskSpec) -> LabelMapping:
    """Match by label names when the model has real ones; assume the task's order for LABEL_i names."""
    n_model = int(getattr(model_config, "num_labels", 0))
    if task.is_regression:
        if n_model != 1:
            raise LabelMappingError(f"Task {task.name} is a regression task but the model has {n_model} outputs.")
        return LabelMapping((0,), "regression", "regression: one output")
    if n_model != task.num_labels:
        raise LabelMappingError(
            f"The model has {n_model} output labels but task {task.name} has {task.num_labels} "
            f"({', '.join(task.label_names)})."
        )
    id2label = {int(k): str(v) for k, v in (getattr(model_config, "id2label", None) or {}).items()}
    names = [id2label.get(i, f"LABEL_{i}") for i in range(n_model)]
    if all(_GENERIC.match(n.lower()) for n in names):
        return LabelMapping(tuple(range(n_model)), "identity (generic names)",
                            "the model's labels are generic (LABEL_i); assumed to follow the task's order")
    wanted = {_norm(n): i for i, n in enumerate(task.label_names)}
    mapped = [wanted.get(_norm(n)) for n in names]
    if None in mapped or len(set(mapped)) != n_model:
        raise LabelMappingError(
            f"Cannot match the model's labels {names} to task {task.name}'s labels {list(task.label_names)}."
        )
    if mapped == list(range(n_model)):
        return LabelMapping(tuple(mapped), "names", "label names match the task's order")
    pairs = ", ".join(f"{names[i]}->{task.label_names[j]}" for i, j in enumerate(mapped))
    return LabelMapping(tuple(mapped), "names", f"model labels reordered to the task's: {pairs}")
