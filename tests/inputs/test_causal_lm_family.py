"""The causal-LM family end to end on tiny decoders (GPT-2, LLaMA with grouped-query attention): windows, perplexity,
the Fisher and the Kronecker factors per sequence, compression and exports that generate, each against a slow
reference (one window at a time through transformers' own `model(ids, labels=ids).loss`)."""
import math
from pathlib import Path

import pytest
import torch

from fwsvd_core.compression.export import save_compressed
from fwsvd_core.compression.methods import get_method, method_names
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.estimation.kronecker import estimate_kronecker
from fwsvd_core.inputs.families import family_of, family_of_model, load_task_data
from fwsvd_core.inputs.families.causal_lm import windows
from fwsvd_core.inputs.layers import find_layers
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model

LM = get_task("wikitext2")
LENGTH = 24


def decoder_config(arch: str):
    import transformers as tf

    common = dict(vocab_size=30522, pad_token_id=0)
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, **common)
    return tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=64, **common)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def decoder_dir(request, tmp_path_factory, minilm_dir) -> Path:
    """A tiny decoder with a language-model head, saved with the MiniLM tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("decoder") / request.param
    AutoModelForCausalLM.from_config(decoder_config(request.param)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def text(glue_dir):
    return load_task_data(LM, "train", "glue", glue_dir), load_task_data(LM, "dev", "glue", glue_dir)


def window_losses(model, data):
    """transformers' own loss of each window, one at a time."""
    for window in data.text_a:
        ids = torch.tensor([window])
        yield model(input_ids=ids, labels=ids).loss


def test_the_text_is_cut_into_whole_windows_of_one_tokenization(decoder_dir, text):
    loaded = load_model(decoder_dir, device="cpu")
    assert family_of_model(loaded.model).name == "causal-lm" == family_of(LM).name
    dev = text[1]
    assert dev.source.startswith("GLUE SST-2 dev sentences")
    cut = windows(loaded.tokenizer, dev, LENGTH)
    whole = loaded.tokenizer("\n\n".join(dev.text_a), add_special_tokens=False)["input_ids"]
    assert len(cut) == len(whole) // LENGTH and all(len(w) == LENGTH for w in cut.text_a)
    assert [t for w in cut.text_a for t in w] == whole[: len(cut) * LENGTH]


def test_perplexity_is_exp_of_the_mean_window_loss_as_transformers_computes_it(decoder_dir, text):
    loaded = load_model(decoder_dir, device="cpu")
    dev = windows(loaded.tokenizer, text[1], LENGTH).sample(40, seed=0)
    with torch.no_grad():
        reference = torch.stack(list(window_losses(loaded.model, dev))).mean()
    result = evaluate(loaded.model, loaded.tokenizer, dev, batch_size=6, max_length=LENGTH)
    assert result.primary_metric == "perplexity"
    assert result.score == pytest.approx(math.exp(float(reference)), rel=1e-5)
    assert result.metrics["loss"] == pytest.approx(float(reference), rel=1e-5)
    assert not family_of(LM).higher_is_better("perplexity")


def test_the_per_sample_fisher_is_per_sequence(decoder_dir, text):
    loaded = load_model(decoder_dir, device="cpu")
    data = windows(loaded.tokenizer, text[0], LENGTH).sample(6, seed=1)
    layers = find_layers(loaded.model)
    expected = {l.name: torch.zeros(l.out_features, l.in_features) for l in layers}
    for loss in window_losses(loaded.model, data):
        loaded.model.zero_grad()
        loss.backward()
        for l in layers:
            module = loaded.model.get_submodule(l.name)
            grad = module.weight.grad.t() if type(module).__name__ == "Conv1D" else module.weight.grad
            expected[l.name] += grad**2 / len(data)
    fisher = estimate_fisher(loaded.model, loaded.tokenizer, data, n_examples=None, batch_size=4, max_length=LENGTH,
                             use_cache=False)
    for name, value in expected.items():
        torch.testing.assert_close(fisher.per_layer[name], value, rtol=1e-4, atol=1e-12)


def test_kfac_factors_are_token_sums(decoder_dir, text):
    loaded = load_model(decoder_dir, device="cpu")
    data = windows(loaded.tokenizer, text[0], LENGTH).sample(4, seed=2)
    layer = find_layers(loaded.model)[0]
    module = loaded.model.get_submodule(layer.name)
    a = torch.zeros(layer.in_features, layer.in_features)
    b = torch.zeros(layer.out_features, layer.out_features)
    for window in data.text_a:
        seen: dict = {}
        handle = module.register_forward_hook(lambda m, args, out, seen=seen: seen.update(x=args[0].detach(), y=out))
        ids = torch.tensor([window])
        loss = loaded.model(input_ids=ids, labels=ids).loss
        handle.remove()
        (g,) = torch.autograd.grad(loss, seen["y"])
        a += seen["x"][0].T @ seen["x"][0]
        b += g[0].T @ g[0]
    factors = estimate_kronecker(loaded.model, loaded.tokenizer, data, n_examples=None, batch_size=3,
                                 max_length=LENGTH, use_cache=False, iterations=0)
    torch.testing.assert_close(factors.inputs["kfac"][layer.name], a / (len(data) * LENGTH), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(factors.outputs["kfac"][layer.name], b / len(data), rtol=1e-4, atol=1e-12)


def test_every_method_compresses_a_decoder_and_the_export_generates_in_plain_transformers(decoder_dir, text, tmp_path):
    from transformers import AutoModelForCausalLM

    loaded = load_model(decoder_dir, device="cpu")
    train = windows(loaded.tokenizer, text[0], LENGTH).sample(16, seed=3)
    session = CompressionSession(loaded)
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, train, n_examples=None, max_length=LENGTH))
    ranks = uniform_ranks(session.layers, 0.25)
    usable = [m for m in method_names() if get_method(m).factorize is not None and not get_method(m).needs - {"fisher"}]
    assert {"svd", "fwsvd-input", "fwsvd-output"} <= set(usable)
    for method in usable:
        compressed = session.compress(method, ranks)
        dev = windows(loaded.tokenizer, text[1], LENGTH).sample(8, seed=4)
        assert math.isfinite(evaluate(compressed, loaded.tokenizer, dev, max_length=LENGTH).score), method
    prompt = torch.tensor([train.text_a[0][:6]])
    expected = compressed.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)
    folder = save_compressed(compressed, loaded.tokenizer, tmp_path / "lm")
    back = load_model(folder, device="cpu")
    assert torch.equal(back.model.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0), expected)
    plain = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        torch.testing.assert_close(plain(prompt).logits, compressed(prompt).logits)
    assert torch.equal(plain.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0), expected)
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "AutoModelForCausalLM" in card
    merged = AutoModelForCausalLM.from_pretrained(save_compressed(compressed, loaded.tokenizer, tmp_path / "merged",
                                                                  merge=True))
    assert torch.equal(merged.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0), expected)
