"""Loading task data: from the hub, a local GLUE-format folder, or a user's CSV/TSV/JSON file."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.hub import LOCAL_DATA_HINT, hub_reachable
from fwsvd_core.inputs.tasks import TaskSpec

DATA_DIR_ENV = "FWSVD_DATA_DIR"
MAX_SHOWN = 10  # positions named in a message before "and N more"


@dataclass
class TaskData:
    """One split of a task: its examples, their labels and where they came from.

    What an example is follows the task's family: a text (and a second one for pairs) with a class index or a
    score (sequence tasks); a list of words with an array of tag indices, one per word, in an object array
    (token classification); a text with no label (language modelling)."""

    task: TaskSpec
    split: str
    text_a: list
    text_b: list[str] | None
    labels: np.ndarray
    source: str
    notes: list[str] = field(default_factory=list)
    n_skipped_rows: int = 0  # rows of the source left out by skip_bad_rows (listed in `notes`)

    def __len__(self) -> int:
        return len(self.text_a)

    def subset(self, indices: np.ndarray | list[int]) -> TaskData:
        idx = list(map(int, indices))
        return replace(
            self,
            text_a=[self.text_a[i] for i in idx],
            text_b=None if self.text_b is None else [self.text_b[i] for i in idx],
            labels=self.labels[idx],
            notes=list(self.notes),
        )

    def content_digest(self) -> str:
        """A hash of the task, split, texts and labels: two datasets share it only if their examples are equal."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(json.dumps([self.task.name, self.split, self.text_a, self.text_b]).encode())
        if self.labels.dtype == object:  # one array per example (token tags): their values, not their addresses
            digest.update(json.dumps([np.asarray(tags).tolist() for tags in self.labels]).encode())
        else:
            digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()

    def sample(self, n: int | None, seed: int = 0) -> TaskData:
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


# ---- reporting rows that cannot be examples ---------------------------------------------------------------


class _Problems:
    """Rows that cannot be examples, grouped by reason, each row named by its position in the source."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}
        self.first_value: dict[str, object] = {}

    def add(self, reason: str, position: int, value: object = None) -> None:
        self.rows.setdefault(reason, []).append(position)
        if value is not None:
            self.first_value.setdefault(reason, value)

    def merge(self, other: _Problems) -> _Problems:
        for reason, positions in other.rows.items():
            for p in positions:
                self.add(reason, p, other.first_value.get(reason))
        return self

    def __bool__(self) -> bool:
        return bool(self.rows)

    def positions(self) -> set[int]:
        return {p for ps in self.rows.values() for p in ps}

    def describe(self, unit: str) -> list[str]:
        """One line per reason, in the order of their first row: where (at most MAX_SHOWN positions) and why."""
        lines = []
        for reason, positions in sorted(self.rows.items(), key=lambda item: min(item[1])):
            example = f" (the first is {self.first_value[reason]!r})" if reason in self.first_value else ""
            lines.append(f"{_where(unit, positions)}: {reason}{example}")
        return lines


def _where(unit: str, positions: list[int]) -> str:
    """'line 4' or 'lines 3, 5, ... and 12 more'."""
    ordered = sorted(set(positions))
    shown = ", ".join(map(str, ordered[:MAX_SHOWN]))
    more = f" and {len(ordered) - MAX_SHOWN} more" if len(ordered) > MAX_SHOWN else ""
    return f"{unit}{'s' if len(ordered) > 1 else ''} {shown}{more}"


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


def _bad_rows_error(label: str, unit: str, problems: _Problems, hint: str = "") -> DataError:
    n = len(problems.positions())
    lines = [f"{label}: {_rows(n)} cannot be read as examples:", *(f"  {d}" for d in problems.describe(unit))]
    if hint:
        lines.append(hint)
    lines.append("Fix the file, or load it with skip_bad_rows=True to leave such rows out (they are then counted "
                 "and listed in the data's notes).")
    return DataError("\n".join(lines))


# ---- reading CSV, TSV and JSON into a table of rows ----------------------------------------------------------


@dataclass
class _Table:
    """Rows read from a file, where each row came from, and the rows left out while reading."""

    frame: pd.DataFrame
    positions: list[int]  # 1-based position of each row of `frame` in the source, counted in `unit`s
    unit: str  # "line" for CSV, TSV and JSON lines; "array item" for a JSON array; "row" for the hub
    skipped: _Problems = field(default_factory=_Problems)  # rows left out by skip_bad_rows, by reason


def _column_names(header: list[str]) -> list[str]:
    """The header's names, made unique and non-empty the way pandas does ('a', 'a.1'; 'Unnamed: 2')."""
    seen: dict[str, int] = {}
    names = []
    for i, raw in enumerate(header):
        name = raw if raw else f"Unnamed: {i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        seen.setdefault(name, 0)
        names.append(name)
    return names


