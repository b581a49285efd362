import pytest
import torch
from references import example_gradients, example_signals

from fwsvd_core.errors import FwsvdError
from fwsvd_core.estimation.kronecker import compute_kronecker, estimate_kronecker
from fwsvd_core.inputs.layers import find_layers
from fwsvd_core.loading import load_model


def test_kfac_factors_equal_their_definitions_padding_left_out(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    data = sst2_small[0].sample(10, seed=3)
    # batches of 4 sentences of different lengths: padded; the reference runs one sentence at a time, unpadded
    fast = compute_kronecker(loaded.model, loaded.tokenizer, data, iterations=0, batch_size=4)
    assert fast.n_examples == 10 and "nearest" not in fast.inputs
    layers = find_layers(loaded.model)
    sums_in = {l.name: torch.zeros(l.in_features, l.in_features, dtype=torch.float64) for l in layers}
    sums_out = {l.name: torch.zeros(l.out_features, l.out_features, dtype=torch.float64) for l in layers}
    tokens = 0
    for signals, grads in zip(example_signals(loaded.model, loaded.tokenizer, data),
                              example_gradients(loaded.model, loaded.tokenizer, data), strict=True):
        for name, (x, g) in signals.items():
            # the signals are those of the explicitly formed per-example gradient
            torch.testing.assert_close(g.T @ x, grads[name], rtol=1e-4, atol=1e-7)
            sums_in[name] += x.double().T @ x.double()
            sums_out[name] += g.double().T @ g.double()
        tokens += x.shape[0]
    for l in layers:
        a, b = fast.pair(l.name, "kfac")
        torch.testing.assert_close(a.double(), sums_in[l.name] / tokens, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(b.double(), sums_out[l.name] / len(data), rtol=1e-4, atol=1e-10)


@pytest.mark.slow
def test_power_iterations_reach_the_nearest_kronecker_product(tiny_models, sst2_small):
    """A (x) B is the top singular pair of the rearranged per-example Fisher, on a small layer."""
    loaded = load_model(tiny_models["bert"], device="cpu")
    data = sst2_small[0].sample(8, seed=4)
    name = find_layers(loaded.model)[0].name  # a 32 x 32 query projection
    layer = [l for l in find_layers(loaded.model) if l.name == name]
    fast = compute_kronecker(loaded.model, loaded.tokenizer, data, layer, iterations=40, batch_size=3)
    assert fast.change[-1] < 1e-4  # converged
    # F[(j, i), (l, k)] = 1/N sum_n G_n[i, j] G_n[k, l]; rearranged R[(j, l), (i, k)], and A (x) B <-> vec(A) vec(B)^T
    grads = [g[name].double() for g in example_gradients(loaded.model, loaded.tokenizer, data)]
    rearranged = sum(torch.einsum("ij,kl->jlik", g, g) for g in grads) / len(grads)
    out_f, in_f = grads[0].shape
    u, s, vh = torch.linalg.svd(rearranged.reshape(in_f * in_f, out_f * out_f))
    top_a, top_b = u[:, 0].reshape(in_f, in_f), vh[0].reshape(out_f, out_f)
    if float(top_a.trace()) < 0:
        top_a, top_b = -top_a, -top_b  # the singular pair's sign: both factors positive semi-definite
    a, b = fast.pair(name, "nearest")
    torch.testing.assert_close(a.double(), top_a, rtol=0, atol=1e-4 * float(top_a.norm()))
    torch.testing.assert_close(b.double(), s[0] * top_b, rtol=0, atol=1e-4 * float(s[0]))
    # and it is nearer to the Fisher than K-FAC's factors
    fisher = sum(torch.outer(g.T.reshape(-1), g.T.reshape(-1)) for g in grads) / len(grads)

    def distance(kind: str) -> float:
        a, b = fast.pair(name, kind)
        return float((fisher - torch.kron(a.double(), b.double())).norm())
    assert distance("nearest") < distance("kfac")


def test_kronecker_factors_are_cached_and_keyed_by_their_settings(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    first = estimate_kronecker(loaded.model, loaded.tokenizer, sst2_small[0], 6, iterations=1)
    again = estimate_kronecker(loaded.model, loaded.tokenizer, sst2_small[0], 6, iterations=1)
    assert not first.from_cache and again.from_cache and again.key == first.key
    assert again.change == pytest.approx(first.change, rel=1e-5)
    for kind in ("kfac", "nearest"):
        for name in first.inputs[kind]:
            torch.testing.assert_close(again.pair(name, kind)[0], first.pair(name, kind)[0])
            torch.testing.assert_close(again.pair(name, kind)[1], first.pair(name, kind)[1])
    other = estimate_kronecker(loaded.model, loaded.tokenizer, sst2_small[0], 6, iterations=0)
    assert not other.from_cache and other.key != first.key
    with pytest.raises(FwsvdError, match="no power iteration"):
        other.pair(next(iter(other.inputs["kfac"])), "nearest")


def test_bad_settings_are_refused(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    with pytest.raises(FwsvdError, match="0 or more"):
        compute_kronecker(loaded.model, loaded.tokenizer, sst2_small[0].sample(2), iterations=-1)
    with pytest.raises(FwsvdError, match="at least one example"):
        compute_kronecker(loaded.model, loaded.tokenizer, sst2_small[0].subset([]))


def test_layers_reading_one_input_share_its_gram_matrix(tiny_models, sst2_small, monkeypatch):
    """Query, key and value read one input: K-FAC forms its Gram matrix once per batch for the three (issue 25, 3)."""
    from fwsvd_core.estimation import kronecker

    loaded = load_model(tiny_models["bert"], device="cpu")
    data = sst2_small[0].sample(8, seed=3)
    formed = []
    original = kronecker._masked

    def counting(batch, name, device, tensor=None):
        if tensor is None:
            formed.append(name.rsplit(".", 1)[-1])
        return original(batch, name, device, tensor)
    monkeypatch.setattr(kronecker, "_masked", counting)
    compute_kronecker(loaded.model, loaded.tokenizer, data, iterations=0, batch_size=8)
    layers = find_layers(loaded.model)
    assert len(formed) == len(layers) - 2 * loaded.model.config.num_hidden_layers  # one for query, key and value
    assert "key" not in formed and "value" not in formed and "query" in formed
