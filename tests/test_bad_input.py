"""The bad-input matrix: every input a person can get wrong ends in a clear message, and nothing of theirs is lost.

Each test names the case of the reliability issue it covers (1-11), or says it is one that already passed.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from fwsvd_core import folders
from fwsvd_core.cache import cache_root
from fwsvd_core.cli import main
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
from fwsvd_core.estimation import gradients as gradients_module
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
    real = gradients_module.per_example_loss

    def broken(logits, targets, regression):
        losses = real(logits, targets, regression)
        bad = round(share * len(losses))
        return torch.cat([losses[:bad] * float("nan"), losses[bad:]])

    monkeypatch.setattr(gradients_module, "per_example_loss", broken)


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
    monkeypatch.setattr("fwsvd_core.cli.load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    args = compress_args(tiny_models["bert"], glue_dir, tmp_path / "out")
    args[args.index("--rank-ratio"):args.index("--rank-ratio") + 2] = ["--ranks", str(ranks)]
    assert main(args) == EXIT_ERROR
    assert message in capsys.readouterr().err


def test_9_an_unwritable_save_folder_is_refused_before_any_work(tiny_models, glue_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr("fwsvd_core.cli.load_model", lambda *a, **k: pytest.fail("loaded the model first"))
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

    monkeypatch.setattr("fwsvd_core.cli.estimate_fisher", oom)
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

