"""Saving a compressed model with its rank table, and loading it back."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_model as load_safetensors_into
from safetensors.torch import save_model as save_safetensors_from
from torch import nn

from .cache import staged_directory
from .compression import FORM_DENSE, FORM_LOWRANK, replace_module
from .devices import resolve_device
from .errors import ModelLoadError
from .lowrank import LowRankLinear
from .models import LoadedModel, _ensure_pad_token

WEIGHTS_FILE = "model.safetensors"
RANKS_FILE = "fwsvd_ranks.json"


def save_compressed(model: nn.Module, tokenizer, directory: str | Path, extra: dict | None = None) -> Path:
    """Write config (with the rank table), weights (safetensors) and tokenizer; the folder appears whole or not at all."""
    directory = Path(directory)
    table = getattr(model.config, "fwsvd_compression", None)
    if table is None:
        raise ModelLoadError("This model carries no rank table: save compressed models made by fwsvd_core.compress.")
    if extra:
        model.config.fwsvd_compression = {**table, **extra}
    with staged_directory(directory) as staging:
        model.config.save_pretrained(staging)
        save_safetensors_from(model, str(staging / WEIGHTS_FILE))
        tokenizer.save_pretrained(staging)
        (staging / RANKS_FILE).write_text(json.dumps(model.config.fwsvd_compression, indent=1))
    return directory


def is_compressed_dir(directory: str | Path) -> bool:
    return (Path(directory) / RANKS_FILE).is_file()


def load_compressed(directory: str | Path, device: str | torch.device | None = None) -> LoadedModel:
    """Rebuild the architecture from the config, put the factorized layers in place, load the weights."""
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    directory = Path(directory)
    if not is_compressed_dir(directory):
        raise ModelLoadError(f"{directory} holds no compressed model ({RANKS_FILE} is missing).")
    config = AutoConfig.from_pretrained(directory)
    table = json.loads((directory / RANKS_FILE).read_text())
    model = AutoModelForSequenceClassification.from_config(config)
    for name, row in table["layers"].items():
        bias = model.get_submodule(name).bias is not None
        if row["form"] == FORM_LOWRANK:
            replace_module(model, name, LowRankLinear(row["in"], row["out"], row["rank"], bias=bias))
        elif row["form"] == FORM_DENSE:
            replace_module(model, name, nn.Linear(row["in"], row["out"], bias=bias))
    missing, unexpected = load_safetensors_into(model, str(directory / WEIGHTS_FILE), strict=False)
    if unexpected or [k for k in missing if not _is_tied(model, k)]:
        raise ModelLoadError(f"{directory}: weights do not match the rank table (missing {missing[:3]}, unexpected {unexpected[:3]}).")
    model.config.fwsvd_compression = table
    tokenizer = AutoTokenizer.from_pretrained(directory)
    _ensure_pad_token(model, tokenizer)
    model.to(resolve_device(device)).eval()
    return LoadedModel(model, tokenizer, f"compressed model {directory}")


def _is_tied(model: nn.Module, key: str) -> bool:
    """safetensors stores a tied tensor once; the other name is reported missing but is filled."""
    tied = getattr(model, "_tied_weights_keys", None) or []
    if isinstance(tied, dict):
        tied = list(tied)
    return key in tied
