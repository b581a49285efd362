"""The first screens' results stored on disk: computed once, read back equal, keyed by what they depend on."""
import pandas as pd
import pytest

from fwsvd_core import screens
from fwsvd_core.analysis.ablation import group_ablation
from fwsvd_core.analysis.sweep import run_sweep
from fwsvd_core.cache import cache_root
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.errors import Cancelled
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.loading import load_model
from fwsvd_core.screens import (
    ScreenDefaults,
    ablation_table,
    dense_evaluation,
    first_screens_ready,
    predicted_failures,
    prepare_first_screens,
    stored_ablation,
    stored_dense,
    stored_sweep,
    sweep_table,
)

SMALL = ScreenDefaults(fisher_samples=16, sweep_methods=("svd", "fwsvd-input"), sweep_ratios=(0.5, 0.25),
                       sweep_scored=40, ablation_scored=40)


def forbid(monkeypatch, module, name: str) -> None:
    """Make `module.name` fail if called: what is stored must not be computed again."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} was called although its result is stored")
    monkeypatch.setattr(module, name, refuse)


def test_the_dense_score_is_stored_and_read_back_equal(tiny_session, sst2_small, monkeypatch):
    loaded, dev = tiny_session.loaded, sst2_small[1]
    assert stored_dense(loaded, dev, 50) is None
    first = dense_evaluation(loaded, dev, 50)
    reference = evaluate(loaded.model, loaded.tokenizer, dev, subsample=50)
    assert first.metrics == reference.metrics and first.interval == reference.interval
    forbid(monkeypatch, screens, "evaluate")
    again = dense_evaluation(loaded, dev, 50)
    assert again.metrics == first.metrics and again.interval == pytest.approx(first.interval)
    assert again.loss == pytest.approx(first.loss) and again.n_examples == 50
    assert stored_dense(loaded, dev, None) is None  # another subsample is another result
    assert stored_dense(loaded, dev.subset(range(100)), 50) is None  # other examples too


def test_a_sweep_is_stored_per_settings_and_per_fisher(tiny_session, sst2_small, monkeypatch):
    dev = sst2_small[1]
    seen = []
    table = sweep_table(tiny_session, dev, ["svd", "fwsvd-input"], [0.5, 0.25], 40,
                        progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (5, 5)  # the dense row and 2 methods x 2 ratios
    reference = run_sweep(tiny_session, dev, ["svd", "fwsvd-input"], rank_ratios=[0.5, 0.25], subsample=40)
    pd.testing.assert_frame_equal(table, reference)
    forbid(monkeypatch, screens, "run_sweep")
    pd.testing.assert_frame_equal(sweep_table(tiny_session, dev, ["svd", "fwsvd-input"], [0.25, 0.5], 40), reference,
                                  check_dtype=False)
    assert stored_sweep(tiny_session, dev, ["svd"], [0.5, 0.25], 40) is None
    # a session with another Fisher has other FWSVD factors: the stored sweep is not theirs
    other = CompressionSession(tiny_session.loaded)
    from fwsvd_core.estimation.fisher import estimate_fisher
    other.set_fisher(estimate_fisher(other.model, other.loaded.tokenizer, sst2_small[0], n_examples=8))
    assert stored_sweep(other, dev, ["svd", "fwsvd-input"], [0.5, 0.25], 40) is None
    # a method whose inputs are not collected stores nothing and finds nothing
    assert stored_sweep(tiny_session, dev, ["svd-llm"], [0.5], 40) is None


def test_an_ablation_is_stored_and_a_damaged_file_is_computed_again(tiny_session, sst2_small):
    dev = sst2_small[1]
    table = ablation_table(tiny_session, dev, "svd", 40)
    pd.testing.assert_frame_equal(table, group_ablation(tiny_session, dev, "svd", subsample=40))
    pd.testing.assert_frame_equal(stored_ablation(tiny_session, dev, "svd", 40), table, check_dtype=False)
    for path in (cache_root() / "screens").glob("*.json"):
        path.write_text('{"columns": [')  # cut off mid-write by something other than this tool
    assert stored_ablation(tiny_session, dev, "svd", 40) is None
    pd.testing.assert_frame_equal(ablation_table(tiny_session, dev, "svd", 40), table, check_dtype=False)


def test_the_first_screens_are_prepared_once_and_a_new_session_reads_them_all(tiny_models, sst2_small, monkeypatch):
    train, dev = sst2_small
    loaded = load_model(tiny_models["bert"], device="cpu")
    stages = []
    assert not first_screens_ready(loaded, train, dev, SMALL)
    prepare_first_screens(loaded, train, dev, SMALL, stage=stages.append)
    assert first_screens_ready(loaded, train, dev, SMALL)
    assert stages[0].startswith("the Fisher") and stages[-1] == "the predicted SVD failures"
    assert [s for s in stages if s.endswith("factors of every layer")] == [
        f"the {m} factors of every layer" for m in SMALL.factor_methods]

    # a later visit (a new process: nothing in memory) computes nothing
    from fwsvd_core.compression import session as session_module
    from fwsvd_core.estimation import fisher as fisher_module
    for module, name in ((fisher_module, "compute_fisher"), (screens, "evaluate"), (screens, "run_sweep"),
                         (screens, "group_ablation")):
        forbid(monkeypatch, module, name)
    again = load_model(tiny_models["bert"], device="cpu")
    fisher = fisher_module.estimate_fisher(again.model, again.tokenizer, train, SMALL.fisher_samples, SMALL.estimator,
                                           fingerprint=again.fingerprint)
    assert fisher.from_cache
    session = session_module.CompressionSession(again)
    session.set_fisher(fisher)
    monkeypatch.setattr(session_module, "get_method", _no_factorizing(session_module.get_method))
    for method in SMALL.factor_methods:
        session.factors(method)
    assert stored_dense(again, dev) is not None
    assert stored_sweep(session, dev, SMALL.sweep_methods, SMALL.sweep_ratios, SMALL.sweep_scored) is not None
    assert stored_ablation(session, dev, SMALL.ablation_method, SMALL.ablation_scored) is not None
    forbid(monkeypatch, screens, "svd_failure_scores")
    assert len(predicted_failures(session, SMALL.predict_ratio)) == len(session.layers)
    assert not first_screens_ready(again, train, dev, ScreenDefaults())  # other defaults: not prepared


def _no_factorizing(get_method):
    """get_method whose methods refuse to factorize: the factors must come from the disk cache."""
    from dataclasses import replace

    def refusing(name):
        def refuse(*args, **kwargs):
            raise AssertionError(f"{name} was factorized again")
        return replace(get_method(name), factorize=refuse)
    return refusing


def test_a_cancelled_preparation_is_not_marked_ready(tiny_models, sst2_small):
    train, dev = sst2_small
    loaded = load_model(tiny_models["bert"], device="cpu")
    stages = []

    def cancel() -> bool:
        return any(s == "the dense score" for s in stages)

    with pytest.raises(Cancelled):
        prepare_first_screens(loaded, train, dev, SMALL, cancel=cancel, stage=stages.append)
    assert not first_screens_ready(loaded, train, dev, SMALL)
    assert stored_dense(loaded, dev) is None


def test_a_language_models_first_screens_store_rises_of_perplexity_as_drops(tiny_lm_dir, lm_windows, monkeypatch):
    """Issue 24, 4: the stored ablation of a perplexity task holds the score lost in perplexity's direction
    (compressed minus dense), and an ablation stored by version 1 (drops as dense minus compressed) is not read."""
    train, dev = lm_windows
    loaded = load_model(tiny_lm_dir, device="cpu")
    defaults = ScreenDefaults(fisher_samples=16, sweep_methods=("svd",), sweep_ratios=(0.25,), sweep_scored=30,
                              ablation_scored=30)
    session = prepare_first_screens(loaded, train, dev, defaults)
    stored = stored_ablation(session, dev, "svd", 30)
    dense = dense_evaluation(loaded, dev, 30)  # on the examples the ablation scored
    assert dense.primary_metric == "perplexity"
    assert stored is not None and set(stored["metric"]) == {"perplexity"}
    assert (stored["drop"] - (stored["score"] - dense.score)).abs().max() < 1e-6
    monkeypatch.setattr(screens, "SCREENS_VERSION", 1)
    ablation_table(session, dev, "svd", 20)
    assert stored_ablation(session, dev, "svd", 20) is not None
    monkeypatch.undo()
    assert stored_ablation(session, dev, "svd", 20) is None
