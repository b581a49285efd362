"""Every decoder layout the tool claims, on tiny configs: LLaMA, Mistral, Qwen2 (biases on q/k/v), Qwen3 (q_norm and
k_norm) with grouped-query attention, Phi-3 with fused projections (`qkv_proj`, `gate_up_proj`) and GPT-2 (`Conv1D`).
Each one is compressed by every method of the registry, recompressed at new ranks, fine-tuned after compression,
exported, read back by this tool and by plain transformers (`trust_remote_code=True`), generated from and merged."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fwsvd_core.analysis.figures import fisher_overview
from fwsvd_core.compression.apply import with_weights
from fwsvd_core.compression.export import save_compressed
from fwsvd_core.compression.finetune import finetune_compressed
from fwsvd_core.compression.methods import method_names
from fwsvd_core.compression.rank_table import rank_table_of
from fwsvd_core.compression.ranks import count_params, uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.activations import estimate_activation_stats
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.estimation.kronecker import estimate_kronecker
from fwsvd_core.inputs.families import load_task_data
from fwsvd_core.inputs.families.causal_lm import windows
from fwsvd_core.inputs.layers import ROLES
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model

LM = get_task("wikitext2")
LENGTH = 16
DECODERS = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gpt2")
GROUPED = {"llama", "mistral", "qwen2", "qwen3"}  # k/v projections narrower than q


def decoder_config(arch: str):
    """A tiny config of `arch`: hidden 32, 2 layers, 4 heads over 2 key/value heads, MiniLM's vocabulary."""
    import transformers as tf

    common = dict(vocab_size=30522, pad_token_id=0, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=30522, pad_token_id=0)
    classes = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config,
               "qwen3": tf.Qwen3Config, "phi3": tf.Phi3Config}
    # Qwen3's own head_dim is 128 whatever the hidden size; Phi-3's end-of-text id (32000) is past MiniLM's vocabulary
    extra = {"qwen3": {"head_dim": 8}, "phi3": {"bos_token_id": 1, "eos_token_id": 2}}.get(arch, {})
    return classes[arch](**common, **extra)


