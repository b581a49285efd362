import pytest
import torch
from conftest import ARCHITECTURES, tiny_config
from transformers import AutoModelForSequenceClassification

from fwsvd_core.errors import NoCompressibleLayersError
from fwsvd_core.inputs.layers import find_layers, require_layers, weight_out_in

EXPECTED_ROLES = {
    "bert": {"query", "key", "value", "attention output", "FFN in", "FFN out"},
    "roberta": {"query", "key", "value", "attention output", "FFN in", "FFN out"},
    "distilbert": {"query", "key", "value", "attention output", "FFN in", "FFN out"},
    "albert": {"query", "key", "value", "attention output", "FFN in", "FFN out"},
    "electra": {"query", "key", "value", "attention output", "FFN in", "FFN out"},
    "deberta-v2": {"query", "key", "value", "attention output", "FFN in", "FFN out"},  # query_proj, key_proj, value_proj
    "gpt2": {"qkv", "attention output", "FFN in", "FFN out"},
    "llama": {"query", "key", "value", "attention output", "FFN gate", "FFN in", "FFN out"},
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_has_its_roles_once_per_block(arch):
    model = AutoModelForSequenceClassification.from_config(tiny_config(arch))
    layers = find_layers(model)
    assert {l.role for l in layers} == EXPECTED_ROLES[arch]
    blocks = {l.block for l in layers}
    n_blocks = 1 if arch == "albert" else 2  # ALBERT's one shared layer is listed once
    assert blocks == set(range(n_blocks))
    assert len(layers) == n_blocks * len(EXPECTED_ROLES[arch])
    names = [l.name for l in layers]
    assert not any(k in n for n in names for k in ("classifier", "score", "pooler", "embedding"))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_shapes_match_the_weights_as_out_by_in(arch):
    model = AutoModelForSequenceClassification.from_config(tiny_config(arch))
    for layer in find_layers(model):
        module = model.get_submodule(layer.name)
        w = weight_out_in(module)
        assert tuple(w.shape) == layer.shape
        x = torch.randn(3, layer.in_features)
        assert module(x).shape == (3, layer.out_features)
        bias = 0 if module.bias is None else module.bias
        torch.testing.assert_close(module(x), x @ w.T + bias)


def test_break_even_rank_is_the_last_rank_that_saves_parameters():
    model = AutoModelForSequenceClassification.from_config(tiny_config("bert"))
    for layer in find_layers(model):
        r = layer.break_even_rank
        assert layer.factorized_params(r) < layer.params <= layer.factorized_params(r + 1)
        assert layer.compressed_params(r + 1) == layer.params


def test_gpt2_conv1d_is_found_with_its_transposed_weight():
    model = AutoModelForSequenceClassification.from_config(tiny_config("gpt2"))
    qkv = next(l for l in find_layers(model) if l.role == "qkv")
    assert qkv.kind == "conv1d" and qkv.shape == (96, 32)


def test_include_other_adds_head_and_pooler():
    model = AutoModelForSequenceClassification.from_config(tiny_config("bert"))
    extra = {l.name for l in find_layers(model, include_other=True)} - {l.name for l in find_layers(model)}
    assert extra == {"bert.pooler.dense", "classifier"}


def test_a_model_without_linear_blocks_is_refused_clearly():
    with pytest.raises(NoCompressibleLayersError, match="no linear layer"):
        require_layers(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)))


def test_deberta_v1_fused_projection_is_a_qkv_layer():
    import transformers as tf

    from fwsvd_core.inputs.layers import find_layers

    model = tf.DebertaForSequenceClassification(tf.DebertaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=100))
    roles = {l.name.rpartition(".")[2]: l.role for l in find_layers(model)}
    assert roles["in_proj"] == "qkv" and "other" not in roles.values()
