"""Every page for every task family, through Streamlit's AppTest: a tiny LLaMA (causal LM, the GLUE sentences as
text) and a tiny BERT token classifier (the generated NER task)."""
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_pages import figures, make_app, no_failure

from fwsvd_core.inputs.families import family_names
from fwsvd_core.inputs.tasks import TASKS, get_task

CONLL = get_task("conll2003")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny LLaMA (grouped-query attention) saved with the MiniLM tokenizer."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=30522, pad_token_id=0, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("llama") / "llama"
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tf.AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny BERT token classifier with CoNLL-2003's tags, saved with the MiniLM tokenizer."""
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


def lm_app(llama_dir, glue_dir) -> AppTest:
    return make_app(str(llama_dir), glue_dir, task="wikitext2", fisher_samples=8, eval_subsample=60, seq_len=32)


def ner_app(tagger_dir, glue_dir) -> AppTest:
    return make_app(str(tagger_dir), glue_dir, task="conll2003", data_source="Synthetic (generated)",
                    fisher_samples=16, eval_subsample=40)


@pytest.fixture
def lm(llama_dir, glue_dir) -> AppTest:
    return lm_app(llama_dir, glue_dir).run()


@pytest.fixture
def ner(tagger_dir, glue_dir) -> AppTest:
    return ner_app(tagger_dir, glue_dir).run()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_task_picker_offers_every_task_grouped_by_family(lm):
    no_failure(lm)
    picker = next(s for s in lm.selectbox if s.label == "Task")
    order = [TASKS[o.split("  ·  ")[0]].family for o in picker.options]
    assert sorted(o.split("  ·  ")[0] for o in picker.options) == sorted(TASKS)
    assert [f for f in dict.fromkeys(order)] == family_names()  # one group per family, in the families' order
    assert all(o.endswith(f"  ·  {TASKS[o.split('  ·  ')[0]].family}") for o in picker.options)


def test_a_language_model_is_scored_by_perplexity_lower_is_better_on_windows(lm):
    no_failure(lm)
    shown = metrics(lm)
    assert float(shown["Dense perplexity (lower is better)"]) > 1
    assert shown["Fisher (per-sample)"] == "8 windows"
    assert any(s.label == "Tokens per window (L)" for s in lm.select_slider)
    assert any(s.label == "Training windows for the Fisher" for s in lm.select_slider)
    data = next(m.value for m in lm.markdown if m.value.startswith("**Data:**"))
    assert "windows of 32 tokens" in data and "training windows" in data and "60 of" in data
    assert not lm.warning  # no label mapping for a language model's outputs


def test_a_token_classifier_is_scored_by_entity_f1(ner):
    no_failure(ner)
    shown = metrics(ner)
    assert 0 <= float(shown["Dense f1"]) <= 1 and shown["Fisher (per-sample)"] == "16 examples"
    assert not any(s.label == "Tokens per window (L)" for s in ner.select_slider)
    assert any("generated" in m.value.lower() or "synthetic" in m.value.lower() for m in ner.markdown)


@pytest.mark.parametrize("family", ["lm", "ner"])
def test_the_fisher_page_works_for_every_family(family, request):
    at = request.getfixturevalue(family)
    at.switch_page("pages/fisher.py").run()
    no_failure(at)
    assert len(figures(at)) == 4


@pytest.mark.parametrize("family", ["lm", "ner"])
def test_the_mismatch_page_sweeps_every_family(family, request):
    at = request.getfixturevalue(family)
    at.switch_page("pages/mismatch.py").run()
    no_failure(at)
    next(n for n in at.number_input if n.label == "Examples scored (0 = all)").set_value(30).run()
    next(b for b in at.button if b.label.startswith("Run the sweep")).click().run()
    no_failure(at)
    metric = "perplexity" if family == "lm" else "f1"
    table = at.dataframe[0].value
    assert metric in table.columns and len(table) > 1


def low_rank(at: AppTest) -> AppTest:
    """The rank editor with every layer at a rank ratio of 0.05."""
    at.switch_page("pages/rank_editor.py").run()
    no_failure(at)
    at.slider[0].set_value(0.05).run()
    next(b for b in at.button if b.label == "Fill from rank ratio").click().run()
    no_failure(at)
    return at


def test_the_rank_editor_continues_a_prompt_with_the_dense_and_the_compressed_language_model(lm):
    at = low_rank(lm)
    shown = metrics(at)
    assert "Predicted perplexity (lower is better)" in shown
    assert any(t.label == "Prompt" for t in at.text_input) and not any(t.label == "Sentence" for t in at.text_input)
    next(b for b in at.button if b.label == "Continue the prompt with both models").click().run()
    no_failure(at)
    titles = [m.value for m in at.markdown if m.value in ("**Dense model**", "**Compressed (fwsvd-output)**")]
    assert titles == ["**Dense model**", "**Compressed (fwsvd-output)**"]
    dense, compressed = (t.value for t in at.text[-2:])
    prompt = "The film is a … "
    assert dense.startswith(prompt) and compressed.startswith(prompt)
    assert dense[len(prompt):] and compressed[len(prompt):] and dense != compressed
    next(b for b in at.button if b.label == "Recompress and evaluate").click().run()
    no_failure(at)
    measured = next(m for m in at.metric if m.label.startswith("Measured perplexity (lower is better) (run 1)"))
    from streamlit.proto.Metric_pb2 import Metric

    rose = measured.proto.direction == Metric.MetricDirection.UP
    assert measured.proto.color == (Metric.MetricColor.RED if rose else Metric.MetricColor.GREEN)  # a rise is worse


def test_the_rank_editor_marks_a_sentences_entities_by_the_dense_and_the_compressed_tagger(ner):
    at = low_rank(ner)
    assert "Predicted f1" in metrics(at)
    assert not any(t.label == "Prompt" for t in at.text_input)
    sentence = next(t for t in at.text_input if t.label == "Sentence")
    sentence.set_value("Peter works for Acme in Paris").run()
    no_failure(at)
    table = at.dataframe[-1].value
    assert list(table.columns) == ["word", "dense", "compressed (fwsvd-output)"]
    assert list(table["word"]) == ["Peter", "works", "for", "Acme", "in", "Paris"]
    assert set(table["dense"]) | set(table["compressed (fwsvd-output)"]) <= set(CONLL.label_names)
    marked = [m.value for m in at.markdown if m.value.startswith(("**Dense:**", "**Compressed (fwsvd-output):**"))]
    assert len(marked) == 2 and all("Peter" in m and "Paris" in m for m in marked)


def test_the_export_card_of_a_language_model_states_its_windows_and_a_command_that_repeats_them(lm, tmp_path):
    """Issue 24, 7 from the dashboard's door: the card names the family, the calibration data as N sequences x L
    tokens and the perplexity, and its command keeps the window length."""
    import shlex

    from fwsvd_core.cli import build_parser

    at = low_rank(lm)
    next(t for t in at.text_input if t.label.startswith("Save the compressed model")).set_value(str(tmp_path / "out")).run()
    next(b for b in at.button if b.label == "Save compressed model").click().run()
    no_failure(at)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "- Calibration data: 8 sequences x 32 tokens" in card and "lower is better" in card
    assert "text-generation" in card
    command = card.split("## Reproducing it")[1].split("```")[1].strip()
    args = build_parser().parse_args(shlex.split(command.splitlines()[-1])[3:])
    assert args.max_length == 32 and args.fisher_samples == 8 and args.task == "wikitext2"
