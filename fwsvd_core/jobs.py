"""Long computations on background threads, found again by a key: whoever asks for the same job shares it.

The dashboard starts the demo build and the Fisher here, so that closing the browser tab stops nothing and a
second tab sees the same job where it is. A job reports progress as (done, total) and stops at its next
progress check once cancelled, like every long function of the library (`progress=`, `cancel=`).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fwsvd_core.errors import Cancelled
from fwsvd_core.inputs.batching import CancelFn, ProgressFn

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


@dataclass
class Job:
    """One computation on its own thread: its progress, and in the end its result or its error."""

    key: str
    label: str
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 0
    stage: str = ""  # the step under way, for a job of several steps
    stage_started: float = field(default_factory=time.monotonic)
    status: str = RUNNING
    result: Any = None
    error: BaseException | None = None
    finished: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def report(self, done: int, total: int) -> None:
        """The progress callback handed to the computation."""
        self.done, self.total = done, total

    def begin(self, stage: str) -> None:
        """A new step starts: its progress, and the time left, are counted from here."""
        self.stage, self.stage_started, self.done, self.total = stage, time.monotonic(), 0, 0

    def cancel_requested(self) -> bool:
        """The cancel callback handed to the computation."""
        return self._stop.is_set()

    def cancel(self) -> None:
        self._stop.set()

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def remaining(self) -> float | None:
        """Seconds left in the current step at its rate so far; None before its first progress report."""
        if self.status != RUNNING or not self.total or not self.done:
            return None
        return (time.monotonic() - self.stage_started) * (self.total - self.done) / self.done

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (True) or `timeout` passes (False)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status != RUNNING

    def describe(self) -> str:
        """One line for a person: what, how far, how long so far, how long left."""
        share = f"{self.done}/{self.total}, " if self.total else ""
        left = self.remaining
        where = f" ({self.stage})" if self.stage else ""
        return (f"{self.label}{where}: {share}{self.elapsed:.0f} s elapsed"
                + (f", about {left:.0f} s left{' in this step' if self.stage else ''}" if left is not None else ""))


Work = Callable[[ProgressFn, CancelFn], Any]
StagedWork = Callable[[ProgressFn, CancelFn, Callable[[str], None]], Any]


class Jobs:
    """The jobs of one process, by key. A finished job stays (its result is what the asker wants) until forgotten."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, key: str, label: str, work: Work) -> Job:
        """The job under `key`: the one there already, however it ended (`forget` it to start again), else `work`
        started on a new thread."""
        return self.submit_staged(key, label, lambda progress, cancel, stage: work(progress, cancel))

    def submit_staged(self, key: str, label: str, work: StagedWork) -> Job:
        """`submit` for a job of several steps: `work` also gets a callback that names the step starting."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                return job
            job = Job(key, label)
            job._thread = threading.Thread(target=self._run, args=(job, work), name=f"job {label}", daemon=True)
            self._jobs[key] = job
            job._thread.start()
            return job

    @staticmethod
    def _run(job: Job, work: StagedWork) -> None:
        try:
            job.result = work(job.report, job.cancel_requested, job.begin)
            job.status = DONE
        except Cancelled as exc:
            job.error, job.status = exc, CANCELLED
        except BaseException as exc:  # kept for the page to show: a thread must not die silently
            job.error, job.status = exc, FAILED
        finally:
            job.finished = time.monotonic()

    def get(self, key: str) -> Job | None:
        return self._jobs.get(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._jobs.pop(key, None)

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.status == RUNNING]
