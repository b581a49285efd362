"""Bad input at the command line and in data files (issue 21): clear messages before any work, nothing lost.

To be merged into tests/test_bad_input.py.
"""
import os
import stat

import pytest

from fwsvd_core import folders
from fwsvd_core.cli import main
from fwsvd_core.errors import ModelLoadError
from fwsvd_core.loading import load_model


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_written_folder_follows_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path, umask_022):
    # issue 21: export folders were 0700 whatever the umask, and an existing empty folder's mode was replaced
    new = tmp_path / "new"
    with folders.staged_directory(new, "test") as staging:
        (staging / "a.txt").write_text("a")
        os.chmod(staging / "a.txt", 0o600)  # as safetensors writes the weights of an export
    assert mode(new) == 0o755 and mode(new / "a.txt") == 0o644
    empty = tmp_path / "shared"
    empty.mkdir()
    os.chmod(empty, 0o775)
    with folders.staged_directory(empty, "test") as staging:
        (staging / "a.txt").write_text("a")
    assert mode(empty) == 0o775 and (empty / "a.txt").read_text() == "a"
    os.umask(0o077)
    with folders.staged_directory(new, "test") as staging:  # the tool's own folder, replaced: its mode is kept
        (staging / "b.txt").write_text("b")
    assert mode(new) == 0o755 and (new / "b.txt").is_file()


def test_result_files_follow_the_umask(tmp_path, umask_022):
    paths = folders.result_paths(tmp_path / "r.v2", "sweep", (".csv", ".json"))
    folders.write_result_files({paths[".csv"]: "a\n1\n", paths[".json"]: '{"x": 1}'}, paths[".json"])
    assert mode(paths[".csv"]) == 0o644 and mode(paths[".json"]) == 0o644


def sweep_args(tiny_models, glue_dir, tmp_path, *extra) -> list[str]:
    return ["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir), "--methods",
            "svd", "--ratios", "0.5", "--fisher-samples", "8", "--eval-subsample", "16", "--out", str(tmp_path / "s"),
            *extra]


@pytest.mark.parametrize("option, value, said", [
    ("--max-length", "-1", "must be 1 or more, got -1"),
    ("--max-length", "0", "must be 1 or more, got 0"),
    ("--finetune-steps", "-1", "must be 0 or more, got -1"),
    ("--damping", "nan", "must be a finite number of 0 or more, got nan"),
    ("--damping", "-1", "must be a finite number of 0 or more, got -1"),
    ("--eval-subsample", "1", "must be 2 or more (a confidence interval needs two examples), got 1"),
    ("--seed", "-1", "must be 0 or more, got -1"),
    ("--ratios", "abc", "expected comma-separated numbers such as 0.5,0.3, got 'abc'"),
    ("--ratios", "0.5,2", "each ratio must be in (0, 1], got 2"),
])
def test_an_option_out_of_range_is_a_usage_error_naming_it(tiny_models, glue_dir, tmp_path, capsys, option, value, said):
    # issue 21: OverflowError, IndexError after all other work, LinAlgError, a scipy message, exit 3 for --ratios abc
    with pytest.raises(SystemExit) as exit_info:
        main(sweep_args(tiny_models, glue_dir, tmp_path, option, value))
    assert exit_info.value.code == 2
    assert f"argument {option}: {said}" in capsys.readouterr().err


@pytest.mark.parametrize("value, said", [
    ("1", "--max-length 1 leaves no room for text: this tokenizer adds 2 special tokens to each example. Use at least 3"),
    ("100000", "--max-length 100000 is more than this model takes: it has 512 positions. Use --max-length 512 or less."),
])
def test_max_length_is_checked_against_the_model_before_any_work(tiny_models, glue_dir, tmp_path, capsys, value, said):
    # issue 21: truncation silently off below the special tokens, and a size mismatch past the positions
    assert main(sweep_args(tiny_models, glue_dir, tmp_path, "--max-length", value, "--methods", "fwsvd-input")) == 2
    err = capsys.readouterr().err
    assert said in err and "Fisher" not in err and not (tmp_path / "s.csv").exists()


def test_device_cuda_without_cuda_is_a_clear_usage_error(tiny_models, glue_dir, tmp_path, capsys, monkeypatch):
    # issue 21: an AssertionError from torch
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(sweep_args(tiny_models, glue_dir, tmp_path, "--device", "cuda")) == 2
    err = capsys.readouterr().err
    assert "--device cuda: this machine has" in err and "use --device cpu" in err and "Traceback" not in err
    assert main(["layers", "--model", str(tiny_models["bert"]), "--device", "gpu"]) == 2
    assert "--device 'gpu' is not a device: use cpu, cuda or cuda:N" in capsys.readouterr().err


