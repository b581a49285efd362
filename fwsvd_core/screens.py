"""What the dashboard's first screens show, kept on disk so that a later visit, or another tab, shows it at once.

A demo build computes all of it for the default settings (`prepare_first_screens`): a first visit after the build
waits for nothing. For other models and settings the pages compute the same things through the same functions,
which store them the same way. Files are keyed by the model's fingerprint, the data's content and the settings,
written atomically, and carry SCREENS_VERSION in their key: a new version computes them anew.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd

from fwsvd_core.analysis.ablation import group_ablation
from fwsvd_core.analysis.predictor import svd_failure_scores
from fwsvd_core.analysis.sweep import run_sweep
from fwsvd_core.cache import cache_key, cache_root, computing, store_bytes
from fwsvd_core.compression.methods import FISHER, get_method, method_names
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.demo import load_demo
from fwsvd_core.estimation.evaluation import EvalResult, evaluate
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.inputs.batching import CancelFn, ProgressFn, check_cancel
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.models import LoadedModel

SCREENS_VERSION = 2  # 2: an ablation's drops are the score lost in the metric's direction (a rise of perplexity)
StageFn = Callable[[str], None]
log = logging.getLogger("fwsvd_core")


@dataclass(frozen=True)
class ScreenDefaults:
    """The settings the pages open with; the demo build computes what they show for exactly these."""

    fisher_samples: int = 256
    estimator: str = "per-sample"
    sweep_methods: tuple[str, ...] = ("svd", "fwsvd-input", "fwsvd-output")
    sweep_ratios: tuple[float, ...] = (0.5, 0.33, 0.25, 0.15)
    sweep_scored: int = 400
    ablation_method: str = "svd"
    ablation_scored: int = 300
    editor_method: str = "fwsvd-output"
    predict_ratio: float = 0.1

    @property
    def factor_methods(self) -> tuple[str, ...]:
        """Every decomposition a first screen reads: the sweep's, the spectra's (SVD and the Fisher-weighted ones),
        the ablation's and the rank editor's."""
        spectra = ("svd", *method_names(needs=FISHER, per_rank=False))
        wanted = (*self.sweep_methods, *spectra, self.ablation_method, self.editor_method)
        return tuple(m for m in dict.fromkeys(wanted) if get_method(m).factorize is not None)


DEFAULTS = ScreenDefaults()


def _path(kind: str, **parts) -> Path:
    return cache_root() / "screens" / f"{cache_key(kind=kind, version=SCREENS_VERSION, **parts)}.json"


def _read(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # a damaged file is computed again, never trusted
        log.warning("ignoring the unreadable stored result %s (%s)", path, exc)
        return None


def _store(path: Path, payload: Any) -> None:
    store_bytes(path, json.dumps(payload, default=float).encode())  # a cache: a failed write only costs a recompute


def _frame_at(path: Path | None) -> pd.DataFrame | None:
    """The table stored at `path`; None when there is none (or no path: nothing can be stored for these inputs)."""
    hit = None if path is None else _read(path)
    return None if hit is None else pd.read_json(StringIO(hit), orient="split")


def _kept_frame(path: Path | None, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The table stored at `path`, else `compute`'s, stored there (another process computing it: its table, awaited)."""
    with computing(path):
        if (hit := _frame_at(path)) is not None:
            return hit
        table = compute()
        if path is not None:
            _store(path, table.to_json(orient="split"))
        return table


def _scored(dev: TaskData, subsample: int | None) -> int | None:
    """The subsample as evaluated: None when it covers the whole split (then it is the same evaluation)."""
    return None if not subsample or subsample >= len(dev) else subsample


def _dense_path(loaded: LoadedModel, dev: TaskData, subsample: int | None) -> Path:
    return _path("dense", model=loaded.fingerprint, data=dev.content_digest(), subsample=_scored(dev, subsample))


def _dense_at(path: Path) -> EvalResult | None:
    hit = _read(path)
    if hit is None:
        return None
    interval = hit.pop("interval")
    return EvalResult(**hit, interval=None if interval is None else tuple(interval))


def stored_dense(loaded: LoadedModel, dev: TaskData, subsample: int | None = None) -> EvalResult | None:
    """The dense model's score on `dev`, when it was computed before; None otherwise."""
    return _dense_at(_dense_path(loaded, dev, subsample))


