import functools

import pytest
import torch
from conftest import LM_WINDOW, PEAK_RSS_SOURCE

from fwsvd_core.estimation.gradients import GradientBatch, activation_checkpointing, gradient_batches
from fwsvd_core.inputs.layers import find_layers
from fwsvd_core.loading import load_model


def test_each_batch_marks_its_padding_and_padding_gets_no_gradient(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    data = sst2_small[0].sample(8, seed=7)
    layers = find_layers(loaded.model)
    seen = 0
    for batch in gradient_batches(loaded.model, loaded.tokenizer, data, layers, batch_size=4, max_length=128):
        seen += batch.n_good
        assert batch.attention is not None and batch.attention.shape[0] == batch.n_good
        assert bool((batch.attention == 0).any())  # sentences of different lengths: some padding
        for layer in layers:
            mask = batch.token_mask(layer.name)
            assert mask.shape == (batch.n_good, batch.inputs[layer.name].shape[1], 1)
            torch.testing.assert_close(mask[..., 0], batch.attention.float())
            # a padded position is attended by no token, so the loss does not reach its outputs
            assert float(batch.grads[layer.name][mask[..., 0] == 0].abs().max()) == 0.0
    assert seen == 8


def test_a_layer_called_twice_per_example_repeats_the_mask():
    x = torch.ones(2, 6, 3)
    batch = GradientBatch({"shared": x, "odd": torch.ones(2, 5, 3)}, {}, 2, torch.tensor([[1, 1, 0], [1, 0, 0]]))
    torch.testing.assert_close(batch.token_mask("shared")[..., 0],
                               torch.tensor([[1.0, 1, 0, 1, 1, 0], [1, 0, 0, 1, 0, 0]]))
    assert bool((batch.token_mask("odd") == 1).all())  # tokens that do not follow the text: all kept


@pytest.mark.parametrize("name", ["bert", "llama", "albert"])
def test_statistics_with_activation_checkpointing_equal_those_without(name, tiny_models, sst2_small, tiny_lm_dir,
                                                                      lm_windows):
    """Issue 25, 1: checkpointed blocks run again in the backward pass; the Fisher and both Kronecker factors are the
    same, and the blocks are as they were afterwards (ALBERT: one shared block called once per layer)."""
    from fwsvd_core.estimation.fisher import compute_fisher
    from fwsvd_core.estimation.kronecker import compute_kronecker

    if name == "llama":
        loaded, data, length = load_model(tiny_lm_dir, device="cpu"), lm_windows[0].sample(8, seed=0), LM_WINDOW
    else:
        loaded, data, length = load_model(tiny_models[name], device="cpu"), sst2_small[0].sample(8, seed=0), 64
    model, tokenizer = loaded.model, loaded.tokenizer
    plain_fisher = compute_fisher(model, tokenizer, data, max_length=length)
    plain = compute_kronecker(model, tokenizer, data, iterations=1, max_length=length)
    with activation_checkpointing(model):
        blocks = [m for n, m in model.named_modules() if "forward" in m.__dict__]
        assert blocks and all(isinstance(m.forward, functools.partial) for m in blocks)
        fisher = compute_fisher(model, tokenizer, data, max_length=length)
        kron = compute_kronecker(model, tokenizer, data, iterations=1, max_length=length)
    assert not any("forward" in m.__dict__ for m in model.modules())
    for layer, expected in plain_fisher.per_layer.items():
        torch.testing.assert_close(fisher.per_layer[layer], expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
    for kind in ("kfac", "nearest"):
        for layer in plain.inputs[kind]:
            for side in (kron.inputs, kron.outputs):
                ref = (plain.inputs if side is kron.inputs else plain.outputs)[kind][layer]
                torch.testing.assert_close(side[kind][layer], ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))


MEASURE_CHECKPOINTING = """
import sys, numpy as np, torch, transformers as tf
from fwsvd_core.estimation.gradients import activation_checkpointing
from fwsvd_core.estimation.kronecker import compute_kronecker
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.layers import require_layers
from fwsvd_core.inputs.tasks import get_task
torch.manual_seed(0)
torch.set_num_threads(1)
config = tf.LlamaConfig(vocab_size=2048, hidden_size=128, intermediate_size=384, num_hidden_layers=24,
                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
model = tf.AutoModelForCausalLM.from_config(config).eval()
tokenizer = tf.AutoTokenizer.from_pretrained(sys.argv[1])
ids = torch.randint(1000, 2000, (4, 512), generator=torch.Generator().manual_seed(0)).tolist()
data = TaskData(get_task("wikitext2"), "train", ids, None, np.zeros(len(ids)), "random windows")
first = [l for l in require_layers(model) if l.block == 0]  # the backward goes through every block to reach it
warm = TaskData(data.task, "train", [i[:16] for i in ids[:1]], None, np.zeros(1), "one short window")
compute_kronecker(model, tokenizer, warm, first, iterations=0, batch_size=1, max_length=16)  # libraries' first use
before = reset_peak()
with activation_checkpointing(model, sys.argv[2] == "on"):
    compute_kronecker(model, tokenizer, data, first, iterations=0, batch_size=4, max_length=512)
print(peak_kb() - before)
"""


def test_activation_checkpointing_lowers_the_peak_memory_of_a_long_backward(minilm_dir):
    """Issue 25, 1: 4 sequences of 512 tokens through 24 blocks (a vocabulary of 2048: small logits), the statistics of
    the first block only (small): the backward's activations dominate (about 15 MB a block), and checkpointed they are
    each block's input and one block's in the backward. Each run is a process of its own, after a short pass that
    loads what the first use of each library does, with a fixed malloc threshold so that freed buffers leave the
    resident memory (else the allocator's reuse makes its peak noisy)."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    rise = {}
    for mode in ("off", "on"):
        done = subprocess.run([sys.executable, "-c", PEAK_RSS_SOURCE + MEASURE_CHECKPOINTING, str(minilm_dir), mode],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(REPO), "MALLOC_MMAP_THRESHOLD_": "65536"})
        assert done.returncode == 0, done.stderr[-3000:]
        rise[mode] = int(done.stdout.split()[-1])  # kilobytes
    assert rise["on"] < 0.5 * rise["off"], rise


def test_the_command_line_checkpoints_when_the_activations_would_not_fit(tiny_lm_dir, glue_dir, capsys, monkeypatch,
                                                                          caplog, tmp_path):
    """`--activation-checkpointing auto` (the default) turns it on, and says so, when a batch's backward activations
    exceed half the memory available, and takes fewer examples per batch when even then they would; the statistics
    are those of a run without either (each run with a cache of its own)."""
    import logging

    from safetensors.torch import load_file

    from fwsvd_core import commands
    from fwsvd_core.cli import main

    args = ["statistics", "--model", str(tiny_lm_dir), "--task", "wikitext2", "--data-source", "glue", "--data-dir",
            str(glue_dir), "--calib-samples", "6", "--seq-len", "16", "--kronecker", "--kronecker-iterations", "0",
            "--device", "cpu"]
    monkeypatch.setenv("FWSVD_CACHE_DIR", str(tmp_path / "plain"))
    assert main([*args, "--activation-checkpointing", "off"]) == 0, capsys.readouterr().err
    monkeypatch.setenv("FWSVD_CACHE_DIR", str(tmp_path / "auto"))
    # without checkpointing a batch would not fit; with it, two examples' activations do
    monkeypatch.setattr(commands, "backward_activations",
                        lambda config, batch, length, checkpointed: 2**40 if not checkpointed or batch > 2 else 1)
    with caplog.at_level(logging.INFO, logger="fwsvd_core"):
        assert main(args) == 0, capsys.readouterr().err
    assert "activation checkpointing on: a batch of 6 x 16 tokens keeps about 1.0 TiB" in caplog.text
    assert "statistics: 2 example(s) per backward pass instead of 6" in caplog.text
    for kind in ("fisher", "kronecker"):
        (plain,), (auto,) = ((tmp_path / run / kind).glob("*.safetensors") for run in ("plain", "auto"))
        expected, got = load_file(plain), load_file(auto)
        assert got.keys() == expected.keys()
        for name, tensor in expected.items():
            torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=1e-6 * float(tensor.abs().max()))
