"""Where the cache lives."""
from pathlib import Path

from fwsvd_core.cache import cache_root


def test_the_cache_follows_the_setting_else_the_platform_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("FWSVD_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("FWSVD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "fwsvd_studio"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == Path(tmp_path / "home" / ".cache" / "fwsvd_studio")


# One computation at a time per cache entry: a second process waits for the first one's result and reads it.

def _fisher_in_a_process(model_dir: str, glue_dir: str, cache_dir: str, barrier, results) -> None:
    """Compute the Fisher of a tiny model once the other process is ready too; report (from_cache, the tensors)."""
    import os

    os.environ["FWSVD_CACHE_DIR"] = cache_dir
    os.environ["HF_HUB_OFFLINE"] = "1"
    from fwsvd_core.estimation.fisher import estimate_fisher
    from fwsvd_core.inputs.data import load_glue_folder
    from fwsvd_core.inputs.tasks import get_task
    from fwsvd_core.loading import load_model

    loaded = load_model(model_dir, device="cpu")
    train = load_glue_folder(get_task("sst2"), glue_dir, "train").sample(200, seed=1)
    barrier.wait(timeout=300)  # both ask at the same moment: without a lock both would compute
    fisher = estimate_fisher(loaded.model, loaded.tokenizer, train, n_examples=48, fingerprint=loaded.fingerprint)
    results.put((fisher.from_cache, {k: v.numpy().copy() for k, v in fisher.per_layer.items()}))  # not shared memory


def test_two_processes_asking_for_the_same_fisher_compute_it_once(tiny_models, glue_dir, tmp_path):
    import multiprocessing

    import numpy as np

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_fisher_in_a_process,
                               args=(str(tiny_models["bert"]), str(glue_dir), str(tmp_path / "cache"), barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(from_cache for from_cache, _ in got) == [False, True]  # exactly one computed it
    (_, first), (_, second) = got
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[name], second[name]) for name in first)


def test_a_second_thread_waits_for_the_entry_the_first_one_computes(tmp_path, caplog):
    import threading
    import time

    from fwsvd_core.cache import computing

    entry, order, started = tmp_path / "fisher" / "entry.safetensors", [], threading.Event()

    def first() -> None:
        with computing(entry):
            started.set()
            time.sleep(0.5)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    started.wait(5)
    with caplog.at_level("INFO", logger="fwsvd_core"), computing(entry):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    assert "waiting for another process that is computing the same fisher entry" in caplog.text


def test_a_cancelled_wait_stops_and_a_long_one_computes_after_its_timeout(tmp_path, caplog):
    import threading

    import pytest

    from fwsvd_core.cache import computing
    from fwsvd_core.errors import Cancelled

    entry, held, done = tmp_path / "entry.json", threading.Event(), threading.Event()

    def holder() -> None:
        with computing(entry):
            held.set()
            done.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        with pytest.raises(Cancelled), computing(entry, cancel=lambda: True):
            pass
        with caplog.at_level("WARNING", logger="fwsvd_core"), computing(entry, timeout=0.3):
            ran_anyway = True
    finally:
        done.set()
        thread.join()
    assert ran_anyway and "computing the entry here as well" in caplog.text


def test_the_lock_of_a_killed_process_is_released_with_it(tmp_path):
    import subprocess
    import sys
    import time

    from fwsvd_core.cache import computing

    entry = tmp_path / "entry.json"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from fwsvd_core.cache import computing\n"
                               f"with computing(Path({str(entry)!r})):\n print('held', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    finally:
        holder.kill()
        holder.wait()
    start = time.monotonic()
    with computing(entry, timeout=30):
        waited = time.monotonic() - start
    assert waited < 5
