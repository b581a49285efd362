"""Exports of every task family: the factorized export of a tagger loads in plain transformers' own auto class with the
compressed model's logits, the merged one without custom code, and every export's card names the family, how much
calibration data made its Fisher (N sequences x L tokens for a language model, N examples otherwise) and the score
measured in the task's metric with its direction, under the family's pipeline tag."""
import math
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from fwsvd_core.compression.card_metadata import calibration_record, without_local_paths
from fwsvd_core.compression.export import save_compressed
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.inputs.families import family_of, family_of_model, load_task_data
from fwsvd_core.inputs.families.causal_lm import windows
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model

LENGTH = 16


def tiny_model(kind: str, folder: Path, minilm_dir: Path) -> Path:
    """A tiny BERT tagger with CoNLL-2003's labels, a tiny LLaMA decoder or a tiny BERT classifier, with MiniLM's
    tokenizer."""
    import transformers as tf
    from conftest import tiny_config

    torch.manual_seed(0)
    if kind == "token-classification":
        labels = get_task("conll2003").label_names
        config = tiny_config("bert", num_labels=len(labels))
        config.id2label, config.label2id = dict(enumerate(labels)), {name: i for i, name in enumerate(labels)}
        model = tf.AutoModelForTokenClassification.from_config(config)
    elif kind == "causal-lm":
        model = tf.AutoModelForCausalLM.from_config(tf.LlamaConfig(
            vocab_size=30522, pad_token_id=0, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    else:
        model = tf.AutoModelForSequenceClassification.from_config(tiny_config("bert"))
    model.save_pretrained(folder)
    tf.AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


def task_data(kind: str, tokenizer, glue_dir: Path):
    """(train, dev) of the family's task: generated CoNLL sentences, GLUE sentences as windows, SST-2."""
    if kind == "token-classification":
        task = get_task("conll2003")
        return (load_task_data(task, "train", "synthetic").sample(12, seed=0),
                load_task_data(task, "dev", "synthetic").sample(40, seed=0))
    if kind == "causal-lm":
        task = get_task("wikitext2")
        return tuple(windows(tokenizer, load_task_data(task, split, "glue", glue_dir), LENGTH).sample(n, seed=0)
                     for split, n in (("train", 12), ("dev", 8)))
    task = get_task("sst2")
    return load_task_data(task, "train", "glue", glue_dir).sample(12, seed=0), load_task_data(
        task, "dev", "glue", glue_dir).sample(40, seed=0)


@pytest.fixture(scope="module", params=["token-classification", "causal-lm", "sequence-classification"])
def exported(request, tmp_path_factory, minilm_dir, glue_dir):
    """(family name, the compressed model, its factorized export, its merged export, a batch of inputs, (train, dev))."""
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    loaded = load_model(tiny_model(kind, root / "model", minilm_dir), device="cpu")
    train, dev = task_data(kind, loaded.tokenizer, glue_dir)
    session = CompressionSession(loaded)
    fisher = estimate_fisher(loaded.model, loaded.tokenizer, train, n_examples=None, max_length=LENGTH * 4,
                             use_cache=False)
    session.set_fisher(fisher)
    compressed = session.compress("fwsvd-output", uniform_ranks(session.layers, 0.25))
    scores = {label: evaluate(model, loaded.tokenizer, dev, max_length=LENGTH * 4).metrics
              for label, model in (("dense", loaded.model), ("fwsvd-output", compressed))}
    extra = {"source": "tiny", "task": train.task.name, "scores": scores, "eval data": dev.source,
             "fisher": {"estimator": fisher.estimator, "examples": fisher.n_examples, "skipped": fisher.n_skipped},
             "calibration": calibration_record(train, fisher.n_examples)}
    folder = save_compressed(compressed, loaded.tokenizer, root / "export", extra)
    merged = save_compressed(compressed, loaded.tokenizer, root / "merged", extra, merge=True)
    if kind == "token-classification":
        batch = loaded.tokenizer([["Jordan", "visited", "Paris", "."]], is_split_into_words=True, return_tensors="pt")
    else:
        batch = loaded.tokenizer(["the film was a joy to watch"], return_tensors="pt")
    return kind, compressed, folder, merged, dict(batch), (train, dev)


def test_the_export_loads_in_plain_transformers_with_the_compressed_models_outputs(exported):
    kind, compressed, folder, merged, batch, _ = exported
    auto = family_of(get_task({"token-classification": "conll2003", "causal-lm": "wikitext2"}.get(kind, "sst2")))
    with torch.no_grad():
        expected = compressed(**batch).logits
        torch.testing.assert_close(load_model(folder, device="cpu").model(**batch).logits, expected)
        plain = auto.auto_model_class().from_pretrained(folder, trust_remote_code=True)
        torch.testing.assert_close(plain(**batch).logits, expected)
        dense = auto.auto_model_class().from_pretrained(merged)
        torch.testing.assert_close(dense(**batch).logits, expected, rtol=1e-4, atol=1e-4)
    assert family_of_model(plain) is family_of_model(dense) is auto


@pytest.mark.parametrize("which", ["export", "merged"])
def test_the_card_names_the_family_the_calibration_data_and_the_score_in_its_metric(exported, which):
    kind, _, folder, merged, _, (train, dev) = exported
    card_file = (folder if which == "export" else merged) / "README.md"
    card, data = card_file.read_text(), ModelCard.load(card_file).data
    family = family_of(train.task)
    assert data.pipeline_tag == family.pipeline_tag and f"- Task family: {kind} (" in card
    assert f"{family.auto_class}.from_pretrained" in card
    size = {"causal-lm": f"12 sequences x {LENGTH} tokens"}.get(kind, "12 examples")
    assert f"- Calibration data: {size}, drawn from {without_local_paths(train.source)}" in card
    metric, direction = {"token-classification": ("f1", "higher"), "causal-lm": ("perplexity", "lower"),
                         "sequence-classification": ("accuracy", "higher")}[kind]
    results = {r.metric_type: r for r in data.eval_results}
    score = results[metric].metric_value
    shown = f"{score:,.0f}" if score >= 1e4 else f"{score:.4g}"
    assert math.isfinite(score) and f"- Score: {metric} {shown} (dense " in card
    assert f"; {direction} is better), measured on {without_local_paths(dev.source)}" in card
    # scored on generated sentences, or on GLUE sentences as text: the card claims no hub data set it was not scored on
    expected = "nyu-mll/glue" if kind == "sequence-classification" else train.task.name
    assert results[metric].dataset_type == expected


def test_compress_merge_on_the_command_line_states_the_calibration_windows(tmp_path, minilm_dir, glue_dir, capsys):
    """compress --merge of a fused-projection decoder (Phi-3): a standard checkpoint plain transformers loads, whose
    card says how many windows of how many tokens made the Fisher and the perplexity measured."""
    import transformers as tf

    from fwsvd_core.cli import main

    torch.manual_seed(0)
    config = tf.Phi3Config(vocab_size=30522, pad_token_id=0, bos_token_id=1, eos_token_id=2, hidden_size=32,
                           intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=64)
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "phi3")
    tf.AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(tmp_path / "phi3")
    out = tmp_path / "merged"
    code = main(["compress", "--model", str(tmp_path / "phi3"), "--task", "wikitext2", "--data-source", "glue",
                 "--data-dir", str(glue_dir), "--max-length", str(LENGTH), "--fisher-samples", "10", "--method",
                 "fwsvd-input", "--rank-ratio", "0.25", "--evaluate", "--eval-subsample", "20", "--merge",
                 "--output-dir", str(out)])
    assert code == 0, capsys.readouterr()
    merged = tf.AutoModelForCausalLM.from_pretrained(out)
    assert type(merged).__name__ == "Phi3ForCausalLM"
    assert merged.generate(torch.tensor([[101, 2023, 2143]]), max_new_tokens=3, do_sample=False).shape == (1, 6)
    card = (out / "README.md").read_text()
    assert ModelCard.load(out / "README.md").data.pipeline_tag == "text-generation"
    assert f"- Calibration data: 10 sequences x {LENGTH} tokens, drawn from GLUE SST-2 train sentences" in card
    assert "- Task family: causal-lm (" in card and "- Score: perplexity " in card and "; lower is better)" in card


@pytest.mark.parametrize("merge", [False, True])
def test_a_large_export_is_written_in_shards_that_load_back(tmp_path, minilm_dir, merge):
    """Issue 25, 2: weights past max_shard_size go into numbered shards and their index (transformers' layout), each
    under the limit; the export loads back with the compressed model's outputs, in this tool and in plain
    transformers."""
    import json

    from safetensors import safe_open

    from fwsvd_core.compression.checkpoint import WEIGHTS_FILE, WEIGHTS_INDEX_FILE

    loaded = load_model(tiny_model("causal-lm", tmp_path / "model", minilm_dir), device="cpu")
    session = CompressionSession(loaded, use_disk_cache=False)
    compressed = session.compress("svd", uniform_ranks(session.layers, 0.25))
    folder = save_compressed(compressed, loaded.tokenizer, tmp_path / "export", {"task": "wikitext2"}, merge=merge,
                             max_shard_size="1M")
    index = json.loads((folder / WEIGHTS_INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert not (folder / WEIGHTS_FILE).exists() and len(shards) >= 2
    for shard in shards:  # the embeddings (3.9 MB) are a shard of their own, every other shard under the limit
        with safe_open(str(folder / shard), framework="pt") as fh:
            sizes = [fh.get_slice(k).get_shape() for k in fh.keys()]
        total = sum(math.prod(s) * 4 for s in sizes)
        assert total <= 2**20 or len(sizes) == 1
    batch = dict(loaded.tokenizer(["the film was a joy to watch"], return_tensors="pt"))
    with torch.no_grad():
        expected = compressed(**batch).logits
        auto = family_of(get_task("wikitext2")).auto_model_class()
        if merge:
            torch.testing.assert_close(auto.from_pretrained(folder)(**batch).logits, expected, rtol=1e-4, atol=1e-4)
        else:
            torch.testing.assert_close(load_model(folder, device="cpu").model(**batch).logits, expected)
            torch.testing.assert_close(auto.from_pretrained(folder, trust_remote_code=True)(**batch).logits, expected)
