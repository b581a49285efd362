import json

import pandas as pd
import pytest
import torch

from fwsvd_core.cli import build_parser, main
from fwsvd_core.compression.rank_table import rank_table_of
from fwsvd_core.loading import load_model


def test_sweep_writes_a_table_with_dense_and_every_method_and_ratio(tiny_models, glue_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--methods", "svd,fwsvd-output", "--ratios", "0.5,0.2", "--fisher-samples", "16",
                 "--eval-subsample", "64", "--out", str(out)])
    assert code == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    assert list(table["method"]) == ["dense", "svd", "svd", "fwsvd-output", "fwsvd-output"]
    assert table.loc[0, "param ratio (model)"] == 1.0 and table.loc[0, "plain error"] == 0.0
    assert (table.loc[1:, "params"] < table.loc[0, "params"]).all()
    assert table.loc[2, "plain error"] > table.loc[1, "plain error"] > 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["fisher split"] == "train" and meta["eval split"] == "dev" and len(meta["rows"]) == 5
    assert "accuracy" in capsys.readouterr().out


def test_same_split_is_warned_about(tiny_models, glue_dir, tmp_path, capsys):
    main(["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
          "--methods", "fwsvd-input", "--ratios", "0.3", "--fisher-samples", "8", "--fisher-split", "dev",
          "--eval-subsample", "32", "--out", str(tmp_path / "s")])
    assert "same split that is scored" in capsys.readouterr().err


