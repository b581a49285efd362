"""Saving a compressed model with its rank table and model card, and loading it back.

An export's config.json names the model type `fwsvd_compressed` and, in `auto_map`, the modeling file saved
beside the weights: plain transformers loads it with `trust_remote_code=True` and refuses it loudly without
(never filling the factorized layers with random weights). `load_compressed` (and `loading.load_model`) read
it without running that file. A merged export is a standard checkpoint of the original architecture.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as load_safetensors_into
from safetensors.torch import save_model as save_safetensors_from
from torch import nn

from fwsvd_core.compression.apply import merged_model, replace_module
from fwsvd_core.compression.lowrank import LowRankLinear
from fwsvd_core.compression.model_card import MERGED_RANKS_FILE, RANKS_FILE, model_card
from fwsvd_core.compression.rank_table import FORM_DENSE, FORM_LOWRANK, RankTable, rank_table_of
from fwsvd_core.compression.ranks import count_params
from fwsvd_core.devices import resolve_device
from fwsvd_core.errors import ExportError, ModelLoadError
from fwsvd_core.folders import check_writable, folder_files, staged_directory, written_by_tool
from fwsvd_core.inputs.memory import check_model_load, config_dtype
from fwsvd_core.inputs.models import LoadedModel, ensure_pad_token
from fwsvd_core.inputs.precision import as_dtype, dtype_name, model_dtype

WEIGHTS_FILE = "model.safetensors"
MODELING_FILE = "fwsvd_modeling.py"
MODELING_SOURCE = Path(__file__).with_name("hf_modeling.py")  # copied, never imported: it is the export's own code
CARD_FILE = "README.md"
AUTO_MAP = {"AutoConfig": "fwsvd_modeling.FwsvdCompressedConfig",
            "AutoModelForSequenceClassification": "fwsvd_modeling.FwsvdCompressedForSequenceClassification"}
CONFIG_FILE = "config.json"
EXPORT_KIND = "export"
EXPORT_MODEL_TYPE = "fwsvd_compressed"
BASE_TYPE_KEY = "fwsvd_base_model_type"
# what exports written before the manifest existed could hold: such a folder still counts as an export
_LEGACY_EXPORT_FILES = {
    CONFIG_FILE, WEIGHTS_FILE, RANKS_FILE, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "tokenizer.model", "spiece.model",
    "sentencepiece.bpe.model", "chat_template.jinja", "chat_template.json",
}


def is_compressed_dir(directory: str | Path) -> bool:
    return (Path(directory) / RANKS_FILE).is_file()


def is_replaceable_export(directory: str | Path) -> bool:
    """An earlier export of this tool (compressed or merged) holding nothing else: the only non-empty folder a
    save may replace."""
    directory = Path(directory)
    if written_by_tool(directory, EXPORT_KIND):
        return True
    return is_compressed_dir(directory) and not (folder_files(directory) - _LEGACY_EXPORT_FILES)


def _same_or_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_export_target(directory: str | Path, overwrite: bool = False, source: str | Path | None = None) -> Path:
    """Refuse, before any work, a destination whose writing could lose someone's files; returns it resolved.

    Refused: the source model's folder (or a folder holding it), a file, a non-empty folder that is not an
    earlier export, an earlier export without `overwrite`, a place that cannot be written.
    """
    target = Path(directory).expanduser().resolve()
    if source is not None and Path(source).expanduser().exists():
        origin = Path(source).expanduser().resolve()
        if _same_or_inside(origin, target):
            raise ExportError(f"{target} holds the model being compressed ({origin}); save to another folder.")
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} is a file; name a new or empty folder to save to.")
    if target.is_dir() and any(target.iterdir()):
        if not is_replaceable_export(target):
            shown = sorted(p.name for p in target.iterdir())
            more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
            raise ExportError(f"{target} is not empty ({', '.join(shown[:5])}{more}) and is not an earlier export of "
                              "this tool: nothing was written. Name a new or empty folder.")
        if not overwrite:
            raise ExportError(f"{target} holds an earlier export; pass --overwrite (in the dashboard: tick "
                              "'Replace an earlier export') to replace it.")
    check_writable(target)
    return target


def save_compressed(model: nn.Module, tokenizer, directory: str | Path, extra: dict | None = None,
                    overwrite: bool = False, source: str | Path | None = None, merge: bool = False) -> Path:
    """Write config (with the rank table), weights (safetensors), tokenizer, the modeling file that lets plain
    transformers load it (`trust_remote_code=True`) and a model card; the folder appears whole or not at all.

    With `merge`, each factorized layer is stored dense in the original architecture instead: any loader reads
    it without custom code, and it saves no parameters. See `check_export_target` for the folders refused; an
    earlier export is replaced only with `overwrite`, and a kill at any moment leaves the complete old or the
    complete new export.
    """
    table = rank_table_of(model)
    if table is None:
        raise ModelLoadError("This model carries no rank table: save compressed models made by fwsvd_core.compress.")
    directory = check_export_target(directory, overwrite, source)
    if extra:
        table = table.with_extra(extra)
    config = cast(Any, model).config
    config.fwsvd_compression = table.as_dict()
    dtype = model_dtype(model)
    config.dtype = dtype  # the dtype the weights are saved in, which a loader keeps by default
    with staged_directory(directory, EXPORT_KIND, may_replace=lambda d: overwrite and is_replaceable_export(d)) as staging:
        if merge:
            dense = merged_model(model)
            cast(Any, dense).save_pretrained(staging)
            (staging / MERGED_RANKS_FILE).write_text(json.dumps(table.as_dict(), indent=1))
            saved_params = count_params(dense)
        else:
            config.save_pretrained(staging)
            _mark_config_as_export(staging / CONFIG_FILE)
            save_safetensors_from(model, str(staging / WEIGHTS_FILE))
            shutil.copyfile(MODELING_SOURCE, staging / MODELING_FILE)
            (staging / RANKS_FILE).write_text(json.dumps(table.as_dict(), indent=1))
            saved_params = count_params(model)
        tokenizer.save_pretrained(staging)
        (staging / CARD_FILE).write_text(model_card(table, saved_params, dtype_name(dtype), merged=merge))
    return directory


def _mark_config_as_export(path: Path) -> None:
    """Give the export a model type of its own, which plain transformers loads only through the modeling file
    shipped beside it (so only with trust_remote_code=True), and which an older loader refuses."""
    config = json.loads(path.read_text())
    config[BASE_TYPE_KEY] = config["model_type"]
    config["model_type"] = EXPORT_MODEL_TYPE
    config["auto_map"] = AUTO_MAP
    config["architectures"] = [AUTO_MAP["AutoModelForSequenceClassification"].rpartition(".")[2]]
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def _export_config(directory: Path, trust_remote_code: bool):
    """The dense architecture's config of an export (also of exports written before the export model type)."""
    from transformers import CONFIG_MAPPING

    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{directory}: the export's {CONFIG_FILE} cannot be read ({exc}).") from None
    base = config.pop(BASE_TYPE_KEY, config.get("model_type"))
    config["model_type"] = base
    if config.get("auto_map") == AUTO_MAP:  # our own modeling file: this loader builds the same model itself
        config.pop("auto_map")
        config.pop("architectures", None)
    if config.get("auto_map"):
        hint = "" if trust_remote_code else " (and --trust-remote-code was not given)"
        raise ModelLoadError(f"{directory}: this export's config names code shipped with the model (auto_map); "
                             f"compressed exports of such models are not supported{hint}. Nothing was run.")
    if base not in CONFIG_MAPPING:
        raise ModelLoadError(f"{directory}: unknown base model type {base!r} in the export's {CONFIG_FILE}.")
    return CONFIG_MAPPING[base].from_dict({k: v for k, v in config.items() if k != "model_type"})


