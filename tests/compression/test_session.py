import pytest
import torch

from fwsvd_core.cache import cache_root
from fwsvd_core.compression.methods import fwsvd as fwsvd_method
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.loading import load_model


def test_factors_are_computed_once_and_read_back_from_disk(tiny_models, sst2_small, monkeypatch):
    loaded = load_model(tiny_models["bert"], device="cpu")
    fisher = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    first = CompressionSession(loaded)
    first.set_fisher(fisher)
    computed = first.factors("fwsvd-both")
    assert first.factors("fwsvd-both") is computed  # memory
    assert len(list((cache_root() / "factors").glob("*.safetensors"))) == 1

    monkeypatch.setattr(fwsvd_method, "scaled_svd", lambda *a, **k: pytest.fail("recomputed an SVD"))
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
    from fwsvd_core.compression.ranks import uniform_ranks

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


def test_tfwsvd_compresses_with_a_solve_per_layer_and_rank_cached(tiny_models, sst2_small, monkeypatch):
    from fwsvd_core.compression.lowrank import LowRankLinear
    from fwsvd_core.compression.methods import tfwsvd as tfwsvd_method
    from fwsvd_core.compression.ranks import uniform_ranks
    from fwsvd_core.compression.tfwsvd import weighted_objective

    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8))
    ranks = uniform_ranks(session.layers, 0.2)
    model = session.compress("tfwsvd-als", ranks)
    for l in session.layers:
        module = model.get_submodule(l.name)
        assert isinstance(module, LowRankLinear) and module.rank == ranks[l.name]
        w, f = session.weight(l.name), session.fisher.per_layer[l.name]
        solved = weighted_objective(w, f, module.left, module.right)
        for m in ("fwsvd-input", "fwsvd-output", "fwsvd-both"):
            fac = session.factors(m)[l.name]
            assert solved <= weighted_objective(w, f, fac.left[:, : ranks[l.name]], fac.right[: ranks[l.name]]) * (1 + 1e-6)
    fresh = CompressionSession(loaded)
    fresh.set_fisher(session.fisher)
    monkeypatch.setattr(tfwsvd_method, "solve", lambda *a, **k: pytest.fail("solved again"))
    fresh.compress("tfwsvd-als", ranks)  # from the disk cache
    errors = fresh.model_errors("tfwsvd-als", ranks)
    assert errors["fisher"] <= session.model_errors("fwsvd-input", ranks)["fisher"] + 1e-6


def test_activation_methods_need_and_use_calibration_statistics(tiny_models, sst2_small):
    from fwsvd_core.estimation.activations import estimate_activation_stats

    loaded = load_model(tiny_models["gpt2"], device="cpu")
    session = CompressionSession(loaded)
    with pytest.raises(ValueError, match="calibration activations"):
        session.factors("asvd")
    stats = estimate_activation_stats(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    assert estimate_activation_stats(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8).key == stats.key
    session.set_activations(stats)
    for method in ("asvd", "svd-llm"):
        f = session.factors(method)
        layer = session.layers[0]
        assert torch.isfinite(f[layer.name].left).all()
        torch.testing.assert_close(f[layer.name].reconstruct(layer.max_rank), session.weight(layer.name), rtol=1e-3, atol=1e-3)


def test_activation_statistics_leave_padding_out(tiny_models, sst2_small):
    from fwsvd_core.estimation.activations import collect_activation_stats

    loaded = load_model(tiny_models["bert"], device="cpu")
    data = sst2_small[0].sample(6, seed=3)
    together = collect_activation_stats(loaded.model, loaded.tokenizer, data, batch_size=6)
    one_by_one = collect_activation_stats(loaded.model, loaded.tokenizer, data, batch_size=1)
    name = session_layer = CompressionSession(loaded).layers[0].name
    assert together.n_tokens[name] == one_by_one.n_tokens[session_layer]
    torch.testing.assert_close(together.second_moment[name], one_by_one.second_moment[name], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(together.mean_abs[name], one_by_one.mean_abs[name], rtol=1e-4, atol=1e-6)


def test_factorizing_and_solving_report_progress_layer_by_layer(tiny_models, sst2_small):
    from fwsvd_core.compression.ranks import uniform_ranks

    loaded = load_model(tiny_models["bert"], device="cpu")
    calls: list[tuple[str, int, int]] = []
    session = CompressionSession(loaded, use_disk_cache=False,
                                 progress_for=lambda label, unit: lambda d, t: calls.append((label, d, t)))
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8))
    n = len(session.layers)
    session.factors("svd")
    assert calls == [("factorizing (svd)", i, n) for i in range(1, n + 1)]
    session.factors("svd")  # from memory: no bar
    assert len(calls) == n
    calls.clear()
    ranks = uniform_ranks(session.layers, 0.25)
    session.tfwsvd_settings = {"max_iter": 2, "tol": 1e-4, "time_budget": 1.0}
    session.factors_at("tfwsvd-als", ranks)
    solves = [c for c in calls if c[0] == "solving (tfwsvd-als)"]
    assert [d for _, d, _ in solves] == list(range(1, n + 1)) and {t for _, _, t in solves} == {n}


