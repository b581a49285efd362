"""Matching a model's output labels to a task's label order."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from fwsvd_core.errors import LabelMappingError
from fwsvd_core.inputs.tasks import TaskSpec

_GENERIC = re.compile(r"^label_?(\d+)$")
_SYNONYMS = {
    "neg": "negative", "pos": "positive", "entail": "entailment", "contradict": "contradiction",
    "notentailment": "notentailment", "nonentailment": "notentailment", "unacceptable": "unacceptable",
    "equivalent": "equivalent", "notequivalent": "notequivalent", "duplicate": "duplicate",
    "notduplicate": "notduplicate",
}


def _norm(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    return _SYNONYMS.get(key, key)


def generic_label_number(name: str) -> int | None:
    """k for a generic name such as LABEL_k, else None."""
    match = _GENERIC.match(name.strip().lower())
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class LabelMapping:
    """`model_to_task[i]` is the task's class index for the model's output i."""

    model_to_task: tuple[int, ...]
    how: str  # "names", "identity (generic names)", "generic names by number", "regression"
    message: str
    warning: str = ""  # non-empty when the mapping is a guess the user should check


def _label2id_conflicts(model_config, names: list[str]) -> str:
    """A sentence saying where label2id disagrees with id2label, or '' when it agrees or says nothing."""
    label2id = getattr(model_config, "label2id", None) or {}
    try:
        label2id = {str(k): int(v) for k, v in label2id.items()}
    except (TypeError, ValueError):
        return f"The model's label2id {label2id} does not map names to output numbers."
    # transformers keeps the default {LABEL_i: i} when only id2label was edited: that says nothing
    default = {f"LABEL_{i}": i for i in range(len(names))}
    ids = {n: i for i, n in enumerate(names)}
    clashes = [n for n, i in label2id.items() if n in ids and ids[n] != i]
    unknown = [n for n in label2id if n not in ids]
    if clashes or (unknown and label2id != default):
        shown = ", ".join(f"{n!r}: {label2id[n]}" for n in clashes + unknown)
        return (f"The model's label2id disagrees with its id2label ({shown}, while id2label is "
                f"{dict(enumerate(names))}); id2label was used.")
    return ""


def id2label_problem(id2label: object) -> str | None:
    """Why a config's id2label cannot map output numbers to names (keys that are not whole numbers); None if it can.

    Keys may be numbers or numeric strings, as config.json writes them ({"0": "negative"})."""
    if not isinstance(id2label, dict):
        return f"The model's id2label must map output numbers to names ({{\"0\": \"negative\"}}), not {id2label!r}."
    wrong = [k for k in id2label if not str(k).strip().lstrip("-").isdigit() or isinstance(k, bool)]
    if not wrong:
        return None
    swapped = all(isinstance(v, int) or str(v).strip().isdigit() for v in id2label.values())
    example = ", ".join(f'"{v}": "{k}"' for k, v in id2label.items()) if swapped else '"0": "negative", "1": "positive"'
    return (f"The model's config gives id2label keys that are not output numbers ({', '.join(map(repr, wrong[:5]))})"
            + ("; it looks like label2id written under id2label" if swapped else "")
            + f". id2label maps each output number to its label's name: {{{example}}}. Fix id2label in the model's "
              "config.json.")


def saved_labels_problem(folder: str | Path) -> str | None:
    """What is wrong with the id2label of a saved model's config.json (transformers stops with "invalid literal for
    int()" on it); None when it is fine, or there is no such file to read."""
    try:
        config = json.loads((Path(folder).expanduser() / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("id2label") is None:
        return None
    return id2label_problem(config["id2label"])


def _join(*sentences: str) -> str:
    return " ".join(s for s in sentences if s)


def _map_generic(names: list[str], task: TaskSpec, conflict: str) -> LabelMapping:
    """Generic LABEL_k names: identity when in order; mapped by k when they are a reordering."""
    n = len(names)
    numbers = [k for k in map(generic_label_number, names) if k is not None]  # all of them: the names are generic
    if numbers == list(range(n)):
        return LabelMapping(tuple(range(n)), "identity (generic names)",
                            "the model's labels are generic (LABEL_i); assumed to follow the task's order",
                            conflict)
    if len(numbers) == n and sorted(numbers) == list(range(n)):
        pairs = ", ".join(f"output {i} ({names[i]}) -> {task.label_names[k]}" for i, k in enumerate(numbers))
        warning = (f"The model's generic labels are out of order ({pairs}): each output was taken to be the "
                   f"task's class with the number in its name, assuming LABEL_k means the task's class k "
                   f"in the order {list(task.label_names)}. Check this against the model's card or a few "
                   f"predictions: a wrong order makes every score meaningless.")
        return LabelMapping(tuple(numbers), "generic names by number",
                            f"generic labels reordered by their numbers: {pairs}", _join(warning, conflict))
    pairs = ", ".join(f"output {i} is {names[i]}" for i in range(n))
    warning = (f"The model's generic labels do not number its outputs 0..{n - 1} ({pairs}), so they say "
               f"nothing usable: the outputs are assumed to follow the task's order {list(task.label_names)}. "
               f"Check this against the model's card or a few predictions.")
    return LabelMapping(tuple(range(n)), "identity (generic names)",
                        "the model's labels are generic (LABEL_i); assumed to follow the task's order",
                        _join(warning, conflict))


def map_labels(model_config, task: TaskSpec) -> LabelMapping:
    """Match the model's outputs to the task's classes: by name for real names, by number for LABEL_k names.

    Generic names that are out of order (id2label {0: "LABEL_1", 1: "LABEL_0"}) are mapped by the number
    in the name, with a warning. Why by number: transformers only ever writes LABEL_i for output i, so a
    reordering was written on purpose, and the only thing it can mean is "this output is class k"; taking
    the outputs in the task's order would ignore the one piece of information the config gives.
    Generic names that are not a numbering of the outputs (LABEL_0 twice, LABEL_7 of 2) are ignored, with a
    warning. A label2id that disagrees with id2label is also reported in `warning`; id2label is used.
    """
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
    raw = getattr(model_config, "id2label", None) or {}
    if problem := id2label_problem(raw):
        raise LabelMappingError(problem)
    id2label = {int(str(k).strip()): str(v) for k, v in raw.items()}
    names = [id2label.get(i, f"LABEL_{i}") for i in range(n_model)]
    conflict = _label2id_conflicts(model_config, names)
    if all(generic_label_number(n) is not None for n in names):
        return _map_generic(names, task, conflict)
    wanted = {_norm(n): i for i, n in enumerate(task.label_names)}
    mapped = [k for k in (wanted.get(_norm(n)) for n in names) if k is not None]
    if len(mapped) != n_model or len(set(mapped)) != n_model:
        raise LabelMappingError(
            f"Cannot match the model's labels {names} to task {task.name}'s labels {list(task.label_names)}."
        )
    if mapped == list(range(n_model)):
        return LabelMapping(tuple(mapped), "names", "label names match the task's order", conflict)
    pairs = ", ".join(f"{names[i]}->{task.label_names[j]}" for i, j in enumerate(mapped))
    return LabelMapping(tuple(mapped), "names", f"model labels reordered to the task's: {pairs}", conflict)
