"""The bad-input matrix: every input a person can get wrong ends in a clear message, and nothing of theirs is lost.

Each test names the case of the reliability issue it covers (1-11), or says it is one that already passed.

Issue 21's cases follow in three sections: models and exports, the command line and data files, and a dashboard
served to others (through AppTest; the same in the browser: tests/test_browser.py).
"""
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from test_pages import make_app, no_failure

from fwsvd_core import folders
from fwsvd_core.cache import cache_root
from fwsvd_core.cli import main
from fwsvd_core.compression import export as export_module
from fwsvd_core.compression.export import save_compressed
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.errors import (
    EXIT_ERROR,
    EXIT_MEMORY,
    ExportError,
    FisherError,
    InsufficientMemoryError,
    ModelLoadError,
)
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.inputs.data import load_glue_folder
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what must survive untouched."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.*"))


def compress_args(model, glue_dir, save, *extra) -> list[str]:
    return ["compress", "--model", str(model), "--task", "sst2", "--data-dir", str(glue_dir), "--method", "svd",
            "--rank-ratio", "0.5", "--fisher-samples", "8", "--save", str(save), *extra]


def export(tiny_models, folder: Path, ratio: float, **kwargs) -> Path:
    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    return save_compressed(session.compress("svd", uniform_ranks(session.layers, ratio)), loaded.tokenizer, folder,
                           **kwargs)


def rank_of_first_layer(folder: Path) -> int:
    table = json.loads((folder / "fwsvd_ranks.json").read_text())
    return table["layers"]["bert.encoder.layer.0.attention.self.query"]["rank"]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# 1. Data loss: a save never deletes what the tool did not write

@pytest.mark.parametrize("where", ["folder with files", "working directory", "source model folder"])
def test_1_save_into_someone_elses_folder_is_refused_and_nothing_is_touched(where, tiny_models, glue_dir, tmp_path,
                                                                          monkeypatch, capsys):
    if where == "source model folder":
        model = tmp_path / "model"
        shutil.copytree(tiny_models["bert"], model)
        target = model
    else:
        model, target = tiny_models["bert"], tmp_path / "mine"
        target.mkdir()
        (target / "thesis.tex").write_text("three years of work")
        (target / "data").mkdir()
        (target / "data" / "results.csv").write_text("a,b\n1,2\n")
        if where == "working directory":
            monkeypatch.chdir(target)
            target = Path(".")
    before = tree(target)
    code = main(compress_args(model, glue_dir, target))
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert "holds the model being compressed" in err if where == "source model folder" else "is not empty" in err
    assert tree(target) == before and not hidden_leftovers(target.resolve())


def test_1_an_earlier_export_is_replaced_only_with_overwrite_and_only_while_it_holds_nothing_else(
        tiny_models, glue_dir, tmp_path, capsys):
    target = export(tiny_models, tmp_path / "out", 0.5)
    before = tree(target)
    assert main(compress_args(tiny_models["bert"], glue_dir, target)) == EXIT_ERROR
    assert "pass --overwrite" in capsys.readouterr().err and tree(target) == before
    assert main(compress_args(tiny_models["bert"], glue_dir, target, "--overwrite")) == 0
    assert tree(target) != before and load_model(target, device="cpu").model is not None
    (target / "notes.txt").write_text("mine")  # a user's file inside the export: the folder is no longer the tool's
    assert main(compress_args(tiny_models["bert"], glue_dir, target, "--overwrite")) == EXIT_ERROR
    err = capsys.readouterr().err  # the user's file is named as the reason, not the tool's own files
    assert "holds files this tool did not write (notes.txt)" in err and "config.json" not in err
    assert (target / "notes.txt").read_text() == "mine"


