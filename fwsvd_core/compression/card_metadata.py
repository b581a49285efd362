"""What an export tells the Hugging Face hub about itself: the model card's metadata header (library, base model,
licence, tags, measured metrics), and the export's texts without the paths of the machine that wrote it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fwsvd_core.compression.rank_table import RankTable
from fwsvd_core.errors import FwsvdError
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.families import family_of
from fwsvd_core.inputs.tasks import TaskSpec, get_task

TOOL_TAG = "fwsvd-studio"
# an absolute path (or one under the home folder) standing in a text: not a URL's path, not a hub id
_LOCAL_PATH = re.compile(r"(?<![\w:/.~-])(~?/[^\s'\",;()\[\]]+)")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def without_local_paths(value: Any) -> Any:
    """`value` (a text, or lists and dicts of them) with every local absolute path cut to its last part: an
    export names where it came from without telling the world how its author's disk is laid out."""
    if isinstance(value, str):
        return _LOCAL_PATH.sub(lambda m: Path(m.group(1).rstrip("/")).name or "/", value)
    if isinstance(value, dict):
        return {key: without_local_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_local_paths(item) for item in value]
    return value


def calibration_record(data: TaskData, n_examples: int | None = None) -> dict[str, str]:
    """What an export's card says of the data its Fisher (or activation statistics) came from: how much, in the
    family's own terms ('32 sequences x 2048 tokens', '256 examples'), and where from. The `calibration` entry of
    `save_compressed`'s `extra`."""
    n = len(data) if n_examples is None else n_examples
    return {"size": family_of(data.task).describe_size(data, n), "data": data.source}


def primary_metric(task_name: str, measured: dict) -> str | None:
    """The metric a score is stated in: the task's primary one when it was measured, else the first measured."""
    try:
        metric = get_task(task_name).primary_metric if task_name else None
    except FwsvdError:
        metric = None
    return metric if metric in measured else next(iter(measured), None)


@dataclass(frozen=True)
class BaseModel:
    """The model an export was compressed from, as the hub knows it."""

    hub_id: str | None = None  # None for a local folder or a built-in demo
    license: str | None = None  # the base model card's, when it states one


def base_model_of(name_or_path: str) -> BaseModel:
    """The hub id and licence of the model a compressed one was loaded from (its config's `name_or_path`): read
    from the local folder's card, or from the hub's card when it is in the local cache (nothing is downloaded)."""
    if not name_or_path:
        return BaseModel()
    local = Path(name_or_path).expanduser()
    if local.exists():
        return BaseModel(None, _card_license(local / "README.md"))
    if not _HUB_ID.match(name_or_path):
        return BaseModel()
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name_or_path, "README.md")
    return BaseModel(name_or_path, _card_license(Path(cached)) if isinstance(cached, str) else None)


def _card_license(path: Path) -> str | None:
    from huggingface_hub import ModelCard

    if not path.is_file():
        return None
    try:
        license_ = ModelCard.load(path).data.license
    except (OSError, ValueError):  # a README without (valid) metadata states no licence
        return None
    return license_ if isinstance(license_, str) else None


def card_data(table: RankTable, base: BaseModel, merged: bool, pipeline_tag: str = "text-classification"):
    """The metadata header of the export's README.md, as `huggingface_hub.ModelCardData`."""
    from huggingface_hub import EvalResult, ModelCardData

    extra = table.extra
    task_name = str(extra.get("task") or "")
    tags = [TOOL_TAG, "compressed", "low-rank", "merged" if merged else "factorized"]
    tags += [t for t in (table.method, task_name) if t]
    results = []
    scores = extra.get("scores") or {}
    measured = scores.get(table.method) or next((v for k, v in scores.items() if k != "dense"), None)
    if measured and task_name:
        dataset_type, dataset_config = _dataset_of(task_name, extra.get("eval data"))
        results = [EvalResult(task_type=pipeline_tag, dataset_type=dataset_type, dataset_name=task_name,
                              dataset_config=dataset_config, dataset_split=_split_of(extra.get("eval data")),
                              metric_type=str(metric), metric_value=float(value))
                   for metric, value in measured.items() if isinstance(value, (int, float))]
    return ModelCardData(
        library_name="transformers", pipeline_tag=pipeline_tag, base_model=base.hub_id,
        license=base.license, tags=list(dict.fromkeys(tags)), eval_results=results or None,
        model_name=f"{task_name or 'model'}-{table.method or 'compressed'}" if results else None)


def _dataset_of(task_name: str, eval_data: Any = None) -> tuple[str, str | None]:
    """The hub data set (and its configuration) a registered task is read from, when the scored data is that data
    set (or not described); the task's own name otherwise: a score on generated sentences, or on other text than
    the task's (a language model scored on the GLUE sentences offline), is not claimed for the hub data set."""
    try:
        task = get_task(task_name)
    except FwsvdError:
        return task_name, None
    if isinstance(eval_data, str) and not _names_dataset(task, eval_data):
        return task_name, None
    return task.hub_path, task.hub_config


def _names_dataset(task: TaskSpec, eval_data: str) -> bool:
    """Whether the description of scored data names the task's hub data set (by its id, or its name for a local copy)."""
    described = eval_data.lower()
    if "synthetic" in described or "generated" in described:
        return False
    return task.hub_path.lower() in described or task.hub_path.rsplit("/", 1)[-1].lower() in described


def _split_of(eval_data: Any) -> str | None:
    """The split named in the description of the scored data ('GLUE folder .../dev.tsv', 'hub ... validation')."""
    found = re.search(r"\b(validation|dev|test|train)\b", eval_data) if isinstance(eval_data, str) else None
    return None if found is None else {"dev": "validation"}.get(found.group(1), found.group(1))
