"""Statistics in passes over groups of blocks equal one pass's (issue 25, 1), for an encoder and a decoder."""
import pytest
import torch
from conftest import LM_WINDOW, PEAK_RSS_SOURCE

from fwsvd_core.errors import FwsvdError, InsufficientMemoryError
from fwsvd_core.estimation.activations import estimate_activation_stats
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.estimation.gradients import captured_bytes
from fwsvd_core.estimation.kronecker import estimate_kronecker
from fwsvd_core.estimation.passes import PassPlan, block_groups, plan_passes
from fwsvd_core.inputs.layers import LayerInfo, require_layers
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


def split_blocks(layers: list[LayerInfo]) -> PassPlan:
    """A plan cutting every block in two: its first two layers, then the rest."""
    groups = []
    for block in sorted({l.block for l in layers if l.block is not None}):
        names = [l.name for l in layers if l.block == block]
        groups += [tuple(names[:2]), tuple(names[2:])]
    return PassPlan(None, len(groups), 0, 0, 0, tuple(groups))


@pytest.mark.parametrize("per_pass", ["blocks", "layers"])
def test_activations_and_kronecker_factors_in_passes_equal_one_pass(model_and_data, per_pass):
    loaded, data, length = model_and_data
    args = (loaded.model, loaded.tokenizer, data, 12)
    groups = 1 if per_pass == "blocks" else split_blocks(require_layers(loaded.model))
    one = estimate_activation_stats(*args, max_length=length, use_cache=False)
    passes = estimate_activation_stats(*args, max_length=length, blocks_per_pass=groups)
    assert passes.n_tokens == one.n_tokens
    if per_pass == "blocks":
        assert passes.shared_with == one.shared_with
    assert_same(passes.second_moment, one.second_moment)
    assert_same(passes.mean_abs, one.mean_abs)
    single = estimate_kronecker(*args, iterations=1, max_length=length, use_cache=False)
    grouped = estimate_kronecker(*args, iterations=1, max_length=length, blocks_per_pass=groups)
    assert grouped.n_examples == single.n_examples and len(grouped.change) == len(single.change) == 1
    assert grouped.change[0] == pytest.approx(single.change[0], rel=1e-4)
    for kind in single.inputs:
        assert_same(grouped.inputs[kind], single.inputs[kind])
        assert_same(grouped.outputs[kind], single.outputs[kind])
    fisher = estimate_fisher(*args, max_length=length, form="full", use_cache=False)
    assert_same(estimate_fisher(*args, max_length=length, form="full", blocks_per_pass=groups).per_layer,
                fisher.per_layer)


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


def test_kronecker_factors_of_several_passes_stay_on_disk_and_compress_as_those_of_one(model_and_data):
    """Issue 25, 1 and 2: each group's factors are read back from its cache entry one layer at a time, and a
    Kronecker-factored method factorizes from them as from factors held in memory."""
    from fwsvd_core.cache import StoredTensors
    from fwsvd_core.compression.session import CompressionSession

    loaded, data, length = model_and_data
    args = (loaded.model, loaded.tokenizer, data, 12)
    single = estimate_kronecker(*args, iterations=0, max_length=length, use_cache=False)
    grouped = estimate_kronecker(*args, iterations=0, max_length=length, blocks_per_pass=1)
    for side in (grouped.inputs, grouped.outputs):
        assert all(isinstance(part, StoredTensors) for part in side["kfac"].maps)  # nothing of them in memory
    factors = {}
    for label, kron in (("one pass", single), ("passes", grouped)):
        session = CompressionSession(loaded, use_disk_cache=False)
        session.set_kronecker(kron)
        factors[label] = session.factors("kfac")
    for name, expected in factors["one pass"].items():
        got = factors["passes"][name]
        product = expected.left @ expected.right
        torch.testing.assert_close(got.left @ got.right, product, rtol=1e-4, atol=1e-5 * float(product.abs().max()))


def test_a_stored_statistic_that_is_gone_is_a_clear_error(model_and_data):
    loaded, data, length = model_and_data
    grouped = estimate_kronecker(loaded.model, loaded.tokenizer, data, 12, iterations=0, max_length=length,
                                 blocks_per_pass=1)
    part = grouped.inputs["kfac"].maps[0]
    name = next(iter(part))
    part.path.unlink()
    with pytest.raises(FwsvdError, match=r"can no longer be read.*estimate them again"):
        grouped.pair(name, "kfac")


