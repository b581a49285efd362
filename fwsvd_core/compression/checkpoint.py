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

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"  # save_pretrained's shards of a large model
CONFIG_FILE = "config.json"
MODELING_FILE = "fwsvd_modeling.py"
MODELING_SOURCE = Path(__file__).with_name("hf_modeling.py")  # copied, never imported: it is the export's own code
AUTO_MAP = {"AutoConfig": "fwsvd_modeling.FwsvdCompressedConfig",
            "AutoModelForSequenceClassification": "fwsvd_modeling.FwsvdCompressedForSequenceClassification"}
EXPORT_MODEL_TYPE = "fwsvd_compressed"
BASE_TYPE_KEY = "fwsvd_base_model_type"
TABLE_KEY = "fwsvd_compression"  # the rank table inside config.json


def mark_config_as_export(path: Path) -> None:
    """Give the saved config a model type of its own, which plain transformers loads only through the modeling file
    shipped beside it (so only with trust_remote_code=True), and which an older loader refuses."""
    config = json.loads(path.read_text())
    if config.get("model_type") != EXPORT_MODEL_TYPE:
        config[BASE_TYPE_KEY] = config["model_type"]
    config["model_type"] = EXPORT_MODEL_TYPE
    config["auto_map"] = AUTO_MAP
    config["architectures"] = [AUTO_MAP["AutoModelForSequenceClassification"].rpartition(".")[2]]
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def write_export_files(folder: Path, table: RankTable) -> None:
    """Beside a saved config and weights: the config marked as an export, the modeling file and the rank file."""
    mark_config_as_export(folder / CONFIG_FILE)
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
            write_export_files(Path(save_directory), table)
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
