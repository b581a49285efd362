"""Long computations on background threads, found again by a key: whoever asks for the same job shares it.

The dashboard starts the demo build and the Fisher here, so that closing the browser tab stops nothing and a
second tab sees the same job where it is. A job reports progress as (done, total) and stops at its next
progress check once cancelled, like every long function of the library (`progress=`, `cancel=`).

A job remembers who asked for it (`needed_by`: the dashboard's browser sessions). One of them letting go
(`release`) cancels it only when no one else still needs it: a visitor cannot stop another's computation, and a
job nobody waits for any more is stopped and its result freed.
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
MIN_ITEMS_FOR_ESTIMATE = 2  # items done since a step's first report before its time left is told
MIN_SECONDS_FOR_ESTIMATE = 3.0  # and seconds measured


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
    # (time, items done) at the step's first progress report: the rate is counted from there, leaving out the
    # step's start-up (loading, tokenising, the first batch's warm-up), which made early estimates hours too long
    rate_origin: tuple[float, int] | None = None
    status: str = RUNNING
    result: Any = None
    error: BaseException | None = None
    finished: float | None = None
    needed_by: set[str] = field(default_factory=set)  # who asked for it and still waits for it
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def report(self, done: int, total: int) -> None:
        """The progress callback handed to the computation."""
        if self.rate_origin is None and done > 0:
            self.rate_origin = (time.monotonic(), done)
        self.done, self.total = done, total

    def begin(self, stage: str) -> None:
        """A new step starts: its progress, and the time left, are counted from here."""
        self.stage, self.stage_started, self.done, self.total = stage, time.monotonic(), 0, 0
        self.rate_origin = None

    def cancel_requested(self) -> bool:
        """The cancel callback handed to the computation."""
        return self._stop.is_set()

    def cancel(self) -> None:
        """Stop at the next progress check, whoever else needs it (`Jobs.release` cancels only for the last one)."""
        self._stop.set()

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def remaining(self) -> float | None:
        """Seconds left in the current step at its rate since its first progress report; None until that rate
        rests on at least MIN_ITEMS_FOR_ESTIMATE items and MIN_SECONDS_FOR_ESTIMATE seconds (an estimate before
        then is mostly start-up, and misleads)."""
        if self.status != RUNNING or not self.total or self.rate_origin is None:
            return None
        since, first = self.rate_origin
        items, seconds = self.done - first, time.monotonic() - since
        if items < MIN_ITEMS_FOR_ESTIMATE or seconds < MIN_SECONDS_FOR_ESTIMATE:
            return None
        return seconds / items * (self.total - self.done)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (True) or `timeout` passes (False)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status != RUNNING

    def describe(self, titled: bool = True) -> str:
        """One line for a person: what (the label, unless `titled` is False because a title shows it already),
        the step, how far, how long so far, how long left once that can be told."""
        share = f"{self.done}/{self.total}, " if self.total else ""
        left = self.remaining
        where = (f" ({self.stage})" if titled else self.stage[:1].upper() + self.stage[1:]) if self.stage else ""
        head = f"{self.label}{where}: " if titled else f"{where}: " if where else ""
        return (f"{head}{share}{self.elapsed:.0f} s elapsed"
                + (f", about {left:.0f} s left{' in this step' if self.stage else ''}" if left is not None else ""))


Work = Callable[[ProgressFn, CancelFn], Any]
StagedWork = Callable[[ProgressFn, CancelFn, Callable[[str], None]], Any]


class Jobs:
    """The jobs of one process, by key. A finished job stays (its result is what the asker wants) until forgotten,
    released by everyone who asked for it, or pushed out by newer finished jobs (`max_finished`)."""

    def __init__(self, max_finished: int = 16) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.max_finished = max_finished

    def submit(self, key: str, label: str, work: Work, owner: str | None = None) -> Job:
        """The job under `key`: the one there already, however it ended (`forget` it to start again), else `work`
        started on a new thread. `owner` (who asks) is added to those who need it."""
        return self.submit_staged(key, label, lambda progress, cancel, stage: work(progress, cancel), owner)

    def submit_staged(self, key: str, label: str, work: StagedWork, owner: str | None = None) -> Job:
        """`submit` for a job of several steps: `work` also gets a callback that names the step starting."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                if owner is not None:
                    job.needed_by.add(owner)
                return job
            self._drop_oldest_finished()
            job = Job(key, label)
            if owner is not None:
                job.needed_by.add(owner)
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

    def release(self, key: str, owner: str, present: Callable[[str], bool] | None = None) -> bool:
        """`owner` no longer needs the job under `key`. When nobody else does (those for whom `present` says False
        are gone and do not count), the job is cancelled if it runs and forgotten: True. False while others need it,
        or when there is no such job."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return False
            job.needed_by.discard(owner)
            job.needed_by = {o for o in job.needed_by if present is None or present(o)}
            if job.needed_by:
                return False
            job.cancel()  # stops at its next progress check; a finished job ignores it
            del self._jobs[key]
            return True

    def _drop_oldest_finished(self) -> None:
        # results nobody picked up (their asker moved on or closed the tab) must not pile up for the server's lifetime
        finished = sorted((j for j in self._jobs.values() if j.status != RUNNING), key=lambda j: j.finished or 0.0)
        for job in finished[: max(0, len(finished) - self.max_finished + 1)]:
            del self._jobs[job.key]

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.status == RUNNING]
