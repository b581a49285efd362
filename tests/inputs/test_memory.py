import re
import resource
import time
from dataclasses import replace

import pytest
import torch
import transformers as tf
from conftest import ARCHITECTURES, tiny_config
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from fwsvd_core.errors import FwsvdError, InsufficientMemoryError
from fwsvd_core.estimation import fisher as fisher_module
from fwsvd_core.inputs import memory
from fwsvd_core.inputs.layers import require_layers
from fwsvd_core.inputs.memory import (
    MemoryEstimate,
    available_bytes,
    check_fisher,
    check_model_load,
    dtype_bytes,
    estimate_fisher,
    estimate_model_load,
    model_shape,
    parameter_count,
    parse_bytes,
    require_fits,
)
from fwsvd_core.inputs.synthetic import synthetic_task_data

LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "vocab_size": 32000}


def built(arch: str):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(tiny_config(arch))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_parameter_count_matches_the_built_model(arch):
    model = built(arch)
    assert parameter_count(tiny_config(arch)) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fisher_storage_is_exact(arch):
    model = built(arch)
    layers = require_layers(model)
    shape = model_shape(tiny_config(arch))
    assert list(shape.compressible) == [(l.name, l.out_features, l.in_features) for l in layers]
    estimate = estimate_fisher(tiny_config(arch), batch_size=16, max_length=64)
    assert estimate.parts["Fisher storage"] == sum(4 * l.out_features * l.in_features for l in layers)
    assert estimate.parts["weights"] >= 4 * sum(p.numel() for p in model.parameters())


def test_sizes_under_each_architectures_names():
    for arch in ("bert", "gpt2", "distilbert", "llama"):
        shape = model_shape(tiny_config(arch))
        assert (shape.hidden_size, shape.num_layers, shape.intermediate_size) == (32, 2, 64 if arch != "gpt2" else 128)
    assert model_shape(tiny_config("albert")).calls_per_layer == 3  # one shared block run three times
    assert model_shape(tiny_config("llama")).gated_ffn
    assert model_shape(tiny_config("gpt2")).activation == "gelu_new"


def test_a_config_transformers_cannot_build_gets_a_guess():
    config = tf.PretrainedConfig(hidden_size=64, num_hidden_layers=3, intermediate_size=256, vocab_size=1000)
    shape = model_shape(config)
    assert not shape.exact and shape.num_layers == 3
    assert shape.compressible_params == 3 * (4 * 64 * 64 + 2 * 64 * 256)
    assert "guessed" in estimate_fisher(config, 8, 32).describe()


def test_weights_in_the_checkpoints_dtype():
    assert dtype_bytes(tf.LlamaConfig(dtype="bfloat16")) == 2
    assert dtype_bytes(tiny_config("bert")) == 4  # unstated: float32
    assert dtype_bytes("torch.float16") == 2 and dtype_bytes(torch.float64) == 8 and dtype_bytes(None) == 4
    half = estimate_model_load(tiny_config("bert"), dtype="float16").parts["weights"]
    assert half < estimate_model_load(tiny_config("bert")).parts["weights"]
    with pytest.raises(FwsvdError, match="Unknown dtype"):
        dtype_bytes("float17")


def _long_sentences(n: int):
    """Synthetic SST-2 sentences padded out with words so that every one is cut at max_length."""
    data = synthetic_task_data("sst2", "train", n)
    return replace(data, text_a=[t + " " + " ".join(["word"] * 100) for t in data.text_a])


