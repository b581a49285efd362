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
