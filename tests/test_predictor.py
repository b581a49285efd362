import pytest

from fwsvd_core.fisher import estimate_fisher
from fwsvd_core.models import load_model
from fwsvd_core.predictor import svd_failure_scores, validate_predictor
from fwsvd_core.session import CompressionSession


@pytest.fixture
def session(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    s = CompressionSession(loaded)
    s.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=16))
    return s


def test_predicted_losses_are_the_fisher_weighted_errors(session):
    table = svd_failure_scores(session, 0.25)
    assert len(table) == len(session.layers)
    row = table.iloc[0]
    w, f = session.weight(row["layer"]), session.fisher.per_layer[row["layer"]]
    residual = w - session.factors("svd")[row["layer"]].reconstruct(int(row["rank"]))
    assert row["predicted SVD loss"] == pytest.approx(0.5 * float((f * residual**2).sum()), rel=1e-5)
    assert (table["predicted SVD loss"] >= 0).all()
    assert row["predicted SVD excess"] == pytest.approx(row["predicted SVD loss"] - row["predicted FWSVD loss"])


def test_validation_measures_every_layer_and_correlates(session, sst2_small):
    table, corr = validate_predictor(session, sst2_small[1].sample(40), 0.25)
    assert len(table) == len(session.layers)
    assert {"measured SVD excess loss", "measured score gain of FWSVD"} <= set(table.columns)
    assert -1.0 <= corr["spearman vs loss"] <= 1.0
