"""Saving a compressed model with its rank table and model card, and loading it back.

An export's config.json names the model type `fwsvd_compressed` and, in `auto_map`, the modeling file saved
beside the weights (`checkpoint`): plain transformers loads it with `trust_remote_code=True` and refuses it loudly
without (never filling the factorized layers with random weights). `load_compressed` (and `loading.load_model`)
read it without running that file, also when it was written by a compressed model's own `save_pretrained`. A
merged export is a standard checkpoint of the original architecture.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors_file
from torch import nn

from fwsvd_core.compression.apply import merged_model, replace_module
from fwsvd_core.compression.card_metadata import base_model_of, card_data, without_local_paths
from fwsvd_core.compression.checkpoint import (
    BASE_ARCHITECTURES_KEY,
    BASE_TYPE_KEY,
    CONFIG_FILE,
    MODELING_FILE,
    WEIGHTS_FILE,
    WEIGHTS_INDEX_FILE,
    compressed_class,
    config_rank_table,
    export_family,
    is_own_auto_map,
    write_export_files,
)
from fwsvd_core.compression.lowrank import LowRankLinear, legacy_factor_names
from fwsvd_core.compression.model_card import MERGED_RANKS_FILE, RANKS_FILE, model_card
from fwsvd_core.compression.rank_table import FORM_DENSE, FORM_LOWRANK, RankTable, rank_table_of
from fwsvd_core.compression.ranks import count_params
from fwsvd_core.compression.shards import MAX_SHARD_SIZE, save_weights, shard_limit
from fwsvd_core.devices import resolve_device
from fwsvd_core.errors import ExportError, ModelLoadError
from fwsvd_core.folders import (
    LEGACY_MANIFEST_FILE,
    MANIFEST_FILE,
    check_writable,
    folder_files,
    listed_files,
    staged_directory,
    written_by_tool,
)
from fwsvd_core.inputs.families import Family, family_of_model
from fwsvd_core.inputs.memory import check_model_load, config_dtype
from fwsvd_core.inputs.models import LoadedModel, ensure_pad_token, offload_folder, place, require_model_tokenizer
from fwsvd_core.inputs.precision import as_dtype, dtype_name, model_dtype

CARD_FILE = "README.md"
EXPORT_KIND = "export"
MANIFEST_FILES = {MANIFEST_FILE, LEGACY_MANIFEST_FILE}
# what exports written before the manifest existed could hold: such a folder still counts as an export
_LEGACY_EXPORT_FILES = {
    CONFIG_FILE, WEIGHTS_FILE, RANKS_FILE, MODELING_FILE, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "tokenizer.model", "spiece.model",
    "sentencepiece.bpe.model", "chat_template.jinja", "chat_template.json",
}


def is_compressed_dir(directory: str | Path) -> bool:
    """A folder holding a factorized model: an export (its rank file), or what a compressed model's
    `save_pretrained` wrote (the rank table in its config.json)."""
    directory = Path(directory)
    return (directory / RANKS_FILE).is_file() or config_rank_table(directory) is not None


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
            # an earlier export with someone's file added: name that file, the reason, not the tool's own ones
            shown = sorted(folder_files(target) - (listed_files(target, EXPORT_KIND) or set()) - MANIFEST_FILES)
            more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
            what = ("holds files this tool did not write" if listed_files(target, EXPORT_KIND) is not None
                    else "is not empty")
            raise ExportError(f"{target} {what} ({', '.join(shown[:5])}{more}) and is not an earlier export of "
                              "this tool alone: nothing was written. Name a new or empty folder.")
        if not overwrite:
            raise ExportError(f"{target} holds an earlier export; pass --overwrite (in the dashboard: tick "
                              "'Replace an earlier export') to replace it.")
    check_writable(target)
    return target


def save_compressed(model: nn.Module, tokenizer, directory: str | Path, extra: dict | None = None,
                    overwrite: bool = False, source: str | Path | None = None, merge: bool = False,
                    max_shard_size: int | str = MAX_SHARD_SIZE) -> Path:
    """Write config (with the rank table), weights (safetensors, in shards of at most `max_shard_size` written one
    at a time, so that no second copy of a large model is made), tokenizer, the modeling file that lets plain
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
    table = RankTable(table.method, table.layers, without_local_paths(table.extra))  # the export is for sharing
    config = cast(Any, model).config
    base = base_model_of(str(getattr(config, "name_or_path", "") or ""))
    family = family_of_model(model)
    config.fwsvd_compression = table.as_dict()
    dtype = model_dtype(model)
    config.dtype = dtype  # the dtype the weights are saved in, which a loader keeps by default
    try:
        with staged_directory(directory, EXPORT_KIND,
                              may_replace=lambda d: overwrite and is_replaceable_export(d)) as staging:
            if merge:
                dense = merged_model(model)
                cast(Any, dense).save_pretrained(staging, max_shard_size=shard_limit(max_shard_size))
                (staging / MERGED_RANKS_FILE).write_text(json.dumps(table.as_dict(), indent=1))
                saved_params = count_params(dense)
            else:
                config.save_pretrained(staging)
                save_weights(model, staging, max_shard_size)
                write_export_files(staging, table, family)
                saved_params = count_params(model)
            tokenizer.save_pretrained(staging)
            header = card_data(table, base, merge, family.pipeline_tag).to_yaml()
            (staging / CARD_FILE).write_text(f"---\n{header}\n---\n\n" + model_card(
                table, saved_params, dtype_name(dtype), merged=merge, family=family))
    except (OSError, SafetensorError) as exc:  # a full disk, a folder gone read-only: the staging folder is gone
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise ExportError(f"Could not write the export to {directory}: {reason}. Nothing was kept of the new export"
                          f"{'; the earlier one is still there' if overwrite else ''}. Free some space (or choose "
                          "another folder) and save again.") from None
    return directory


