import pytest

from fwsvd_core import demo
from fwsvd_core.compression.finetune import RECORD_FILE
from fwsvd_core.demo import demo_dir, ensure_demo, load_demo
from fwsvd_core.errors import ModelLoadError
from fwsvd_core.loading import load_model


def test_reduced_demo_from_the_glue_folder_is_built_once_then_reused(glue_dir, monkeypatch):
    directory, record = ensure_demo("demo:sst2", data_dir=glue_dir, train_examples=64, epochs=1)
    assert record.data_source.startswith("GLUE folder") and not record.synthetic
    assert record.train_examples == 64 and record.dev_examples == 872 and record.base.startswith("sentence")
    assert (directory / RECORD_FILE).is_file()
    monkeypatch.setattr(demo, "build_demo", lambda *a, **k: pytest.fail("a finished demo was rebuilt"))
    again, record_again = ensure_demo("demo:sst2", data_dir=glue_dir)
    assert again == directory and record_again == record


def test_without_hub_or_data_the_demo_is_synthetic_and_says_so(monkeypatch):
    monkeypatch.delenv("FWSVD_DATA_DIR", raising=False)
    monkeypatch.setattr(demo, "DEMOS", {**demo.DEMOS, "demo:stsb": demo.DemoSpec("stsb", 64, 1.0, 5e-5, synthetic_dev=50)})
    loaded = load_demo("demo:stsb", device="cpu")
    assert "synthetic" in loaded.source and loaded.notes[0].startswith("SYNTHETIC DEMO")
    assert loaded.model.config.num_labels == 1 and loaded.model.config.fwsvd_demo["synthetic"]


def test_a_demo_built_on_the_generated_task_is_built_again_once_real_data_is_at_hand(glue_dir, monkeypatch):
    monkeypatch.delenv("FWSVD_DATA_DIR", raising=False)
    monkeypatch.setattr(demo, "hub_reachable", lambda: False)
    monkeypatch.setattr(demo, "DEMOS", {**demo.DEMOS, "demo:sst2": demo.DemoSpec("sst2", 32, 1.0, 5e-5, synthetic_dev=40)})
    _, synthetic = ensure_demo("demo:sst2")
    assert synthetic.synthetic and demo.needs_build("demo:sst2", glue_dir) and not demo.needs_build("demo:sst2")
    from fwsvd_core.inputs import synthetic as generator
    with monkeypatch.context() as later:  # a later version of the generated task: the old build is not reused
        later.setattr(generator, "SYNTHETIC_VERSION", generator.SYNTHETIC_VERSION + 1)
        assert demo.needs_build("demo:sst2")
    # the command line passes its --data-dir on to the demo build
    real = load_model("demo:sst2", device="cpu", data_dir=glue_dir)
    assert "real data" in real.source and not any(n.startswith("SYNTHETIC") for n in real.notes)
    assert not demo.needs_build("demo:sst2", glue_dir)


def test_an_unfinished_demo_folder_is_never_taken_for_a_finished_one_nor_deleted(glue_dir, monkeypatch):
    half = demo_dir("demo:sst2")
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")  # a folder without the build's record and manifest: not the tool's
    calls = []
    monkeypatch.setattr(demo, "build_demo", lambda *a, **k: calls.append(1))
    with pytest.raises(ModelLoadError, match="move it away"):
        ensure_demo("demo:sst2", data_dir=glue_dir)
    assert calls == [] and (half / "config.json").read_text() == "{}"


def test_a_crash_during_fine_tuning_leaves_no_demo(glue_dir, monkeypatch):
    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "finetune", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_demo("demo:sst2", data_dir=glue_dir, train_examples=16)
    assert not demo_dir("demo:sst2").exists()
    assert not [p for p in demo_dir("demo:sst2").parent.glob("*") if "building" in p.name]


def test_unknown_demo():
    with pytest.raises(ModelLoadError, match="the demos are demo:sst2, demo:stsb"):
        load_model("demo:mnli")


@pytest.mark.slow
def test_full_sst2_demo_meets_its_target(glue_dir, monkeypatch, tmp_path_factory):
    """The real build, as a user without internet gets it: at least 0.85 dev accuracy."""
    monkeypatch.setenv("FWSVD_DATA_DIR", str(glue_dir))
    _directory, record = ensure_demo("demo:sst2")
    print(f"demo:sst2 built in {record.build_seconds} s: {record.dev_score}")
    assert record.dev_score["accuracy"] >= 0.85
    assert record.train_examples == demo.DEMOS["demo:sst2"].train_examples


# issue 24, 6: demos of the token-classification and causal-LM families, declared by their task

