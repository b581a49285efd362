"""The token-classification family end to end: the Fisher, the Kronecker factors, evaluation, compression and exports
of a tagger, each against a slow reference (one sentence at a time through transformers' own loss, seqeval)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from seqeval.metrics import f1_score

from fwsvd_core.compression.export import save_compressed
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.estimation.kronecker import estimate_kronecker
from fwsvd_core.inputs.families import family_of, family_of_model, load_task_data
from fwsvd_core.inputs.layers import find_layers
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.inputs.token_alignment import encode_tagged
from fwsvd_core.loading import load_model

CONLL = get_task("conll2003")


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny BERT tagger with CoNLL-2003's labels, saved with the MiniLM tokenizer."""
    from conftest import tiny_config
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    torch.manual_seed(0)
    config = tiny_config("bert", num_labels=len(CONLL.label_names))
    config.id2label = dict(enumerate(CONLL.label_names))
    config.label2id = {name: i for i, name in enumerate(CONLL.label_names)}
    folder = tmp_path_factory.mktemp("tagger") / "bert"
    AutoModelForTokenClassification.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sentences():
    return load_task_data(CONLL, "train", "synthetic").sample(12, seed=0), load_task_data(CONLL, "dev", "synthetic")


def reference_losses_and_grads(model, tokenizer, data):
    """Per sentence, transformers' own token-classification loss (mean over the tagged first pieces) and its
    weight gradients, one sentence at a time."""
    enc = encode_tagged(tokenizer, data.text_a, [list(t) for t in data.labels], 128)
    for i in range(len(data)):
        model.zero_grad()
        out = model(input_ids=torch.tensor([enc["input_ids"][i]]), labels=torch.tensor([enc["labels"][i]]))
        out.loss.backward()
        yield {l.name: model.get_submodule(l.name).weight.grad.clone() for l in find_layers(model)}


def test_a_tagger_is_loaded_as_one_and_the_synthetic_task_is_labelled(tagger_dir, sentences):
    loaded = load_model(tagger_dir, device="cpu")
    assert type(loaded.model).__name__ == "BertForTokenClassification"
    assert family_of_model(loaded.model).name == "token-classification" == family_of(CONLL).name
    train, dev = sentences
    assert train.source.startswith("synthetic") and len(dev) == 500
    assert all(len(words) == len(tags) for words, tags in zip(train.text_a, train.labels, strict=True))


def test_the_per_sample_fisher_equals_a_loop_of_one_sentence_backward_passes(tagger_dir, sentences):
    loaded = load_model(tagger_dir, device="cpu")
    data = sentences[0]
    expected = {l.name: torch.zeros(l.out_features, l.in_features) for l in find_layers(loaded.model)}
    for grads in reference_losses_and_grads(loaded.model, loaded.tokenizer, data):
        for name, g in grads.items():
            expected[name] += g**2 / len(data)
    fisher = estimate_fisher(loaded.model, loaded.tokenizer, data, n_examples=None, batch_size=5, use_cache=False)
    for name, value in expected.items():
        torch.testing.assert_close(fisher.per_layer[name], value, rtol=1e-4, atol=1e-12)


