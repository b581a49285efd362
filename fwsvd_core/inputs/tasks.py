"""The registry of GLUE tasks: columns, labels, metrics and where their files live."""
from __future__ import annotations

from dataclasses import dataclass, field

from fwsvd_core.errors import DataError


@dataclass(frozen=True)
class GlueFile:
    """How a task's split is laid out in the GLUE distribution's TSV files."""

    folder: str
    split_files: dict[str, str]
    # column names in the file for (text_a, text_b, label); a header-less file uses indices
    text_a: str | int
    text_b: str | int | None
    label: str | int
    has_header: bool = True


@dataclass(frozen=True)
class TaskSpec:
    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]
    primary_metric: str
    hub_path: str
    hub_config: str
    hub_splits: dict[str, str]
    glue_file: GlueFile | None = None  # where a GLUE task's files are (None: not a GLUE task)
    aliases: tuple[str, ...] = field(default=())
    family: str = "sequence-classification"  # the task family's name (`inputs.families`)

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2


def _splits(dev: str = "validation") -> dict[str, str]:
    return {"train": "train", "dev": dev}


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec(
            "cola", ("sentence",), ("unacceptable", "acceptable"), ("mcc", "accuracy"), "mcc",
            "nyu-mll/glue", "cola", _splits(),
            GlueFile("CoLA", {"train": "train.tsv", "dev": "dev.tsv"}, 3, None, 1, has_header=False),
        ),
        TaskSpec(
            "sst2", ("sentence",), ("negative", "positive"), ("accuracy",), "accuracy",
            "nyu-mll/glue", "sst2", _splits(),
            GlueFile("SST-2", {"train": "train.tsv", "dev": "dev.tsv"}, "sentence", None, "label"),
            aliases=("sst-2",),
        ),
        TaskSpec(
            "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("f1", "accuracy"), "f1",
            "nyu-mll/glue", "mrpc", _splits(),
            GlueFile("MRPC", {"train": "train.tsv", "dev": "dev.tsv"}, "#1 String", "#2 String", "Quality"),
        ),
        TaskSpec(
            "stsb", ("sentence1", "sentence2"), (), ("pearson", "spearman"), "pearson",
            "nyu-mll/glue", "stsb", _splits(),
            GlueFile("STS-B", {"train": "train.tsv", "dev": "dev.tsv"}, "sentence1", "sentence2", "score"),
            aliases=("sts-b",),
        ),
        TaskSpec(
            "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("f1", "accuracy"), "f1",
            "nyu-mll/glue", "qqp", _splits(),
            GlueFile("QQP", {"train": "train.tsv", "dev": "dev.tsv"}, "question1", "question2", "is_duplicate"),
        ),
        TaskSpec(
            "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",),
            "accuracy", "nyu-mll/glue", "mnli", _splits("validation_matched"),
            GlueFile("MNLI", {"train": "train.tsv", "dev": "dev_matched.tsv"}, "sentence1", "sentence2", "gold_label"),
            aliases=("mnli-m", "mnli_matched"),
        ),
        TaskSpec(
            "mnli-mm", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",),
            "accuracy", "nyu-mll/glue", "mnli", _splits("validation_mismatched"),
            GlueFile("MNLI", {"train": "train.tsv", "dev": "dev_mismatched.tsv"}, "sentence1", "sentence2", "gold_label"),
            aliases=("mnli_mismatched",),
        ),
        TaskSpec(
            "qnli", ("question", "sentence"), ("entailment", "not_entailment"), ("accuracy",), "accuracy",
            "nyu-mll/glue", "qnli", _splits(),
            GlueFile("QNLI", {"train": "train.tsv", "dev": "dev.tsv"}, "question", "sentence", "label"),
        ),
        TaskSpec(
            "rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("accuracy",), "accuracy",
            "nyu-mll/glue", "rte", _splits(),
            GlueFile("RTE", {"train": "train.tsv", "dev": "dev.tsv"}, "sentence1", "sentence2", "label"),
        ),
        TaskSpec(
            "wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",), "accuracy",
            "nyu-mll/glue", "wnli", _splits(),
            GlueFile("WNLI", {"train": "train.tsv", "dev": "dev.tsv"}, "sentence1", "sentence2", "label"),
        ),
    ]
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name or alias, case-insensitively."""
    key = name.strip().lower()
    for task in TASKS.values():
        if key == task.name or key in task.aliases:
            return task
    raise DataError(f"Unknown task {name!r}. Known tasks: {', '.join(TASKS)}.")


def register_task(task: TaskSpec) -> TaskSpec:
    """Add a task of another family to the registry (the family's module does, when it is imported)."""
    TASKS[task.name] = task
    return task


def custom_task(
    name: str,
    text_columns: tuple[str, ...],
    label_names: tuple[str, ...],
) -> TaskSpec:
    """A task for a user's own file: classification when label names are given, else regression."""
    if len(text_columns) not in (1, 2):
        raise DataError("A task takes one or two text columns.")
    classification = ("accuracy", "f1" if len(label_names) == 2 else "accuracy")
    metrics: tuple[str, ...] = classification if label_names else ("pearson", "spearman")
    metrics = tuple(dict.fromkeys(metrics))
    return TaskSpec(
        name, tuple(text_columns), tuple(label_names), metrics, metrics[0], "", "", {},
        GlueFile("", {}, text_columns[0], text_columns[1] if len(text_columns) == 2 else None, "label"),
    )