def test_1_an_empty_folder_is_used_and_a_file_is_refused(tiny_models, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (export(tiny_models, empty, 0.5) / "model.safetensors").is_file()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export(tiny_models, tmp_path / "a_file", 0.5)
    assert (tmp_path / "a_file").read_text() == "x"


def test_1_the_dashboard_save_box_refuses_a_folder_with_files(tiny_models, glue_dir, tmp_path):
    from test_pages import make_app

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("keep")
    at = make_app(str(tiny_models["bert"]), glue_dir)
    at.switch_page("pages/rank_editor.py").run()
    at.text_input[0].input(str(mine)).run()
    next(b for b in at.button if b.label == "Save compressed model").click().run()
    assert not at.exception
    assert any("is not empty" in e.value for e in at.error)
    assert tree(mine) == {"keep.txt": b"keep"}
    assert any(c.label == "Replace an earlier export" for c in at.checkbox)


# 2. A kill at any moment leaves a complete old or new export; leftovers are cleaned later

NEW_RATIO = 0.25  # the killed save replaces an export at rank ratio 0.5 with one at this ratio


def _killed_save(tiny_models, target: Path, kill_at: int, when: str, exchange: bool) -> int:
    """Replace the export at `target` in a forked child that dies (os._exit) before or after its step `kill_at`.

    The steps are every rename, exchange and deletion of the swap. Returns the child's exit status (0: it finished).
    """
    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    compressed = session.compress("svd", uniform_ranks(session.layers, NEW_RATIO))
    pid = os.fork()
    if pid == 0:  # the child: nothing here may return into pytest
        try:
            steps = {"n": 0}

            def step(fn):
                def wrapped(*args, **kwargs):
                    steps["n"] += 1
                    if steps["n"] == kill_at and when == "before":
                        os._exit(9)
                    result = fn(*args, **kwargs)
                    if steps["n"] == kill_at and when == "after":
                        os._exit(9)
                    return result
                return wrapped

            folders.os.replace = step(os.replace)
            folders.shutil.rmtree = step(shutil.rmtree)
            folders.exchange_paths = step(folders.exchange_paths if exchange else (lambda a, b: False))
            save_compressed(compressed, loaded.tokenizer, target, overwrite=True)
            os._exit(0)
        except BaseException:  # the child must never return into pytest
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("exchange", [True, False], ids=["atomic exchange", "two renames"])
def test_2_a_save_killed_at_any_step_leaves_a_complete_old_or_new_export(exchange, tiny_models, tmp_path):
    layers = CompressionSession(load_model(tiny_models["bert"], device="cpu")).layers
    new_rank = uniform_ranks(layers, NEW_RATIO)[layers[0].name]
    for when in ("before", "after"):
        kill_at = 1
        while True:
            target = tmp_path / f"{when}{kill_at}" / "export"
            target.parent.mkdir()
            (target.parent / "user-file.txt").write_text("mine")
            export(tiny_models, target, 0.5)
            old_rank = rank_of_first_layer(target)
            code = _killed_save(tiny_models, target, kill_at, when, exchange)
            if exchange:  # the destination never lacks a complete export, even before any clean-up
                assert rank_of_first_layer(target) in (old_rank, new_rank), (when, kill_at)
                load_model(target, device="cpu")
            folders.clean_leftovers(target)  # what any later save or load of the demo does first
            assert load_model(target, device="cpu").model is not None, (when, kill_at)
            assert rank_of_first_layer(target) in (old_rank, new_rank), (when, kill_at)
            assert not hidden_leftovers(target), (when, kill_at, hidden_leftovers(target))
            assert (target.parent / "user-file.txt").read_text() == "mine"
            if code == 0:
                break
            assert code == 9
            kill_at += 1
        assert kill_at >= 3  # the write, the swap and the deletion were each interrupted


def test_2_staging_folders_of_a_killed_demo_build_are_removed_on_the_next_run(glue_dir, monkeypatch):
    from fwsvd_core import demo

    directory = demo.demo_dir("demo:sst2")
    directory.parent.mkdir(parents=True)
    stale = directory.parent / f".{directory.name}.fwsvd-staging-{dead_pid()}-abc"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\0" * 1000)
    live = directory.parent / f".{directory.name}.fwsvd-staging-{os.getpid()}-def"  # a build still running
    live.mkdir()
    legacy = directory.parent / f".{directory.name}.building-k2j4h5"  # left by a build under an earlier version
    legacy.mkdir()
    monkeypatch.setattr(demo, "build_demo", lambda *a, **k: {"built": True})
    demo.ensure_demo("demo:sst2", data_dir=glue_dir)
    assert not stale.exists() and not legacy.exists() and live.exists()


# 3. An export does not pass for the dense architecture

def test_3_plain_transformers_refuses_an_export_instead_of_loading_random_layers(tiny_models, tmp_path):
    from transformers import AutoModelForSequenceClassification

    target = export(tiny_models, tmp_path / "out", 0.3)
    with pytest.raises(ValueError, match="trust_remote_code=True"):  # it loads only with the modeling file it ships
        AutoModelForSequenceClassification.from_pretrained(target, trust_remote_code=False)
    assert load_model(target, device="cpu").model.config.fwsvd_compression["layers"]


# 4. Non-finite weights and a Fisher with most examples skipped

def test_4_nan_weights_are_refused_before_any_work_naming_the_tensors(tiny_models, tmp_path):
    loaded = load_model(tiny_models["bert"], device="cpu")
    with torch.no_grad():
        loaded.model.classifier.weight[0, :3] = float("nan")
        loaded.model.bert.encoder.layer[0].attention.self.query.weight[1, 1] = float("inf")
    loaded.model.save_pretrained(tmp_path / "m")
    loaded.tokenizer.save_pretrained(tmp_path / "m")
    with pytest.raises(ModelLoadError, match=r"classifier\.weight \(3 values\)") as info:
        load_model(tmp_path / "m")
    assert "encoder.layer.0.attention.self.query.weight (1 values)" in str(info.value)


def _nan_loss_for(share: float, monkeypatch) -> None:
    """Make the loss of the first `share` of each batch NaN, as a broken head would."""
    from dataclasses import replace

    from fwsvd_core.inputs.families import registry
    from fwsvd_core.inputs.families.sequence import SEQUENCE

    def broken(logits, targets, task):
        losses = SEQUENCE.example_losses(logits, targets, task)
        bad = round(share * len(losses))
        return torch.cat([losses[:bad] * float("nan"), losses[bad:]])

    monkeypatch.setitem(registry._FAMILIES, SEQUENCE.name, replace(SEQUENCE, example_losses=broken))


@pytest.mark.parametrize("share", [1.0, 0.75])
def test_4_a_fisher_mostly_or_wholly_skipped_is_an_error_unless_asked_to_continue(share, tiny_models, sst2_small,
                                                                                 glue_dir, tmp_path, monkeypatch,
                                                                                 capsys):
    _nan_loss_for(share, monkeypatch)
    loaded = load_model(tiny_models["bert"], device="cpu")
    with pytest.raises(FisherError, match="Unusable Fisher"):
        estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=16)
    fisher = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=16, allow_degenerate=True)
    assert fisher.n_skipped == round(16 * share) and any("used although" in n for n in fisher.notes)
    assert main(compress_args(tiny_models["bert"], glue_dir, tmp_path / "a", "--method", "fwsvd-input")) == EXIT_ERROR
    assert "Unusable Fisher" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert main(compress_args(tiny_models["bert"], glue_dir, tmp_path / "b", "--method", "fwsvd-input",
                              "--allow-degenerate-fisher")) == 0
    err = capsys.readouterr().err
    assert f"{round(8 * share)} skipped" in err and "WARNING: Fisher: used although" in err
    saved = json.loads((tmp_path / "b" / "fwsvd_ranks.json").read_text())
    assert saved["fisher"]["skipped"] == round(8 * share)