LAYERS = [LayerInfo(f"b{b}.{role}", b, role, 8, 8, "linear") for b in range(4) for role in ("query", "key")]


def test_the_plan_takes_the_largest_groups_of_blocks_that_fit():
    def size(group):
        return 100 * len(group)
    assert plan_passes(LAYERS, size, 800).blocks_per_pass is None
    plan = plan_passes(LAYERS, size, 450)  # two blocks (400) fit, three (600) do not
    assert (plan.blocks_per_pass, plan.passes, plan.one_pass_bytes, plan.largest_group_bytes) == (2, 2, 800, 400)
    assert "2 passes of 2 block(s)" in plan.describe("Kronecker factors")
    assert plan_passes(LAYERS, size, 200).blocks_per_pass == 1


def test_when_not_even_one_block_fits_the_plan_packs_consecutive_layers():
    """Issue 25, 1: a LLaMA-7B block's K-FAC sums (6 GiB) do not fit beside the model on 24 GB, its layers' do."""
    sizes = {"query": 100, "key": 60}
    def size(group):
        return sum(sizes[l.role] for l in group)
    plan = plan_passes(LAYERS, size, 150)  # a block (160) does not fit; query + key of the next block (160) neither
    assert plan.blocks_per_pass is None and plan.passes == 8 and plan.largest_group_bytes == 100
    assert [len(g) for g in plan.layer_groups] == [1] * 8
    # three layers a block, 30 + 100 + 30: a block (160) does not fit in 150, two consecutive layers do
    layers = [LayerInfo(f"b{b}.{role}", b, role, 8, 8, "linear") for b in range(4) for role in ("query", "key", "value")]
    sizes.update(query=30, key=100, value=30)
    plan = plan_passes(layers, size, 150)
    assert plan.layer_groups == (("b0.query", "b0.key"), ("b0.value", "b1.query"), ("b1.key", "b1.value"),
                                 ("b2.query", "b2.key"), ("b2.value", "b3.query"), ("b3.key", "b3.value"))
    assert "6 passes of at most 2 layer(s), as one block's statistics do not fit" in plan.describe("Kronecker factors")
    assert [[l.name for l in g] for g in block_groups(layers, plan)] == [list(g) for g in plan.layer_groups]
    sizes.update(query=100, key=60)
    groups = block_groups(LAYERS, plan_passes(LAYERS, size, 150))
    assert [[l.name for l in g] for g in groups] == [[l.name] for l in LAYERS]
    with pytest.raises(InsufficientMemoryError, match=r"even one layer per pass: b0\.query needs"):
        plan_passes(LAYERS, size, 90)


