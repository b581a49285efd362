"""Background jobs: shared by key, independent of whoever started them, cancellable, failures kept."""
import threading

import pytest

from fwsvd_core.errors import FwsvdError
from fwsvd_core.inputs.batching import check_cancel
from fwsvd_core.jobs import CANCELLED, DONE, FAILED, RUNNING, Jobs


def stepping(steps: int, gate: threading.Event, calls: list):
    """Work that reports each step and waits at the gate before finishing."""
    def work(progress, cancel):
        calls.append(1)
        for i in range(steps):
            check_cancel(cancel)
            progress(i + 1, steps)
            gate.wait(0.01)
        while not gate.wait(0.01):
            check_cancel(cancel)
        return "built"
    return work


def test_the_same_key_is_one_shared_job_with_progress_and_result():
    jobs, gate, calls = Jobs(), threading.Event(), []
    first = jobs.submit("demo:sst2", "building the demo", stepping(5, gate, calls))
    again = jobs.submit("demo:sst2", "building the demo", stepping(5, gate, calls))  # a second tab
    assert again is first and first.status == RUNNING
    while first.done < 5:
        first.wait(0.01)
    assert (first.done, first.total) == (5, 5) and "5/5" in first.describe() and "elapsed" in first.describe()
    gate.set()
    assert first.wait(5) and first.status == DONE and first.result == "built"
    assert jobs.submit("demo:sst2", "building the demo", stepping(5, gate, calls)) is first  # done: kept, not redone
    assert len(calls) == 1
    jobs.forget("demo:sst2")
    assert jobs.get("demo:sst2") is None


def test_a_cancelled_job_stops_at_its_next_check_and_stays_cancelled_until_forgotten():
    jobs, gate, calls = Jobs(), threading.Event(), []
    job = jobs.submit("fisher", "Fisher", stepping(3, gate, calls))
    job.cancel()
    assert job.wait(5) and job.status == CANCELLED and job.result is None
    assert job.remaining is None
    assert jobs.submit("fisher", "Fisher", stepping(3, gate, calls)) is job  # a cancel stays until the user restarts
    jobs.forget("fisher")
    again = jobs.submit("fisher", "Fisher", stepping(3, gate, calls))
    assert again is not job
    gate.set()
    assert again.wait(5) and again.status == DONE and len(calls) == 2


def test_a_failure_is_kept_for_the_page_to_show():
    def broken(progress, cancel):
        raise FwsvdError("no data")

    job = Jobs().submit("x", "x", broken)
    assert job.wait(5) and job.status == FAILED and str(job.error) == "no data"


def test_time_left_follows_the_rate_since_the_first_report_and_waits_until_it_means_something():
    """Issue 23, 18: the start-up before the first item does not count, and one item tells nothing."""
    jobs, gate, calls = Jobs(), threading.Event(), []
    job = jobs.submit("k", "k", stepping(1, gate, calls))
    job.stage_started -= 500.0  # a long start-up (loading, tokenising) before the first item
    job.report(1, 100)
    assert job.remaining is None and "left" not in job.describe()  # one item: no estimate
    job.rate_origin = (job.rate_origin[0] - 20.0, 1)  # twenty seconds later, 11 items done: 2 s per item
    job.report(11, 100)
    assert job.remaining == pytest.approx(2.0 * 89, rel=0.05)  # not 500 s of start-up spread over the items
    assert "about 178 s left" in job.describe()
    gate.set()
    job.wait(5)


def test_a_job_of_several_steps_names_the_step_and_counts_time_left_from_its_start():
    jobs, gate, seen = Jobs(), threading.Event(), []

    def work(progress, cancel, stage):
        stage("fine-tuning")
        progress(5, 5)
        stage("the sweep")
        seen.append(1)
        while not gate.wait(0.01):
            check_cancel(cancel)
        return "ready"

    job = jobs.submit_staged("k", "Building", work)
    while not seen:
        gate.wait(0.01)
    assert job.stage == "the sweep" and (job.done, job.total) == (0, 0)  # the new step starts at zero
    job.started -= 100.0
    job.report(1, 10)
    job.rate_origin = (job.rate_origin[0] - 10.0, 1)  # ten seconds after the step's first item, half of it done
    job.report(5, 10)
    assert job.remaining == pytest.approx(12.5, rel=0.05)  # from the step's rate, not the whole job's
    text = job.describe()
    assert text.startswith("Building (the sweep): 5/10") and "s left in this step" in text
    # under a box titled with the label, the line does not repeat it (issue 23, 18)
    assert job.describe(titled=False).startswith("The sweep: 5/10") and "Building" not in job.describe(titled=False)
    gate.set()
    assert job.wait(5) and job.status == DONE and job.result == "ready"


def test_a_shared_job_runs_on_when_one_asker_lets_go_and_stops_when_the_last_does():
    jobs, gate, calls = Jobs(), threading.Event(), []
    job = jobs.submit("fisher", "Fisher", stepping(3, gate, calls), owner="alice")
    assert jobs.submit("fisher", "Fisher", stepping(3, gate, calls), owner="bob") is job
    assert job.needed_by == {"alice", "bob"}
    assert jobs.release("fisher", "bob") is False  # alice still waits for it: bob's cancel stops nothing of hers
    assert not job.wait(0.1) and job.status == RUNNING and jobs.get("fisher") is job
    assert jobs.release("fisher", "alice") is True  # the last one: cancelled, and the registry lets go of it
    assert job.wait(5) and job.status == CANCELLED and jobs.get("fisher") is None
    assert len(calls) == 1


def test_askers_who_are_gone_do_not_keep_a_job_alive():
    jobs, gate, calls = Jobs(), threading.Event(), []
    job = jobs.submit("k", "k", stepping(1, gate, calls), owner="alice")
    jobs.submit("k", "k", stepping(1, gate, calls), owner="closed tab")
    assert jobs.release("k", "alice", present=lambda owner: owner != "closed tab") is True
    assert job.wait(5) and job.status == CANCELLED


def test_a_job_nobody_asked_for_by_name_is_cancelled_by_whoever_lets_go():
    jobs, gate, calls = Jobs(), threading.Event(), []
    job = jobs.submit("k", "k", stepping(1, gate, calls))
    assert jobs.release("k", "anyone") is True and job.wait(5) and job.status == CANCELLED
    assert jobs.release("k", "anyone") is False  # gone already


def test_a_finished_job_released_by_everyone_is_freed_and_unclaimed_results_do_not_pile_up():
    jobs = Jobs(max_finished=3)
    done = jobs.submit("a", "a", lambda progress, cancel: "result", owner="alice")
    assert done.wait(5) and done.status == DONE
    assert jobs.release("a", "alice") is True and jobs.get("a") is None and done.status == DONE
    for i in range(10):  # results nobody came back for (the asker moved the slider on, or closed the tab)
        assert jobs.submit(f"k{i}", "k", lambda progress, cancel: bytearray(10), owner="gone").wait(5)
    assert len([j for j in (jobs.get(f"k{i}") for i in range(10)) if j is not None]) <= 3
    assert jobs.get("k9") is not None  # the newest stays