# 5. The Fisher cache follows the content of the examples, not the file's name

def test_5_an_edited_training_file_gives_a_new_fisher(tiny_models, glue_dir, tmp_path):
    folder = tmp_path / "glue"
    (folder / "SST-2").mkdir(parents=True)
    lines = (glue_dir / "SST-2" / "train.tsv").read_text().splitlines()[:81]
    (folder / "SST-2" / "train.tsv").write_text("\n".join(lines[:41]) + "\n")
    loaded = load_model(tiny_models["bert"], device="cpu")
    task = get_task("sst2")
    first = estimate_fisher(loaded.model, loaded.tokenizer, load_glue_folder(task, folder, "train"), n_examples=None)
    (folder / "SST-2" / "train.tsv").write_text("\n".join([lines[0], *lines[41:]]) + "\n")  # same path, new sentences
    second = estimate_fisher(loaded.model, loaded.tokenizer, load_glue_folder(task, folder, "train"), n_examples=None)
    assert not second.from_cache and second.key != first.key
    name = next(iter(first.per_layer))
    change = (first.per_layer[name] - second.per_layer[name]).abs().sum() / first.per_layer[name].abs().sum()
    assert change > 0.05
    again = estimate_fisher(loaded.model, loaded.tokenizer, load_glue_folder(task, folder, "train"), n_examples=None)
    assert again.from_cache and torch.equal(again.per_layer[name], second.per_layer[name])


# 6. A cache entry that reads but is wrong is recomputed

@pytest.mark.parametrize("damage", ["nan", "wrong shape", "missing layer", "garbage bytes"])
def test_6_a_wrong_fisher_cache_entry_is_recomputed(damage, tiny_models, sst2_small):
    from safetensors.torch import load_file, save_file

    loaded = load_model(tiny_models["bert"], device="cpu")
    fresh = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    path = cache_root() / "fisher" / f"{fresh.key}.safetensors"
    tensors = load_file(str(path))
    name = next(iter(tensors))
    if damage == "nan":
        tensors[name][0, 0] = float("nan")
    elif damage == "wrong shape":
        tensors[name] = tensors[name][:, :-1].contiguous()
    else:
        tensors.pop(name)
    meta = {"n_examples": "8", "n_skipped": "0", "seconds": "1", "complete": "1"}
    save_file(tensors, str(path), metadata=meta)
    if damage == "garbage bytes":
        path.write_bytes(b"not a safetensors file")
    again = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    assert not again.from_cache
    assert all(torch.equal(again.per_layer[n], fresh.per_layer[n]) for n in fresh.per_layer)


def test_6_a_wrong_factor_cache_entry_is_recomputed(tiny_session):
    from safetensors.torch import load_file, save_file

    first = tiny_session.factors("fwsvd-input")
    path = next((cache_root() / "factors").glob("*.safetensors"))
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.endswith("/left"))
    tensors[key] = tensors[key][:-1].contiguous()
    save_file(tensors, str(path), metadata={"complete": "1", "method": "fwsvd-input"})
    fresh = CompressionSession(tiny_session.loaded)
    fresh.set_fisher(tiny_session.fisher)
    again = fresh.factors("fwsvd-input")
    layer = key.rsplit("/", 1)[0]
    torch.testing.assert_close(again[layer].left, first[layer].left)


# 7. Data read wrongly without a word

