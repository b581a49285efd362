"""Reading token-classification (NER) data: CoNLL-format files, JSON with tokens and tags, uploads, and the hub."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.hub import hub_reachable

# CoNLL-2003's tags in the order of the hub data set's label list (eriktks/conll2003, feature ner_tags)
CONLL2003_LABELS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
CONLL2003_HUB = "eriktks/conll2003"
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
DOCSTART = "-DOCSTART-"
MAX_SHOWN = 10  # positions named in a message before "and N more"
JSON_SUFFIXES = (".json", ".jsonl")

_IOB_TAG = re.compile(r"^[BI]-\S+$")
NER_LOCAL_HINT = (
    "Local options: a CoNLL-format file (one token per line, the tag in the last column, a blank line between "
    "sentences) or a JSON / JSON-lines file with 'tokens' and 'tags' per sentence."
)


@dataclass
class TaggedSentences:
    """Sentences as word lists, their tags as indices into `label_names`, and where they came from."""

    words: list[list[str]]
    tags: list[np.ndarray]  # one int64 array per sentence, one index per word
    label_names: tuple[str, ...]
    source: str
    notes: list[str] = field(default_factory=list)
    n_skipped: int = 0  # sentences of the source left out by skip_bad_rows (described in `notes`)

    def __len__(self) -> int:
        return len(self.words)

    def to_task_data(self, task, split: str) -> TaskData:
        """These sentences as one split of `task` (words in text_a, tag arrays in labels)."""
        return TaskData(task=task, split=split, text_a=self.words, text_b=None, labels=tag_array(self.tags),
                        source=self.source, notes=list(self.notes), n_skipped_rows=self.n_skipped)


def tag_array(tags: Sequence[Sequence[int] | np.ndarray]) -> np.ndarray:
    """A 1-D object array of int64 tag arrays (numpy would make a 2-D array of sentences of equal length)."""
    out = np.empty(len(tags), dtype=object)
    for i, sentence in enumerate(tags):
        out[i] = np.asarray(sentence, dtype=np.int64)
    return out


# ---- tag lists and the IOB schemes --------------------------------------------------------------------------


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB2 tags from IOB1 ones (the original CoNLL-2003 files): an I-X that does not continue an X entity becomes B-X.

    IOB2 input comes back unchanged, so every file goes through this; the entities seqeval's default mode reads
    are the same before and after (it too starts an entity at such an I-X).
    """
    out = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def ordered_label_names(tags: Iterable[str]) -> tuple[str, ...]:
    """The label list for the tags found: O first, then B-/I- pairs per entity type (CoNLL-2003's types in the
    hub's order, PER ORG LOC MISC, then others alphabetically), so a CoNLL-2003 file gets the hub's list."""
    types = {t[2:] for t in tags if t != "O"}
    known = [t for t in ("PER", "ORG", "LOC", "MISC") if t in types]
    others = sorted(types - set(known))
    return ("O", *(f"{prefix}-{t}" for t in known + others for prefix in ("B", "I")))


# ---- problems, counted per sentence -------------------------------------------------------------------------


