"""Data-parallel statistics: two processes on the gloo backend give the single-process Fisher and activations."""
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from fwsvd_core.cache import cache_root
from fwsvd_core.estimation.activations import collect_activation_stats, estimate_activation_stats
from fwsvd_core.estimation.fisher import compute_fisher, estimate_fisher
from fwsvd_core.inputs.data import load_glue_folder
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model

pytestmark = pytest.mark.slow  # starts two Python processes


def test_two_processes_cache_the_single_process_fisher_and_activations(tiny_models, glue_dir, monkeypatch):
    env = {**os.environ, "FWSVD_CACHE_DIR": str(cache_root()), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "fwsvd_core", "statistics", "--model", str(tiny_models["llama"]), "--task", "sst2",
               "--data-dir", str(glue_dir), "--fisher-samples", "13", "--activations", "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.count("over 2 process(es)") == 1  # one process speaks for the group
    # one cache entry each, written by one process, nothing half-written beside them
    assert [len(list((cache_root() / kind).iterdir())) for kind in ("fisher", "activations")] == [1, 1]

    loaded = load_model(tiny_models["llama"], device="cpu")
    train = load_glue_folder(get_task("sst2"), glue_dir, "train")
    cached = estimate_fisher(loaded.model, loaded.tokenizer, train, n_examples=13)
    assert cached.from_cache and cached.n_examples + cached.n_skipped == 13
    single = compute_fisher(loaded.model, loaded.tokenizer, train.sample(13, 0))
    for name, f in single.per_layer.items():
        torch.testing.assert_close(cached.per_layer[name], f, rtol=1e-5, atol=1e-10)
    alone = collect_activation_stats(loaded.model, loaded.tokenizer, train.sample(13, 0))
    from fwsvd_core.estimation import activations

    monkeypatch.setattr(activations, "collect_activation_stats", lambda *a, **k: pytest.fail("not read from the cache"))
    stats = estimate_activation_stats(loaded.model, loaded.tokenizer, train, n_examples=13)
    assert stats.n_examples == 13 and stats.n_tokens == alone.n_tokens and stats.shared_with == alone.shared_with
    for name in alone.second_moment:
        torch.testing.assert_close(stats.second_moment[name], alone.second_moment[name], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(stats.mean_abs[name], alone.mean_abs[name], rtol=1e-5, atol=1e-7)


def test_two_processes_give_a_language_model_s_single_process_statistics(tiny_lm_dir, glue_dir, monkeypatch):
    """The causal-LM family under torchrun: per-window Fisher, token-wise activations and Kronecker factors (K-FAC and
    a power iteration) each equal to one process's, cached once (issue 25, 5)."""
    from fwsvd_core.estimation.kronecker import compute_kronecker, estimate_kronecker
    from fwsvd_core.inputs.families import get_family, load_task_data

    env = {**os.environ, "FWSVD_CACHE_DIR": str(cache_root()), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "fwsvd_core", "statistics", "--model", str(tiny_lm_dir), "--task", "wikitext2", "--data-source",
               "glue", "--data-dir", str(glue_dir), "--calib-samples", "9", "--seq-len", "16", "--activations",
               "--kronecker", "--kronecker-iterations", "1", "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert [len(list((cache_root() / kind).iterdir())) for kind in ("fisher", "activations", "kronecker")] == [1, 1, 1]

    loaded = load_model(tiny_lm_dir, device="cpu")
    task = get_task("wikitext2")
    train = get_family(task.family).prepare(loaded.tokenizer, load_task_data(task, "train", "glue", glue_dir), 16)
    cached = estimate_fisher(loaded.model, loaded.tokenizer, train, n_examples=9, max_length=16)
    assert cached.from_cache and cached.n_examples == 9
    single = compute_fisher(loaded.model, loaded.tokenizer, train.sample(9, 0), max_length=16)
    for name, f in single.per_layer.items():
        torch.testing.assert_close(cached.per_layer[name], f, rtol=1e-5, atol=1e-12)
    factors = estimate_kronecker(loaded.model, loaded.tokenizer, train, 9, iterations=1, max_length=16)
    alone = compute_kronecker(loaded.model, loaded.tokenizer, train.sample(9, 0), iterations=1, max_length=16)
    assert factors.from_cache and factors.n_examples == alone.n_examples == 9
    for kind in alone.inputs:
        for name in alone.inputs[kind]:
            for got, expected in ((factors.inputs[kind][name], alone.inputs[kind][name]),
                                  (factors.outputs[kind][name], alone.outputs[kind][name])):
                # sums over two processes' halves: equal up to float32 rounding at the matrix's own scale
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    from fwsvd_core.estimation import activations

    monkeypatch.setattr(activations, "collect_activation_stats", lambda *a, **k: pytest.fail("not read from the cache"))
    stats = estimate_activation_stats(loaded.model, loaded.tokenizer, train, n_examples=9, max_length=16)
    reference = collect_activation_stats(loaded.model, loaded.tokenizer, train.sample(9, 0), max_length=16)
    assert stats.n_tokens == reference.n_tokens and set(reference.n_tokens.values()) == {9 * 16}
    for name in reference.second_moment:
        torch.testing.assert_close(stats.second_moment[name], reference.second_moment[name], rtol=1e-5, atol=1e-9)


def test_two_processes_in_passes_give_one_process_s_kronecker_factors(tiny_lm_dir, glue_dir):
    """Issue 25, 5 with 1: data-parallel and one block per pass together; every group cached once, and the factors
    read back from those entries equal one process's single pass."""
    from fwsvd_core.estimation.kronecker import compute_kronecker, estimate_kronecker
    from fwsvd_core.inputs.families import get_family, load_task_data

    env = {**os.environ, "FWSVD_CACHE_DIR": str(cache_root()), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "fwsvd_core", "statistics", "--model", str(tiny_lm_dir), "--task", "wikitext2", "--data-source",
               "glue", "--data-dir", str(glue_dir), "--calib-samples", "9", "--seq-len", "16", "--kronecker",
               "--kronecker-iterations", "0", "--blocks-per-pass", "1", "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert len(list((cache_root() / "kronecker").iterdir())) == 2  # the tiny decoder's two blocks, once each

    loaded = load_model(tiny_lm_dir, device="cpu")
    task = get_task("wikitext2")
    train = get_family(task.family).prepare(loaded.tokenizer, load_task_data(task, "train", "glue", glue_dir), 16)
    factors = estimate_kronecker(loaded.model, loaded.tokenizer, train, 9, iterations=0, max_length=16,
                                 blocks_per_pass=1)
    alone = compute_kronecker(loaded.model, loaded.tokenizer, train.sample(9, 0), iterations=0, max_length=16)
    assert factors.from_cache and factors.n_examples == alone.n_examples == 9
    for name in alone.inputs["kfac"]:
        for got, expected in ((factors.inputs["kfac"][name], alone.inputs["kfac"][name]),
                              (factors.outputs["kfac"][name], alone.outputs["kfac"][name])):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