def test_7_malformed_rows_stop_with_line_numbers_or_are_skipped_and_counted(tiny_models, tmp_path, capsys):
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    rows = ["sentence\tlabel", "good film\t1", "bad\tfilm\t0", "fine\t1", "awful\t0\textra", "great\t1"]
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    args = ["sweep", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(tmp_path / "glue"),
            "--methods", "svd", "--ratios", "0.5", "--fisher-samples", "4", "--out", str(tmp_path / "s")]
    assert main(args) == EXIT_ERROR
    assert "lines 3, 5" in capsys.readouterr().err
    assert main([*args, "--skip-bad-rows"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: data:" in err and "3, 5" in err


def test_7_a_suspicious_label_map_is_reported(tiny_models, glue_dir, tmp_path, capsys):
    loaded = load_model(tiny_models["bert"], device="cpu")
    loaded.model.config.id2label = {0: "LABEL_1", 1: "LABEL_0"}
    loaded.model.save_pretrained(tmp_path / "m")
    loaded.tokenizer.save_pretrained(tmp_path / "m")
    main(["sweep", "--model", str(tmp_path / "m"), "--task", "sst2", "--data-dir", str(glue_dir), "--methods", "svd",
          "--ratios", "0.5", "--fisher-samples", "4", "--eval-subsample", "16", "--out", str(tmp_path / "s")])
    assert "WARNING: labels:" in capsys.readouterr().err


# 8. No code of a folder runs unless the user asked, and no prompt appears

@pytest.mark.parametrize("kind", ["compressed export", "model folder"])
def test_8_a_folder_with_shipped_code_runs_nothing_and_asks_nothing(kind, tiny_models, tmp_path, monkeypatch):
    if kind == "compressed export":
        target = export(tiny_models, tmp_path / "out", 0.5)
    else:
        target = Path(shutil.copytree(tiny_models["bert"], tmp_path / "m"))
    marker = tmp_path / "code-ran"
    (target / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                    "from transformers import BertConfig as EvilConfig\n"
                                    "from transformers import BertForSequenceClassification as EvilModel\n")
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForSequenceClassification": "evil.EvilModel"}
    (target / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("a prompt appeared"))
    if kind == "compressed export":
        with pytest.raises(ModelLoadError, match="code shipped with the model"):
            load_model(target, device="cpu")
    else:  # transformers knows the model type: its own class is used and the shipped code is ignored
        assert type(load_model(target, device="cpu").model).__name__ == "BertForSequenceClassification"
    assert not marker.exists()


# 9. A message and an exit code instead of a traceback

def test_9_truncated_weights_in_a_model_folder_and_an_export_give_a_message(tiny_models, tmp_path):
    shutil.copytree(tiny_models["bert"], tmp_path / "m")
    target = export(tiny_models, tmp_path / "out", 0.5)
    for folder in (tmp_path / "m", target):
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        with pytest.raises(ModelLoadError, match=r"damaged|model\.safetensors|Could not load"):
            load_model(folder, device="cpu")


@pytest.mark.slow
def test_9_a_demo_with_a_complete_record_but_truncated_weights_is_rebuilt(glue_dir):
    from fwsvd_core import demo

    directory, _ = demo.ensure_demo("demo:sst2", data_dir=glue_dir, train_examples=16)
    weights = directory / "model.safetensors"
    whole = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:1000])
    demo.ensure_demo("demo:sst2", data_dir=glue_dir, train_examples=16)
    assert weights.stat().st_size == whole
    assert load_model("demo:sst2", device="cpu").model is not None
    assert not hidden_leftovers(directory)