def _export_config(directory: Path, trust_remote_code: bool) -> tuple[Any, Family]:
    """The dense architecture's config of an export (also of exports written before the export model type), and
    the task family its model belongs to."""
    from transformers import CONFIG_MAPPING

    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{directory}: the export's {CONFIG_FILE} cannot be read ({exc}).") from None
    family = export_family(config)
    base = config.pop(BASE_TYPE_KEY, config.get("model_type"))
    config["model_type"] = base
    config["architectures"] = config.pop(BASE_ARCHITECTURES_KEY, None) or config.get("architectures")
    if is_own_auto_map(config.get("auto_map")):  # our own modeling file: this loader builds the same model itself
        config.pop("auto_map")
        config.pop("architectures", None)
    if config.get("auto_map"):
        hint = "" if trust_remote_code else " (and --trust-remote-code was not given)"
        raise ModelLoadError(f"{directory}: this export's config names code shipped with the model (auto_map); "
                             f"compressed exports of such models are not supported{hint}. Nothing was run.")
    if base not in CONFIG_MAPPING:
        raise ModelLoadError(f"{directory}: unknown base model type {base!r} in the export's {CONFIG_FILE}.")
    return CONFIG_MAPPING[base].from_dict({k: v for k, v in config.items() if k != "model_type"}), family