def load_compressed(directory: str | Path, device: str | torch.device | None = None,
                    trust_remote_code: bool = False, dtype: str | torch.dtype | None = None) -> LoadedModel:
    """Rebuild the architecture from the config, put the factorized layers in place, load the weights."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = Path(directory)
    if not is_compressed_dir(directory):
        raise ModelLoadError(f"{directory} holds no compressed model ({RANKS_FILE} is missing).")
    config = _export_config(directory, trust_remote_code)
    dtype = as_dtype(dtype) or config_dtype(config)
    check_model_load(config, resolve_device(device), dtype)
    try:
        table = RankTable.from_dict(json.loads((directory / RANKS_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{directory}: the rank table {RANKS_FILE} is unreadable ({exc}).") from None
    model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    try:
        for name, row in table.layers.items():
            bias = model.get_submodule(name).bias is not None
            if row.form == FORM_LOWRANK:
                replace_module(model, name, LowRankLinear(row.in_features, row.out_features, row.rank, bias=bias,
                                                          dtype=dtype))
            elif row.form == FORM_DENSE:
                replace_module(model, name, nn.Linear(row.in_features, row.out_features, bias=bias, dtype=dtype))
    except (AttributeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{directory}: the rank table does not fit the model ({exc}).") from None
    try:
        missing, unexpected = load_safetensors_into(model, str(directory / WEIGHTS_FILE), strict=False)
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{directory}: {WEIGHTS_FILE} is missing or damaged ({str(exc).splitlines()[0]}); "
                             "export the model again.") from None
    if unexpected or [k for k in missing if not _is_tied(model, k)]:
        raise ModelLoadError(f"{directory}: weights do not match the rank table (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}).")
    model.config.fwsvd_compression = table.as_dict()
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{directory}: the tokenizer could not be loaded: {str(exc).splitlines()[0]}") from None
    ensure_pad_token(model, tokenizer)
    model.to(resolve_device(device)).eval()
    return LoadedModel(model, tokenizer, f"compressed model {directory}")


def _is_tied(model: nn.Module, key: str) -> bool:
    """safetensors stores a tied tensor once; the other name is reported missing but is filled."""
    tied = getattr(model, "_tied_weights_keys", None) or []
    if isinstance(tied, dict):
        tied = list(tied)
    return key in tied
