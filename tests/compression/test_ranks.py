import pytest
from conftest import tiny_config
from transformers import AutoModelForSequenceClassification

from fwsvd_core.compression.ranks import (
    compressed_params,
    count_params,
    original_params,
    ranks_for_param_ratio,
    summarize,
    uniform_ranks,
    validate_ranks,
)
from fwsvd_core.errors import RankError
from fwsvd_core.inputs.layers import LayerInfo, find_layers

LAYERS = [LayerInfo("a", 0, "query", 384, 384, "linear"), LayerInfo("b", 0, "FFN in", 384, 1536, "linear")]


def test_uniform_ranks_round_and_stay_in_range():
    assert uniform_ranks(LAYERS, 0.25) == {"a": 96, "b": 96}
    assert uniform_ranks(LAYERS, 0.001) == {"a": 1, "b": 1}
    with pytest.raises(RankError, match=r"\(0, 1\]"):
        uniform_ranks(LAYERS, 1.5)


def test_params_are_dense_above_break_even():
    # 384x384 breaks even at 191: rank 192 saves nothing, so it is counted dense
    assert compressed_params(LAYERS[:1], {"a": 191}) == 191 * 768
    assert compressed_params(LAYERS[:1], {"a": 192}) == 384 * 384


@pytest.mark.parametrize("target", [0.9, 0.5, 0.3, 0.1])
def test_param_ratio_gives_the_largest_uniform_ranks_within_budget(target):
    ranks, ratio = ranks_for_param_ratio(LAYERS, target)
    budget = target * original_params(LAYERS)
    assert compressed_params(LAYERS, ranks) <= budget
    bigger = uniform_ranks(LAYERS, min(1.0, ratio + 1 / 384))
    assert bigger == ranks or compressed_params(LAYERS, bigger) > budget


def test_param_ratio_below_rank_one_is_refused():
    with pytest.raises(RankError, match="below what rank 1"):
        ranks_for_param_ratio(LAYERS, 0.001)


def test_validate_ranks_messages():
    assert validate_ranks(LAYERS, {"a": 3}) == {"a": 3, "b": 384}
    with pytest.raises(RankError, match="between 1 and 384"):
        validate_ranks(LAYERS, {"a": 0})
    with pytest.raises(RankError, match="whole number"):
        validate_ranks(LAYERS, {"a": 2.5})
    with pytest.raises(RankError, match="Unknown layer"):
        validate_ranks(LAYERS, {"zzz": 2})


def test_summary_counts_model_and_layers():
    model = AutoModelForSequenceClassification.from_config(tiny_config("bert"))
    layers = find_layers(model)
    ranks = uniform_ranks(layers, 0.25)
    s = summarize(count_params(model), layers, ranks)
    assert s.compressible_before == sum(l.params for l in layers)
    assert s.model_params_before - s.model_params_after == s.compressible_before - s.compressible_after
    assert 0 < s.compressible_param_ratio < s.param_ratio < 1
    assert s.mean_rank_ratio == pytest.approx(0.25)