def test_the_ner_demo_builds_offline_on_the_generated_task_loads_as_a_tagger_and_is_rebuilt_when_damaged(glue_dir,
                                                                                                        monkeypatch):
    from fwsvd_core.inputs.families import family_of_model
    from fwsvd_core.inputs.token_data import CONLL2003_LABELS

    monkeypatch.delenv("FWSVD_DATA_DIR", raising=False)
    assert demo.demo_spec("demo:ner").task == "conll2003"
    # a GLUE folder holds no tagged sentences: offline, the demo is trained on the generated NER task
    directory, record = ensure_demo("demo:ner", data_dir=glue_dir, train_examples=32, epochs=1)
    assert record.synthetic and record.data_source.startswith("synthetic NER") and record.train_examples == 32
    assert record.dev_metric == "f1" and 0.0 <= record.score <= 1.0 and record.dev_examples > 0
    assert not demo.needs_build("demo:ner", glue_dir) and not demo.needs_build("demo:ner")
    loaded = load_model("demo:ner", device="cpu", data_dir=glue_dir)
    assert family_of_model(loaded.model).name == "token-classification"
    assert type(loaded.model).__name__.endswith("ForTokenClassification")
    assert [loaded.model.config.id2label[i] for i in range(len(CONLL2003_LABELS))] == list(CONLL2003_LABELS)
    assert "synthetic" in loaded.source and loaded.notes[0].startswith("SYNTHETIC DEMO")
    # a damaged build is built again
    weights = directory / "model.safetensors"
    whole = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:1000])
    assert demo.needs_build("demo:ner")
    _, again = ensure_demo("demo:ner", train_examples=32, epochs=1)
    assert weights.stat().st_size == whole and 0.0 <= again.score <= 1.0 and not demo.needs_build("demo:ner")
    assert load_model("demo:ner", device="cpu").model.config.fwsvd_demo["synthetic"]


def test_the_language_model_demo_is_minilm_as_a_decoder_fine_tuned_on_glue_sentences(glue_dir, monkeypatch):
    import numpy as np
    import torch

    from fwsvd_core.analysis.continuations import greedy_continuation
    from fwsvd_core.inputs.families import encode, family_of_model
    from fwsvd_core.inputs.tasks import get_task

    monkeypatch.setattr(demo, "hub_reachable", lambda: False)
    task = get_task(demo.demo_spec("demo:lm").task)
    _, record = ensure_demo("demo:lm", data_dir=glue_dir, train_examples=48, epochs=1)
    assert not record.synthetic and record.data_source.startswith("GLUE SST-2 train sentences as text")
    assert record.train_examples == 48 and record.dev_metric == "perplexity" and record.dev_examples > 100
    before, after = record.base_dev_score["perplexity"], record.score
    assert torch.isfinite(torch.tensor(after)) and after < before  # the same dev windows, before and after
    assert f"({before:.3f} before fine-tuning)" in demo.demo_notes(record)[0]

    loaded = load_model("demo:lm", device="cpu", data_dir=glue_dir)
    model, tokenizer = loaded.model, loaded.tokenizer
    assert family_of_model(model).name == "causal-lm" and model.config.is_decoder
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    # text is read without the encoder's [CLS] ... [SEP] around it, so no [SEP] sits in the middle of the windows
    ids = encode(tokenizer, demo.TaskData(task, "x", ["a fine film .", "a dull one ."], None, np.zeros(2), "test"),
                 64).input_ids
    assert all(tokenizer.sep_token_id not in row and tokenizer.cls_token_id not in row for row in ids)
    text = greedy_continuation(model, tokenizer, task, "the film is", max_new_tokens=5)
    assert text and "[SEP]" not in text
    # the saved model scores the same on the same windows
    from fwsvd_core.estimation.evaluation import evaluate

    _, dev = demo.demo_training_data(demo.demo_spec("demo:lm"), tokenizer, glue_dir)
    assert evaluate(model, tokenizer, dev, max_length=64).score == pytest.approx(after, rel=1e-4)


def test_the_command_line_takes_a_demos_own_task_and_refuses_one_of_another_family(monkeypatch, capsys):
    from fwsvd_core import commands
    from fwsvd_core.cli import main

    seen = []
    monkeypatch.setattr(commands, "run", lambda args: seen.append(args.task) or 0)
    assert main(["sweep", "--model", "demo:ner"]) == 0 and main(["sweep", "--model", "demo:lm"]) == 0
    assert main(["sweep", "--model", "demo:sst2"]) == 0 and main(["sweep", "--model", "demo:sst2", "--task", "mrpc"]) == 0
    assert seen == ["conll2003", "wikitext2", "sst2", "mrpc"]
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "--model", "demo:lm", "--task", "sst2"])
    assert stopped.value.code == 2 and "demo:lm is a causal-lm model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "--model", "sentence-transformers/x"])
    assert stopped.value.code == 2 and "required: --task" in capsys.readouterr().err
