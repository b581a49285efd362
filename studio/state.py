"""What the pages share: the user's choice (per browser session) and cached heavy objects (shared, read-only)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import streamlit as st

from fwsvd_core.analysis.continuations import positions
from fwsvd_core.compression.methods import ACTIVATIONS, KRONECKER, get_method
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.demo import DEFAULT_DEMO, DEMOS, demo_dir, is_demo, needs_build
from fwsvd_core.errors import DataError, FisherError, FwsvdError
from fwsvd_core.estimation.activations import estimate_activation_stats
from fwsvd_core.estimation.evaluation import EvalResult
from fwsvd_core.estimation.fisher import FisherResult, estimate_fisher
from fwsvd_core.estimation.kronecker import estimate_kronecker
from fwsvd_core.inputs.data import TaskData, load_file, load_glue_folder, load_hub
from fwsvd_core.inputs.families import Family, family_of, load_task_data
from fwsvd_core.inputs.hub import hub_reachable
from fwsvd_core.inputs.models import LoadedModel
from fwsvd_core.inputs.splits import train_dev_split
from fwsvd_core.inputs.stamps import Stamp, files_stamp
from fwsvd_core.inputs.synthetic import synthetic_task_data
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.jobs import DONE, FAILED, RUNNING, Job, Jobs, StagedWork
from fwsvd_core.loading import load_model
from fwsvd_core.screens import (
    DEFAULTS,
    build_demo_and_screens,
    dense_evaluation,
    first_screens_ready,
    prepare_first_screens,
    stored_sweep,
)
from studio.serving import allowed_model, readable, session_owner, session_present

# what the demo build (fine-tuning and first screens) takes, as measured by `python benchmarks/first_screens.py`
# (docs/first_screens.md)
DEMO_BUILD_TIME = "about 5 minutes on 2 idle CPU cores, longer on a busy machine"
DATA_SOURCES = ("Local GLUE folder", "Hugging Face hub", "Uploaded file", "Synthetic (generated)")
# the loader's name of each source (`Family.load`); an uploaded file is read by the page
LOADER_SOURCES = {"Local GLUE folder": "local", "Hugging Face hub": "hub", "Synthetic (generated)": "synthetic"}
WINDOW_LENGTHS = (16, 32, 64, 128)  # tokens per window a language model is calibrated and scored on (CPU-sized)


def default_data_dir() -> str:
    return os.environ.get("FWSVD_DATA_DIR", "")


def default_model() -> str:
    """The model the app opens on: FWSVD_DEFAULT_MODEL, else the built-in SST-2 demo."""
    return os.environ.get("FWSVD_DEFAULT_MODEL", DEFAULT_DEMO)


@dataclass(frozen=True)
class Choice:
    """Model, task, data and Fisher settings: everything the other pages read."""

    model: str = field(default_factory=default_model)
    dtype: str = "auto"  # the weights' dtype: auto keeps the checkpoint's
    task: str = "sst2"
    data_source: str = "Local GLUE folder"
    data_dir: str = field(default_factory=default_data_dir)
    upload_name: str = ""
    upload_digest: str = ""
    text_columns: tuple[str, ...] = ()
    label_column: str = ""
    fisher_samples: int = DEFAULTS.fisher_samples
    estimator: str = DEFAULTS.estimator
    eval_subsample: int = 0  # 0: the whole split
    skip_bad_rows: bool = False
    allow_degenerate_fisher: bool = False
    seq_len: int = 128  # tokens per window, where the task's family cuts text into windows (a language model)

    @property
    def model_key(self) -> tuple[str, str]:
        """What identifies the loaded model: its source and the dtype it is loaded in."""
        return self.model, self.dtype

    @property
    def data_key(self) -> tuple:
        return (self.task, self.data_source, self.data_dir, self.upload_digest, self.text_columns, self.label_column,
                self.skip_bad_rows, self.seq_len)

    @property
    def family(self) -> Family:
        """The family of the chosen task: what the model is loaded as, how data is read and what is shown."""
        return family_of(get_task(self.task))


def get_choice() -> Choice:
    if "choice" not in st.session_state:
        st.session_state["choice"] = initial_choice()
    return st.session_state["choice"]


def initial_choice() -> Choice:
    """The demo default; data from the local GLUE folder when one is set, else the hub, else synthetic."""
    choice = Choice()
    if choice.model == "demo:stsb":
        choice = replace(choice, task="stsb")
    if not choice.data_dir or not Path(choice.data_dir).is_dir():
        choice = replace(choice, data_source="Hugging Face hub" if hub_reachable() else "Synthetic (generated)")
    return choice


def set_choice(**changes) -> Choice:
    """Update the choice; a change of model or data drops what was derived from the old one."""
    old = get_choice()
    new = replace(old, **changes)
    if (new.model_key, new.data_key) != (old.model_key, old.data_key) and "allow_degenerate_fisher" not in changes:
        new = replace(new, allow_degenerate_fisher=False)  # consent to a poor Fisher was for the old model and data
    if new != old:
        st.session_state["choice"] = new
        if (new.model_key, new.data_key) != (old.model_key, old.data_key):
            st.session_state.pop("ranks", None)
    return new


def model_stamp(source: str) -> Stamp:
    """Size and modification time of the model's files (a demo's too): a model saved again in place is loaded again."""
    if is_demo(source):
        return files_stamp(demo_dir(source)) if source in DEMOS else ()
    return files_stamp(source)  # a hub id names no local folder: ()


def cached_model(source: str, dtype: str = "auto", family: str | None = None) -> LoadedModel:
    """Shared between browser sessions and never modified: compression works on structural copies. The files'
    stamp, taken on every use, is part of the key. `family` names the task family whose model class a saved model
    is loaded as (None: the one its config names)."""
    return _cached_model(source, dtype, family, model_stamp(source))


@st.cache_resource(max_entries=3, show_spinner=False)
def _cached_model(source: str, dtype: str, family: str | None, stamp: Stamp) -> LoadedModel:
    return load_model(source, dtype=dtype, family=family)


@st.cache_resource(show_spinner=False)
def background_jobs() -> Jobs:
    """One registry per server process: a job outlives the browser tab that started it, and every tab finds it."""
    return Jobs()


def cancelled_here() -> set:
    """The jobs this browser session cancelled (others may still run them): it shows them as cancelled."""
    return st.session_state.setdefault("cancelled jobs", set())


def cancel_here(key: str) -> None:
    """This session's Cancel: it lets go of the job, which stops only when no other session still needs it."""
    cancelled_here().add(key)
    background_jobs().release(key, session_owner(), session_present)


