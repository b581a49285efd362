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


# --ranks in the ecosystem's words: an export's rank table, the rank editor's file, peft's rank_pattern

ENCODER = [LayerInfo(f"bert.encoder.layer.{i}.{part}", i, kind, out, inp, "linear")
           for i in range(2) for part, kind, out, inp in (
               ("attention.self.query", "query", 32, 32), ("attention.self.key", "key", 32, 32),
               ("attention.output.dense", "attention out", 32, 32), ("intermediate.dense", "FFN in", 64, 32),
               ("output.dense", "FFN out", 32, 64))]


def test_a_peft_rank_pattern_gives_suffixes_patterns_and_a_default_rank(tmp_path):
    import json

    from fwsvd_core.compression.ranks import read_rank_request

    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({"peft_type": "LORA", "r": 16, "rank_pattern": {"query": 8, "layer.1.*dense": 4},
                                "target_modules": ["query", "key"]}))
    ranks = read_rank_request(path).resolve(ENCODER)
    assert ranks["bert.encoder.layer.0.attention.self.query"] == ranks["bert.encoder.layer.1.attention.self.query"] == 8
    assert ranks["bert.encoder.layer.1.intermediate.dense"] == ranks["bert.encoder.layer.1.output.dense"] == 4
    assert ranks["bert.encoder.layer.0.intermediate.dense"] == 16  # r: neither named nor matched
    assert validate_ranks(ENCODER, ranks) == ranks
    # a default above a layer's full rank keeps that layer whole; without r, unmatched layers keep full rank
    path.write_text(json.dumps({"rank_pattern": {"key": 2}, "r": 40}))
    ranks = read_rank_request(path).resolve(ENCODER)
    assert ranks["bert.encoder.layer.0.attention.self.key"] == 2 and ranks["bert.encoder.layer.0.output.dense"] == 32
    path.write_text(json.dumps({"rank_pattern": {"key": 2}}))
    assert set(validate_ranks(ENCODER, read_rank_request(path).resolve(ENCODER)).values()) == {2, 32}


def test_a_rank_pattern_matching_no_layer_or_not_a_pattern_is_refused(tmp_path):
    import json

    from fwsvd_core.compression.ranks import read_rank_request

    path = tmp_path / "ranks.json"
    path.write_text(json.dumps({"rank_pattern": {"q_proj": 8}, "r": 4}))
    with pytest.raises(RankError, match="match no compressible layer"):
        read_rank_request(path).resolve(ENCODER)
    path.write_text(json.dumps({"rank_pattern": {"layer.(": 8}}))
    with pytest.raises(RankError, match="not a valid regular expression"):
        read_rank_request(path)
    path.write_text(json.dumps({"rank_pattern": {"query": 0}}))
    with pytest.raises(RankError, match="no whole-number rank of 1 or more"):
        read_rank_request(path)


def test_an_export_and_the_rank_editors_file_are_rank_files(tiny_models, tmp_path):
    import json

    from fwsvd_core.compression.export import save_compressed
    from fwsvd_core.compression.ranks import read_rank_file, read_rank_request
    from fwsvd_core.compression.session import CompressionSession
    from fwsvd_core.loading import load_model

    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    ranks = uniform_ranks(session.layers, 0.25)
    export = save_compressed(session.compress("svd", ranks), loaded.tokenizer, tmp_path / "export")
    for given in (export, export / "fwsvd_ranks.json"):  # the folder itself, or its rank table
        request = read_rank_request(given)
        assert request.ranks == ranks and request.method == "svd" and read_rank_file(given) == ranks
    merged = save_compressed(session.compress("svd", ranks), loaded.tokenizer, tmp_path / "merged", merge=True)
    assert read_rank_request(merged).ranks == ranks
    editor = tmp_path / "editor.json"
    editor.write_text(json.dumps({"method": "fwsvd-input", "ranks": ranks}))
    assert read_rank_request(editor).method == "fwsvd-input" and read_rank_request(editor).resolve(session.layers) == ranks
    with pytest.raises(RankError, match="holds no rank table"):
        read_rank_request(tiny_models["bert"])