def test_fwsvd_from_the_low_memory_fisher_equals_fwsvd_from_the_full_one_and_tfwsvd_says_what_it_needs(
        tiny_models, sst2_small):
    from fwsvd_core.analysis.predictor import svd_failure_scores
    from fwsvd_core.compression.allocation import allocate
    from fwsvd_core.errors import FwsvdError
    from fwsvd_core.estimation.fisher import compute_fisher

    loaded = load_model(tiny_models["llama"], device="cpu")
    data = sst2_small[0].sample(8, seed=1)
    full, low = (CompressionSession(loaded, use_disk_cache=False) for _ in range(2))
    full.set_fisher(compute_fisher(loaded.model, loaded.tokenizer, data))
    low.set_fisher(compute_fisher(loaded.model, loaded.tokenizer, data, form="profiles"))
    for method in ("fwsvd-input", "fwsvd-output", "fwsvd-both"):
        for name, f in full.factors(method).items():
            g = low.factors(method)[name]
            torch.testing.assert_close(g.reconstruct(4), f.reconstruct(4), rtol=1e-4, atol=1e-5)
    assert allocate(low, "spectral", 0.4, "fwsvd-input") == allocate(full, "spectral", 0.4, "fwsvd-input")
    ranks = {l.name: 4 for l in low.layers}
    assert torch.isnan(torch.tensor(low.model_errors("fwsvd-input", ranks)["fisher"]))  # needs the whole Fisher
    with pytest.raises(FwsvdError, match="element-wise Fisher"):
        low.compress("tfwsvd-als", ranks)
    with pytest.raises(FwsvdError, match="The predictor of SVD failure needs the element-wise Fisher"):
        svd_failure_scores(low, 0.25)


@pytest.mark.parametrize("method", ["svd", "fwsvd-input", "tfwsvd-als"])
def test_a_streamed_compression_replaces_the_layers_in_place_as_the_slicing_one_does(tiny_models, sst2_small, method):
    """Issue 25, 2: each layer factorized as it is replaced, in the model itself (none of the factors kept), gives
    the model the cached factors give."""
    from fwsvd_core.compression.lowrank import LowRankLinear
    from fwsvd_core.compression.ranks import uniform_ranks

    compressed = {}
    for stream in (False, True):
        loaded = load_model(tiny_models["bert"], device="cpu")
        session = CompressionSession(loaded, use_disk_cache=False)
        session.tfwsvd_settings = {"max_iter": 3, "tol": 1e-4, "time_budget": 5.0}
        session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], 16, use_cache=False))
        compressed[stream] = session.compress(method, uniform_ranks(session.layers, 0.25), stream=stream)
        assert (compressed[stream] is loaded.model) is stream
        assert not stream or not session.computed_methods()  # nothing kept of a streamed compression's factors
        assert any(isinstance(m, LowRankLinear) for m in compressed[stream].modules())
    batch = dict(loaded.tokenizer(["a gripping, funny film"], return_tensors="pt"))
    with torch.no_grad():
        torch.testing.assert_close(compressed[True](**batch).logits, compressed[False](**batch).logits)


def test_the_factors_estimate_is_what_the_session_keeps(tiny_models):
    from fwsvd_core.compression.session import factors_bytes

    session = CompressionSession(load_model(tiny_models["bert"], device="cpu"), use_disk_cache=False)
    kept = sum(t.numel() * t.element_size() for f in session.factors("svd").values()
               for t in (f.left, f.right, f.spectrum))
    assert factors_bytes(session.layers) == kept
