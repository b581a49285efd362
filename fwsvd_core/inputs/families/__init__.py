"""Task families, one module per family, each registering itself in `registry`.

Adding a family: a new module in this folder that calls `register(Family(...))`; it is imported here, so the
loaders, the estimators, evaluation, fine-tuning and exports go through it.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from fwsvd_core.inputs.batching import Encoded
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.families.registry import (
    DEFAULT_FAMILY,
    Family,
    family_names,
    family_of,
    family_of_architectures,
    family_of_class,
    family_of_model,
    get_family,
    higher_is_better,
    improvement,
    label_mapping,
    register,
    task_for_files,
)
from fwsvd_core.inputs.tasks import TaskSpec

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")



def load_task_data(task: TaskSpec, split: str, source: str = "auto", data_dir: str | Path | None = None,
                   skip_bad_rows: bool = False) -> TaskData:
    """One split of `task` from `source` ('auto', 'hub', a local folder: 'glue' or 'local', 'synthetic' where the
    family has a generated task), as the task's family reads its data."""
    return family_of(task).load(task, split, source, data_dir, skip_bad_rows)


def encode(tokenizer, data: TaskData, max_length: int = 128, model=None) -> Encoded:
    """Token ids of every example of `data` (and its token targets, for token-level tasks), as its family encodes."""
    return family_of(data.task).encode(tokenizer, data, max_length, model)


__all__ = [
    "DEFAULT_FAMILY", "Family", "encode", "family_names", "family_of", "family_of_architectures", "family_of_class",
    "family_of_model", "get_family", "higher_is_better", "improvement", "label_mapping", "load_task_data", "register",
    "task_for_files",
]