@pytest.mark.parametrize("content, message", [
    ('{"bert.encoder.layer.0.attention.self.query": null}', "no whole-number rank"),
    ('{"bert.encoder.layer.0.attention.self.query": [4]}', "no whole-number rank"),
    ("[4, 5]", "not a list"),
    ('{"ranks": 5}', "not a int"),
    ("{not json", "not valid JSON"),
    (None, "does not exist"),
])
def test_9_bad_rank_files_are_refused_before_the_model_is_loaded(content, message, tiny_models, glue_dir, tmp_path,
                                                                 monkeypatch, capsys):
    ranks = tmp_path / "ranks.json"
    if content is not None:
        ranks.write_text(content)
    monkeypatch.setattr("fwsvd_core.commands.load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    args = compress_args(tiny_models["bert"], glue_dir, tmp_path / "out")
    args[args.index("--rank-ratio"):args.index("--rank-ratio") + 2] = ["--ranks", str(ranks)]
    assert main(args) == EXIT_ERROR
    assert message in capsys.readouterr().err


def test_9_an_unwritable_save_folder_is_refused_before_any_work(tiny_models, glue_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr("fwsvd_core.commands.load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    assert main(compress_args(tiny_models["bert"], glue_dir, tmp_path / "a_file" / "out")) == EXIT_ERROR
    assert "Cannot write to" in capsys.readouterr().err


def test_9_an_unwritable_cache_keeps_the_fisher_in_memory_with_a_warning(tiny_models, sst2_small, tmp_path,
                                                                        monkeypatch):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setenv("FWSVD_CACHE_DIR", str(tmp_path / "a_file" / "cache"))
    loaded = load_model(tiny_models["bert"], device="cpu")
    fisher = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    assert fisher.n_examples == 8 and any("kept in memory only" in n for n in fisher.notes)
    session = CompressionSession(loaded)
    session.set_fisher(fisher)
    assert session.compress("fwsvd-output", uniform_ranks(session.layers, 0.3)) is not None


def test_9_running_out_of_memory_is_a_message_and_exit_4(tiny_models, glue_dir, tmp_path, monkeypatch, capsys):
    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr("fwsvd_core.commands.estimate_fisher", oom)
    assert main(compress_args(tiny_models["bert"], glue_dir, tmp_path / "o", "--method", "fwsvd-input")) == EXIT_MEMORY
    assert "out of memory" in capsys.readouterr().err


def test_9_the_dashboard_shows_an_unexpected_error_as_a_message_with_details(tiny_models, glue_dir, monkeypatch):
    from test_pages import make_app

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr("fwsvd_core.inputs.layers.layer_table", boom)
    at = make_app(str(tiny_models["bert"]), glue_dir).run()
    assert not at.exception
    assert any("RuntimeError: boom" in e.value for e in at.error)
    assert any(x.label == "Details" for x in at.expander)


# 10. Memory estimated before the work

def test_10_a_model_or_a_fisher_that_would_not_fit_is_refused_with_the_estimate(tiny_models, sst2_small,
                                                                              monkeypatch, capsys):
    monkeypatch.setenv("FWSVD_MEMORY_LIMIT", "64K")
    assert main(["layers", "--model", str(tiny_models["bert"])]) == EXIT_MEMORY
    err = capsys.readouterr().err
    assert "Loading" in err and "Available" in err
    monkeypatch.delenv("FWSVD_MEMORY_LIMIT")
    loaded = load_model(tiny_models["bert"], device="cpu")
    monkeypatch.setenv("FWSVD_MEMORY_LIMIT", "1M")
    with pytest.raises(InsufficientMemoryError, match="batch size"):
        estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)


# 11. Sessions: shared work is guarded, uploads are private

def test_11_two_threads_computing_different_methods_get_what_each_gets_alone(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    fisher = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=16)
    methods = ["svd", "fwsvd-input", "fwsvd-output", "fwsvd-both"]
    alone = {}
    for m in methods:
        s = CompressionSession(loaded, use_disk_cache=False)
        s.set_fisher(fisher)
        alone[m] = s.factors(m)
    shared = CompressionSession(loaded, use_disk_cache=False)
    shared.set_fisher(fisher)
    results, errors = {}, []

    def work(m):
        try:
            results[m] = shared.factors(m)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in methods * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for m in methods:
        for name, f in alone[m].items():
            torch.testing.assert_close(results[m][name].left, f.left)


def test_11_an_upload_stays_in_its_browser_session_and_never_on_a_shared_disk(tiny_models, glue_dir):
    import tempfile

    from test_pages import make_app

    content = b"t,y\n" + b"".join(f"line {i},{i % 2}\n".encode() for i in range(20))
    mine = make_app(str(tiny_models["bert"]), glue_dir, upload=("mine.csv", content), text_columns=("t",),
                    label_column="y").run()
    assert not mine.exception and not mine.error
    other = make_app(str(tiny_models["bert"]), glue_dir, data_source="Uploaded file",
                     upload_digest=mine.session_state["choice"].upload_digest, text_columns=("t",),
                     label_column="y").run()
    assert any("Upload a CSV" in e.value for e in other.error)
    assert not (Path(tempfile.gettempdir()) / "fwsvd_uploads").exists() or not any(
        content == p.read_bytes() for p in (Path(tempfile.gettempdir()) / "fwsvd_uploads").iterdir())


# Cases that already passed, kept so that they stay so

def test_already_unknown_model_ids_and_missing_folders_give_the_local_options(capsys):
    assert main(["layers", "--model", "someone/no-such-model"]) == EXIT_ERROR
    assert "demo:sst2" in capsys.readouterr().err
    assert main(["layers", "--model", "/no/such/folder"]) == EXIT_ERROR


def test_already_ranks_out_of_range_are_refused(tiny_session):
    from fwsvd_core.errors import RankError

    name = tiny_session.layers[0].name
    with pytest.raises(RankError, match="between 1 and"):
        tiny_session.compress("svd", {name: 10_000})


# ---- Issue 21, models and exports: tokenizers, cache keys, re-compression, save_pretrained, dtype, full disk, pickles ----


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def without_tokenizer(model_dir: Path, folder: Path) -> Path:
    shutil.copytree(model_dir, folder)
    for name in TOKENIZER_FILES:
        (folder / name).unlink(missing_ok=True)
    return folder


def logits(model, tokenizer, texts=("a gripping, funny film", "dull and far too long")) -> torch.Tensor:
    batch = tokenizer(list(texts), return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


def attention_only(session: CompressionSession, ratio: float) -> dict[str, int]:
    """Factorize the attention maps, leave the feed-forward maps whole."""
    ranks = uniform_ranks(session.layers, ratio)
    return {layer.name: ranks[layer.name] if "attention" in layer.name else layer.max_rank for layer in session.layers}


@pytest.fixture
def first_export(tiny_models, tmp_path) -> Path:
    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    return save_compressed(session.compress("svd", attention_only(session, 0.25)), loaded.tokenizer, tmp_path / "e1")


# item 1: a folder without tokenizer files got transformers' 5-token fallback tokenizer, every word [UNK]
def test_a_model_folder_without_its_tokenizer_is_refused_naming_the_fix(tiny_models, tmp_path):
    folder = without_tokenizer(tiny_models["bert"], tmp_path / "no-tokenizer")
    with pytest.raises(ModelLoadError, match=r"no tokenizer of its own.*5 tokens.*30522 rows.*save_pretrained"):
        load_model(folder, device="cpu")


def test_the_cli_refuses_it_before_any_work(tiny_models, tmp_path, glue_dir, capsys):
    folder = without_tokenizer(tiny_models["bert"], tmp_path / "no-tokenizer")
    save = tmp_path / "out"
    code = main(["compress", "--model", str(folder), "--task", "sst2", "--data-dir", str(glue_dir), "--method", "svd",
                 "--rank-ratio", "0.5", "--fisher-samples", "8", "--save", str(save)])
    assert code == EXIT_ERROR
    assert "no tokenizer of its own" in capsys.readouterr().err
    assert not save.exists()


def test_a_compressed_export_without_its_tokenizer_is_refused(first_export):
    for name in TOKENIZER_FILES:
        (first_export / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match=r"tokenizer.*save_pretrained"):
        load_model(first_export, device="cpu")


def test_loading_an_export_prints_no_warning_of_transformers_about_its_model_type(first_export, capfd):
    capfd.readouterr()
    load_model(first_export, device="cpu")  # issue 23, 19: "You are using a model of type `fwsvd_compressed` to ..."
    assert "model of type" not in capfd.readouterr().err


# item 2: the caches ignored the tokenizer, so a tokenizer fixed in place brought the old Fisher back "from cache"
def test_fixing_the_tokenizer_in_place_is_not_answered_from_the_cache(tiny_models, tmp_path, sst2_small):
    folder = tmp_path / "model"
    shutil.copytree(tiny_models["bert"], folder)
    train = sst2_small[0]
    first = load_model(folder, device="cpu")
    assert not estimate_fisher(first.model, first.tokenizer, train, n_examples=8, fingerprint=first.fingerprint).from_cache
    again = load_model(folder, device="cpu")
    assert estimate_fisher(again.model, again.tokenizer, train, n_examples=8, fingerprint=again.fingerprint).from_cache

    tokenizer = json.loads((folder / "tokenizer.json").read_text())  # the cased tokenizer replaces the uncased one
    tokenizer["normalizer"]["lowercase"] = False
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "do_lower_case": False}))
    fixed = load_model(folder, device="cpu")
    assert fixed.tokenizer("Great")["input_ids"] != first.tokenizer("Great")["input_ids"]
    assert fixed.fingerprint != first.fingerprint
    assert not estimate_fisher(fixed.model, fixed.tokenizer, train, n_examples=8, fingerprint=fixed.fingerprint).from_cache
    # the library's own key, when no fingerprint is handed in, sees the tokenizer too
    assert not estimate_fisher(fixed.model, fixed.tokenizer, train, n_examples=8, max_length=64).from_cache
    assert estimate_fisher(fixed.model, fixed.tokenizer, train, n_examples=8, max_length=64).from_cache