_SPANS_LINES = ("an unclosed quote that takes in the lines after it: a text starting with a quote character opens a "
                "quoted field up to the next quote anywhere below (quote the whole text and double its quotes)")
_LONE_CR = ("a carriage return (\\r) alone inside a text, which ends the line there and splits the text (remove it, "
            "or save the file with \\n or \\r\\n line endings)")


def _physical_lines(text: str) -> tuple[list[str], list[int], list[bool]]:
    """The lines the csv reader sees, each one's number as an editor counts, and whether it ends in a lone \\r.

    The reader also breaks lines at a \\r alone; an editor does not, unless the file has no \\n at all (old Mac files).
    """
    lines = io.StringIO(text, newline="").readlines()
    numbers, lone = [], []
    number, cr_ends_lines = 1, "\n" not in text
    for line in lines:
        numbers.append(number)
        lone.append(line.endswith("\r") and not cr_ends_lines)
        number += 0 if lone[-1] else 1
    return lines, numbers, lone


def _shortened(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _well_quoted(record: str, fields: list[str], delimiter: str) -> bool:
    """True when a record over several lines is well-formed CSV: each quoted field closed right before a delimiter or
    the line's end. A text that merely starts with a quote runs on to some later quote inside a text instead."""
    try:
        parsed = list(csv.reader(io.StringIO(record, newline=""), delimiter=delimiter, strict=True))
    except csv.Error:
        return False
    return parsed == [fields]


def _read_delimited(text: str, delimiter: str, has_header: bool, label: str, skip_bad_rows: bool) -> _Table:
    """Rows of a CSV or TSV text; a row whose field count differs from the header's (or the first row's), a quoted
    field over several lines that is not well-formed (a text that starts with a quote), or a row that a lone
    carriage return splits, is bad."""
    # GLUE TSVs hold stray quote characters inside sentences, so quotes are not special in TSV files
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    physical, numbers, lone_cr = _physical_lines(text)
    header: list[str] | None = None
    width: int | None = None
    rows: list[list[str]] = []
    positions: list[int] = []
    bad = _Problems()
    last_line = 0
    try:
        for fields in reader:
            # a quoted CSV field may span lines: a row starts on the line after the previous row ended
            start, last_line = last_line + 1, reader.line_num
            if not fields:  # a blank line, which pandas skipped as well
                continue
            first, last = numbers[start - 1], numbers[last_line - 1]
            if lone_cr[last_line - 1] or (start >= 2 and lone_cr[start - 2]):
                bad.add(_LONE_CR, first)  # both pieces of the split line name the same line
                continue
            spanning = next((f for f in fields if "\n" in f or "\r" in f), None)
            if spanning is not None and not _well_quoted("".join(physical[start - 1:last_line]), fields, delimiter):
                for line in range(first, last + 1):  # every line taken in is a row lost: all are counted
                    bad.add(_SPANS_LINES, line, _shortened(spanning))
                continue
            if width is None:
                width = len(fields)
                if has_header:
                    header = fields
                    continue
            if len(fields) != width:
                reference = "the header has" if has_header else "the first line has"
                bad.add(f"{len(fields)} field{'s' if len(fields) != 1 else ''} where {reference} {width}", first)
                continue
            rows.append(fields)
            positions.append(first)
    except csv.Error as exc:
        line = numbers[min(max(reader.line_num, 1), len(numbers)) - 1] if numbers else reader.line_num
        raise DataError(f"{label}: line {line} cannot be read: {exc}.") from None
    if width is None:
        raise DataError(f"{label} is empty.")
    if bad and not skip_bad_rows:
        ragged = set(bad.rows) - {_SPANS_LINES, _LONE_CR}
        cause = "a tab inside a text" if delimiter == "\t" else "a comma outside quotes or an unclosed quote"
        hint = f"A wrong number of fields usually comes from {cause}." if ragged else ""
        raise _bad_rows_error(label, "line", bad, hint)
    columns = _column_names(header) if header is not None else list(range(width))
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    return _Table(frame, positions, "line", bad)


_JSON_EXPECTED = "a JSON array of objects ([{...}, {...}], on one line or several) or JSON lines (one object per line)"


def _json_kind(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "number"


def _json_items(text: str, label: str) -> tuple[list[tuple[int, object]], str, _Problems]:
    """(position, value) of each record, the unit positions count, and lines that are not JSON at all."""
    stripped = text.strip()
    if not stripped:
        raise DataError(f"{label} is empty.")
    if stripped.startswith("["):
        # one array, on one line or pretty-printed: the stdlib parser, not pandas' guessing, so errors are plain
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{label} starts like a JSON array but is not valid JSON ({exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}). Expected {_JSON_EXPECTED}."
            ) from None
        return list(enumerate(value, start=1)), "array item", _Problems()
    items: list[tuple[int, object]] = []
    not_json = _Problems()
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append((number, json.loads(line)))
        except json.JSONDecodeError:
            not_json.add("not a JSON value", number)
    if not any(isinstance(v, dict) for _, v in items):
        raise DataError(f"{label} is not {_JSON_EXPECTED}: {_json_found(stripped, items)}.")
    return items, "line", not_json


def _json_found(stripped: str, items: list[tuple[int, object]]) -> str:
    """What a JSON file that is neither an array of objects nor JSON lines holds instead, for the message."""
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        if items:
            return f"its lines hold JSON {_json_kind(items[0][1])}s, not objects"
        return f"it is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    spread = " spread over several lines" if "\n" in stripped else ""
    return f"it holds a single JSON {_json_kind(value)}{spread}"


def _read_json(text: str, label: str, skip_bad_rows: bool) -> _Table:
    """Records of a JSON array of objects or of JSON lines; an item that is not an object is a bad row."""
    items, unit, bad = _json_items(text, label)
    records, positions = [], []
    for position, value in items:
        if isinstance(value, dict):
            records.append(value)
            positions.append(position)
        else:
            bad.add(f"a JSON {_json_kind(value)}, not an object", position)
    if records == [] and items:
        raise DataError(f"{label} is not {_JSON_EXPECTED}: its items are JSON {_json_kind(items[0][1])}s.")
    if bad and not skip_bad_rows:
        raise _bad_rows_error(label, unit, bad)
    # object dtype keeps each value as parsed: no ints turned into floats, no lists turned into strings
    return _Table(pd.DataFrame(records, dtype=object), positions, unit, bad)


def _source_bytes(source: str | Path | bytes, name: str | None) -> tuple[bytes, str]:
    """The raw bytes of a path or of an in-memory upload, and the file name whose suffix gives the format."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not name:
            raise DataError("Data given as bytes needs its file name too: the suffix tells CSV, TSV and JSON apart.")
        return bytes(source), name
    path = Path(source)
    if not path.is_file():
        raise DataError(f"No such file: {path}.")
    try:
        return path.read_bytes(), name or path.name
    except OSError as exc:
        raise DataError(f"Could not read {path}: {exc.strerror or exc}.") from None


def _decode(data: bytes, label: str) -> str:
    """UTF-8 text without a byte-order mark (MRPC's header starts with one)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{label} is not UTF-8 text: byte {data[exc.start]:#04x} on line {line} cannot be decoded. "
            f"Save the file as UTF-8."
        ) from None


def _format_of(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in (".json", ".jsonl"):
        return "json"
    if suffix == ".csv":
        return "csv"
    if suffix in (".tsv", ".txt", ".tab"):
        return "tsv"
    raise DataError(f"{name}: unsupported file type {suffix or '(no suffix)'!r}; use .csv, .tsv, .json or .jsonl.")


def _read_source(source: str | Path | bytes, name: str | None, label: str, skip_bad_rows: bool) -> _Table:
    data, name = _source_bytes(source, name)
    kind = _format_of(name)
    text = _decode(data, label)
    if kind == "json":
        return _read_json(text, label, skip_bad_rows)
    return _read_delimited(text, "," if kind == "csv" else "\t", True, label, skip_bad_rows)


def _file_label(source: str | Path | bytes, name: str | None) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"file {name}"
    return f"file {name or Path(source).name}"


def read_table(source: str | Path | bytes, name: str | None = None, skip_bad_rows: bool = False) -> pd.DataFrame:
    """Read a CSV, TSV or JSON (array of objects, or JSON lines) file with a header into a frame.

    `source` is a path or the file's bytes (an upload kept in memory); `name`'s suffix then gives the format
    (for a path it defaults to the path's name). A row with the wrong number of fields, or a JSON item that
    is not an object, is a DataError naming its line, unless `skip_bad_rows` leaves it out. CSV and TSV
    cells are strings; JSON values are kept as parsed.
    """
    return _read_source(source, name, _file_label(source, name), skip_bad_rows).frame


# ---- turning a table into examples -------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    """None, NaN, pd.NA: a cell with no value (lists and dicts are values, if wrong ones)."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _text_value(value: object) -> tuple[str | None, str | None]:
    """(the text, None), or (None, why this cell is not a text)."""
    if isinstance(value, str):
        # an empty cell is how CSV writes a missing value: an example without text is not an example
        return (value, None) if value.strip() else (None, "a missing or empty text")
    if _is_missing(value):
        return None, "a missing or empty text"
    if isinstance(value, (bool, np.bool_)):
        return None, "true/false, not a text"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(value), None
    if isinstance(value, (list, tuple, np.ndarray)):
        return None, "a list, not a text"
    return None, "an object, not a text" if isinstance(value, dict) else f"a {type(value).__name__}, not a text"


def _label_value(value: object, task: TaskSpec, names: dict[str, int]) -> tuple[float | int | None, str | None]:
    """(the class index or the score, None), or (None, why this cell is not a label of `task`)."""
    if _is_missing(value) or (isinstance(value, str) and not value.strip()):
        return None, "the label is missing or empty"
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return None, "the label is a list or an object"
    text = str(value).strip()
    if task.is_regression:
        try:
            number = float(text)
        except ValueError:
            return None, "the label is not a number, as a regression task needs"
        return (number, None) if math.isfinite(number) else (None, "the label is not a finite number")
    if text.lower() in names:
        return names[text.lower()], None
    try:
        number = float(text)
    except ValueError:
        return None, f"the label is neither a class index nor one of {list(task.label_names)}"
    if not number.is_integer() or not 0 <= number < task.num_labels:
        return None, f"the label is out of range 0..{task.num_labels - 1}"
    return int(number), None


def _examples(
    table: _Table, task: TaskSpec, columns: list, label
) -> tuple[list[list[str]], list, list[int], _Problems]:
    """Texts per column, labels and positions of the good rows, and the bad rows with their reasons."""
    names = {n.lower(): i for i, n in enumerate(task.label_names)}
    cells = [table.frame[c].tolist() for c in columns]
    label_cells = table.frame[label].tolist()
    texts: list[list[str]] = [[] for _ in columns]
    labels, kept, problems = [], [], _Problems()
    for k, position in enumerate(table.positions):
        values = [_text_value(col[k]) for col in cells]
        label_value, label_reason = _label_value(label_cells[k], task, names)
        for (_, reason), column, col in zip(values, columns, cells, strict=True):
            if reason:
                problems.add(f"column {column!r} holds {reason}", position, None if _is_missing(col[k]) else col[k])
        if label_reason:
            problems.add(label_reason, position, None if _is_missing(label_cells[k]) else label_cells[k])
        if label_reason or any(reason for _, reason in values):
            continue
        for out, (text, _) in zip(texts, values, strict=True):
            out.append(text if text is not None else "")  # never None here: such rows were skipped above
        labels.append(label_value)
        kept.append(position)
    return texts, labels, kept, problems


def _frame_to_task_data(
    table: _Table, task: TaskSpec, split: str, text_a, text_b, label, source: str, skip_bad_rows: bool = False
) -> TaskData:
    """The examples of `table`; rows that cannot be examples are an error, or left out and noted with skip_bad_rows."""
    frame = table.frame
    if len(frame) == 0 and not table.skipped:
        raise DataError(f"{source}: the file has no data rows.")
    needed = [c for c in (text_a, text_b, label) if c is not None]
    missing = [c for c in needed if c not in frame.columns]
    if missing and len(frame):
        shown = ", ".join(map(str, frame.columns[:20])) or "no columns"
        raise DataError(f"{source}: missing column(s) {missing}. The file has: {shown}.")
    columns = [c for c in (text_a, text_b) if c is not None]
    if len(frame):
        texts, labels, kept, problems = _examples(table, task, columns, label)
    else:  # every row was left out while reading
        texts, labels, kept, problems = [[] for _ in columns], [], [], _Problems()
    if problems and not skip_bad_rows:
        raise _bad_rows_error(source, table.unit, problems)
    skipped = _Problems().merge(table.skipped).merge(problems)
    n_skipped = len(skipped.positions())
    if not kept:
        details = "\n".join(f"  {line}" for line in skipped.describe(table.unit))
        raise DataError(f"{source}: not one row can be read as an example ({_rows(n_skipped)} left out):\n{details}")
    notes = []
    if n_skipped:
        notes.append(f"Skipped {_rows(n_skipped)} of {source} that cannot be examples: "
                     + "; ".join(skipped.describe(table.unit)) + ".")
    return TaskData(
        task=task,
        split=split,
        text_a=texts[0],
        text_b=texts[1] if text_b is not None else None,
        labels=np.asarray(labels, dtype=np.float32 if task.is_regression else np.int64),
        source=source,
        notes=notes,
        n_skipped_rows=n_skipped,
    )


# ---- the sources -------------------------------------------------------------------------------------------


def load_glue_folder(task: TaskSpec, folder: str | Path, split: str, skip_bad_rows: bool = False) -> TaskData:
    """One split of a task from a folder in the GLUE distribution's layout."""
    spec = task.glue_file
    if spec is None:
        raise DataError(f"Task {task.name} is not a GLUE task: it has no files in the GLUE layout.")
    if split not in spec.split_files:
        raise DataError(f"Task {task.name} has no split {split!r} here; choose from {list(spec.split_files)}.")
    path = Path(folder) / spec.folder / spec.split_files[split]
    if not path.is_file():
        raise DataError(f"{path} does not exist. Expected a GLUE-format folder with {spec.folder}/{spec.split_files[split]}.")
    label = f"GLUE folder {path}"
    data, _ = _source_bytes(path, None)
    # CoLA's files have no header: its columns are numbered
    table = _read_delimited(_decode(data, label), "\t", spec.has_header, label, skip_bad_rows)
    return _frame_to_task_data(table, task, split, spec.text_a, spec.text_b, spec.label, label, skip_bad_rows)


def load_file(
    task: TaskSpec,
    source: str | Path | bytes,
    text_columns: tuple[str, ...] | list[str],
    label_column: str,
    split: str = "file",
    name: str | None = None,
    skip_bad_rows: bool = False,
) -> TaskData:
    """A user's CSV/TSV/JSON file (a path, or its bytes with `name`) with named text and label columns."""
    if len(text_columns) != len(task.text_columns):
        raise DataError(f"Task {task.name} needs {len(task.text_columns)} text column(s), got {list(text_columns)}.")
    label = _file_label(source, name)
    table = _read_source(source, name, label, skip_bad_rows)
    text_b = text_columns[1] if len(text_columns) == 2 else None
    return _frame_to_task_data(table, task, split, text_columns[0], text_b, label_column, label, skip_bad_rows)


def load_hub(task: TaskSpec, split: str, skip_bad_rows: bool = False) -> TaskData:
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
    unlabelled = "label" in frame.columns and (pd.to_numeric(frame["label"], errors="coerce") < 0).any()
    if not task.is_regression and unlabelled:
        raise DataError(f"Split {split} of {task.name} on the hub has no labels (a test split?).")
    text_b = task.text_columns[1] if task.is_pair else None
    table = _Table(frame, list(range(1, len(frame) + 1)), "row")  # rows counted from 1
    return _frame_to_task_data(table, task, split, task.text_columns[0], text_b, "label",
                               f"hub {task.hub_path}/{task.hub_config}:{task.hub_splits[split]}", skip_bad_rows)


def load_sequence_data(
    task: TaskSpec, split: str, source: str = "auto", data_dir: str | Path | None = None, skip_bad_rows: bool = False
) -> TaskData:
    """Load a split from `source`: 'hub', 'glue' (a local GLUE folder) or 'auto' (local folder first, then hub)."""
    folder = Path(data_dir) if data_dir else default_glue_dir()
    if source == "glue" or (source == "auto" and folder is not None):
        if folder is None:
            raise DataError(f"No local GLUE folder: set {DATA_DIR_ENV} or pass a data directory.")
        return load_glue_folder(task, folder, split, skip_bad_rows)
    if source in ("hub", "auto"):
        return load_hub(task, split, skip_bad_rows)
    raise DataError(f"Unknown data source {source!r}: use 'auto', 'hub' or 'glue'.")