def _peak_allocated(fn) -> int:
    """Peak bytes torch allocated on the CPU while `fn` ran, from the profiler's allocation records."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage  # allocations minus frees of the event itself
        peak = max(peak, current)
    return peak


@pytest.fixture(scope="module")
def tiny_bert(minilm_dir):
    return built("bert").eval(), AutoTokenizer.from_pretrained(minilm_dir)


def test_estimate_is_above_the_measured_peak(tiny_bert):
    model, tokenizer = tiny_bert
    data = _long_sentences(32)  # two batches: the first one's tensors are still held during the second
    fisher_module.compute_fisher(model, tokenizer, _long_sentences(2), batch_size=2, max_length=64)  # warm-up
    measured = _peak_allocated(lambda: fisher_module.compute_fisher(model, tokenizer, data, batch_size=16,
                                                                     max_length=64))
    estimate = estimate_fisher(model.config, batch_size=16, max_length=64, weights_loaded=True)
    assert measured > estimate.parts["Fisher storage"]  # the profiler did see the run
    assert measured <= estimate.total <= 3 * measured, (measured, estimate.describe())


def test_captured_part_covers_the_tensors_compute_fisher_holds(tiny_bert, monkeypatch):
    """An independent tally: the bytes of each batch's layer inputs and gradients as compute_fisher gets them."""
    model, tokenizer = tiny_bert
    tallies = []
    original = fisher_module._accumulate_batch

    def tally(batch, estimator, sums):
        tallies.append(sum(t.numel() * t.element_size() for t in (*batch.inputs.values(), *batch.grads.values())))
        return original(batch, estimator, sums)

    monkeypatch.setattr(fisher_module, "_accumulate_batch", tally)
    fisher_module.compute_fisher(model, tokenizer, _long_sentences(16), batch_size=16, max_length=64)
    estimate = estimate_fisher(model.config, batch_size=16, max_length=64)
    held = next(v for k, v in estimate.parts.items() if k.startswith("previous batch"))
    assert tallies and max(tallies) <= held


def test_a_small_limit_refuses_with_the_estimate_and_the_options(monkeypatch):
    monkeypatch.setenv("FWSVD_MEMORY_LIMIT", "1M")
    estimate = estimate_fisher(tiny_config("bert"), batch_size=16, max_length=64)
    with pytest.raises(InsufficientMemoryError) as info:
        require_fits(estimate, "cpu")
    message = str(info.value)
    assert memory.format_bytes(estimate.total) in message and "1.0 MiB" in message and "FWSVD_MEMORY_LIMIT" in message
    assert "smaller batch size" in message and "--fisher-form profiles" in message
    assert "GPU" in message and "fewer examples would barely help" in message


def test_an_unset_limit_lets_a_tiny_model_fit(monkeypatch):
    monkeypatch.delenv("FWSVD_MEMORY_LIMIT", raising=False)
    assert available_bytes("cpu") > 0
    require_fits(estimate_fisher(tiny_config("bert"), batch_size=16, max_length=64), "cpu")
    check_model_load(tiny_config("bert"), "cpu")


@pytest.mark.parametrize("text, expected", [("1M", 2**20), ("8G", 8 * 2**30), ("512m", 512 * 2**20),
                                            ("1.5GiB", 3 * 2**29), (" 1000 ", 1000), ("2kb", 2048)])
def test_limit_values(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "8X", "0", "1e9", "G"])
def test_bad_limit_values_are_a_clear_error(text, monkeypatch):
    monkeypatch.setenv("FWSVD_MEMORY_LIMIT", text)
    with pytest.raises(FwsvdError, match="FWSVD_MEMORY_LIMIT"):
        available_bytes("cpu")


def test_check_fisher_names_a_batch_size_that_fits(monkeypatch):
    config = tiny_config("bert")
    budget = estimate_fisher(config, batch_size=5, max_length=64, weights_loaded=True).total
    monkeypatch.setenv("FWSVD_MEMORY_LIMIT", str(int(budget / 0.9) + 1))
    check_fisher(config, "cpu", batch_size=5, max_length=64)  # just fits
    with pytest.raises(InsufficientMemoryError, match="a smaller batch size: 5 fits at max length 64"):
        check_fisher(config, "cpu", batch_size=32, max_length=64)
    monkeypatch.setenv("FWSVD_MEMORY_LIMIT", "100K")
    with pytest.raises(InsufficientMemoryError, match="even batch size 1 needs"):
        check_fisher(config, "cpu", batch_size=32, max_length=64)


def test_unknown_estimator_and_sizes_are_refused():
    with pytest.raises(FwsvdError, match="estimator"):
        estimate_fisher(tiny_config("bert"), 16, 64, estimator="diagonal")
    with pytest.raises(FwsvdError, match="positive"):
        estimate_fisher(tiny_config("bert"), 0, 64)


