"""The command line in the ecosystem's words (issue 22, item 6): Hugging Face's spellings, one name for where results
go, both conventions of a budget, the ranks peft and the tool's own exports write, a results file of --evaluate."""
import json

import pytest

from fwsvd_core.cli import build_parser, main


def parsed(*argv: str):
    return build_parser().parse_args(list(argv))


def test_underscore_spellings_and_the_hugging_face_names_are_accepted(tmp_path):
    args = parsed("compress", "--model_name_or_path", "m", "--task_name", "sst2", "--output_dir", str(tmp_path / "o"),
                  "--max_seq_length", "64", "--per_device_eval_batch_size", "8", "--rank_ratio", "0.5",
                  "--fisher_samples=16", "--overwrite_output_dir", "--do_eval", "--eval_split", "validation")
    assert (args.model, args.task, args.output_dir, args.max_length, args.batch_size) == ("m", "sst2", str(tmp_path / "o"),
                                                                                         64, 8)
    assert args.rank_ratio == 0.5 and args.fisher_samples == 16 and args.overwrite and args.evaluate
    assert args.eval_split == "dev"  # validation is the dev split's name on the hub and in Hugging Face's scripts
    with pytest.raises(SystemExit):
        parsed("compress", "--model", "m", "--task", "sst2", "--output-dir", "o", "--rank-ratio", "0.5", "--no_such_option")


def test_one_name_for_where_results_go_with_the_old_names_kept():
    for command, old in (("compress", "--save"), ("sweep", "--out"), ("predictor", "--out")):
        extra = ["--rank-ratio", "0.5"] if command == "compress" else []
        assert parsed(command, "--model", "m", "--task", "sst2", old, "x", *extra).output_dir == "x"
        assert parsed(command, "--model", "m", "--task", "sst2", "--output-dir", "y", *extra).output_dir == "y"
        text = build_parser()._subparsers._group_actions[0].choices[command].format_help()
        assert "--output-dir OUTPUT_DIR" in text and f"(also {old})" in text and f"{old} OUTPUT_DIR" not in text


def test_bf16_and_fp16_name_dtypes():
    base = ("layers", "--model", "m")
    assert parsed(*base, "--dtype", "bf16").dtype == "bfloat16"
    assert parsed(*base, "--dtype", "fp16").dtype == "float16"
    assert parsed(*base, "--torch_dtype", "fp32").dtype == "float32"
    assert parsed(*base, "--bf16").dtype == "bfloat16" and parsed(*base, "--fp16").dtype == "float16"
    assert parsed(*base).dtype == "auto" and parsed(*base, "--dtype", "bfloat16").dtype == "bfloat16"
    with pytest.raises(SystemExit):
        parsed(*base, "--dtype", "int8")


