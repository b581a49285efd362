"""merge_slow_layers: factorized layers above their latency break-even become one dense product, same outputs."""
import collections

import pytest
import torch
from torch import nn

from fwsvd_core.compression.deploy import merge_slow_layers, slow_layers
from fwsvd_core.compression.export import save_compressed
from fwsvd_core.compression.lowrank import LowRankLinear
from fwsvd_core.compression.rank_table import FORM_DENSE, FORM_LOWRANK, rank_table_of
from fwsvd_core.compression.ranks import count_params, uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.errors import RankError
from fwsvd_core.loading import load_model


@pytest.fixture
def compressed(tiny_models):
    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    return session.compress("svd", uniform_ranks(session.layers, 0.25)), loaded.tokenizer


def square_ones_are_slow(in_features: int, out_features: int) -> int:
    """A break-even below the rank of the square (attention) layers, above that of the others."""
    return 0 if in_features == out_features else min(in_features, out_features)


def logits(model, tokenizer):
    with torch.no_grad():
        return model(**tokenizer(["a fine film", "a dull one, long"], return_tensors="pt", padding=True)).logits


def test_layers_above_their_break_even_are_stored_dense_with_the_same_outputs(compressed):
    model, tokenizer = compressed
    table = rank_table_of(model)
    slow = slow_layers(model, square_ones_are_slow)
    assert slow and set(slow) == {n for n, r in table.layers.items() if r.in_features == r.out_features}
    fast = merge_slow_layers(model, square_ones_are_slow)
    for name, row in rank_table_of(fast).layers.items():
        module = fast.get_submodule(name)
        if name in slow:
            assert type(module) is nn.Linear and row.form == FORM_DENSE and row.rank == table.layers[name].rank
            torch.testing.assert_close(module.weight, model.get_submodule(name).dense_weight())
        else:
            assert isinstance(module, LowRankLinear) and row.form == FORM_LOWRANK
            assert module.down.weight is model.get_submodule(name).down.weight  # shared, not copied
    assert all(isinstance(model.get_submodule(n), LowRankLinear) for n in slow)  # the given model is left as it was
    torch.testing.assert_close(logits(fast, tokenizer), logits(model, tokenizer), rtol=1e-5, atol=1e-5)
    added = sum(r.in_features * r.out_features - r.rank * (r.in_features + r.out_features)
                for n, r in table.layers.items() if n in slow)
    assert count_params(fast) == count_params(model) + added


def test_the_merged_form_saves_and_loads_like_any_compressed_model(compressed, tmp_path):
    model, tokenizer = compressed
    fast = merge_slow_layers(model, square_ones_are_slow)
    back = load_model(save_compressed(fast, tokenizer, tmp_path / "fast"), device="cpu")
    assert rank_table_of(back.model).layers == rank_table_of(fast).layers
    torch.testing.assert_close(logits(back.model, back.tokenizer), logits(fast, tokenizer), rtol=1e-5, atol=1e-5)


def test_the_onnx_graph_has_one_product_per_merged_layer(compressed, tmp_path):
    model, tokenizer = compressed
    import onnx

    def matmuls(m, name):
        inputs = dict(tokenizer(["a fine film"], return_tensors="pt"))
        path = tmp_path / f"{name}.onnx"
        torch.onnx.export(m, (), str(path), kwargs=inputs, dynamo=True)
        return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)["MatMul"]

    slow = slow_layers(model, square_ones_are_slow)
    assert matmuls(merge_slow_layers(model, square_ones_are_slow), "fast") == matmuls(model, "factorized") - len(slow)


def test_nothing_to_merge_gives_the_model_itself_and_a_dense_model_is_refused(compressed, tiny_models):
    model, _ = compressed
    assert merge_slow_layers(model, lambda i, o: min(i, o)) is model
    with pytest.raises(RankError, match="not a compressed model"):
        merge_slow_layers(load_model(tiny_models["bert"], device="cpu").model, square_ones_are_slow)