def load_compressed(directory: str | Path, device: str | torch.device | None = None,
                    trust_remote_code: bool = False, dtype: str | torch.dtype | None = None,
                    device_map: str | dict | None = None) -> LoadedModel:
    """Rebuild the architecture from the config, put the factorized layers in place, load the weights.

    `device_map` ('auto', or a module -> device mapping) lets accelerate place the layers over the GPUs, the CPU
    and the disk as it reads them, instead of loading the whole model on `device` first."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not is_compressed_dir(directory):
        raise ModelLoadError(f"{directory} holds no compressed model ({RANKS_FILE} is missing).")
    config, family = _export_config(directory, trust_remote_code)
    dtype = as_dtype(dtype) or config_dtype(config)
    table = _rank_table(directory)
    if device_map is None:
        check_model_load(config, resolve_device(device), dtype)
        model = _compressed_skeleton(config, table, dtype, directory, family)
        _load_weights(model, directory)
    else:
        model = _dispatched(config, table, dtype, directory, device_map, family)
    model.config.fwsvd_compression = table.as_dict()
    try:
        # handed the dense config: reading the export's own would make transformers warn of a model type it does not know
        tokenizer = AutoTokenizer.from_pretrained(directory, config=config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{directory}: the tokenizer could not be loaded ({str(exc).splitlines()[0]}). Save the "
                             "tokenizer of the model it was compressed from into the folder "
                             "(`tokenizer.save_pretrained(FOLDER)`), then load it again.") from None
    ensure_pad_token(model, tokenizer)
    require_model_tokenizer(model, tokenizer, f"compressed model {directory}", directory)
    return LoadedModel(model, tokenizer, f"compressed model {directory}", place(model, device, device_map))


def _compressed_skeleton(config, table: RankTable, dtype: torch.dtype, directory: Path, family: Family) -> Any:
    """The architecture with every layer of the rank table in its stored form, weights not read yet."""
    model = family.auto_model_class().from_config(config, dtype=dtype)
    model.__class__ = compressed_class(type(model))  # its save_pretrained writes an export again
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
    return model


def _dispatched(config, table: RankTable, dtype: torch.dtype, directory: Path, device_map: str | dict,
                family: Family) -> Any:
    """The model read straight into accelerate's placement (GPUs, then the CPU, then the disk), layer by layer."""
    try:
        from accelerate import init_empty_weights, load_checkpoint_and_dispatch
    except ImportError:
        raise ModelLoadError("device_map needs accelerate (pip install accelerate).") from None
    with init_empty_weights():
        model = _compressed_skeleton(config, table, dtype, directory, family)
    _check_weight_names(model, directory)
    cast(Any, model).tie_weights()
    files = _weight_files(directory)
    checkpoint = files[0] if len(files) == 1 else directory / WEIGHTS_INDEX_FILE
    return load_checkpoint_and_dispatch(
        model, str(checkpoint), device_map=device_map, dtype=dtype, offload_folder=str(offload_folder()),
        no_split_module_classes=list(getattr(model, "_no_split_modules", None) or []))


def _check_weight_names(model: nn.Module, directory: Path) -> None:
    """The export's tensors against the model's, by name and shape, from the files' headers alone."""
    from safetensors import safe_open

    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    stored: dict[str, tuple[int, ...]] = {}
    for path in _weight_files(directory):
        try:
            with safe_open(str(path), framework="pt") as fh:
                stored.update({key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()})
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"{directory}: {path.name} is missing or damaged ({str(exc).splitlines()[0]}); "
                                 "export the model again.") from None
    if any(_current_name(key, set(expected)) != key for key in stored):
        raise ModelLoadError(f"{directory} was written by an earlier version (factors stored as two raw tensors): "
                             "load it without device_map and save it again to place it with device_map.")
    wrong = sorted(k for k in stored.keys() & expected.keys() if stored[k] != expected[k])
    _refuse_mismatch(directory, expected.keys() - stored.keys(), stored.keys() - expected.keys(), model,
                     f"; of another shape {', '.join(wrong[:3])}" if wrong else "")


def _rank_table(directory: Path) -> RankTable:
    """The export's rank table: from its rank file and its config, which must agree when both are there."""
    try:
        in_file = json.loads((directory / RANKS_FILE).read_text()) if (directory / RANKS_FILE).is_file() else None
        in_config = config_rank_table(directory)
        tables = [RankTable.from_dict(t) for t in (in_file, in_config) if t is not None]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{directory}: the rank table is unreadable ({exc}).") from None
    if len(tables) == 2 and tables[0].layers != tables[1].layers:
        first, second = tables[0].layers, tables[1].layers
        differ = sorted(name for name in first.keys() | second.keys() if first.get(name) != second.get(name))
        raise ModelLoadError(f"{directory}: the rank tables in {RANKS_FILE} and {CONFIG_FILE} disagree (first on "
                             f"{differ[0]}); the folder was edited or mixed from two exports. Export it again.")
    return tables[0]