def test_compress_saves_a_model_that_loads_back(tiny_models, glue_dir, tmp_path, capsys):
    save = tmp_path / "compressed"
    code = main(["compress", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--method", "fwsvd-output", "--param-ratio", "0.5", "--fisher-samples", "8", "--save", str(save)])
    assert code == 0 and (save / "model.safetensors").is_file()
    back = load_model(save, device="cpu")
    table = rank_table_of(back.model)
    assert table.method == "fwsvd-output" and table.extra["task"] == "sst2"
    assert {row.form for row in table.layers.values()} == {"lowrank"}
    x = back.tokenizer(["fine"], return_tensors="pt")
    with torch.no_grad():
        assert back.model(**x).logits.shape == (1, 2)


def test_errors_are_one_clear_line_and_exit_3(tiny_models, glue_dir, tmp_path, capsys):
    code = main(["sweep", "--model", str(tiny_models["bert"]), "--task", "imdb", "--data-dir", str(glue_dir)])
    assert code == 2 and "Unknown task 'imdb'" in capsys.readouterr().err  # a registry choice: the command line is wrong
    code = main(["compress", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--method", "svd", "--rank-ratio", "2", "--save", str(tmp_path / "never")])
    assert code == 3 and "rank ratio must be in (0, 1]" in capsys.readouterr().err


def test_sweep_by_allocator_and_new_methods(tiny_models, glue_dir, tmp_path):
    out = tmp_path / "alloc"
    code = main(["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--methods", "tfwsvd-als,asvd,svd-llm", "--ratios", "", "--param-ratios", "0.4",
                 "--allocators", "uniform,spectral,sensitivity", "--fisher-samples", "16", "--eval-subsample", "32",
                 "--solver-iters", "3", "--out", str(out)])
    assert code == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    body = table[table["method"] != "dense"]
    assert len(body) == 3 * 3 and set(body["allocator"]) == {"uniform", "spectral", "sensitivity"}
    assert (body["param ratio (layers)"] <= 0.4 + 1e-9).all()


@pytest.mark.slow
def test_sweep_with_the_kronecker_factored_methods(tiny_models, glue_dir, tmp_path, caplog):
    out = tmp_path / "kron"
    with caplog.at_level("INFO", logger="fwsvd_core"):
        code = main(["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                     "--methods", "svd,kfac,gfwsvd", "--ratios", "", "--param-ratios", "0.3",
                     "--allocators", "uniform,spectral", "--fisher-samples", "12", "--eval-subsample", "32",
                     "--kronecker-iterations", "2", "--damping", "0.05", "--out", str(out)])
    assert code == 0
    assert "Kronecker factors: 12 examples of train, 0 skipped, 2 power iterations" in caplog.text
    table = pd.read_csv(out.with_suffix(".csv"))
    body = table[table["method"] != "dense"]
    assert set(body["method"]) == {"svd", "kfac", "gfwsvd"} and len(body) == 6
    # the Kronecker-weighted spectra drive the allocator: per-layer ranks, not one ratio
    assert body["accuracy"].notna().all()


@pytest.mark.parametrize(("method", "passes"), [("kfac", "0 power iterations"), ("gfwsvd", "2 power iterations")])
def test_compress_computes_only_the_kronecker_passes_its_method_needs(tiny_models, glue_dir, tmp_path, caplog, method,
                                                                       passes):
    """K-FAC is one pass over the calibration data; the power iterations to the nearest Kronecker product are for
    gfwsvd only (issue 25: `compress --method kfac` ran them too)."""
    with caplog.at_level("INFO", logger="fwsvd_core"):
        code = main(["compress", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                     "--method", method, "--rank-ratio", "0.5", "--fisher-samples", "8", "--kronecker-iterations", "2",
                     "--output-dir", str(tmp_path / method)])
    assert code == 0 and f"Kronecker factors: 8 examples of train, 0 skipped, {passes}" in caplog.text


def test_compress_with_an_allocator_and_the_predictor_command(tiny_models, glue_dir, tmp_path, capsys):
    save = tmp_path / "c"
    assert main(["compress", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--method", "fwsvd-input", "--param-ratio", "0.3", "--allocator", "spectral", "--fisher-samples", "8",
                 "--save", str(save)]) == 0
    ranks = {r["rank"] for r in json.loads((save / "fwsvd_ranks.json").read_text())["layers"].values()}
    assert len(ranks) > 1  # not uniform
    out = tmp_path / "pred"
    assert main(["predictor", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--fisher-samples", "8", "--eval-subsample", "32", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["stats"]["agreement"]) == {"diagonal", "full", "kfac", "nearest"}
    assert "reliability" in report["stats"]
    assert {"with_loss", "low", "high", "with_score"} == set(report["stats"]["agreement"]["full"])
    assert len(report["layers"]) == len(pd.read_csv(out.with_suffix(".csv")))
    text = out.with_suffix(".md").read_text()
    assert "| diagonal |" in text and "| full |" in text and "Split-half reliability" in text
    assert report["written by"]["files"] == ["pred.csv", "pred.json", "pred.md"]  # what a later run may replace


def _subparsers():
    import argparse

    from fwsvd_core.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_every_option_has_help_and_help_shows_the_defaults(capsys):
    import pytest

    parser, commands = _subparsers()
    for name, sub in [("", parser), *commands.items()]:
        undocumented = [a.option_strings for a in sub._actions if a.option_strings and not a.help]
        assert not undocumented, (name, undocumented)
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "(default: 256)" in text and "(default: per-sample)" in text and "(default: svd,fwsvd-input" in text


def test_each_command_takes_only_the_options_it_uses(tiny_models, glue_dir, tmp_path, capsys):
    import pytest

    _, commands = _subparsers()
    assert "--finetune-steps" not in commands["predictor"].format_help()
    assert "--task" not in commands["layers"].format_help()
    with pytest.raises(SystemExit) as exit_info:
        main(["predictor", "--model", str(tiny_models["bert"]), "--task", "sst2", "--finetune-steps", "5"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --finetune-steps" in capsys.readouterr().err


def test_version_and_quiet(tiny_models, glue_dir, tmp_path, capsys):
    import pytest

    from fwsvd_core import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out
    args = ["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
            "--methods", "svd", "--ratios", "0.5", "--fisher-samples", "8", "--eval-subsample", "16",
            "--fisher-split", "dev", "--out", str(tmp_path / "s")]
    assert main(args) == 0
    loud = capsys.readouterr().err
    assert "model: local directory" in loud and "Fisher" in loud
    assert main(["-q", *args]) == 0
    quiet = capsys.readouterr().err
    assert "model: local directory" not in quiet and "%|" not in quiet
    assert "WARNING:" in quiet and "same split that is scored" in quiet  # warnings stay


def test_compress_merge_writes_a_standard_checkpoint_with_its_card(tiny_models, glue_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    save = tmp_path / "merged"
    args = ["compress", "--model", str(tiny_models["gpt2"]), "--task", "sst2", "--data-dir", str(glue_dir),
            "--method", "fwsvd-input", "--rank-ratio", "0.25", "--fisher-samples", "8", "--evaluate",
            "--eval-subsample", "16", "--merge", "--save", str(save)]
    assert main(args) == 0
    model = AutoModelForSequenceClassification.from_pretrained(save)  # no custom code
    assert type(model).__name__ == "GPT2ForSequenceClassification" and not (save / "fwsvd_modeling.py").exists()
    card = (save / "README.md").read_text()
    assert "# Merged sst2 model" in card and "| fwsvd-input |" in card and "saves no parameters" in card
    assert "python -m fwsvd_core compress --model" in card and "--merge" in card


def test_only_the_statistics_command_runs_in_several_processes(tiny_models, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["layers", "--model", str(tiny_models["bert"])]) == 3
    assert "Only the statistics command runs in several processes" in capsys.readouterr().err


def test_an_access_token_is_never_written_into_an_export(tiny_models, glue_dir, tmp_path):
    save = tmp_path / "out"
    assert main(["compress", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--method", "svd", "--rank-ratio", "0.25", "--token", "hf_SECRET123", "--save", str(save)]) == 0
    written = "".join(p.read_text(errors="ignore") for p in save.iterdir() if p.is_file())
    assert "hf_SECRET123" not in written and "--token '***'" in (save / "README.md").read_text()


def quick_sweep(tiny_models, glue_dir, out, *extra) -> list[str]:
    """A sweep that needs no Fisher: svd at one ratio on a few examples."""
    return ["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
            "--methods", "svd", "--ratios", "0.5", "--fisher-samples", "8", "--eval-subsample", "16",
            "--out", str(out), *extra]


def test_out_appends_the_suffixes_and_a_folder_receives_default_names(tiny_models, glue_dir, tmp_path):
    # issue 21, item 6: with_suffix made sst2_ratio0.5 and sst2_ratio0.3 both sst2_ratio0.csv
    assert main(quick_sweep(tiny_models, glue_dir, tmp_path / "sst2_ratio0.5")) == 0
    assert main(quick_sweep(tiny_models, glue_dir, tmp_path / "sst2_ratio0.3")) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["sst2_ratio0.3.csv", "sst2_ratio0.3.json", "sst2_ratio0.5.csv", "sst2_ratio0.5.json"]
    folder = tmp_path / "results"
    folder.mkdir()
    assert main(quick_sweep(tiny_models, glue_dir, folder)) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["sweep.csv", "sweep.json"]
    assert json.loads((folder / "sweep.json").read_text())["written by"]["files"] == ["sweep.csv", "sweep.json"]


def test_out_never_replaces_a_file_the_tool_did_not_write(tiny_models, glue_dir, tmp_path, capsys):
    # issue 21, item 6: --out proj/reviews.v2 overwrote the user's reviews.csv
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "reviews.csv").write_text("text,label\ngreat,1\n")
    assert main(quick_sweep(tiny_models, glue_dir, proj / "reviews.v2")) == 0
    assert (proj / "reviews.csv").read_text() == "text,label\ngreat,1\n" and (proj / "reviews.v2.csv").is_file()
    capsys.readouterr()
    assert main(quick_sweep(tiny_models, glue_dir, proj / "reviews")) == 3
    err = capsys.readouterr().err
    assert f"{proj / 'reviews.csv'} exists and was not written by this tool" in err and "choose another --out" in err
    assert "model:" not in err  # refused before any work
    assert (proj / "reviews.csv").read_text() == "text,label\ngreat,1\n" and not (proj / "reviews.json").exists()
    # a JSON of the user's beside it is not the tool's either
    (proj / "notes.json").write_text('{"mine": true}')
    assert main(quick_sweep(tiny_models, glue_dir, proj / "notes")) == 3
    assert (proj / "notes.json").read_text() == '{"mine": true}' and not (proj / "notes.csv").exists()
    # the tool's own earlier results are replaced
    first = (proj / "reviews.v2.json").read_text()
    assert main(quick_sweep(tiny_models, glue_dir, proj / "reviews.v2", "--ratios", "0.25")) == 0
    assert (proj / "reviews.v2.json").read_text() != first and "0.25" in (proj / "reviews.v2.csv").read_text()


def test_a_full_disk_keeps_the_earlier_results_whole(tiny_models, glue_dir, tmp_path, monkeypatch, capsys):
    # issue 21, item 7: results were written in place: a full disk cut the JSON and destroyed the earlier run
    import errno

    from fwsvd_core import folders

    out = tmp_path / "sweep"
    assert main(quick_sweep(tiny_models, glue_dir, out)) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_write = folders.write_file

    def disk_fills(path, data):
        if ".sweep.json." in path.name:  # the second file of the set: the CSV's temporary file is already written
            path.write_bytes(data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(folders, "write_file", disk_fills)
    capsys.readouterr()
    assert main(quick_sweep(tiny_models, glue_dir, out, "--ratios", "0.25")) == 3
    err = capsys.readouterr().err
    assert "No space left on device" in err and "earlier files were kept" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file left, nothing changed


def test_the_models_help_names_the_demos_and_the_sweep_table_shows_no_nan(tiny_models, glue_dir, tmp_path, capsys):
    """Issue 23, 20: a newcomer finds the demos in --help; a cell that does not apply is blank, not NaN."""
    from fwsvd_core.demo import DEMOS

    compress = next(a for a in build_parser()._subparsers._group_actions[0].choices["compress"]._actions
                    if "--model" in a.option_strings)
    assert all(name in compress.help for name in DEMOS)
    code = main(["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--fisher-samples", "8", "--eval-subsample", "20", "--methods", "svd", "--ratios", "0.5",
                 "--output-dir", str(tmp_path / "sweep")])
    out = capsys.readouterr().out
    assert code == 0 and "dense" in out and "NaN" not in out



def test_help_answers_without_importing_transformers_or_scipy():
    """`--help` and a mistyped option are answered from the options alone (issue 23: it took seconds of imports)."""
    import subprocess
    import sys

    probe = ("import sys\nfrom fwsvd_core.cli import build_parser\nbuild_parser().format_help()\n"
             "print(sorted(m for m in ('transformers', 'scipy', 'sklearn', 'seqeval', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    shown = subprocess.run([sys.executable, "-m", "fwsvd_core", "compress", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "conll2003" in shown.stdout and "demo:sst2" in shown.stdout