class _Problems:
    """Bad sentences by reason, each named by the position (line or item) of its first bad row."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}
        self.example: dict[str, str] = {}
        self.sentences: set[int] = set()

    def add(self, sentence: int, reason: str, position: int, value: object = None) -> None:
        self.sentences.add(sentence)
        self.rows.setdefault(reason, []).append(position)
        if value is not None:
            self.example.setdefault(reason, repr(value))

    def describe(self, unit: str) -> list[str]:
        lines = []
        for reason, positions in sorted(self.rows.items(), key=lambda item: min(item[1])):
            ordered = sorted(set(positions))
            shown = ", ".join(map(str, ordered[:MAX_SHOWN]))
            more = f" and {len(ordered) - MAX_SHOWN} more" if len(ordered) > MAX_SHOWN else ""
            plural = "s" if len(ordered) > 1 else ""
            example = f" (the first is {self.example[reason]})" if reason in self.example else ""
            lines.append(f"{unit}{plural} {shown}{more}: {reason}{example}")
        return lines


def _finish(
    label: str, unit: str, sentences: list[tuple[list[str], list[str | int], list[int]]], label_names: tuple[str, ...] | None,
    problems: _Problems, skip_bad_rows: bool, notes: list[str],
) -> TaggedSentences:
    """Tags checked and turned into indices; bad sentences an error, or skipped and noted with skip_bad_rows."""
    default_names = label_names is None and any(isinstance(t, int) for _, tags, _ in sentences for t in tags)
    if default_names:
        notes.append(f"{label} gives tags as indices without their names: read as CoNLL-2003's label list "
                     f"{list(CONLL2003_LABELS)}.")
        label_names = CONLL2003_LABELS
    converted: list[list[str | int]] = []
    for k, (_, tags, positions) in enumerate(sentences):
        strings = [t for t in tags if isinstance(t, str)]
        for tag, position in zip(tags, positions, strict=True):
            if isinstance(tag, str) and tag != "O" and not _IOB_TAG.match(tag):
                problems.add(k, "a tag that is neither O nor B-TYPE / I-TYPE (IOB tags are read)", position, tag)
        iob2 = iter(iob1_to_iob2([t if _IOB_TAG.match(t) else "O" for t in strings]))
        converted.append([next(iob2) if isinstance(t, str) else t for t in tags])
    if label_names is None:
        label_names = ordered_label_names(t for tags in converted for t in tags if isinstance(t, str))
    index = {name: i for i, name in enumerate(label_names)}
    words, tag_indices = [], []
    for k, ((tokens, raw, positions), tags) in enumerate(zip(sentences, converted, strict=True)):
        ids = []
        for original, tag, position in zip(raw, tags, positions, strict=True):
            if isinstance(tag, int):
                if not 0 <= tag < len(label_names):
                    problems.add(k, f"a tag index out of range 0..{len(label_names) - 1}", position, tag)
                ids.append(tag)
            elif tag in index:
                ids.append(index[tag])
            elif original == "O" or _IOB_TAG.match(str(original)):  # other texts were reported above
                read = "" if tag == original else f", read as {tag} (IOB1 to IOB2)"
                problems.add(k, f"a tag not in the label list {list(label_names)}{read}", position, original)
        if k not in problems.sentences:
            words.append(tokens)
            tag_indices.append(np.asarray(ids, dtype=np.int64))
    n_bad = len(problems.sentences)
    if n_bad and not skip_bad_rows:
        lines = [f"{label}: {n_bad} sentence{'s' if n_bad != 1 else ''} cannot be read:",
                 *(f"  {d}" for d in problems.describe(unit)),
                 "Fix the file, or load it with skip_bad_rows=True to leave such sentences out (they are then "
                 "counted and listed in the data's notes)."]
        raise DataError("\n".join(lines))
    if not words:
        details = "".join(f"\n  {d}" for d in problems.describe(unit))
        raise DataError(f"{label}: not one sentence can be read ({n_bad} left out).{details}")
    if n_bad:
        notes.append(f"Skipped {n_bad} sentence{'s' if n_bad != 1 else ''} of {label} that cannot be read: "
                     + "; ".join(problems.describe(unit)) + ".")
    return TaggedSentences(words, tag_indices, tuple(label_names), label, notes, n_bad)


# ---- files -------------------------------------------------------------------------------------------------


def _source_text(source: str | Path | bytes, name: str | None) -> tuple[str, str, str]:
    """(the text, the file's name, a label for messages) of a path or of bytes with their file name."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not name:
            raise DataError("Data given as bytes needs its file name too: the suffix tells CoNLL and JSON apart.")
        data = bytes(source)
        label = f"file {name}"
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"No such file: {path}.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"Could not read {path}: {exc.strerror or exc}.") from None
        name = name or path.name
        label = f"file {path.name}"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{label} is not UTF-8 text: byte {data[exc.start]:#04x} on line {line} cannot be decoded. "
                        f"Save the file as UTF-8.") from None
    if not text.strip():
        raise DataError(f"{label} is empty.")
    return text, name, label


def read_conll(
    source: str | Path | bytes, name: str | None = None, label_names: Sequence[str] | None = None,
    skip_bad_rows: bool = False,
) -> TaggedSentences:
    """Sentences of a CoNLL-format file (a path, or bytes with `name`): one token per line, whitespace-separated
    columns with the word first and the tag last, a blank line between sentences, -DOCSTART- lines skipped.

    IOB1 tags (the original CoNLL-2003 files) are turned into IOB2. Without `label_names` the list is the tags
    found (`ordered_label_names`); with it, a tag outside the list is an error. A line with one column (no tag)
    or a tag that is not IOB is an error naming its line, unless `skip_bad_rows` leaves its sentence out.
    """
    text, _, label = _source_text(source, name)
    problems = _Problems()
    sentences: list[tuple[list[str], list[str | int], list[int]]] = []
    tokens: list[str] = []
    tags: list[str | int] = []
    lines: list[int] = []

    def close() -> None:
        if tokens or lines:
            sentences.append((list(tokens), list(tags), list(lines)))
        tokens.clear()
        tags.clear()
        lines.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        columns = line.split()
        if not columns or columns[0] == DOCSTART:
            close()
            continue
        if len(columns) < 2:
            # the sentence is recorded (and counted bad) even if this is its only line
            problems.add(len(sentences), "a line with a word and no tag (the tag is the last column)", number,
                         line.strip())
            lines.append(number)
            tokens.append(columns[0])
            tags.append("O")
            continue
        tokens.append(columns[0])
        tags.append(columns[-1])
        lines.append(number)
    close()
    if not sentences:
        raise DataError(f"{label} holds no sentence (only blank or -DOCSTART- lines).")
    names = tuple(label_names) if label_names is not None else None
    return _finish(label, "line", sentences, names, problems, skip_bad_rows, [])


_JSON_EXPECTED = ("JSON lines (one object per line) or a JSON array of objects, each with 'tokens' (a list of words) "
                  "and 'tags' (a list of tag names or indices, one per word)")


def _json_records(text: str, label: str) -> tuple[list[tuple[int, object]], str, list[int]]:
    """(position, value) of each record, the unit positions count in, and the lines that are not JSON."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(f"{label} starts like a JSON array but is not valid JSON ({exc.msg} at line {exc.lineno}, "
                            f"column {exc.colno}). Expected {_JSON_EXPECTED}.") from None
        return list(enumerate(value, start=1)), "array item", []
    records, not_json = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError:
                not_json.append(number)
    if not any(isinstance(v, dict) for _, v in records):
        raise DataError(f"{label} is not {_JSON_EXPECTED}.")
    return records, "line", not_json


def _json_sentence(value: object) -> tuple[list[str], list[str | int]] | str:
    """The words and tags of one record, or why it is not a sentence."""
    if not isinstance(value, dict):
        return "not a JSON object"
    tokens = value.get("tokens", value.get("words"))
    tags = value.get("tags", value.get("ner_tags"))
    if tokens is None or tags is None:
        return "no 'tokens' or no 'tags' (or 'ner_tags')"
    if not isinstance(tokens, list) or not isinstance(tags, list):
        return "'tokens' or 'tags' is not a list"
    if not tokens:
        return "no tokens"
    if not all(isinstance(t, str) and t.strip() for t in tokens):
        return "a token that is not a non-empty text"
    if len(tokens) != len(tags):
        return f"{len(tokens)} tokens but {len(tags)} tags"
    if not all(isinstance(t, str) or (isinstance(t, int) and not isinstance(t, bool)) for t in tags):
        return "a tag that is neither a text nor an integer index"
    return [t.strip() for t in tokens], [t.strip() if isinstance(t, str) else t for t in tags]


def read_tagged_json(
    source: str | Path | bytes, name: str | None = None, label_names: Sequence[str] | None = None,
    skip_bad_rows: bool = False,
) -> TaggedSentences:
    """Sentences of a JSON-lines file or a JSON array whose objects hold 'tokens' and 'tags' (or the hub's
    'ner_tags'), tags as names or as indices into `label_names` (CoNLL-2003's list when indices come without names,
    with a note). Bad records are an error naming their line (array item), unless `skip_bad_rows` leaves them out."""
    text, _, label = _source_text(source, name)
    records, unit, not_json = _json_records(text, label)
    problems = _Problems()
    sentences: list[tuple[list[str], list[str | int], list[int]]] = []
    for position in not_json:
        problems.add(-position, "not a JSON value", position)  # negative keys: records that are no sentence
    for position, value in records:
        read = _json_sentence(value)
        if isinstance(read, str):
            problems.add(-position, read, position)
            continue
        sentences.append((read[0], read[1], [position] * len(read[0])))
    names = tuple(label_names) if label_names is not None else None
    return _finish(label, unit, sentences, names, problems, skip_bad_rows, [])


def read_tagged_file(
    source: str | Path | bytes, name: str | None = None, label_names: Sequence[str] | None = None,
    skip_bad_rows: bool = False,
) -> TaggedSentences:
    """A CoNLL-format or JSON file, told apart by the name's suffix (.json and .jsonl are JSON, any other is
    CoNLL); an upload is its bytes with its file name."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not name:
            raise DataError("Data given as bytes needs its file name too: the suffix tells CoNLL and JSON apart.")
        file_name = name
    else:
        file_name = name or Path(source).name
    reader = read_tagged_json if Path(file_name).suffix.lower() in JSON_SUFFIXES else read_conll
    return reader(source, name, label_names, skip_bad_rows)


