"""The export's card as the hub reads it, and no path of the author's machine in anything an export holds."""
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from fwsvd_core.compression.card_metadata import without_local_paths
from fwsvd_core.compression.export import save_compressed
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.loading import load_model


@pytest.mark.parametrize(("text", "expected"), [
    ("local directory /home/ana/models/sst2-ft", "local directory sst2-ft"),
    ("python -m fwsvd_core compress --model /srv/m/bert/ --save ~/exports/x --data-dir=/data/glue",
     "python -m fwsvd_core compress --model bert --save x --data-dir=glue"),
    ("GLUE folder /work/shared/data/glue/SST-2/dev.tsv", "GLUE folder dev.tsv"),
    ("hub id textattack/bert-base-uncased-SST-2", "hub id textattack/bert-base-uncased-SST-2"),
    ("see https://huggingface.co/org/name/tree/main", "see https://huggingface.co/org/name/tree/main"),
    ("demo:sst2, ratio 0.5 (a/b)", "demo:sst2, ratio 0.5 (a/b)"),
])
def test_local_paths_are_cut_to_their_last_part(text, expected):
    assert without_local_paths(text) == expected
    assert without_local_paths({"a": [text], "b": 3}) == {"a": [expected], "b": 3}


def export(model_dir: Path, folder: Path, extra: dict | None = None, name_or_path: str | None = None,
           merge: bool = False, overwrite: bool = False) -> Path:
    loaded = load_model(model_dir, device="cpu")
    session = CompressionSession(loaded)
    compressed = session.compress("svd", uniform_ranks(session.layers, 0.25))
    if name_or_path is not None:
        compressed.config.name_or_path = name_or_path
    return save_compressed(compressed, loaded.tokenizer, folder, extra, merge=merge, overwrite=overwrite)


def test_the_card_carries_the_hub_metadata_and_the_measured_scores(tiny_models, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_models["bert"], base)
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n\n# a fine-tuned model\n")
    extra = {"source": f"local directory {base}", "task": "sst2", "eval data": f"GLUE folder {tmp_path}/SST-2/dev.tsv",
             "scores": {"dense": {"accuracy": 0.91}, "svd": {"accuracy": 0.84, "f1": 0.83}},
             "command": f"python -m fwsvd_core compress --model {base} --save {tmp_path / 'out'}"}
    folder = export(base, tmp_path / "out", extra)
    data = ModelCard.load(folder / "README.md").data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-classification"
    assert data.license == "apache-2.0"  # inherited from the base model's card
    assert {"fwsvd-studio", "factorized", "svd", "sst2"} <= set(data.tags)
    assert data.base_model is None  # a local folder is no hub id
    results = {r.metric_type: r for r in data.eval_results}
    assert results["accuracy"].metric_value == 0.84 and results["f1"].metric_value == 0.83
    assert (results["accuracy"].dataset_type, results["accuracy"].dataset_config) == ("nyu-mll/glue", "sst2")
    assert results["accuracy"].dataset_split == "validation"
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".json"):
            assert str(tmp_path) not in path.read_text(), path.name


def test_a_model_from_the_hub_is_named_as_the_base_model(tiny_models, tmp_path):
    folder = export(tiny_models["bert"], tmp_path / "out", {"task": "sst2"},
                    name_or_path="textattack/bert-base-uncased-SST-2")
    data = ModelCard.load(folder / "README.md").data
    assert data.base_model == "textattack/bert-base-uncased-SST-2"
    merged = export(tiny_models["bert"], tmp_path / "merged", {"task": "sst2"}, merge=True)
    assert "merged" in ModelCard.load(merged / "README.md").data.tags


def test_an_uploaded_export_leaves_the_tools_bookkeeping_out(tiny_models, tmp_path):
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    from fwsvd_core.folders import folder_files, written_by_tool

    folder = export(tiny_models["bert"], tmp_path / "out", {"task": "sst2"})
    assert written_by_tool(folder, "export")
    uploaded = set(filter_repo_objects(sorted(folder_files(folder)), ignore_patterns=DEFAULT_IGNORE_PATTERNS))
    assert {"config.json", "model.safetensors", "README.md", "fwsvd_ranks.json"} <= uploaded
    assert not [name for name in uploaded if "manifest" in name or name.startswith(".")]


def test_an_export_written_with_the_earlier_manifest_is_still_the_tools(tiny_models, tmp_path):
    from fwsvd_core.folders import LEGACY_MANIFEST_FILE, MANIFEST_FILE, written_by_tool

    folder = export(tiny_models["bert"], tmp_path / "out", {"task": "sst2"})
    (folder / MANIFEST_FILE).rename(folder / LEGACY_MANIFEST_FILE)
    assert written_by_tool(folder, "export")
    save_compressed_again = export(tiny_models["bert"], folder, {"task": "sst2"}, overwrite=True)
    assert (save_compressed_again / MANIFEST_FILE).is_file() and not (folder / LEGACY_MANIFEST_FILE).exists()
