"""The on-disk form of a factorized model, and the classes whose `save_pretrained` writes it.

Every writer goes through here: `export.save_compressed`, and `save_pretrained` / `push_to_hub` called on a
compressed model (made by `apply.compress` or loaded from an export). The config names the model type
`fwsvd_compressed`, keeps the rank table (`fwsvd_compression`) and, in `auto_map`, the modeling file copied beside
the weights, so plain transformers loads the folder with `trust_remote_code=True` and refuses it loudly without:
a factorized checkpoint is never read as a dense one with random layers.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from fwsvd_core.compression.model_card import RANKS_FILE
from fwsvd_core.compression.rank_table import RankTable, rank_table_of
from fwsvd_core.inputs.families import (
    DEFAULT_FAMILY,
    Family,
    family_names,
    family_of_class,
    family_of_model,
    get_family,
)

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"  # save_pretrained's shards of a large model
CONFIG_FILE = "config.json"
MODELING_FILE = "fwsvd_modeling.py"
MODELING_SOURCE = Path(__file__).with_name("hf_modeling.py")  # copied, never imported: it is the export's own code
MODELING_MODULE = MODELING_FILE.removesuffix(".py")
EXPORT_MODEL_TYPE = "fwsvd_compressed"
BASE_TYPE_KEY = "fwsvd_base_model_type"
BASE_ARCHITECTURES_KEY = "fwsvd_base_architectures"  # the dense model's class, which names its task family
TABLE_KEY = "fwsvd_compression"  # the rank table inside config.json


def auto_map(family: Family) -> dict[str, str]:
    """The config's `auto_map` of an export of the family: its auto class -> the modeling file's class."""
    return {"AutoConfig": f"{MODELING_MODULE}.FwsvdCompressedConfig",
            family.auto_class: f"{MODELING_MODULE}.FwsvdCompressed{family.class_suffixes[0]}"}


def is_own_auto_map(value) -> bool:
    """Whether an `auto_map` names only the modeling file this tool ships (not code of the model's own)."""
    return isinstance(value, dict) and all(str(v).startswith(f"{MODELING_MODULE}.") for v in value.values())


def export_family(config: dict) -> Family:
    """The task family of an export's config (exports written before families: sequence classification)."""
    named = config.get(BASE_ARCHITECTURES_KEY) or []
    found = next((f for f in map(family_of_class, named) if f is not None), None)
    if found is None and is_own_auto_map(config.get("auto_map")):
        found = next((f for f in map(get_family, family_names()) if f.auto_class in config["auto_map"]), None)
    return found or get_family(DEFAULT_FAMILY)


def mark_config_as_export(path: Path, family: Family) -> None:
    """Give the saved config a model type of its own, which plain transformers loads only through the modeling file
    shipped beside it (so only with trust_remote_code=True), and which an older loader refuses."""
    config = json.loads(path.read_text())
    if config.get("model_type") != EXPORT_MODEL_TYPE:
        config[BASE_TYPE_KEY] = config["model_type"]
        config[BASE_ARCHITECTURES_KEY] = config.get("architectures") or []
    config["model_type"] = EXPORT_MODEL_TYPE
    config["auto_map"] = auto_map(family)
    config["architectures"] = [config["auto_map"][family.auto_class].rpartition(".")[2]]
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def write_export_files(folder: Path, table: RankTable, family: Family) -> None:
    """Beside a saved config and weights: the config marked as an export, the modeling file and the rank file."""
    mark_config_as_export(folder / CONFIG_FILE, family)
    shutil.copyfile(MODELING_SOURCE, folder / MODELING_FILE)
    (folder / RANKS_FILE).write_text(json.dumps(table.as_dict(), indent=1))


def config_rank_table(folder: Path) -> dict | None:
    """The rank table a folder's config.json carries, or None (no config, unreadable, or a dense model's)."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    table = config.get(TABLE_KEY) if isinstance(config, dict) else None
    return table if isinstance(table, dict) else None


class SavesAsExport:
    """Mixed into a compressed model's class: `save_pretrained` (and so `push_to_hub`, `Trainer`'s checkpoints)
    writes the factorized form above instead of a dense checkpoint that other loaders would fill at random."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        table = rank_table_of(self)
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if table is not None and kwargs.get("is_main_process", True):
            write_export_files(Path(save_directory), table, family_of_model(self))
        return result


_SUBCLASSES: dict[type, type] = {}  # one compressed class per architecture class, made once


def compressed_class(cls: type) -> type:
    """The class a compressed model of `cls` gets (the same class for a model that is one already, or that has no
    `save_pretrained`)."""
    if issubclass(cls, SavesAsExport) or not hasattr(cls, "save_pretrained"):
        return cls
    if cls not in _SUBCLASSES:
        _SUBCLASSES[cls] = type(cls.__name__, (SavesAsExport, cls),
                                {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
    return _SUBCLASSES[cls]


def dense_class(cls: type) -> type:
    """The architecture's own class behind a compressed model's class."""
    return next(base for base in cls.__mro__ if not issubclass(base, SavesAsExport))