def supersede(slot: str, key: str) -> None:
    """This session now wants `key` in `slot` (its Fisher, its dense score): the job it wanted there before is let
    go (cancelled and freed when nobody else needs it), and its remembered result dropped."""
    slots = st.session_state.setdefault("job slots", {})
    previous = slots.get(slot)
    if previous is not None and previous != key:
        background_jobs().release(previous, session_owner(), session_present)
        st.session_state.pop(previous, None)
        cancelled_here().discard(previous)
    slots[slot] = key


def show_job(job: Job, stop: bool = True) -> None:
    """A running job: progress with elapsed time and time left, a Cancel button; the whole app reruns when it ends.
    With `stop`, the page's script stops here: nothing below waits for a computation the page does not show."""
    with st.container(border=True):
        st.markdown(f"**{job.label}**")

        @st.fragment(run_every=1.0)
        def poll() -> None:
            if job.status != RUNNING:
                st.rerun(scope="app")
            st.progress(job.done / job.total if job.total else 0.0, text=job.describe(titled=False))

        poll()
        st.caption("This runs on the server: closing the tab stops nothing, and any tab opened later shows it here.")
        st.button("Cancel", key=f"cancel {job.key}", on_click=cancel_here, args=(job.key,),
                  help="stops it for you; it runs on while another session still waits for it")
    if stop:
        st.stop()


def settle_seconds() -> float:
    """How long a page waits for a job it started before showing its progress instead: a job done by then (a cached
    Fisher, a small model) shows no progress box at all."""
    return float(os.environ.get("FWSVD_JOB_SETTLE", "3"))