@pytest.mark.parametrize("argv, message", [
    (["compress", "--method", "fwsvd-magic", "--rank-ratio", "0.5"], "--method fwsvd-magic: Unknown method"),
    (["sweep", "--methods", "svd,nope"], "--methods nope: Unknown method"),
    (["sweep", "--param-ratios", "0.5", "--allocators", "uniform,greedy"], "choose from uniform, spectral, sensitivity"),
    (["predictor", "--weighted", "nope"], "--weighted nope: Unknown method"),
    (["sweep", "--eval-split", "test"], "has the splits train, dev"),
    (["compress", "--rank-ratio", "0.5", "--results-file", "r.json"], "add --evaluate"),
])
def test_registry_choices_are_checked_before_any_model_is_loaded(argv, message, tiny_models, glue_dir, tmp_path,
                                                                 monkeypatch, capsys):
    monkeypatch.setattr("fwsvd_core.commands.load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    command, *rest = argv
    code = main([command, "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--output-dir", str(tmp_path / "o"), *rest])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    if "method" in message.lower():
        assert "svd" in err and "fwsvd-output" in err  # the list to choose from
    code = main(["sweep", "--model", str(tiny_models["bert"]), "--task", "sst-3", "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "Known tasks: cola, sst2" in capsys.readouterr().err


def test_compress_with_the_tasks_own_folder_a_peft_rank_pattern_and_a_results_file(tiny_models, glue_dir, tmp_path,
                                                                                   capsys):
    from fwsvd_core.compression.rank_table import rank_table_of
    from fwsvd_core.folders import written_by_tool
    from fwsvd_core.loading import load_model

    pattern = tmp_path / "adapter_config.json"
    pattern.write_text(json.dumps({"peft_type": "LORA", "r": 16, "rank_pattern": {"query": 4, "layer.1.*dense": 8}}))
    export = tmp_path / "export"
    assert main(["compress", "--model_name_or_path", str(tiny_models["bert"]), "--task_name", "sst2",
                 "--data_dir", str(glue_dir / "SST-2"), "--method", "svd", "--ranks", str(pattern), "--fisher_samples",
                 "8", "--eval_split", "validation", "--eval_subsample", "32", "--do_eval", "--bf16",
                 "--output_dir", str(export)]) == 0
    out = capsys.readouterr().out
    assert "kept" in out and "of the compressible layers" in out and "of the model" in out and "removed" in out
    table = rank_table_of(load_model(export, device="cpu").model)
    assert table is not None
    ranks = {name: row.rank for name, row in table.layers.items()}
    assert ranks["bert.encoder.layer.0.attention.self.query"] == 4 and ranks["bert.encoder.layer.1.output.dense"] == 8
    assert ranks["bert.encoder.layer.0.output.dense"] == 16
    results = json.loads((tmp_path / "export.results.json").read_text())
    assert f"results: {tmp_path / 'export.results.json'}" in out
    assert set(results["scores"]) == {"dense", "svd"} and "accuracy" in results["scores"]["svd"]
    assert {"torch", "transformers", "fwsvd"} <= set(results["versions"])
    assert results["data"]["scored"]["split"] == "dev" and results["data"]["scored"]["examples"] > 0
    assert results["settings"]["dtype"] == "bfloat16" and results["settings"]["method"] == "svd"
    budget = results["budget"]
    assert budget["kept of the compressible layers"] + budget["removed of the compressible layers"] == pytest.approx(1)
    assert 0 < budget["removed of the model"] < budget["removed of the compressible layers"] < 1
    assert written_by_tool(export)  # the export's own manifest still lists exactly its files
    # the export itself is a rank file: its ranks and its method are taken again
    again = tmp_path / "again"
    assert main(["compress", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--ranks", str(export), "--fisher-samples", "8", "--output-dir", str(again)]) == 0
    table_again = rank_table_of(load_model(again, device="cpu").model)
    assert table_again is not None and table_again.method == "svd"
    assert {name: row.rank for name, row in table_again.layers.items()} == ranks


def test_a_task_folder_under_another_name_is_named_before_any_work(tiny_models, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("fwsvd_core.commands.load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    folder = tmp_path / "my-sst"
    folder.mkdir()
    (folder / "train.tsv").write_text("sentence\tlabel\n")
    assert main(["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(folder),
                 "--output-dir", str(tmp_path / "o")]) == 2
    assert "holds the sst2 files itself, in a folder not named SST-2" in capsys.readouterr().err


def test_the_sweep_states_each_budget_as_kept_and_as_removed(tiny_models, glue_dir, tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "sweep"
    assert main(["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data_dir", str(glue_dir / "SST-2"),
                 "--methods", "svd", "--ratios", "0.5", "--fisher-samples", "8", "--eval-subsample", "32",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    for scope in ("layers", "model"):
        assert (table[f"removed ({scope})"] - (1 - table[f"param ratio ({scope})"])).abs().max() < 1e-3
    assert "removed (layers)" in capsys.readouterr().out


def test_the_llm_papers_words_for_calibration_size_and_window_length():
    args = build_parser().parse_args(["sweep", "--model", "m", "--task", "wikitext2", "--calib-samples", "32",
                                      "--seq-len", "2048"])
    assert (args.fisher_samples, args.max_length) == (32, 2048)
    assert build_parser().parse_args(["sweep", "--model", "m", "--task", "wikitext2", "--nsamples", "8"]).fisher_samples == 8