# item 3: compressing an export lost its factorized layers from the rank table (random layers, a TypeError)
def test_an_export_compressed_again_keeps_every_factorized_layer(first_export, tmp_path):
    from transformers import AutoModelForSequenceClassification

    loaded = load_model(first_export, device="cpu")
    session = CompressionSession(loaded)
    assert all("attention" not in layer.name for layer in session.layers)  # the factorized ones are done
    twice = session.compress("svd", uniform_ranks(session.layers, 0.25))
    second = save_compressed(twice, loaded.tokenizer, tmp_path / "e2")

    table = json.loads((second / "fwsvd_ranks.json").read_text())
    assert len(table["layers"]) == 12 and {row["form"] for row in table["layers"].values()} == {"lowrank"}
    first_step = table["history"][0]
    assert first_step["method"] == "svd" and len(first_step["layers"]) == 8
    assert all("attention" in name for name in first_step["layers"])
    card = (second / "README.md").read_text()
    assert "Compressed in 2 steps" in card and "8 layers" in card

    expected = logits(twice, loaded.tokenizer)
    back = load_model(second, device="cpu")
    assert torch.allclose(logits(back.model, back.tokenizer), expected, atol=1e-5)
    plain = AutoModelForSequenceClassification.from_pretrained(second, trust_remote_code=True)
    assert torch.allclose(logits(plain, back.tokenizer), expected, atol=1e-5)


def test_an_export_whose_weights_and_rank_table_disagree_gets_a_message(first_export):
    from transformers import AutoModelForSequenceClassification

    for name in ("fwsvd_ranks.json", "config.json"):  # an export of an older version: one layer left out of the table
        data = json.loads((first_export / name).read_text())
        table = data.get("fwsvd_compression", data)
        del table["layers"]["bert.encoder.layer.0.attention.self.query"]
        (first_export / name).write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match=r"do not match the rank table.*attention\.self\.query"):
        load_model(first_export, device="cpu")
    with pytest.raises(ValueError, match="do not match its rank table"):
        AutoModelForSequenceClassification.from_pretrained(first_export, trust_remote_code=True)


def test_rank_tables_of_the_rank_file_and_the_config_must_agree(first_export):
    ranks = json.loads((first_export / "fwsvd_ranks.json").read_text())
    ranks["layers"]["bert.encoder.layer.0.attention.self.query"]["rank"] += 1
    (first_export / "fwsvd_ranks.json").write_text(json.dumps(ranks))
    with pytest.raises(ModelLoadError, match=r"rank tables in fwsvd_ranks\.json and config\.json disagree"):
        load_model(first_export, device="cpu")