@pytest.fixture(scope="module", params=DECODERS)
def decoder(request, tmp_path_factory, minilm_dir, glue_dir):
    """(architecture, its saved folder with the MiniLM tokenizer, a session with every input a method needs, train
    and dev windows)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("decoder") / request.param
    model = AutoModelForCausalLM.from_config(decoder_config(request.param))
    for name, parameter in model.named_parameters():  # transformers starts biases and norms at 0 and 1: move them
        if name.endswith("bias") or "norm" in name:
            parameter.data += 0.1 * torch.randn_like(parameter)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    loaded = load_model(folder, device="cpu")
    train = windows(loaded.tokenizer, load_task_data(LM, "train", "glue", glue_dir), LENGTH).sample(24, seed=0)
    dev = windows(loaded.tokenizer, load_task_data(LM, "dev", "glue", glue_dir), LENGTH).sample(8, seed=1)
    session = CompressionSession(loaded)
    settings = dict(n_examples=None, max_length=LENGTH, use_cache=False)
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, train, **settings))
    session.set_activations(estimate_activation_stats(loaded.model, loaded.tokenizer, train, **settings))
    session.set_kronecker(estimate_kronecker(loaded.model, loaded.tokenizer, train, iterations=1, **settings))
    return request.param, folder, session, train, dev


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def test_every_layer_has_a_role_the_figures_know(decoder):
    arch, _, session, _, _ = decoder
    layers = session.layers
    assert len({l.block for l in layers}) == 2
    assert all(l.role in ROLES and l.role != "other" for l in layers), [(l.name, l.role) for l in layers]
    heatmap = fisher_overview(layers, {l.name: float(session.fisher.per_layer[l.name].sum()) for l in layers}).data[0]
    assert list(heatmap.y) == [r for r in ROLES if any(l.role == r for l in layers)]
    assert not np.isnan(np.asarray(heatmap.z, dtype=float)).any()  # one cell per layer, no role left out
    by_role = {l.role: l for l in layers if l.block == 0}
    if arch in GROUPED:
        assert by_role["key"].out_features == by_role["value"].out_features == by_role["query"].out_features // 2
    if arch == "phi3":  # fused: q, k and v in one map, gate and up in another
        assert set(by_role) == {"qkv", "attention output", "FFN gate+in", "FFN out"}
        assert by_role["qkv"].out_features == 32 + 2 * 16 and by_role["FFN gate+in"].out_features == 2 * 64


def test_every_method_compresses_and_at_full_rank_gives_the_dense_model(decoder):
    arch, _, session, _, dev = decoder
    ids = torch.tensor([dev.text_a[0]])
    dense = logits(session.model, ids)
    full = {l.name: l.max_rank for l in session.layers}
    for method in method_names():
        compressed = session.compress(method, uniform_ranks(session.layers, 0.25))
        assert count_params(compressed) < count_params(session.model), method
        assert math.isfinite(evaluate(compressed, session.loaded.tokenizer, dev, max_length=LENGTH).score), method
        factors = session.factors_at(method, full)
        rebuilt = with_weights(session.model, {name: f.reconstruct(full[name]) for name, f in factors.items()})
        torch.testing.assert_close(logits(rebuilt, ids), dense, rtol=1e-3, atol=1e-3, msg=f"{arch} {method}")


def test_the_rank_editor_recompresses_at_new_ranks(decoder):
    _, _, session, _, dev = decoder
    first = session.compress("fwsvd-input", uniform_ranks(session.layers, 0.25))
    edited = {l.name: r for l, r in zip(session.layers, [2, 4] * len(session.layers), strict=False)}
    again = session.compress("fwsvd-input", edited)
    table = rank_table_of(again)
    assert table is not None and {name: row.rank for name, row in table.layers.items()} == edited
    assert count_params(again) < count_params(first)
    assert math.isfinite(evaluate(again, session.loaded.tokenizer, dev, max_length=LENGTH).score)


def test_fine_tuning_after_compression_lowers_the_training_loss(decoder):
    _, _, session, train, _ = decoder
    compressed = session.compress("svd", uniform_ranks(session.layers, 0.25))
    tuned, result = finetune_compressed(compressed, session.loaded.tokenizer, train, steps=12, lr=3e-3,
                                        batch_size=8, max_length=LENGTH)
    assert result.steps == 12
    before = evaluate(compressed, session.loaded.tokenizer, train, max_length=LENGTH).metrics["loss"]
    after = evaluate(tuned, session.loaded.tokenizer, train, max_length=LENGTH).metrics["loss"]
    assert after < before


def test_the_export_loads_back_and_in_plain_transformers_generates_and_merges(decoder, tmp_path: Path):
    from transformers import AutoModelForCausalLM

    _, _, session, _, dev = decoder
    compressed = session.compress("fwsvd-output", uniform_ranks(session.layers, 0.25))
    ids = torch.tensor([dev.text_a[0]])
    prompt = ids[:, :6]
    expected = compressed.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)
    folder = save_compressed(compressed, session.loaded.tokenizer, tmp_path / "lm")
    back = load_model(folder, device="cpu")
    torch.testing.assert_close(logits(back.model, ids), logits(compressed, ids))
    assert torch.equal(back.model.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0), expected)
    plain = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    torch.testing.assert_close(logits(plain, ids), logits(compressed, ids))
    assert torch.equal(plain.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0), expected)
    merged_folder = save_compressed(compressed, session.loaded.tokenizer, tmp_path / "merged", merge=True)
    merged = AutoModelForCausalLM.from_pretrained(merged_folder)
    assert type(merged).__name__ == type(session.model).__name__
    torch.testing.assert_close(logits(merged, ids), logits(compressed, ids), rtol=1e-4, atol=1e-4)
    assert torch.equal(merged.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0), expected)
