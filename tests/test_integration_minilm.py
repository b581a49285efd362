"""The full path on real weights: MiniLM fine-tuned on an SST-2 slice, Fisher, factors, ranks, scores."""
import pytest

from fwsvd_core.analysis.sweep import run_sweep
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.loading import load_model


@pytest.mark.slow
def test_full_path_on_minilm(minilm_sst2_dir, sst2_small):
    train, dev = sst2_small
    loaded = load_model(minilm_sst2_dir, device="cpu")
    session = CompressionSession(loaded)
    assert len(session.layers) == 36
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, train, n_examples=64, fingerprint=loaded.fingerprint))
    table = run_sweep(session, dev, ["svd", "fwsvd-input", "fwsvd-output"], rank_ratios=[1.0, 0.5, 0.25])
    dense = table.iloc[0]
    assert dense["accuracy"] > 0.6  # a few steps of fine-tuning learnt the task
    for method in ("svd", "fwsvd-input", "fwsvd-output"):
        rows = table[table["method"] == method].set_index("rank ratio")
        assert rows.loc[1.0, "accuracy"] == pytest.approx(dense["accuracy"], abs=0.006)  # full rank is the model
        assert rows.loc[0.25, "plain error"] > rows.loc[0.5, "plain error"]
        assert rows.loc[0.25, "params"] < rows.loc[0.5, "params"] < dense["params"]
    svd = table[table["method"] == "svd"].set_index("rank ratio")
    fw = table[table["method"] == "fwsvd-output"].set_index("rank ratio")
    # Eckart-Young: plain SVD has the smallest plain error at every rank; the Fisher-weighted method does not
    assert (svd["plain error"] <= fw["plain error"] + 1e-6).all()
    # changing ranks reuses the factors: no SVD is recomputed
    factors = session.factors("fwsvd-output")
    session.compress("fwsvd-output", uniform_ranks(session.layers, 0.1))
    assert session.factors("fwsvd-output") is factors