def test_llama_7b_is_estimated_without_allocating(monkeypatch):
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    config = tf.LlamaConfig(**LLAMA_7B)
    n = parameter_count(config)
    load = estimate_model_load(config)
    fisher = estimate_fisher(config, batch_size=16, max_length=128)
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 2**20  # under 1 GiB more
    assert abs(n - 6.7e9) < 0.05 * 6.7e9  # 6.61 B: LLaMA-7B less its LM head, plus a 2-label score
    assert load.parts["weights"] == pytest.approx(4 * n, rel=1e-3)
    assert fisher.parts["Fisher storage"] > 4 * 6e9 and fisher.total > 3 * 4 * n
    assert "Fisher (per-sample) of 6.61 B weights" in fisher.describe()
    monkeypatch.setenv("FWSVD_MEMORY_LIMIT", "24G")
    with pytest.raises(InsufficientMemoryError, match=re.escape("Loading 6.61 B weights")):
        check_model_load(config, "cpu")
    check_model_load(tf.LlamaConfig(**LLAMA_7B, dtype="bfloat16"), "cpu")  # 12.3 GiB fits in 24


def test_cgroup_limits_are_respected(tmp_path, monkeypatch):
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir(), v1.mkdir()
    (v2 / "memory.max").write_text(f"{4 * 2**30}\n")
    (v2 / "memory.current").write_text(f"{3 * 2**30}\n")
    (v2 / "memory.stat").write_text(f"anon 1\ninactive_file {2**29}\n")
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (v1 / "memory.usage_in_bytes").write_text("1\n")
    monkeypatch.setattr(memory, "_cgroup_dirs", lambda: [(2, v2), (1, v1)])
    assert memory._cgroup_available() == 4 * 2**30 - (3 * 2**30 - 2**29)
    monkeypatch.delenv("FWSVD_MEMORY_LIMIT", raising=False)
    assert available_bytes("cpu") <= 4 * 2**30
    (v2 / "memory.max").write_text("max\n")
    assert memory._cgroup_available() is None


def test_describe_lists_every_part():
    estimate = MemoryEstimate("Fisher of 1 k weights", {"weights": 2**30, "Fisher storage": 2**29})
    assert estimate.total == 3 * 2**29
    assert estimate.describe() == "Fisher of 1 k weights: 1.5 GiB (weights 1.0 GiB, Fisher storage 512.0 MiB)"


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_the_low_memory_fisher_stores_row_and_column_sums_only(arch):
    config = tiny_config(arch)
    model = AutoModelForSequenceClassification.from_config(config)
    layers = require_layers(model)
    low = estimate_fisher(config, 4, 32, form="profiles")
    full = estimate_fisher(config, 4, 32)
    assert low.parts["Fisher storage"] == 4 * sum(l.out_features + l.in_features for l in layers)
    assert full.parts["Fisher storage"] == 4 * sum(l.out_features * l.in_features for l in layers)
    assert "row and column sums only" in low.what


def test_a_7b_fisher_fits_24_gib_only_in_the_low_memory_form(monkeypatch):
    monkeypatch.setenv("FWSVD_MEMORY_LIMIT", "24G")
    config = tf.LlamaConfig(**LLAMA_7B, dtype="bfloat16")
    with pytest.raises(InsufficientMemoryError, match="--fisher-form profiles"):
        check_fisher(config, "cpu", 1, 128, weights_loaded=False)
    assert check_fisher(config, "cpu", 1, 128, weights_loaded=False, form="profiles").total < 24 * 2**30


def test_a_checkpointed_backward_keeps_one_blocks_activations():
    """Issue 25, 1: a 7B decoder's backward over 2048 tokens keeps tens of GB of activations (float32, sdpa attention);
    checkpointed, two blocks' and every block's input."""
    from fwsvd_core.inputs.memory import backward_activations

    config = tf.LlamaConfig(**LLAMA_7B)
    plain = backward_activations(config, 1, 2048)
    checkpointed = backward_activations(config, 1, 2048, checkpointed=True)
    assert plain > 20 * 2**30 and checkpointed < plain / 8
    # each block more adds its input only: 2048 x 4096 floats
    deeper = tf.LlamaConfig(**{**LLAMA_7B, "num_hidden_layers": 64})
    assert backward_activations(deeper, 1, 2048, checkpointed=True) - checkpointed == 4 * 2048 * 32 * 4096