def _weight_files(directory: Path) -> list[Path]:
    """The safetensors files holding an export's weights: one file, or the shards save_pretrained lists."""
    if (directory / WEIGHTS_FILE).is_file() or not (directory / WEIGHTS_INDEX_FILE).is_file():
        return [directory / WEIGHTS_FILE]
    try:
        shards = json.loads((directory / WEIGHTS_INDEX_FILE).read_text())["weight_map"].values()
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise ModelLoadError(f"{directory}: {WEIGHTS_INDEX_FILE} is unreadable ({exc}); export the model again.") from None
    return [directory / name for name in dict.fromkeys(shards)]


def _load_weights(model: nn.Module, directory: Path) -> None:
    """Fill the model from the export's weights (also those of exports whose factors were two raw tensors); a clear
    error when any tensor is missing, extra or of another shape than the rank table says (the layers would
    otherwise keep their random initial values)."""
    expected = set(model.state_dict())
    missing, unexpected = set(expected), set()
    for path in _weight_files(directory):
        try:
            weights = load_safetensors_file(path)
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"{directory}: {path.name} is missing or damaged ({str(exc).splitlines()[0]}); "
                                 "export the model again.") from None
        weights = {_current_name(key, expected): tensor for key, tensor in weights.items()}
        try:
            model.load_state_dict(weights, strict=False)
        except RuntimeError as exc:  # a tensor of another shape than the rank table's layer
            raise ModelLoadError(f"{directory}: the weights do not match the rank table: "
                                 f"{_first_mismatch(str(exc))} Export the model again.") from None
        missing -= weights.keys()
        unexpected |= weights.keys() - expected
    _refuse_mismatch(directory, missing, unexpected, model)


def _refuse_mismatch(directory: Path, missing, unexpected, model: nn.Module, more: str = "") -> None:
    """A clear error when tensors the rank table expects are missing (tied ones aside) or extra ones are stored."""
    missing = {k for k in missing if not _is_tied(model, k)}
    if missing or unexpected or more:
        raise ModelLoadError(
            f"{directory}: the weights do not match the rank table: "
            + "; ".join(f"{what} {', '.join(sorted(keys)[:3])}{' and more' if len(keys) > 3 else ''}"
                        for what, keys in (("the table expects", missing), ("the file has unlisted", unexpected)) if keys)
            + more + ". The folder was edited, or written by another tool; export the model again.")


def _current_name(key: str, expected: set[str]) -> str:
    """A parameter's name in this version's model: exports written before the factors were nn.Linear modules
    named them `NAME.right`, `NAME.left` and `NAME.bias`."""
    if key in expected:
        return key
    layer, _, _ = key.rpartition(".")
    return legacy_factor_names(layer).get(key, key)


def _first_mismatch(message: str) -> str:
    """The first 'size mismatch' line of torch's load_state_dict error, for a person."""
    lines = [line.strip() for line in message.splitlines() if "size mismatch" in line]
    return (lines[0] if lines else message.splitlines()[0]).rstrip(".") + "."


def _is_tied(model: nn.Module, key: str) -> bool:
    """Whether `key` names a tensor the model shares with another name (tied embeddings): safetensors stores a
    shared tensor once, under one of its names, and filling that one fills both."""
    tied = getattr(model, "_tied_weights_keys", None) or []
    if key in (list(tied) + list(tied.values()) if isinstance(tied, dict) else list(tied)):
        return True
    named = dict(model.named_parameters(remove_duplicate=False))
    tensor = named.get(key)
    return tensor is not None and sum(p is tensor for p in named.values()) > 1
