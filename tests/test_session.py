import pytest
import torch

from fwsvd_core import session as session_module
from fwsvd_core.cache import cache_root
from fwsvd_core.fisher import estimate_fisher
from fwsvd_core.models import load_model
from fwsvd_core.session import CompressionSession


def test_factors_are_computed_once_and_read_back_from_disk(tiny_models, sst2_small, monkeypatch):
    loaded = load_model(tiny_models["bert"], device="cpu")
    fisher = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    first = CompressionSession(loaded)
    first.set_fisher(fisher)
    computed = first.factors("fwsvd-both")
    assert first.factors("fwsvd-both") is computed  # memory
    assert len(list((cache_root() / "factors").glob("*.safetensors"))) == 1

    monkeypatch.setattr(session_module, "factorize", lambda *a, **k: pytest.fail("recomputed an SVD"))
    second = CompressionSession(loaded)
    second.set_fisher(fisher)
    for name, f in second.factors("fwsvd-both").items():
        torch.testing.assert_close(f.left, computed[name].left)
        torch.testing.assert_close(f.d_in, computed[name].d_in)
        assert f.d_out is not None and f.method == "fwsvd-both"


def test_a_new_fisher_drops_the_weighted_factors_only(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8))
    svd, weighted = session.factors("svd"), session.factors("fwsvd-input")
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8, seed=4))
    assert session.factors("svd") is svd and session.factors("fwsvd-input") is not weighted


def test_model_errors_match_a_direct_computation(tiny_models, sst2_small):
    from fwsvd_core.ranks import uniform_ranks

    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8))
    ranks = uniform_ranks(session.layers, 0.3)
    errors = session.model_errors("fwsvd-output", ranks)
    num = den = 0.0
    for l in session.layers:
        w = session.weight(l.name)
        r = w - session.factors("fwsvd-output")[l.name].reconstruct(ranks[l.name])
        num, den = num + float((r**2).sum()), den + float((w**2).sum())
    assert errors["plain"] == pytest.approx((num / den) ** 0.5, rel=1e-5)
