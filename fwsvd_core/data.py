"""Loading task data: from the hub, a local GLUE-format folder, or a user's CSV/TSV/JSON file."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .hub import LOCAL_DATA_HINT, hub_reachable
from .tasks import TaskSpec

DATA_DIR_ENV = "FWSVD_DATA_DIR"


@dataclass
class TaskData:
    """One split of a task: texts, labels (class indices or floats) and where they came from."""

    task: TaskSpec
    split: str
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray
    source: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.text_a)

    def subset(self, indices: np.ndarray | list[int]) -> "TaskData":
        idx = list(map(int, indices))
        return replace(
            self,
            text_a=[self.text_a[i] for i in idx],
            text_b=None if self.text_b is None else [self.text_b[i] for i in idx],
            labels=self.labels[idx],
            notes=list(self.notes),
        )

    def sample(self, n: int | None, seed: int = 0) -> "TaskData":
        """A seeded random subset of n examples (all of them when n is None or too large)."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise DataError(f"The number of examples must be positive, got {n}.")
        rng = np.random.default_rng(seed)
        return self.subset(np.sort(rng.choice(len(self), size=n, replace=False)))


def default_glue_dir() -> Path | None:
    """The local GLUE folder named by FWSVD_DATA_DIR, if it is set and exists."""
    value = os.environ.get(DATA_DIR_ENV)
    if value and Path(value).is_dir():
        return Path(value)
    return None


def _labels_from_values(values: list, task: TaskSpec, where: str) -> np.ndarray:
    if task.is_regression:
        try:
            return np.asarray([float(v) for v in values], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: the label column must hold numbers for a regression task ({exc}).") from None
    names = {n.lower(): i for i, n in enumerate(task.label_names)}
    out = np.empty(len(values), dtype=np.int64)
    for k, v in enumerate(values):
        text = str(v).strip()
        if text.lower() in names:
            out[k] = names[text.lower()]
            continue
        try:
            number = float(text)
        except ValueError:
            raise DataError(
                f"{where}: label {text!r} is neither a class index nor one of {list(task.label_names)}."
            ) from None
        if not number.is_integer() or not 0 <= number < task.num_labels:
            raise DataError(f"{where}: label {text!r} is out of range 0..{task.num_labels - 1}.")
        out[k] = int(number)
    return out


def _frame_to_task_data(
    frame: pd.DataFrame, task: TaskSpec, split: str, text_a, text_b, label, source: str
) -> TaskData:
    needed = [c for c in (text_a, text_b, label) if c is not None]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise DataError(f"{source}: missing column(s) {missing}. The file has: {shown}.")
    frame = frame.dropna(subset=needed)
    if frame.empty:
        raise DataError(f"{source}: no rows with all of {needed}.")
    return TaskData(
        task=task,
        split=split,
        text_a=frame[text_a].astype(str).tolist(),
        text_b=None if text_b is None else frame[text_b].astype(str).tolist(),
        labels=_labels_from_values(frame[label].tolist(), task, source),
        source=source,
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, TSV or JSON / JSON-lines file into a frame of strings."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"No such file: {path}.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".json", ".jsonl"):
            try:
                return pd.read_json(path, lines=True, dtype=False)
            except ValueError:
                return pd.read_json(path, dtype=False)
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        # GLUE TSVs hold stray quote characters inside sentences, so quotes are not special here
        return pd.read_csv(
            path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig",
            quoting=csv.QUOTE_NONE, on_bad_lines="skip",
        )
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"Could not read {path}: {exc}") from None


def load_glue_folder(task: TaskSpec, folder: str | Path, split: str) -> TaskData:
    """One split of a task from a folder in the GLUE distribution's layout."""
    spec = task.glue_file
    if split not in spec.split_files:
        raise DataError(f"Task {task.name} has no split {split!r} here; choose from {list(spec.split_files)}.")
    path = Path(folder) / spec.folder / spec.split_files[split]
    if not path.is_file():
        raise DataError(f"{path} does not exist. Expected a GLUE-format folder with {spec.folder}/{spec.split_files[split]}.")
    if spec.has_header:
        frame = read_table(path)
    else:
        frame = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False,
                            quoting=csv.QUOTE_NONE, on_bad_lines="skip")
    return _frame_to_task_data(frame, task, split, spec.text_a, spec.text_b, spec.label, f"GLUE folder {path}")


def load_file(
    task: TaskSpec,
    path: str | Path,
    text_columns: tuple[str, ...] | list[str],
    label_column: str,
    split: str = "file",
) -> TaskData:
    """A user's CSV/TSV/JSON file with named text and label columns."""
    if len(text_columns) != len(task.text_columns):
        raise DataError(f"Task {task.name} needs {len(task.text_columns)} text column(s), got {list(text_columns)}.")
    frame = read_table(path)
    text_b = text_columns[1] if len(text_columns) == 2 else None
    return _frame_to_task_data(frame, task, split, text_columns[0], text_b, label_column, f"file {Path(path).name}")


def load_hub(task: TaskSpec, split: str) -> TaskData:
    """One split from the Hugging Face hub through `datasets`."""
    if not task.hub_path:
        raise DataError(f"Task {task.name} has no hub dataset.")
    if not hub_reachable():
        raise DataError(f"The Hugging Face hub cannot be reached (offline). {LOCAL_DATA_HINT}")
    import datasets

    try:
        ds = datasets.load_dataset(task.hub_path, task.hub_config, split=task.hub_splits[split])
    except Exception as exc:  # datasets raises many kinds; the user needs the message
        raise DataError(f"Could not load {task.hub_path}/{task.hub_config} from the hub: {exc}") from None
    frame = ds.to_pandas()
    text_b = task.text_columns[1] if task.is_pair else None
    data = _frame_to_task_data(frame, task, split, task.text_columns[0], text_b, "label",
                               f"hub {task.hub_path}/{task.hub_config}:{task.hub_splits[split]}")
    if not task.is_regression and (data.labels < 0).any():
        raise DataError(f"Split {split} of {task.name} on the hub has no labels (a test split?).")
    return data


def load_task_data(task: TaskSpec, split: str, source: str = "auto", data_dir: str | Path | None = None) -> TaskData:
    """Load a split from `source`: 'hub', 'glue' (a local GLUE folder) or 'auto' (local folder first, then hub)."""
    folder = Path(data_dir) if data_dir else default_glue_dir()
    if source == "glue" or (source == "auto" and folder is not None):
        if folder is None:
            raise DataError(f"No local GLUE folder: set {DATA_DIR_ENV} or pass a data directory.")
        return load_glue_folder(task, folder, split)
    if source in ("hub", "auto"):
        return load_hub(task, split)
    raise DataError(f"Unknown data source {source!r}: use 'auto', 'hub' or 'glue'.")