def test_the_command_line_plans_the_passes_from_the_memory_it_has(tiny_lm_dir, glue_dir, capsys, monkeypatch, caplog):
    """`--blocks-per-pass auto` (the default): one pass when the statistics fit in half the memory, else groups."""
    import logging

    from fwsvd_core import commands
    from fwsvd_core.cli import main
    from fwsvd_core.estimation.kronecker import kronecker_estimate

    layers = require_layers(load_model(tiny_lm_dir, device="cpu").model)
    # a block's sums, and its layers' inputs and gradients of a batch of its 6 windows of 16 tokens, in float32
    per_block = max(kronecker_estimate(g, 0).total + captured_bytes(g, 6 * 16, 4) for g in block_groups(layers, 1))
    monkeypatch.setattr(commands, "available_bytes", lambda device: 2 * per_block + 2)  # half of it: one block
    monkeypatch.setattr(commands, "backward_activations", lambda *args: 0)  # a batch of all 6 windows fits
    with caplog.at_level(logging.INFO, logger="fwsvd_core"):
        code = main(["statistics", "--model", str(tiny_lm_dir), "--task", "wikitext2", "--data-source", "glue",
                     "--data-dir", str(glue_dir), "--calib-samples", "6", "--seq-len", "16", "--kronecker",
                     "--kronecker-iterations", "0", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert "Kronecker factors: 2 passes of 1 block(s), planned from the memory estimate" in caplog.text
    assert "Fisher: per-sample estimator" in caplog.text


MEASURE = """
import sys, numpy as np, torch, transformers as tf
from fwsvd_core.estimation.kronecker import estimate_kronecker
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.tasks import get_task
torch.manual_seed(0)
torch.set_num_threads(1)
config = tf.LlamaConfig(vocab_size=30522, hidden_size=512, intermediate_size=1536, num_hidden_layers=12,
                        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=64)
model = tf.AutoModelForCausalLM.from_config(config).eval()
tokenizer = tf.AutoTokenizer.from_pretrained(sys.argv[1])
ids = torch.randint(1000, 2000, (8, 32), generator=torch.Generator().manual_seed(0)).tolist()
data = TaskData(get_task("wikitext2"), "train", ids, None, np.zeros(len(ids)), "random windows")
warm = TaskData(data.task, "train", [ids[0][:8]], None, np.zeros(1), "one short window")
estimate_kronecker(model, tokenizer, warm, 1, iterations=0, max_length=8, use_cache=False)  # libraries' first use
before = reset_peak()
blocks = None if sys.argv[2] == "all" else int(sys.argv[2])
estimate_kronecker(model, tokenizer, data, 8, iterations=0, max_length=32, blocks_per_pass=blocks)
print(peak_kb() - before)
"""


def test_the_peak_memory_falls_with_the_group_size(minilm_dir, tmp_path):
    """Issue 25, 1: a decoder of 12 blocks whose Kronecker statistics (about 40 MB a block, summed in float32)
    dwarf the rest; the rise of the process's peak resident memory while they are estimated, one pass against one
    block per pass (each run in a process of its own, after a short pass that loads what the first use of each library
    does, with a fixed malloc threshold so that freed buffers leave the resident memory)."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {**os.environ, "FWSVD_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO),
           "MALLOC_MMAP_THRESHOLD_": "65536"}
    rise = {}
    for blocks in ("all", "1"):
        done = subprocess.run([sys.executable, "-c", PEAK_RSS_SOURCE + MEASURE, str(minilm_dir), blocks],
                              capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        rise[blocks] = int(done.stdout.split()[-1])  # kilobytes
    assert rise["1"] < 0.4 * rise["all"], rise


def test_compress_streams_when_the_factors_would_not_fit(tiny_lm_dir, glue_dir, tmp_path, capsys, monkeypatch, caplog):
    """Issue 25, 1 and 2 end to end: with little memory the command line plans the Kronecker passes, keeps their
    factors on disk and factorizes each layer as it replaces it; the export equals the one made with memory to spare,
    and its scores are the dense model's before compression and the compressed one's."""
    import json
    import logging

    from fwsvd_core import commands
    from fwsvd_core.cli import main
    from fwsvd_core.estimation.kronecker import kronecker_estimate

    layers = require_layers(load_model(tiny_lm_dir, device="cpu").model)
    common = ["compress", "--model", str(tiny_lm_dir), "--task", "wikitext2", "--data-source", "glue", "--data-dir",
              str(glue_dir), "--calib-samples", "6", "--seq-len", "16", "--method", "kfac", "--rank-ratio", "0.25",
              "--evaluate", "--eval-subsample", "8", "--device", "cpu"]
    assert main([*common, "--output-dir", str(tmp_path / "roomy")]) == 0, capsys.readouterr().err
    per_block = max(kronecker_estimate(g, 0).total + captured_bytes(g, 6 * 16, 4) for g in block_groups(layers, 1))
    monkeypatch.setattr(commands, "available_bytes", lambda device: 2 * per_block + 2)
    monkeypatch.setattr(commands, "backward_activations", lambda *args: 0)  # a batch of all 6 windows fits
    # a tiny model's factors are smaller than a block's statistics: say they are as large as a 7B model's
    monkeypatch.setattr(commands, "factors_bytes", lambda layers: 52 * 2**30)
    with caplog.at_level(logging.INFO, logger="fwsvd_core"):
        assert main([*common, "--output-dir", str(tmp_path / "tight")]) == 0, capsys.readouterr().err
    assert "Kronecker factors: 2 passes of 1 block(s)" in caplog.text
    assert "each layer is factorized as it is replaced" in caplog.text
    results = {name: json.loads((tmp_path / f"{name}.results.json").read_text())["scores"] for name in ("roomy", "tight")}
    assert list(results["tight"]) == ["dense", "kfac"]
    for label in ("dense", "kfac"):
        assert results["tight"][label]["perplexity"] == pytest.approx(results["roomy"][label]["perplexity"], rel=1e-4)
    batch = {"input_ids": torch.tensor([[101, 1996, 2143, 2001, 1037, 6569, 102]])}
    with torch.no_grad():
        logits = [load_model(tmp_path / name, device="cpu").model(**batch).logits for name in ("roomy", "tight")]
    torch.testing.assert_close(logits[1], logits[0], rtol=1e-4, atol=1e-4)