def job_outcome(job: Job, what: str, stop: bool = True) -> bool:
    """After a job: True when it is done; else say how it ended (a restart button after a cancel) and return False.
    A running job's progress is shown (the page stops there, unless not `stop`). A failure's error is raised again,
    for the caller's usual message."""
    if job.status == RUNNING and not job.wait(settle_seconds()):
        show_job(job, stop)
        return False
    if job.status == DONE:
        return True
    if job.status == FAILED and job.error is not None:
        background_jobs().forget(job.key)  # the next visit tries again
        raise job.error
    show_cancelled(job.key, what)
    return False


def show_cancelled(key: str, what: str) -> None:
    """A cancelled job: said so, with a button to start it again."""
    st.warning(f"{what} was cancelled; nothing half-done was kept.")
    if st.button(f"Start {what.lower()} again", type="primary", key=f"restart {key}"):
        cancelled_here().discard(key)
        job = background_jobs().get(key)
        if job is not None and job.status != RUNNING:
            background_jobs().forget(key)
        st.rerun()


def in_background(key: str, label: str, work: StagedWork, what: str, stop: bool = True, remember: bool = True,
                  slot: str | None = None):
    """The result of `work`, run as a background job that every tab shares; None while it runs (its progress is
    shown) or after this session cancelled it. With `remember`, this browser session keeps a finished result under
    `key`. A job in a `slot` replaces this session's previous job there (`supersede`)."""
    if slot is not None:
        supersede(slot, key)
    if remember and key in st.session_state:
        return st.session_state[key]
    if key in cancelled_here():
        show_cancelled(key, what)
        return None
    job = background_jobs().submit_staged(key, label, work, owner=session_owner())
    if not job_outcome(job, what, stop):
        return None
    background_jobs().forget(job.key)  # the registry keeps only what runs
    if remember:
        st.session_state[key] = job.result
    return job.result


def first_screens_wanted(choice: Choice) -> bool:
    """The demos precompute their first screens at the default settings: is this such a choice?"""
    return (is_demo(choice.model) and choice.fisher_samples == DEFAULTS.fisher_samples
            and choice.estimator == DEFAULTS.estimator and not choice.allow_degenerate_fisher)


def build_demo_with_progress(choice: Choice) -> bool:
    """A demo not built yet is built in the background, with progress and cancel (a few minutes, once), and so are
    its first screens."""
    name = choice.model
    data_dir = allowed_data_dir(choice)
    if name not in DEMOS or not needs_build(name, data_dir):
        return True
    try:
        train, dev = load_split(choice, "train"), load_split(choice, "dev")
    except FwsvdError:
        train = dev = None  # the page says what is wrong with the data; the model is built all the same
    key = f"demo {name} {choice.data_key}"
    if key in cancelled_here():
        show_cancelled(key, "Building the demo")
        return False
    job = background_jobs().submit_staged(
        key, f"Building the demo model {name} and its first screens (once; {DEMO_BUILD_TIME})",
        lambda progress, cancel, stage: build_demo_and_screens(
            name, train if first_screens_wanted(choice) else None, dev, data_dir, choice.dtype,
            progress=progress, cancel=cancel, stage=stage), owner=session_owner())
    if not job_outcome(job, "Building the demo"):
        return False
    background_jobs().forget(job.key)  # built: the demo cache has it now
    return True


def first_screens_with_progress(choice: Choice, loaded: LoadedModel, train: TaskData, dev: TaskData) -> bool:
    """A demo built without its first screens (from the command line, by an older version) gets them now, in the
    background; False while they are computed."""
    if not first_screens_wanted(choice) or first_screens_ready(loaded, train, dev):
        return True
    return in_background(
        f"first screens {choice.model_key} {choice.data_key}",
        f"Computing what the first screens of {choice.model} show (once)",
        lambda progress, cancel, stage: prepare_first_screens(loaded, train, dev, progress=progress, cancel=cancel,
                                                              stage=stage),
        "Preparing the first screens") is not None


def model_or_error(choice: Choice) -> LoadedModel | None:
    """The model, or None after showing why it could not be loaded."""
    try:
        allowed_model(choice.model)  # before anything looks at the path
        if not build_demo_with_progress(choice):
            return None
        return cached_model(choice.model, choice.dtype, choice.family.name)
    except FwsvdError as exc:
        st.error(str(exc))
        return None


