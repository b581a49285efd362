"""Statistics in passes over groups of blocks equal one pass's (issue 25, 1), for an encoder and a decoder."""
import pytest
import torch
from conftest import LM_WINDOW

from fwsvd_core.errors import FwsvdError
from fwsvd_core.estimation.activations import estimate_activation_stats
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.estimation.kronecker import estimate_kronecker
from fwsvd_core.estimation.passes import block_groups
from fwsvd_core.inputs.layers import require_layers
from fwsvd_core.loading import load_model


def test_block_groups_cut_consecutive_blocks_and_keep_every_layer_once(tiny_models):
    layers = require_layers(load_model(tiny_models["bert"], device="cpu").model)
    assert block_groups(layers, None) == [layers]
    groups = block_groups(layers, 1)
    assert sorted(l.name for g in groups for l in g) == sorted(l.name for l in layers)
    assert [sorted({l.block for l in g} - {None}) for g in groups] == [[0], [1]]
    assert block_groups(layers, 5) == [layers]
    with pytest.raises(FwsvdError):
        block_groups(layers, 0)


@pytest.fixture(params=["bert", "llama"])
def model_and_data(request, tiny_models, sst2_small, tiny_lm_dir, lm_windows):
    """(loaded model, calibration data, max length) of an encoder classifier and of a decoder language model."""
    if request.param == "bert":
        return load_model(tiny_models["bert"], device="cpu"), sst2_small[0], 64
    return load_model(tiny_lm_dir, device="cpu"), lm_windows[0], LM_WINDOW


def assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6 * float(tensor.abs().max()))


@pytest.mark.parametrize("form", ["full", "profiles"])
def test_the_fisher_in_one_pass_per_block_equals_one_pass(model_and_data, form):
    loaded, data, length = model_and_data
    args = (loaded.model, loaded.tokenizer, data, 12)
    one = estimate_fisher(*args, max_length=length, form=form, use_cache=False)
    passes = estimate_fisher(*args, max_length=length, form=form, blocks_per_pass=1)
    assert passes.n_examples == one.n_examples == 12 and "2 passes" in passes.notes[-1]
    assert_same(passes.per_layer, one.per_layer)
    assert_same(passes.rows, one.rows)
    assert_same(passes.cols, one.cols)
    again = estimate_fisher(*args, max_length=length, form=form, blocks_per_pass=1)
    assert again.from_cache and again.key == passes.key  # each group was cached as it was finished


def test_activations_and_kronecker_factors_in_passes_equal_one_pass(model_and_data):
    loaded, data, length = model_and_data
    args = (loaded.model, loaded.tokenizer, data, 12)
    one = estimate_activation_stats(*args, max_length=length, use_cache=False)
    passes = estimate_activation_stats(*args, max_length=length, blocks_per_pass=1)
    assert passes.n_tokens == one.n_tokens and passes.shared_with == one.shared_with
    assert_same(passes.second_moment, one.second_moment)
    assert_same(passes.mean_abs, one.mean_abs)
    single = estimate_kronecker(*args, iterations=1, max_length=length, use_cache=False)
    grouped = estimate_kronecker(*args, iterations=1, max_length=length, blocks_per_pass=1)
    assert grouped.n_examples == single.n_examples and len(grouped.change) == len(single.change) == 1
    assert grouped.change[0] == pytest.approx(single.change[0], rel=1e-4)
    for kind in single.inputs:
        assert_same(grouped.inputs[kind], single.inputs[kind])
        assert_same(grouped.outputs[kind], single.outputs[kind])


def test_the_command_line_caches_one_entry_per_group(tiny_lm_dir, glue_dir, capsys):
    from fwsvd_core.cache import cache_root
    from fwsvd_core.cli import main

    code = main(["statistics", "--model", str(tiny_lm_dir), "--task", "wikitext2", "--data-source", "glue", "--data-dir",
                 str(glue_dir), "--calib-samples", "6", "--seq-len", "16", "--activations", "--kronecker",
                 "--kronecker-iterations", "1", "--blocks-per-pass", "1", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    # the tiny decoder has two blocks: two passes, each statistic cached per group
    assert [len(list((cache_root() / kind).glob("*.safetensors"))) for kind in ("fisher", "activations", "kronecker")] \
        == [2, 2, 2]
