"""The command line for every task family: a tagger on the generated NER task and a decoder on the GLUE sentences as
text go through compress --evaluate, and their exports load back as models of their family."""
import json

import pytest
import torch

from fwsvd_core.cli import main
from fwsvd_core.inputs.families import family_of_model
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model


@pytest.fixture(scope="module")
def models(tmp_path_factory, minilm_dir):
    import transformers as tf
    from conftest import tiny_config

    conll = get_task("conll2003")
    root = tmp_path_factory.mktemp("families")
    torch.manual_seed(0)
    config = tiny_config("bert", num_labels=len(conll.label_names))
    config.id2label, config.label2id = dict(enumerate(conll.label_names)), {n: i for i, n in enumerate(conll.label_names)}
    tf.AutoModelForTokenClassification.from_config(config).save_pretrained(root / "tagger")
    decoder = tf.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=30522, pad_token_id=0)
    tf.AutoModelForCausalLM.from_config(decoder).save_pretrained(root / "decoder")
    for name in ("tagger", "decoder"):
        tf.AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(root / name)
    return root


@pytest.mark.parametrize(("name", "task", "extra", "metric"), [
    ("tagger", "conll2003", ["--data-source", "synthetic", "--method", "fwsvd-output"], "f1"),
    ("decoder", "wikitext2", ["--data-source", "glue", "--max-length", "32", "--method", "kfac"], "perplexity"),
])
def test_compress_and_evaluate_a_model_of_each_family(models, glue_dir, tmp_path, capsys, name, task, extra, metric):
    out = tmp_path / f"{name}-compressed"
    code = main(["compress", "--model", str(models / name), "--task", task, "--data-dir", str(glue_dir), *extra,
                 "--rank-ratio", "0.25", "--fisher-samples", "16", "--evaluate", "--eval-subsample", "40",
                 "--output-dir", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and f"dense: {metric} " in printed
    results = json.loads(out.with_name(out.name + ".results.json").read_text())
    assert set(results["scores"]["dense"]) >= {metric}
    back = load_model(out, device="cpu")
    assert family_of_model(back.model) is family_of_model(load_model(models / name, device="cpu").model)
    assert family_of_model(back.model).name == get_task(task).family


def write_tagged(path, sentences):
    """A CoNLL-format file: one word and its tag per line, a blank line between sentences."""
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sentences) + "\n")
    return path


DRUG_SENTENCES = [[("Take", "O"), ("aspirin", "B-DRUG"), ("daily", "O")],
                  [("Ibuprofen", "B-DRUG"), ("sodium", "I-DRUG"), ("helps", "O"), ("Maria", "B-PER")]] * 6


@pytest.fixture(scope="module")
def drug_tagger(tmp_path_factory, minilm_dir):
    """A tagger of a task outside the registry, its config naming its own tags (in another order than the files')."""
    import transformers as tf
    from conftest import tiny_config

    tags = ["B-PER", "O", "B-DRUG", "I-DRUG"]
    folder = tmp_path_factory.mktemp("drug") / "tagger"
    torch.manual_seed(0)
    config = tiny_config("bert", num_labels=len(tags))
    config.id2label, config.label2id = dict(enumerate(tags)), {n: i for i, n in enumerate(tags)}
    tf.AutoModelForTokenClassification.from_config(config).save_pretrained(folder)
    tf.AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


def test_your_own_tagged_files_make_a_task_of_the_token_family_with_the_model_s_tags(drug_tagger, tmp_path, capsys):
    train = write_tagged(tmp_path / "drugs_train.conll", DRUG_SENTENCES)
    dev = write_tagged(tmp_path / "drugs_dev.conll", DRUG_SENTENCES[:4])
    out = tmp_path / "compressed"
    code = main(["compress", "--model", str(drug_tagger), "--task", "token-classification", "--train-file", str(train),
                 "--validation-file", str(dev), "--method", "svd", "--rank-ratio", "0.5", "--fisher-samples", "8",
                 "--evaluate", "--output-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    results = json.loads(out.with_name(out.name + ".results.json").read_text())
    scored = results["data"]["scored"]
    assert scored["examples"] == 4 and "drugs_dev.conll" in scored["source"] and scored["task"] == "drugs_train"
    assert {"f1", "precision", "recall", "accuracy"} <= set(results["scores"]["dense"])


def test_your_own_text_files_make_a_language_modelling_task(models, tmp_path, capsys):
    from fwsvd_core.inputs.families import task_for_files

    words = "the cat sat on the mat and the dog ran in the park while it rained all day long".split()
    train, dev = tmp_path / "notes.txt", tmp_path / "notes_dev.txt"
    train.write_text("\n\n".join(" ".join(words[i:] + words[:i]) for i in range(12)))
    dev.write_text("\n\n".join(" ".join(words[i:] + words[:i]) for i in range(6)))
    task = task_for_files("causal-lm", None, [train, dev])
    assert task.family == "causal-lm" and task.primary_metric == "perplexity" and task.name == "notes"
    out = tmp_path / "compressed"
    code = main(["compress", "--model", str(models / "decoder"), "--task", "causal-lm", "--train-file", str(train),
                 "--validation-file", str(dev), "--max-length", "16", "--method", "svd", "--rank-ratio", "0.5",
                 "--fisher-samples", "4", "--evaluate", "--output-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    results = json.loads(out.with_name(out.name + ".results.json").read_text())
    assert "notes_dev.txt" in results["data"]["scored"]["source"] and results["scores"]["dense"]["perplexity"] > 1


def test_a_registered_task_scored_on_your_own_file(minilm_sst2_dir, glue_dir, tmp_path, capsys):
    own = tmp_path / "reviews.csv"
    own.write_text("sentence,label\n\"a wonderful, moving film\",1\ndull and far too long,0\nI loved every minute,1\n"
                   "a waste of two hours,0\n")
    code = main(["compress", "--model", str(minilm_sst2_dir), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--validation-file", str(own), "--method", "svd", "--rank-ratio", "0.9", "--fisher-samples", "4",
                 "--evaluate", "--output-dir", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out.results.json").read_text())
    assert results["data"]["scored"]["examples"] == 4 and "reviews.csv" in results["data"]["scored"]["source"]


def test_a_family_without_files_is_a_usage_error_naming_its_tasks(models, capsys):
    code = main(["compress", "--model", str(models / "decoder"), "--task", "causal-lm", "--method", "svd",
                 "--rank-ratio", "0.5", "--output-dir", "unused"])
    assert code == 2 and "wikitext2" in capsys.readouterr().err