def allowed_data_dir(choice: Choice) -> str | None:
    """The GLUE folder of the choice, when one is named and (served to others) allowed; else None."""
    if not choice.data_dir:
        return None
    try:
        return str(readable(choice.data_dir))
    except FwsvdError:
        return None


def glue_split(task: str, folder: str, split: str, skip_bad_rows: bool) -> TaskData:
    """One split of a local GLUE folder, read again when its file changed (size or modification time)."""
    spec = get_task(task).glue_file
    stamp = files_stamp(Path(folder) / spec.folder / spec.split_files[split]) if split in spec.split_files else ()
    return _glue(task, folder, split, skip_bad_rows, stamp)


@st.cache_data(max_entries=16, show_spinner=False)
def _glue(task: str, folder: str, split: str, skip_bad_rows: bool, stamp: Stamp) -> TaskData:
    return load_glue_folder(get_task(task), folder, split, skip_bad_rows)


@st.cache_data(max_entries=16, show_spinner=False)
def _hub(task: str, split: str, skip_bad_rows: bool) -> TaskData:
    return load_hub(get_task(task), split, skip_bad_rows)


@st.cache_data(max_entries=16, show_spinner=False)
def _family_split(task: str, source: str, folder: str | None, split: str, skip_bad_rows: bool, stamp: Stamp) -> TaskData:
    return load_task_data(get_task(task), split, source, folder, skip_bad_rows)


def upload_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def save_upload(name: str, data: bytes) -> str:
    """Keep an uploaded file in this browser session's memory (never on a shared disk); returns its digest."""
    digest = upload_digest(data)
    st.session_state.setdefault("uploads", {})[digest] = (name, data)
    return digest


def uploaded(digest: str) -> tuple[str, bytes] | None:
    """The name and bytes of a file this browser session uploaded."""
    return st.session_state.get("uploads", {}).get(digest)


def load_split(choice: Choice, split: str) -> TaskData:
    """One split of the chosen task from the chosen source (an uploaded file is cut into train/dev by
    `uploaded_split`)."""
    task = get_task(choice.task)
    if choice.data_source == "Local GLUE folder":
        if not choice.data_dir:
            raise DataError(f"Name a local {choice.family.local_data} (or set FWSVD_DATA_DIR), or choose another data "
                            "source.")
        folder = str(readable(choice.data_dir))
        if task.glue_file is not None:
            return glue_split(choice.task, folder, split, choice.skip_bad_rows)
        return _family_split(choice.task, "local", folder, split, choice.skip_bad_rows, files_stamp(folder))
    if task.glue_file is not None and choice.data_source == "Hugging Face hub":
        return _hub(choice.task, split, choice.skip_bad_rows)
    if task.glue_file is not None and choice.data_source == "Synthetic (generated)":
        return synthetic_task_data(choice.task, split, 2000 if split == "train" else 500)
    if choice.data_source in LOADER_SOURCES:
        return _family_split(choice.task, LOADER_SOURCES[choice.data_source], None, split, choice.skip_bad_rows, ())
    train, dev, _ = uploaded_split(choice)
    return train if split == "train" else dev


def uploaded_split(choice: Choice) -> tuple[TaskData, TaskData, str]:
    """The uploaded file's train and dev parts and how it was split (a seeded shuffle, stratified by label),
    kept in this browser session for its choice."""
    kept = st.session_state.get("upload split")
    if kept is not None and kept[0] == choice.data_key:
        return kept[1]
    upload = uploaded(choice.upload_digest)
    if upload is None:
        raise DataError("Upload a CSV, TSV or JSON file first.")
    name, content = upload
    task = get_task(choice.task)
    read_upload = choice.family.read_upload
    data = (read_upload(task, name, content, choice.skip_bad_rows) if read_upload is not None else
            load_file(task, content, choice.text_columns, choice.label_column, "file", name=name,
                      skip_bad_rows=choice.skip_bad_rows))
    parts = train_dev_split(data)
    st.session_state["upload split"] = (choice.data_key, parts)
    return parts


def window_length(choice: Choice, loaded: LoadedModel) -> int:
    """The tokens per window of the choice, no more than the model reads."""
    return min(choice.seq_len, positions(loaded.model))