def test_a_tensor_of_another_shape_than_the_table_gets_a_message(first_export):
    for name in ("fwsvd_ranks.json", "config.json"):
        data = json.loads((first_export / name).read_text())
        table = data.get("fwsvd_compression", data)
        table["layers"]["bert.encoder.layer.0.attention.self.query"]["rank"] += 1
        (first_export / name).write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="size mismatch"):
        load_model(first_export, device="cpu")


# item 4: save_pretrained of a compressed model wrote a dense checkpoint loaded with random layers
def test_save_pretrained_of_a_compressed_model_writes_a_loadable_export(first_export, tmp_path):
    from transformers import AutoModelForSequenceClassification

    loaded = load_model(first_export, device="cpu")
    expected = logits(loaded.model, loaded.tokenizer)
    out = tmp_path / "resaved"
    loaded.model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    assert json.loads((out / "config.json").read_text())["fwsvd_compression"]["layers"]  # ranks travel in the config
    (out / "fwsvd_ranks.json").unlink()  # the config alone is enough
    back = load_model(out, device="cpu")
    assert torch.allclose(logits(back.model, back.tokenizer), expected, atol=1e-6)
    with pytest.raises(ValueError, match="trust_remote_code"):  # never a dense model with random layers
        AutoModelForSequenceClassification.from_pretrained(out)
    plain = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    assert torch.allclose(logits(plain, back.tokenizer), expected, atol=1e-6)


def test_save_pretrained_right_after_compressing_and_of_the_merged_model(tiny_models, tmp_path):
    from fwsvd_core.compression.apply import merged_model

    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded)
    compressed = session.compress("svd", uniform_ranks(session.layers, 0.25))
    expected = logits(compressed, loaded.tokenizer)
    compressed.save_pretrained(tmp_path / "direct")
    loaded.tokenizer.save_pretrained(tmp_path / "direct")
    back = load_model(tmp_path / "direct", device="cpu")
    assert torch.allclose(logits(back.model, back.tokenizer), expected, atol=1e-6)
    compressed.save_pretrained(tmp_path / "shards", max_shard_size="100KB")  # a large model's form: shards and index
    loaded.tokenizer.save_pretrained(tmp_path / "shards")
    assert len(list((tmp_path / "shards").glob("model-*.safetensors"))) > 1
    back = load_model(tmp_path / "shards", device="cpu")
    assert torch.allclose(logits(back.model, back.tokenizer), expected, atol=1e-6)
    merged = merged_model(compressed)
    merged.save_pretrained(tmp_path / "merged")  # a standard checkpoint of the architecture, read by anyone
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["model_type"] == "bert"


# item 12: --dtype auto followed the config's dtype even when the stored weights are another
def test_auto_keeps_the_dtype_the_weights_are_stored_in(tiny_models, tmp_path):
    folder = tmp_path / "says-bf16"
    shutil.copytree(tiny_models["bert"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))
    for dtype in (None, "auto"):
        model = load_model(folder, device="cpu", dtype=dtype).model
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.dtype for p in load_model(folder, device="cpu", dtype="bfloat16").model.parameters()} == {torch.bfloat16}


# tracebacks: a full disk during an export, a pickle checkpoint with code in it
@pytest.mark.parametrize("failure", [SafetensorError("Error while serializing: IoError(No space left on device)"),
                                     OSError(errno.ENOSPC, "No space left on device")])
def test_a_full_disk_during_an_export_is_a_message_and_keeps_the_earlier_export(first_export, monkeypatch, failure):
    before = {p: p.read_bytes() for p in first_export.rglob("*") if p.is_file()}
    loaded = load_model(first_export, device="cpu")
    session = CompressionSession(loaded)

    def full(*args, **kwargs):
        raise failure
    monkeypatch.setattr(export_module, "save_weights", full)
    with pytest.raises(ExportError, match=r"No space left on device.*earlier one is still there"):
        save_compressed(session.compress("svd", uniform_ranks(session.layers, 0.5)), loaded.tokenizer, first_export,
                        overwrite=True)
    assert {p: p.read_bytes() for p in first_export.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in first_export.parent.iterdir()) == ["e1"]  # no staging folder left behind


