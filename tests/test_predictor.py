import pytest

from fwsvd_core.predictor import svd_failure_scores, validate_predictor


def test_predicted_losses_are_the_fisher_weighted_errors(tiny_session):
    session = tiny_session
    table = svd_failure_scores(tiny_session, 0.25)
    assert len(table) == len(session.layers)
    row = table.iloc[0]
    w, f = session.weight(row["layer"]), session.fisher.per_layer[row["layer"]]
    residual = w - session.factors("svd")[row["layer"]].reconstruct(int(row["rank"]))
    assert row["predicted SVD loss"] == pytest.approx(0.5 * float((f * residual**2).sum()), rel=1e-5)
    assert (table["predicted SVD loss"] >= 0).all()
    assert row["predicted SVD excess"] == pytest.approx(row["predicted SVD loss"] - row["predicted FWSVD loss"])


def test_validation_measures_every_layer_and_correlates(tiny_session, sst2_small):
    session = tiny_session
    table, corr = validate_predictor(tiny_session, sst2_small[1].sample(40), 0.25)
    assert len(table) == len(session.layers)
    assert {"measured SVD excess loss", "measured score gain of FWSVD"} <= set(table.columns)
    assert -1.0 <= corr["spearman vs loss"] <= 1.0
