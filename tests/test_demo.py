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