def test_quiet_and_verbose_are_taken_after_the_command_too(tiny_models, glue_dir, tmp_path, capsys):
    # issue 21: `sweep ... -q` was rejected
    assert main(sweep_args(tiny_models, glue_dir, tmp_path, "-q")) == 0
    err = capsys.readouterr().err
    assert "model: local directory" not in err and "%|" not in err
    assert main(["layers", "--model", str(tiny_models["bert"]), "-v"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["-v", "layers", "--model", str(tiny_models["bert"]), "-q"])
    assert exit_info.value.code == 2 and "not allowed with argument -v/--verbose" in capsys.readouterr().err


def test_building_a_demo_says_so_and_shows_its_progress(monkeypatch, capsys):
    # issue 21: `layers --model demo:stsb` fine-tuned for 14 minutes without a word
    from fwsvd_core import demo
    from fwsvd_core.errors import ModelLoadError

    def build(name, data_dir=None, progress=None, cancel=None, **budget):
        for step in range(1, 6):
            progress(step, 5)
        raise ModelLoadError("stopped here by the test")

    monkeypatch.setattr(demo, "build_demo", build)
    assert main(["layers", "--model", "demo:stsb"]) == 3
    err = capsys.readouterr().err
    assert "demo:stsb is not built yet: fine-tuning it once" in err and "building the demo (once)" in err
    assert "5/5" in err
    assert main(["-q", "layers", "--model", "demo:stsb"]) == 3
    assert capsys.readouterr().err.strip() == "error: stopped here by the test"


def rank_file(tiny_models, path, method: str | None) -> str:
    import json

    from fwsvd_core.compression.ranks import uniform_ranks
    from fwsvd_core.compression.session import CompressionSession
    from fwsvd_core.loading import load_model

    ranks = uniform_ranks(CompressionSession(load_model(tiny_models["bert"], device="cpu")).layers, 0.5)
    path.write_text(json.dumps({"ranks": ranks} if method is None else {"method": method, "ranks": ranks}))
    return str(path)


def test_compress_takes_the_method_a_rank_file_names(tiny_models, glue_dir, tmp_path, capsys):
    # issue 21, item 11: the rank editor's JSON names its method; compress used the default method without a word
    from fwsvd_core.compression.rank_table import rank_table_of
    from fwsvd_core.loading import load_model

    ranks = rank_file(tiny_models, tmp_path / "ranks.json", "svd")
    base = ["compress", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
            "--fisher-samples", "8", "--ranks", ranks]
    assert main([*base, "--save", str(tmp_path / "a")]) == 0
    assert rank_table_of(load_model(tmp_path / "a", device="cpu").model).method == "svd"
    assert "method: svd, as the rank file" in capsys.readouterr().err
    assert main([*base, "--method", "fwsvd-output", "--save", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "--method fwsvd-output disagrees with the rank file" in err and "chosen for svd" in err
    assert "model:" not in err and not (tmp_path / "b").exists()  # refused before any work
    plain = rank_file(tiny_models, tmp_path / "plain.json", None)  # a file without a method: the default, as before
    assert main([*base[:-1], plain, "--save", str(tmp_path / "c")]) == 0
    assert rank_table_of(load_model(tmp_path / "c", device="cpu").model).method == "fwsvd-output"


def test_a_config_with_text_keys_in_id2label_is_named_before_loading(tiny_models, tmp_path, capsys):
    # issue 21: "invalid literal for int() with base 10: 'negative'" from transformers' config parsing
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_models["bert"], model)
    config = json.loads((model / "config.json").read_text())
    config["id2label"] = {"negative": 0, "positive": 1}
    (model / "config.json").write_text(json.dumps(config))
    assert main(["layers", "--model", str(model)]) == 3
    err = capsys.readouterr().err
    assert "id2label keys that are not output numbers ('negative', 'positive')" in err and "invalid literal" not in err
    assert "Fix id2label in the model's config.json" in err
    with pytest.raises(ModelLoadError, match="id2label keys that are not output numbers"):  # the dashboard's door too
        load_model(model, device="cpu")


def test_a_result_set_fails_whole_and_leftovers_of_killed_writes_are_removed(tmp_path, monkeypatch):
    # issue 21, item 7: a failure on the last file of a set keeps every earlier file; temporary files never stay
    import errno

    from fwsvd_core.errors import ExportError

    paths = folders.result_paths(tmp_path / "pred", "predictor", (".csv", ".json", ".md"))
    first = {paths[".csv"]: "a\n1\n", paths[".json"]: '{"written by": {"tool": "fwsvd-studio", "files": '
             '["pred.csv", "pred.json", "pred.md"]}}', paths[".md"]: "# one"}
    folders.write_result_files(first, paths[".json"])
    dead = tmp_path / ".pred.csv.fwsvd-tmp-999999999-x"  # a temporary file of a killed write (no such process)
    dead.write_text("half")
    real = folders.write_file

    def fails_on_the_report(path, data):
        if ".pred.md." in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(folders, "write_file", fails_on_the_report)
    with pytest.raises(ExportError, match=r"Could not write .*pred\.md: No space left on device"):
        folders.write_result_files({p: "new" for p in first}, paths[".json"])
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {p.name: text for p, text in first.items()}


def test_the_positions_a_model_takes_come_from_its_config():
    from transformers import BertConfig, DebertaV2Config, GPT2Config, RobertaConfig

    from fwsvd_core.cli import model_positions

    assert model_positions(BertConfig()) == 512 and model_positions(GPT2Config()) == 1024
    assert model_positions(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert model_positions(DebertaV2Config(position_biased_input=False)) is None  # relative positions only
