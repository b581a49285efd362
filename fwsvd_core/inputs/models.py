"""A loaded model: its record, fingerprint and checks, and loading a saved model from a local directory or a hub id.

`loading.load_model` is the entry point that also knows the built-in demos and compressed exports.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError
from torch import nn

from fwsvd_core.cache import cache_root
from fwsvd_core.devices import resolve_device
from fwsvd_core.errors import ModelLoadError
from fwsvd_core.inputs.families import family_of_architectures, get_family
from fwsvd_core.inputs.hub import LOCAL_MODEL_HINT, hub_reachable, offline_by_setting
from fwsvd_core.inputs.labels import saved_labels_problem
from fwsvd_core.inputs.memory import check_model_load
from fwsvd_core.inputs.precision import as_dtype


@dataclass
class LoadedModel:
    """A model in eval mode on its device, its tokenizer, and a description of where it came from."""

    model: nn.Module
    tokenizer: object
    source: str
    notes: list[str] = field(default_factory=list)
    _fingerprint: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model, self.tokenizer)
        return self._fingerprint


def model_fingerprint(model: nn.Module, tokenizer=None) -> str:
    """A hash of the config, every weight and the tokenizer: two models share it only if they compute the same
    from the same text (a tokenizer fixed in place changes every statistic taken through it)."""
    digest = hashlib.blake2b(digest_size=16)
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    if tokenizer is not None:
        digest.update(tokenizer_fingerprint(tokenizer).encode())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what decides how a text becomes ids: the vocabulary and the pipeline around it (normaliser,
    pre-tokeniser, special tokens, lengths and sides); not where the tokenizer was read from."""
    digest = hashlib.blake2b(digest_size=16)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    described = {
        "class": type(tokenizer).__name__,
        "pipeline": _pipeline(backend) if backend is not None else None,
        "vocab": None if backend is not None else sorted(tokenizer.get_vocab().items()),
        "special": getattr(tokenizer, "special_tokens_map", {}),
        "lengths": [getattr(tokenizer, "model_max_length", None), getattr(tokenizer, "padding_side", None),
                    getattr(tokenizer, "truncation_side", None)],
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _pipeline(backend) -> dict:
    """A fast tokenizer's definition, without the padding and truncation state each call leaves behind."""
    pipeline = json.loads(backend.to_str())
    return {key: value for key, value in pipeline.items() if key not in ("padding", "truncation")}


# a tokenizer knowing fewer tokens than this share of the embedding rows is not the model's own (transformers falls
# back to a few-token tokenizer when a folder has none, and then reads every word as unknown)
MIN_TOKENIZER_SHARE = 0.5


def require_model_tokenizer(model: nn.Module, tokenizer, origin: str, folder: Path | None = None) -> None:
    """Refuse a tokenizer far smaller than the model's embedding table: every result through it would be noise."""
    embeddings = cast(Any, model).get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    known = len(tokenizer)
    if rows is None or known >= MIN_TOKENIZER_SHARE * rows:
        return
    where = folder if folder is not None else "the model's folder"
    raise ModelLoadError(
        f"{origin} has no tokenizer of its own: the tokenizer found knows {known} tokens, while the model's embedding "
        f"table has {rows} rows, so nearly every word would be read as unknown. Nothing was computed. Save the "
        f"tokenizer the model was trained with into {where} (for example "
        "`AutoTokenizer.from_pretrained(BASE_MODEL).save_pretrained(FOLDER)`), then load it again.")


def ensure_pad_token(model: nn.Module, tokenizer) -> None:
    """Decoder tokenizers (GPT-2, LLaMA) have no pad token; batching needs one."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError("The tokenizer has neither a pad nor an end-of-sequence token to pad with.")
        tokenizer.pad_token = tokenizer.eos_token
    config = cast(Any, model).config
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id


def offload_folder() -> Path:
    """Where accelerate writes the weights a device_map sends to the disk."""
    return cache_root() / "offload"


def load_pretrained(
    source: str | Path,
    num_labels: int | None = None,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    device_map: str | dict | None = None,
    family: str | None = None,
    config_updates: dict | None = None,
) -> LoadedModel:
    """Load a model saved with save_pretrained from a local directory or a hub id; fail within seconds when the
    hub is out of reach. The model class is the task `family`'s (`inputs.families`; None: the family its config's
    `architectures` names, else sequence classification). `dtype` None or 'auto' keeps the checkpoint's dtype;
    `revision` (branch, tag or commit) and `token` go to the hub as in transformers; `device_map` ('auto', or a
    module -> device mapping) lets accelerate spread the layers over the GPUs, then the CPU, then the disk,
    instead of placing the model on `device`. `config_updates` are set on the config before the weights load (an
    encoder run as a decoder: `{"is_decoder": True}`)."""
    from transformers import AutoConfig, AutoTokenizer

    source = str(source)
    local = Path(source).expanduser()
    notes: list[str] = []
    offline_reason = ""
    chosen = as_dtype(dtype)
    hub: dict = {"revision": revision, "token": token}
    kwargs: dict = {"trust_remote_code": trust_remote_code, "dtype": chosen or "auto", **hub}
    if device_map is not None:
        # what fits on no device goes to the disk, into a folder of the tool's cache (rewritten at each load)
        kwargs.update(device_map=device_map, offload_folder=str(offload_folder()))
    if local.is_dir():
        where, origin, files_only = str(local), f"local directory {local}", True
        if not (local / "config.json").is_file():
            raise ModelLoadError(f"{local} has no config.json: it is not a saved model directory.")
        if problem := saved_labels_problem(local):  # transformers would stop with "invalid literal for int()"
            raise ModelLoadError(f"Could not load {origin}: {problem}")
    elif local.exists():
        raise ModelLoadError(f"{local} is a file; give the directory a model was saved to.")
    else:
        if source.startswith((".", "~", "/")) or source.count("/") > 1:  # a path, not an org/name hub id
            raise ModelLoadError(f"No such directory: {source}. {LOCAL_MODEL_HINT}")
        where, origin = source, f"hub id {source}"
        files_only = not hub_reachable()
        if files_only:
            offline_reason = "offline mode is set" if offline_by_setting() else "the Hugging Face hub cannot be reached"
            notes.append(f"{offline_reason}: looked only in the local Hugging Face cache")
    try:
        config = AutoConfig.from_pretrained(where, local_files_only=files_only, trust_remote_code=trust_remote_code,
                                            **hub)
        if num_labels is not None:
            config.num_labels = num_labels
        for key, value in (config_updates or {}).items():
            setattr(config, key, value)
        if device_map is None:  # with a device map, accelerate places what fits and offloads the rest
            check_model_load(config, resolve_device(device), chosen)  # refuse what would not fit, before reading weights
        if chosen is None:
            # "auto" keeps the dtype the weights are stored in: transformers would follow the config's `dtype`
            # first, which can disagree with the files (a float32 checkpoint whose config says bfloat16)
            config.dtype = None
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=files_only, trust_remote_code=trust_remote_code,
                                                  **hub)
        model_class = (get_family(family) if family else family_of_architectures(config)).auto_model_class()
        model = model_class.from_pretrained(where, config=config, local_files_only=files_only, **kwargs)
    except pickle.UnpicklingError:
        raise ModelLoadError(
            f"Refused to load {origin}: its weights file is a pickle that holds more than tensors (code or objects to "
            "run when read). FWSVD Studio reads only weights and ran nothing. Convert the checkpoint to safetensors "
            "where you trust its origin, or ask its author for a safetensors file.") from None
    except ImportError as exc:  # device_map needs accelerate
        raise ModelLoadError(f"Could not load {origin}: {str(exc).splitlines()[0]} (pip install accelerate)") from None
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        if offline_reason:
            raise ModelLoadError(f"Model {source!r} is not in the local cache and {offline_reason}. {LOCAL_MODEL_HINT}") from None
        raise ModelLoadError(f"Could not load {origin}: {str(exc).splitlines()[0]} {LOCAL_MODEL_HINT}") from None
    ensure_pad_token(model, tokenizer)
    require_model_tokenizer(model, tokenizer, origin, local if local.is_dir() else None)
    require_finite_weights(model, origin)
    notes += place(model, device, device_map)
    return LoadedModel(model, tokenizer, origin + ("" if revision is None else f" at revision {revision}"), notes)


def place(model: nn.Module, device: str | torch.device | None, device_map: str | dict | None) -> list[str]:
    """Put a loaded model on `device` (accelerate placed it already when a `device_map` was given) in eval mode;
    returns the note that says where a device map put the layers."""
    notes = []
    if device_map is None:
        model.to(resolve_device(device))
    else:
        placed = sorted({str(d) for d in (getattr(model, "hf_device_map", None) or {}).values()})
        notes.append(f"layers placed by device_map={device_map!r}: {', '.join(placed) or 'one device'}")
    model.eval()
    return notes


def nonfinite_tensors(model: nn.Module) -> dict[str, int]:
    """Parameters and buffers holding NaN or infinity, with how many such values each has."""
    bad = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and tensor.device.type != "meta":
            count = int((~torch.isfinite(tensor.detach())).sum())
            if count:
                bad[name] = count
    return bad


def require_finite_weights(model: nn.Module, origin: str) -> None:
    """Refuse a model with NaN or infinite weights before any work: every result from it would be meaningless."""
    if bad := nonfinite_tensors(model):
        shown = ", ".join(f"{name} ({count} values)" for name, count in list(bad.items())[:8])
        more = f" and {len(bad) - 8} more tensors" if len(bad) > 8 else ""
        raise ModelLoadError(f"{origin} has weights that are NaN or infinite: {shown}{more}. "
                             "Nothing was computed; fix or re-export the checkpoint.")