def prepared_split(choice: Choice, loaded: LoadedModel, split: str) -> TaskData:
    """One split as the model sees it, by its family's `prepare` (a language model's text cut into windows of
    `window_length` tokens; the other families' examples as loaded)."""
    data = load_split(choice, split)
    return _prepared(choice.model_key, loaded.fingerprint, choice.data_key, split, len(data), data.source,
                     window_length(choice, loaded), loaded.tokenizer, data)


@st.cache_resource(max_entries=8, show_spinner=False)
def _prepared(model_key: tuple, fingerprint: str, data_key: tuple, split: str, size: int, source: str, length: int,
              _tokenizer, _data: TaskData) -> TaskData:
    return family_of(_data.task).prepare(_tokenizer, _data, length)


def data_or_error(choice: Choice, split: str, loaded: LoadedModel | None = None) -> TaskData | None:
    """One split (prepared for `loaded` when given: `prepared_split`), or None after showing why not."""
    try:
        return load_split(choice, split) if loaded is None else prepared_split(choice, loaded, split)
    except FwsvdError as exc:
        st.error(str(exc))
        return None


@st.cache_resource(max_entries=4, show_spinner=False)
def _session(model_key: tuple[str, str], fisher_key: str | None, _loaded: LoadedModel,
             _fisher: FisherResult | None) -> CompressionSession:
    session = CompressionSession(_loaded)
    if _fisher is not None:
        session.set_fisher(_fisher)
    return session


def compression_session(choice: Choice, loaded: LoadedModel, fisher: FisherResult | None) -> CompressionSession:
    """The shared session (layers, Fisher, cached factors) for this model and Fisher."""
    return _session(choice.model_key, None if fisher is None else fisher.key, loaded, fisher)


def fisher_with_progress(choice: Choice, loaded: LoadedModel, train: TaskData) -> FisherResult | None:
    """The Fisher of the choice: from the disk cache, or estimated in the background with progress and cancel."""
    key = repr(("fisher", choice.model_key, loaded.fingerprint, train.content_digest(), choice.fisher_samples,
                choice.estimator, choice.allow_degenerate_fisher))
    try:
        return in_background(
            key, f"Estimating the Fisher on {choice.fisher_samples} training examples",
            lambda progress, cancel, stage: estimate_fisher(
                loaded.model, loaded.tokenizer, train, choice.fisher_samples, choice.estimator,
                fingerprint=loaded.fingerprint, allow_degenerate=choice.allow_degenerate_fisher, progress=progress,
                cancel=cancel),
            "Estimating the Fisher", slot="fisher")
    except FisherError as exc:
        st.error(str(exc))
        st.button("Use this Fisher anyway", key="allow_degenerate_fisher", on_click=set_choice,
                  kwargs={"allow_degenerate_fisher": True})
    except FwsvdError as exc:
        st.error(str(exc))
    return None


def dense_score(choice: Choice, loaded: LoadedModel, dev: TaskData) -> EvalResult | None:
    """The dense model's score: stored on disk, else computed in the background; None while it runs."""
    subsample = choice.eval_subsample or None
    return in_background(
        repr(("dense", choice.model_key, loaded.fingerprint, dev.content_digest(), subsample)),
        f"Scoring the dense model on {subsample or len(dev)} {dev.split} examples",
        lambda progress, cancel, stage: dense_evaluation(loaded, dev, subsample, progress=progress, cancel=cancel),
        "Scoring the dense model", slot="dense")


@dataclass
class Ready:
    """What a page needs once the choice is loaded."""

    choice: Choice
    loaded: LoadedModel
    train: TaskData
    dev: TaskData
    fisher: FisherResult
    session: CompressionSession


def ready() -> Ready | None:
    """Model, data and Fisher for the current choice, or None after saying what is missing."""
    choice = get_choice()
    loaded = model_or_error(choice)
    if loaded is None:
        return None
    train, dev = data_or_error(choice, "train", loaded), data_or_error(choice, "dev", loaded)
    if train is None or dev is None or not first_screens_with_progress(choice, loaded, train, dev):
        return None
    fisher = fisher_with_progress(choice, loaded, train)
    if fisher is None:
        return None
    return Ready(choice, loaded, train, dev, fisher, compression_session(choice, loaded, fisher))


