"""The task-family registry: what a kind of task decides, from the model class it loads to its metrics.

The Fisher is defined by the task loss, so the task decides everything upstream of the factors. A family is one
`Family` record, registered by the module that defines it (a file in this folder is imported, and so registered,
with the package). Encoding, batching targets, the per-example loss (the Fisher's, fine-tuning's and evaluation's),
the metrics with their direction, the model class loaded and the class an export loads as are read from here;
nothing elsewhere branches on a family's name.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.batching import Encoded
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.labels import LabelMapping, map_labels
from fwsvd_core.inputs.tasks import TASKS, TaskSpec, get_task

Load = Callable[..., TaskData]  # (task, split, source, data_dir, skip_bad_rows) -> one split
Encode = Callable[[Any, TaskData, int, Any], Encoded]  # (tokenizer, data, max_length, model or None)
Targets = Callable[[TaskData, nn.Module, np.ndarray, Encoded, dict], torch.Tensor]  # (.., indices, encoded, batch)
ExampleLosses = Callable[[torch.Tensor, torch.Tensor, TaskSpec], torch.Tensor]  # (logits, targets, task) -> [B]
BatchStats = Callable[[torch.Tensor, torch.Tensor, TaskData, np.ndarray, nn.Module], np.ndarray]  # -> [B, k]
Metrics = Callable[[TaskSpec, np.ndarray], dict[str, float]]  # (task, stats [n, k]) -> every metric
Resampled = Callable[[TaskSpec, np.ndarray], np.ndarray]  # (task, stats [..., n, k]) -> primary metric [...]
Prepare = Callable[[Any, TaskData, int], TaskData]  # (tokenizer, data, max_length) -> the examples the model sees
Size = Callable[[TaskData, int], str]  # (data, n) -> n of its examples in the family's unit ('32 sequences x 2048 tokens')


def _as_loaded(tokenizer, data: TaskData, max_length: int) -> TaskData:
    return data


def _examples(data: TaskData, n: int) -> str:
    return f"{n} examples"


@dataclass(frozen=True)
class Family:
    """One kind of task.

    `load` reads one split of a task (from the hub, local files or a generated stand-in); `encode` turns a split
    into token ids (and, for token-level tasks, the token targets); `targets` gives one
    batch's targets in the model's output order; `example_losses` is each example's loss, the one the Fisher,
    fine-tuning and evaluation share. `batch_stats` reduces a batch to per-example statistics from which
    `metrics` computes every metric of a split (and `resampled_primary` the primary one of many bootstrap
    resamples at once). `lower_is_better` names the metrics where lower is better (perplexity, a loss).
    `prepare` turns a loaded split into the examples the model sees once the tokenizer and length are known (a
    language model's text into windows of tokens; the others keep theirs). `uses_labels` says whether the model's
    outputs are the task's labels (matched by `inputs.labels.map_labels`).
    `sample_view`, `example_unit`, `local_data` and `read_upload` are for the dashboard: the view of a sample it
    shows beside the score, the name of one example, what the local source reads, and how an uploaded file is read
    (None: as a table whose columns the user picks).
    `auto_class` is the transformers auto class a model of the family loads with, `class_suffixes` the endings of
    the model class names it recognises (`BertForTokenClassification`), `pipeline_tag` the hub's name for it.
    `describe_size` says how much data n examples are in the family's own terms (what an export's card states).
    """

    name: str
    description: str
    auto_class: str
    class_suffixes: tuple[str, ...]
    pipeline_tag: str
    load: Load
    encode: Encode
    targets: Targets
    example_losses: ExampleLosses
    batch_stats: BatchStats
    metrics: Metrics
    resampled_primary: Resampled
    lower_is_better: frozenset[str] = frozenset()
    prepare: Prepare = _as_loaded
    uses_labels: bool = True
    order: int = 100
    # what the dashboard shows beside the score: "" nothing, "continuation" (a prompt continued greedily by the dense
    # and the compressed model), "entities" (a sentence with each model's entities marked); `analysis.samples`
    sample_view: str = ""
    example_unit: str = "example"  # what one Fisher example is: "window" for a language model's text
    local_data: str = "GLUE folder"  # what the local data source reads, as the dashboard names it
    read_upload: Callable[[TaskSpec, str, bytes, bool], TaskData] | None = None  # (task, name, bytes, skip) -> all
    describe_size: Size = _examples
    # a task for a user's own files outside the registry: (the model's config, the files) -> its TaskSpec; None: the
    # family takes only its registered tasks' data
    task_for_files: Callable[[Any, Sequence[Path]], TaskSpec] | None = None

    def higher_is_better(self, metric: str) -> bool:
        return metric not in self.lower_is_better

    def auto_model_class(self):
        """The transformers auto class itself (imported on use: transformers is slow to import)."""
        import transformers

        return getattr(transformers, self.auto_class)


_FAMILIES: dict[str, Family] = {}
DEFAULT_FAMILY = "sequence-classification"


def register(family: Family) -> Family:
    _FAMILIES[family.name] = family
    return family


def family_names() -> list[str]:
    return [f.name for f in sorted(_FAMILIES.values(), key=lambda f: (f.order, f.name))]


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise DataError(f"Unknown task family {name!r}. Known: {', '.join(family_names())}.") from None


def family_of(task: TaskSpec) -> Family:
    """The family a task belongs to."""
    return get_family(task.family)


def higher_is_better(metric: str) -> bool:
    """A metric's direction, as the families declare it (perplexity and a loss are lower-is-better)."""
    return not any(metric in family.lower_is_better for family in _FAMILIES.values())


def improvement(metric: str, reference: float, value: float) -> float:
    """How much better `value` is than `reference` in `metric`'s own direction (negative: worse)."""
    return value - reference if higher_is_better(metric) else reference - value


def label_mapping(model_config, task: TaskSpec) -> LabelMapping | None:
    """How the model's outputs match the task's labels; None for a family whose outputs are not labels (a language
    model's are the vocabulary)."""
    return map_labels(model_config, task) if family_of(task).uses_labels else None


def family_of_class(class_name: str) -> Family | None:
    """The family whose models have class names ending like `class_name` (None when no family claims it)."""
    for family in _FAMILIES.values():
        if class_name.endswith(family.class_suffixes):
            return family
    return None


def family_of_architectures(config) -> Family:
    """The family a saved model's config names in `architectures` (sequence classification when none is named)."""
    found = (family_of_class(name) for name in getattr(config, "architectures", None) or [])
    return next((f for f in found if f is not None), get_family(DEFAULT_FAMILY))


def family_of_model(model: nn.Module | type) -> Family:
    """The family of a loaded model (or model class), by its class name or its config's `architectures`."""
    cls = model if isinstance(model, type) else type(model)
    names = [c.__name__ for c in cls.__mro__]
    names += list(getattr(getattr(model, "config", None), "architectures", None) or [])
    return next((f for f in map(family_of_class, names) if f is not None), get_family(DEFAULT_FAMILY))


def task_for_files(name: str, model_config, files: Sequence[Path]) -> TaskSpec:
    """The task of a user's files: `name` names a registered task (its labels kept), or a family, which makes a task
    of the files and the model's config (a family's name wins over a task's, none being both)."""
    if name not in _FAMILIES:
        return get_task(name)
    family = _FAMILIES[name]
    if family.task_for_files is None:
        raise DataError(f"The {family.name} family takes files only as one of its tasks: name the task, e.g. "
                        f"{', '.join(t.name for t in TASKS.values() if t.family == family.name)}.")
    return family.task_for_files(model_config, files)