# ---- the hub -----------------------------------------------------------------------------------------------


def _load_hub_split(hub_path: str, split: str):
    """The split through `datasets`; a repository with a loading script is read from its Parquet conversion."""
    import datasets

    try:
        return datasets.load_dataset(hub_path, split=split)
    except Exception as first:  # datasets raises many kinds; the user needs the message
        # recent `datasets` no longer runs loading scripts (eriktks/conll2003 has one); the hub keeps a Parquet copy
        try:
            return datasets.load_dataset(hub_path, split=split, revision="refs/convert/parquet")
        except Exception:
            raise DataError(f"Could not load {hub_path} ({split}) from the hub: {first}") from None


def load_hub_tagged(
    split: str, hub_path: str = CONLL2003_HUB, skip_bad_rows: bool = False, limit: int | None = None,
) -> TaggedSentences:
    """One split ('train', 'dev' or 'test') of a token-classification data set on the hub (columns tokens and
    ner_tags), with the label list of its features (CoNLL-2003's, with a note, when the features name none)."""
    if split not in HUB_SPLITS:
        raise DataError(f"No split {split!r}: choose from {list(HUB_SPLITS)}.")
    if not hub_reachable():
        raise DataError(f"The Hugging Face hub cannot be reached (offline). {NER_LOCAL_HINT}")
    ds = _load_hub_split(hub_path, HUB_SPLITS[split])
    missing = [c for c in ("tokens", "ner_tags") if c not in ds.column_names]
    if missing:
        raise DataError(f"{hub_path} has no column(s) {missing}; it has {ds.column_names}.")
    label = f"hub {hub_path}:{HUB_SPLITS[split]}"
    notes: list[str] = []
    feature = getattr(ds.features["ner_tags"], "feature", None)
    names = getattr(feature, "names", None)
    if not names:
        names = list(CONLL2003_LABELS)
        notes.append(f"{label} names no tags: read as CoNLL-2003's label list {names}.")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    problems = _Problems()
    sentences: list[tuple[list[str], list[str | int], list[int]]] = []
    for row, (tokens, tags) in enumerate(zip(ds["tokens"], ds["ner_tags"], strict=True), start=1):
        read = _json_sentence({"tokens": list(tokens), "tags": [int(t) for t in tags]})
        if isinstance(read, str):
            problems.add(-row, read, row)
            continue
        sentences.append((read[0], read[1], [row] * len(read[0])))
    return _finish(label, "row", sentences, tuple(names), problems, skip_bad_rows, notes)