def demo_names() -> list[str]:
    return list(DEMOS)


def inputs_work(state: Ready, methods) -> StagedWork:
    """What the methods need besides the Fisher, calibration activations (ASVD, SVD-LLM) and Kronecker factors of
    the Fisher (kfac, gfwsvd), then their factors of every layer, as one background job's work."""
    session, loaded, choice = state.session, state.loaded, state.choice
    methods = [m for m in dict.fromkeys(methods) if get_method(m).factorize is not None]

    def work(progress, cancel, stage):
        needs = set().union(*(get_method(m).needs for m in methods)) if methods else set()
        if ACTIVATIONS in needs and session.activations is None:
            stage("input activations of every layer on the training split")
            session.set_activations(estimate_activation_stats(
                loaded.model, loaded.tokenizer, state.train, choice.fisher_samples, fingerprint=loaded.fingerprint,
                progress=progress, cancel=cancel))
        if KRONECKER in needs and session.kronecker is None:
            stage("Kronecker factors of every layer's Fisher (K-FAC, then power iterations)")
            session.set_kronecker(estimate_kronecker(
                loaded.model, loaded.tokenizer, state.train, choice.fisher_samples, fingerprint=loaded.fingerprint,
                progress=progress, cancel=cancel))
        for method in methods:
            if method not in session.computed_methods():
                stage(f"the {method} factors of every layer")
                session.factors(method, progress=progress)
        return True
    return work


def prepare_methods(state: Ready, methods, stop: bool = True) -> bool:
    """What the methods need, and their factors, computed in the background (`inputs_work`). False while that runs
    (with `stop`, the page stops at its progress) or after it failed (the error is shown)."""
    missing = [m for m in dict.fromkeys(methods)
               if get_method(m).factorize is not None and m not in state.session.computed_methods()]
    if not missing:
        return True
    try:
        return bool(in_background(f"factors {state.choice.model_key} {state.fisher.key} {missing}",
                                  f"Factorizing every layer ({', '.join(missing)})", inputs_work(state, missing),
                                  "Factorizing", stop, remember=False))
    except FwsvdError as exc:
        st.error(str(exc))
        return False


def sweep_key(choice: Choice, methods, ratios, scored: int) -> tuple:
    """What names a mismatch sweep in `st.session_state["sweeps"]` (the rank editor's frontier reads them too)."""
    return choice, tuple(methods), tuple(sorted(ratios)), scored


def default_scored(dev: TaskData, wanted: int) -> int:
    """The number of examples a page scores by default: `wanted`, or the whole split when it is smaller."""
    return min(len(dev), wanted)


def sweeps_with_stored(state: Ready, methods=DEFAULTS.sweep_methods, ratios=DEFAULTS.sweep_ratios,
                       scored: int | None = None) -> dict:
    """This browser session's sweeps, with the stored one for these settings added when there is one (the demo
    build stores the default sweep)."""
    sweeps = st.session_state.setdefault("sweeps", {})
    scored = default_scored(state.dev, DEFAULTS.sweep_scored) if scored is None else scored
    key = sweep_key(state.choice, methods, ratios, scored)
    if key not in sweeps and methods and ratios:
        stored = stored_sweep(state.session, state.dev, methods, ratios, scored or None)
        if stored is not None:
            sweeps[key] = stored
    return sweeps


def requested(name: str, key) -> bool:
    """Whether this browser session asked for `key` by a button (the request outlives the rerun that made it)."""
    return key in st.session_state.get(f"requests {name}", set())


def request(name: str, key) -> None:
    st.session_state.setdefault(f"requests {name}", set()).add(key)


def requested_result(name: str, key, label: str, work: StagedWork, what: str):
    """The result of a computation this session asked for by a button, run in the background with its progress in
    place (the page goes on); None while it runs. A failure is shown and ends the request (no retry on each rerun)."""
    try:
        return in_background(f"{name} {key!r}", label, work, what, stop=False)
    except FwsvdError as exc:
        st.error(str(exc))
        st.session_state.get(f"requests {name}", set()).discard(key)
        return None
