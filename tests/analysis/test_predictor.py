import numpy as np
import pytest
from references import example_gradients

from fwsvd_core.analysis.predictor import (
    PREDICTORS,
    score_gain_column,
    split_half_reliability,
    svd_failure_scores,
    validate_predictor,
    weighted_loss_column,
)
from fwsvd_core.estimation.evaluation import evaluate


def test_diagonal_prediction_is_the_fisher_weighted_error(tiny_session):
    session = tiny_session
    table = svd_failure_scores(session, 0.25)
    assert len(table) == len(session.layers) and PREDICTORS["full"] not in table  # no calibration data: diagonal only
    for _, row in table.iterrows():
        w, f = session.weight(row["layer"]), session.fisher.per_layer[row["layer"]]
        residual = w - session.factors("svd")[row["layer"]].reconstruct(int(row["rank"]))
        assert row["predicted SVD loss"] == pytest.approx(0.5 * float((f * residual**2).sum()), rel=1e-5)
    assert (table["predicted SVD loss"] >= 0).all()
    assert np.allclose(table[PREDICTORS["diagonal"]], table["predicted SVD loss"] - table[weighted_loss_column("fwsvd-input")])


def test_the_weighted_method_compared_is_the_one_named(tiny_session):
    session = tiny_session
    table = svd_failure_scores(session, 0.25, weighted="fwsvd-output")
    assert weighted_loss_column("fwsvd-input") not in table
    for _, row in table.iterrows():
        w, f = session.weight(row["layer"]), session.fisher.per_layer[row["layer"]]
        residual = w - session.factors("fwsvd-output")[row["layer"]].reconstruct(int(row["rank"]))
        expected = 0.5 * float((f * residual**2).sum())
        assert row[weighted_loss_column("fwsvd-output")] == pytest.approx(expected, rel=1e-5)


def test_full_prediction_is_the_taylor_expansion_over_single_example_gradients(tiny_session, sst2_small):
    session = tiny_session
    calibration = sst2_small[0].sample(6, seed=3)
    table = svd_failure_scores(session, 0.25, calibration=calibration, n_examples=6)
    changes = {}
    for _, row in table.iterrows():
        w = session.weight(row["layer"]).float()
        changes[row["layer"]] = {m: session.factors(m)[row["layer"]].reconstruct(int(row["rank"])) - w
                                 for m in ("svd", "fwsvd-input")}
    expected = {name: 0.0 for name in changes}
    for grads in example_gradients(session.model, session.loaded.tokenizer, calibration.sample(6, seed=0)):
        for name, by_method in changes.items():
            for method, sign in (("svd", 1.0), ("fwsvd-input", -1.0)):
                dot = float((grads[name] * by_method[method]).sum())
                expected[name] += sign * (dot + 0.5 * dot**2) / 6
    got = dict(zip(table["layer"], table[PREDICTORS["full"]], strict=True))
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-3, abs=1e-8)


def test_split_half_reliability_separates_signal_from_noise():
    rng = np.random.default_rng(0)
    signal = np.linspace(-1, 1, 12)[:, None] + 0.05 * rng.standard_normal((12, 400))
    noise = rng.standard_normal((12, 400))
    assert split_half_reliability(signal) > 0.95
    assert abs(split_half_reliability(noise)) < 0.5


def test_validation_measures_each_layer_alone(tiny_session, sst2_small):
    session = tiny_session
    dev = sst2_small[1].sample(40)
    table, stats = validate_predictor(session, dev, 0.25, calibration=sst2_small[0], n_examples=8, bootstrap_samples=20)
    assert len(table) == len(session.layers)
    first = table.iloc[0]
    loss = {m: evaluate(session.compress(m, {first["layer"]: int(first["rank"])}), session.loaded.tokenizer, dev).loss
            for m in ("svd", "fwsvd-input")}
    assert first["measured SVD excess loss"] == pytest.approx(loss["svd"] - loss["fwsvd-input"], rel=1e-4, abs=1e-7)
    assert (table["standard error"] >= 0).all()
    assert score_gain_column("fwsvd-input") in table
    assert set(stats.agreement) == {"diagonal", "full"}  # the session has no Kronecker factors
    for agreement in stats.agreement.values():
        assert -1.0 <= agreement.with_loss <= 1.0
        assert agreement.low <= agreement.high
    assert stats.examples_scored == 40 and stats.layers == len(session.layers)


def test_kronecker_predictions_are_the_quadratic_form_of_a_kron_b(tiny_session, sst2_small):
    import torch

    from fwsvd_core.estimation.kronecker import estimate_kronecker

    session = tiny_session
    assert PREDICTORS["kfac"] not in svd_failure_scores(session, 0.25)  # no Kronecker factors: no such column
    kron = estimate_kronecker(session.model, session.loaded.tokenizer, sst2_small[0], 8, iterations=1)
    session.set_kronecker(kron)
    table = svd_failure_scores(session, 0.25)
    for _, row in table.iterrows():
        w = session.weight(row["layer"]).double()
        for kind in ("kfac", "nearest"):
            a, b = (t.double() for t in kron.pair(row["layer"], kind))
            expected = 0.0
            for method, sign in (("svd", 1.0), ("fwsvd-input", -1.0)):
                v = (session.factors(method)[row["layer"]].reconstruct(int(row["rank"])).double() - w).T.reshape(-1)
                expected += sign * 0.5 * float(v @ torch.kron(a, b) @ v)
            assert row[PREDICTORS[kind]] == pytest.approx(expected, rel=1e-4, abs=1e-12)


def test_the_measured_score_gain_of_a_language_model_is_a_fall_of_perplexity(tiny_lm_session, lm_windows):
    """Issue 24, 4: the weighted method gains where its perplexity is lower than SVD's. With windows of equal length
    the perplexity is lower exactly where the mean loss is, so the gain has the sign of SVD's measured excess loss."""
    session, dev = tiny_lm_session, lm_windows[1].sample(24, seed=0)
    table, _ = validate_predictor(session, dev, 0.25, bootstrap_samples=10)
    gains, excess = table[score_gain_column("fwsvd-input")], table["measured SVD excess loss"]
    clear = excess.abs() > 1e-9
    assert clear.sum() >= len(table) // 2 and (np.sign(gains[clear]) == np.sign(excess[clear])).all()
    row = table.loc[gains.abs().idxmax()]
    ppl = {m: evaluate(session.compress(m, {row["layer"]: int(row["rank"])}), session.loaded.tokenizer, dev).score
           for m in ("svd", "fwsvd-input")}
    assert row[score_gain_column("fwsvd-input")] == pytest.approx(ppl["svd"] - ppl["fwsvd-input"], rel=1e-6)
