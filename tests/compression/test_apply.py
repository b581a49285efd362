import pytest
import torch
from conftest import ARCHITECTURES

from fwsvd_core.compression.lowrank import LowRankLinear
from fwsvd_core.compression.rank_table import FORM_DENSE, FORM_LOWRANK, FORM_ORIGINAL, RankTable, rank_table_of
from fwsvd_core.compression.ranks import count_params, uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.errors import RankError
from fwsvd_core.estimation.fisher import compute_fisher
from fwsvd_core.inputs.layers import weight_out_in
from fwsvd_core.loading import load_model


def test_low_rank_layer_equals_its_dense_product():
    left, right, bias = torch.randn(7, 3), torch.randn(3, 5), torch.randn(7)
    layer = LowRankLinear.from_factors(left, right, bias)
    x = torch.randn(4, 2, 5)
    torch.testing.assert_close(layer(x), x @ (left @ right).T + bias)
    assert sum(p.numel() for p in layer.parameters()) == 3 * (7 + 5) + 7


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_compressed_model_matches_dense_reconstruction_and_leaves_base_alone(arch, tiny_models, sst2_small):
    loaded = load_model(tiny_models[arch], device="cpu")
    session = CompressionSession(loaded)
    session.set_fisher(compute_fisher(loaded.model, loaded.tokenizer, sst2_small[0].sample(8)))
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    ranks = uniform_ranks(session.layers, 0.25)
    compressed = session.compress("fwsvd-output", ranks)
    factors = session.factors("fwsvd-output")
    for layer in session.layers:
        module = compressed.get_submodule(layer.name)
        assert isinstance(module, LowRankLinear) and module.rank == ranks[layer.name]
        torch.testing.assert_close(module.dense_weight(), factors[layer.name].reconstruct(ranks[layer.name]))
    assert count_params(compressed) < count_params(loaded.model)
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not isinstance(m, LowRankLinear) for m in loaded.model.modules())
    x = loaded.tokenizer(["a short test sentence"], return_tensors="pt")
    x.pop("token_type_ids", None)
    with torch.no_grad():
        assert compressed(**x).logits.shape == loaded.model(**x).logits.shape


def test_forms_follow_break_even_and_full_rank(tiny_models):
    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    layer = session.layers[0]  # 32 x 32: breaks even at rank 15
    compressed = session.compress("svd", {layer.name: 16})
    table = rank_table_of(compressed).layers
    assert table[layer.name].form == FORM_DENSE
    dense = compressed.get_submodule(layer.name)
    torch.testing.assert_close(dense.weight, session.factors("svd")[layer.name].reconstruct(16))
    assert table[session.layers[1].name].form == FORM_ORIGINAL
    # untouched layers share their weight tensors with the base model: nothing is copied
    assert compressed.get_submodule(session.layers[1].name).weight is loaded.model.get_submodule(session.layers[1].name).weight
    assert rank_table_of(session.compress("svd", {layer.name: 15})).layers[layer.name].form == FORM_LOWRANK
    assert not hasattr(loaded.model.config, "fwsvd_compression")


def test_two_rank_maps_do_not_interfere(tiny_models):
    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    a = session.compress("svd", uniform_ranks(session.layers, 0.1))
    b = session.compress("svd", uniform_ranks(session.layers, 0.4))
    name = session.layers[0].name
    assert a.get_submodule(name).rank == 3 and b.get_submodule(name).rank == 13
    with torch.no_grad():
        a.get_submodule(name).left.add_(1.0)
    torch.testing.assert_close(b.get_submodule(name).dense_weight(), session.factors("svd")[name].reconstruct(13))


def test_gpt2_conv1d_is_replaced_with_the_same_function(tiny_models):
    loaded = load_model(tiny_models["gpt2"], device="cpu")
    session = CompressionSession(loaded)
    full = {l.name: l.max_rank - 1 for l in session.layers}
    compressed = session.compress("svd", full)
    for l in session.layers:
        w = weight_out_in(loaded.model.get_submodule(l.name))
        x = torch.randn(2, l.in_features)
        approx = compressed.get_submodule(l.name)(x)
        exact = loaded.model.get_submodule(l.name)(x)
        assert float((approx - exact).norm() / exact.norm()) < 0.5, w.shape


def test_bad_ranks_are_refused(tiny_models):
    session = CompressionSession(load_model(tiny_models["bert"], device="cpu"))
    with pytest.raises(RankError):
        session.compress("svd", {session.layers[0].name: 10_000})
    with pytest.raises(ValueError, match="estimate it first"):
        session.compress("fwsvd-input", {})


def test_the_rank_table_reads_back_what_it_writes_and_refuses_what_it_is_not():
    table = RankTable.from_dict({"method": "svd", "task": "sst2", "layers": {
        "a": {"rank": 3, "form": "lowrank", "in": 8, "out": 4}, "b": {"rank": 4, "form": "original", "in": 4, "out": 4}}})
    assert table.ranks == {"a": 3, "b": 4} and table.extra == {"task": "sst2"}
    assert RankTable.from_dict(table.as_dict()) == table
    assert table.with_extra({"fisher examples": 8}).as_dict()["fisher examples"] == 8
    for broken in ({"method": "svd"}, {"layers": {"a": {"rank": 3, "form": "folded", "in": 8, "out": 4}}},
                   {"layers": {"a": {"rank": "three", "form": "lowrank", "in": 8, "out": 4}}}, {"layers": []}):
        with pytest.raises((KeyError, TypeError, ValueError, AttributeError)):
            RankTable.from_dict(broken)