def test_a_full_disk_in_the_cli_exits_3_with_a_message(tiny_models, tmp_path, glue_dir, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")
    monkeypatch.setattr(export_module, "save_weights", full)
    code = main(["compress", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--method", "svd", "--rank-ratio", "0.5", "--fisher-samples", "8", "--save", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and "Could not write the export" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


class RunsCode:
    """A pickled object whose loading would create a folder: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.makedirs, (str(self.marker),)


def test_a_pickle_checkpoint_with_code_is_refused_without_running_it(tiny_models, tmp_path, capsys, glue_dir):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_models["bert"], folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    torch.save({**weights, "payload": RunsCode(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"Refused to load.*ran nothing"):
        load_model(folder, device="cpu")
    code = main(["layers", "--model", str(folder)])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and "Refused to load" in err and "weights_only" not in err and "Traceback" not in err
    assert not marker.exists()


# ---- Issue 21, the command line and data files: clear messages before any work, nothing lost -----------------------------


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

    from fwsvd_core.commands import model_positions

    assert model_positions(BertConfig()) == 512 and model_positions(GPT2Config()) == 1024
    assert model_positions(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert model_positions(DebertaV2Config(position_biased_input=False)) is None  # relative positions only


# ---- Issue 21, a dashboard served to others: typed paths confined to the allowed folders, one message that tells nothing ---


REFUSAL = "This dashboard is served to others"


@pytest.fixture
def served(monkeypatch, tmp_path, tiny_models):
    """Served, with one allowed folder holding a model; a private folder beside it holds another model and a file."""
    root, private = tmp_path / "allowed", tmp_path / "private"
    root.mkdir()
    shutil.copytree(tiny_models["bert"], root / "bert")
    shutil.copytree(tiny_models["bert"], private / "bert")
    (private / "diary.txt").write_text("private")
    (private / "empty").mkdir()
    (root / "link").symlink_to(private)
    monkeypatch.setenv("FWSVD_SERVE", "1")
    monkeypatch.setenv("FWSVD_ALLOWED_DIRS", str(root))
    monkeypatch.delenv("FWSVD_DATA_DIR", raising=False)
    monkeypatch.delenv("FWSVD_DEFAULT_MODEL", raising=False)
    return root, private


def errors(at) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def test_a_model_outside_the_allowed_folders_is_refused_with_one_message_whatever_is_there(served, glue_dir,
                                                                                             monkeypatch):
    root, private = served
    monkeypatch.setenv("FWSVD_DATA_DIR", str(glue_dir))  # the operator's data folder: always readable
    seen = set()
    for model in (private / "bert", private / "diary.txt", private / "missing", private / "empty", root / "link" / "bert",
                  root / ".." / "private" / "bert", "~", "/etc"):
        shown = errors(make_app(str(model), glue_dir).run())
        assert len(shown) == 1 and shown[0].startswith(REFUSAL), (model, shown)
        seen.add(shown[0])
    assert len(seen) == 1
    message = seen.pop()
    for leak in ("private", "config.json", "is a file", "No such", "diary", "empty"):
        assert leak not in message
    at = make_app(str(root / "bert"), glue_dir).run()  # inside: loaded and scored
    no_failure(at)
    assert any(m.label == "Dense accuracy" for m in at.metric)


def test_the_directory_field_as_a_visitor_types_it_and_the_hub_field_cannot_read_local_folders(served, glue_dir,
                                                                                               monkeypatch):
    root, private = served
    monkeypatch.setenv("FWSVD_DATA_DIR", str(glue_dir))
    at = make_app(str(root / "bert"), glue_dir).run()
    box = next(t for t in at.text_input if t.label == "Directory")
    box.set_value(str(private / "bert")).run()
    assert [e for e in errors(at) if e.startswith(REFUSAL)]
    assert not any(m.label == "Dense accuracy" for m in at.metric)
    monkeypatch.chdir(private.parent)  # "private/bert" reads like a hub id, and names a local folder from here
    for typed in ("private/bert", str(private / "bert")):
        at = make_app("someone/model", glue_dir).run()
        next(r for r in at.radio if r.label == "Where the model comes from").set_value("Hugging Face hub id").run()
        next(t for t in at.text_input if t.label == "Hub id").set_value(typed).run()
        shown = errors(at)
        assert len(shown) == 1 and shown[0].startswith(REFUSAL), (typed, shown)


def test_a_glue_folder_outside_is_refused_and_the_operators_data_folder_is_read(served, glue_dir, monkeypatch):
    root, _ = served
    shown = errors(make_app(str(root / "bert"), glue_dir).run())
    assert shown and all(e.startswith(REFUSAL) for e in shown)
    missing = errors(make_app(str(root / "bert"), "/nonexistent/glue").run())
    assert missing == shown  # the same words whether the folder exists or not
    monkeypatch.setenv("FWSVD_DATA_DIR", str(glue_dir))
    no_failure(make_app(str(root / "bert"), glue_dir).run())


def test_saving_is_confined_to_the_allowed_folders(served, glue_dir, monkeypatch, tmp_path):
    root, private = served
    monkeypatch.setenv("FWSVD_DATA_DIR", str(glue_dir))
    at = make_app(str(root / "bert"), glue_dir).run()
    at.switch_page("pages/rank_editor.py").run()
    save = lambda folder: (next(t for t in at.text_input if t.label.startswith("Save the compressed")).set_value(folder).run(),  # noqa: E731
                           next(b for b in at.button if b.label == "Save compressed model").click().run())
    refused = []
    for folder in (str(private / "export"), str(private / "empty"), "~/fwsvd-export", str(root / "link" / "export"),
                   str(root / ".." / "elsewhere")):
        save(folder)
        refused.append([e for e in errors(at) if e.startswith("Could not save")])
    assert all(r == refused[0] and len(r) == 1 and REFUSAL in r[0] for r in refused)
    assert sorted(p.name for p in private.iterdir()) == ["bert", "diary.txt", "empty"]
    assert not any((private / "empty").iterdir()) and not (tmp_path / "elsewhere").exists()
    assert not os.path.exists(os.path.expanduser("~/fwsvd-export"))
    save(str(root / "exports" / "mine"))
    no_failure(at)
    assert any("Saved to" in s.value for s in at.success) and (root / "exports" / "mine" / "config.json").is_file()