def dense_evaluation(loaded: LoadedModel, dev: TaskData, subsample: int | None = None,
                     progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> EvalResult:
    """The dense model's score on `dev` (a seeded subsample of it), stored on disk."""
    path = _dense_path(loaded, dev, subsample)
    with computing(path, cancel=cancel):  # another process scoring the same: its score, awaited
        if (hit := _dense_at(path)) is not None:
            return hit
        result = evaluate(loaded.model, loaded.tokenizer, dev, subsample=subsample, progress=progress, cancel=cancel)
        _store(path, asdict(result))
        return result


def _sweep_path(session: CompressionSession, dev: TaskData, methods: Sequence[str], ratios: Sequence[float],
                subsample: int | None) -> Path | None:
    sources = [session.source_key(m) for m in methods]
    if None in sources:  # a method whose inputs are not collected yet: nothing can be stored for it
        return None
    return _path("sweep", model=session.loaded.fingerprint, methods=list(methods), sources=sources,
                 ratios=sorted(ratios, reverse=True), data=dev.content_digest(), subsample=_scored(dev, subsample))


def stored_sweep(session: CompressionSession, dev: TaskData, methods: Sequence[str], ratios: Sequence[float],
                 subsample: int | None = None) -> pd.DataFrame | None:
    """The mismatch sweep's table for these settings, when it was computed before; None otherwise."""
    return _frame_at(_sweep_path(session, dev, methods, ratios, subsample))


def sweep_table(session: CompressionSession, dev: TaskData, methods: Sequence[str], ratios: Sequence[float],
                subsample: int | None = None, progress: ProgressFn | None = None,
                cancel: CancelFn | None = None) -> pd.DataFrame:
    """`run_sweep` at uniform rank ratios, stored on disk; `progress` counts the evaluations."""
    total, done = 1 + len(methods) * len(ratios), []

    def counted(text: str) -> None:
        done.append(text)
        if progress is not None:
            progress(min(len(done), total), total)

    return _kept_frame(_sweep_path(session, dev, methods, ratios, subsample), lambda: run_sweep(
        session, dev, list(methods), rank_ratios=sorted(ratios, reverse=True), subsample=subsample, report=counted,
        cancel=cancel))


def _ablation_path(session: CompressionSession, dev: TaskData, method: str, subsample: int | None) -> Path | None:
    source = session.source_key(method)
    if source is None:
        return None
    return _path("ablation", model=session.loaded.fingerprint, method=method, source=source,
                 data=dev.content_digest(), subsample=_scored(dev, subsample))


def stored_ablation(session: CompressionSession, dev: TaskData, method: str,
                    subsample: int | None = None) -> pd.DataFrame | None:
    """The singular-value group ablation for these settings, when it was computed before; None otherwise."""
    return _frame_at(_ablation_path(session, dev, method, subsample))


def ablation_table(session: CompressionSession, dev: TaskData, method: str, subsample: int | None = None,
                   progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> pd.DataFrame:
    """`group_ablation`, stored on disk."""
    return _kept_frame(_ablation_path(session, dev, method, subsample), lambda: group_ablation(
        session, dev, method, subsample=subsample, progress=progress, cancel=cancel))


def predicted_failures(session: CompressionSession, rank_ratio: float) -> pd.DataFrame:
    """`svd_failure_scores` from the stored statistics alone (the diagonal form, and the Kronecker forms when the
    session has its factors), stored on disk."""
    sources = [session.source_key(m) for m in ("svd", "fwsvd-input")]
    kronecker = None if session.kronecker is None else session.kronecker.key
    path = None if None in sources or kronecker == "" else _path(
        "predicted failures", model=session.loaded.fingerprint, sources=sources, kronecker=kronecker,
        rank_ratio=rank_ratio)
    return _kept_frame(path, lambda: svd_failure_scores(session, rank_ratio))


def _ready_path(loaded: LoadedModel, train: TaskData, dev: TaskData, defaults: ScreenDefaults) -> Path:
    return _path("first screens", model=loaded.fingerprint, train=train.content_digest(), dev=dev.content_digest(),
                 defaults=asdict(defaults))


def first_screens_ready(loaded: LoadedModel, train: TaskData, dev: TaskData,
                        defaults: ScreenDefaults = DEFAULTS) -> bool:
    """Whether `prepare_first_screens` finished for this model, data and defaults."""
    return _read(_ready_path(loaded, train, dev, defaults)) is not None


def prepare_first_screens(loaded: LoadedModel, train: TaskData, dev: TaskData, defaults: ScreenDefaults = DEFAULTS,
                          progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                          stage: StageFn | None = None) -> CompressionSession:
    """Compute and store everything the pages show first at `defaults`: the Fisher, the factors of the default
    methods, the dense score, the mismatch sweep, the singular-value ablation and the predicted SVD failures.
    `stage` hears each step's name, `progress` its progress. Returns the session they were computed in."""
    say = stage or (lambda text: None)
    say(f"the Fisher on {defaults.fisher_samples} training examples")
    fisher = estimate_fisher(loaded.model, loaded.tokenizer, train, defaults.fisher_samples, defaults.estimator,
                             fingerprint=loaded.fingerprint, progress=progress, cancel=cancel)
    session = CompressionSession(loaded)
    session.set_fisher(fisher)
    for method in defaults.factor_methods:
        say(f"the {method} factors of every layer")
        check_cancel(cancel)
        session.factors(method, progress=progress)
    say("the dense score")
    dense_evaluation(loaded, dev, progress=progress, cancel=cancel)
    say("the mismatch sweep")
    sweep_table(session, dev, defaults.sweep_methods, defaults.sweep_ratios, defaults.sweep_scored or None,
                progress=progress, cancel=cancel)
    say("the singular-value ablation")
    ablation_table(session, dev, defaults.ablation_method, defaults.ablation_scored or None, progress=progress,
                   cancel=cancel)
    say("the predicted SVD failures")
    predicted_failures(session, defaults.predict_ratio)
    check_cancel(cancel)
    _store(_ready_path(loaded, train, dev, defaults), {"fisher": fisher.key, "version": SCREENS_VERSION})
    return session


def build_demo_and_screens(name: str, train: TaskData | None, dev: TaskData | None, data_dir: str | Path | None = None,
                           dtype: str = "auto", progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                           stage: StageFn | None = None) -> None:
    """Build the demo when no build is at hand, then compute its first screens on `train` and `dev` (the data the
    dashboard opens with), unless one of them is missing."""
    say = stage or (lambda text: None)
    say("fine-tuning MiniLM-L6 (once)")
    loaded = load_demo(name, data_dir=data_dir, progress=progress, cancel=cancel, dtype=None if dtype == "auto" else dtype)
    if train is not None and dev is not None:
        prepare_first_screens(loaded, train, dev, progress=progress, cancel=cancel, stage=stage)
