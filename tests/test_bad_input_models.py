"""Issue 21, models and exports: tokenizers, cache keys, re-compression, save_pretrained, dtype, full disk, pickles."""
import errno
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from fwsvd_core.cli import main
from fwsvd_core.compression import export as export_module
from fwsvd_core.compression.export import save_compressed
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.errors import EXIT_ERROR, ExportError, ModelLoadError
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.loading import load_model

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
    monkeypatch.setattr(export_module, "save_safetensors_from", full)
    with pytest.raises(ExportError, match=r"No space left on device.*earlier one is still there"):
        save_compressed(session.compress("svd", uniform_ranks(session.layers, 0.5)), loaded.tokenizer, first_export,
                        overwrite=True)
    assert {p: p.read_bytes() for p in first_export.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in first_export.parent.iterdir()) == ["e1"]  # no staging folder left behind


def test_a_full_disk_in_the_cli_exits_3_with_a_message(tiny_models, tmp_path, glue_dir, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")
    monkeypatch.setattr(export_module, "save_safetensors_from", full)
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