def test_kfac_factors_are_token_sums_of_outer_products(tagger_dir, sentences):
    loaded = load_model(tagger_dir, device="cpu")
    data = sentences[0].sample(5, seed=1)
    layer = find_layers(loaded.model)[0]
    module = loaded.model.get_submodule(layer.name)
    enc = encode_tagged(loaded.tokenizer, data.text_a, [list(t) for t in data.labels], 128)
    a = torch.zeros(layer.in_features, layer.in_features)
    b = torch.zeros(layer.out_features, layer.out_features)
    tokens = 0
    for i in range(len(data)):  # one sentence at a time: its inputs and the gradients of its loss at the layer
        seen: dict = {}
        handle = module.register_forward_hook(lambda m, args, out, seen=seen: seen.update(x=args[0].detach(), y=out))
        out = loaded.model(input_ids=torch.tensor([enc["input_ids"][i]]), labels=torch.tensor([enc["labels"][i]]))
        handle.remove()
        (g,) = torch.autograd.grad(out.loss, seen["y"])
        a += seen["x"][0].T @ seen["x"][0]
        b += g[0].T @ g[0]
        tokens += len(enc["input_ids"][i])
    factors = estimate_kronecker(loaded.model, loaded.tokenizer, data, n_examples=None, batch_size=3,
                                 use_cache=False, iterations=0)
    # K-FAC: A averages x x^T over the real tokens, B sums g g^T over them per sentence (padding excluded)
    torch.testing.assert_close(factors.inputs["kfac"][layer.name], a / tokens, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(factors.outputs["kfac"][layer.name], b / len(data), rtol=1e-4, atol=1e-12)


def test_evaluation_scores_entities_as_seqeval_does(tagger_dir, sentences):
    loaded = load_model(tagger_dir, device="cpu")
    dev = sentences[1].sample(60, seed=3)
    enc = encode_tagged(loaded.tokenizer, dev.text_a, None, 128)
    gold, predicted = [], []
    with torch.no_grad():
        for i, words in enumerate(dev.text_a):
            logits = loaded.model(input_ids=torch.tensor([enc["input_ids"][i]])).logits[0]
            ids, tags = enc["word_ids"][i], []
            for position, word in enumerate(ids):
                if word is not None and (position == 0 or ids[position - 1] != word):
                    tags.append(CONLL.label_names[int(logits[position].argmax())])
            predicted.append(tags + ["O"] * (len(words) - len(tags)))
            gold.append([CONLL.label_names[t] for t in dev.labels[i]])
    result = evaluate(loaded.model, loaded.tokenizer, dev, batch_size=7)
    assert result.primary_metric == "f1"
    assert result.score == pytest.approx(f1_score(gold, predicted, zero_division=0), abs=1e-12)
    words = sum(len(g) for g in gold)
    assert result.metrics["accuracy"] == pytest.approx(
        sum(a == b for g, p in zip(gold, predicted, strict=True) for a, b in zip(g, p, strict=True)) / words)
    sub = evaluate(loaded.model, loaded.tokenizer, sentences[1], batch_size=16, subsample=100)
    assert sub.interval is not None and sub.interval[0] <= sub.score <= sub.interval[1]


def test_a_compressed_tagger_exports_and_loads_in_plain_transformers(tagger_dir, tmp_path, sentences):
    from transformers import AutoModelForTokenClassification

    loaded = load_model(tagger_dir, device="cpu")
    session = CompressionSession(loaded)
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, sentences[0], n_examples=None))
    compressed = session.compress("fwsvd-output", uniform_ranks(session.layers, 0.25))
    folder = save_compressed(compressed, loaded.tokenizer, tmp_path / "tagger")
    batch = loaded.tokenizer([["Jordan", "visited", "Paris", "."]], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        expected = compressed(**batch).logits
        back = load_model(folder, device="cpu")
        assert family_of_model(back.model).name == "token-classification"
        torch.testing.assert_close(back.model(**batch).logits, expected)
        plain = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)
        torch.testing.assert_close(plain(**batch).logits, expected)
    assert "pipeline_tag: token-classification" in (folder / "README.md").read_text()
    merged = save_compressed(compressed, loaded.tokenizer, tmp_path / "merged", merge=True)
    with torch.no_grad():
        dense = AutoModelForTokenClassification.from_pretrained(merged)
        np.testing.assert_allclose(dense(**batch).logits.numpy(), expected.numpy(), atol=1e-5)


def test_a_task_of_your_own_files_takes_the_model_s_tags_or_else_the_files(tmp_path):
    from types import SimpleNamespace

    from fwsvd_core.inputs.families import task_for_files

    path = tmp_path / "mine.conll"
    path.write_text("Take O\naspirin B-DRUG\n\nMaria B-PER\nsaw O\n")
    generic = SimpleNamespace(id2label={0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    from_files = task_for_files("token-classification", generic, [path])
    assert from_files.name == "mine" and set(from_files.label_names) == {"O", "B-DRUG", "I-DRUG", "B-PER", "I-PER"}
    named = SimpleNamespace(id2label={0: "B-PER", 1: "O", 2: "B-DRUG", 3: "I-DRUG"})
    assert task_for_files("token-classification", named, [path]).label_names == ("B-PER", "O", "B-DRUG", "I-DRUG")
    assert task_for_files("conll2003", named, [path]).name == "conll2003"  # a registered task keeps its own tags
