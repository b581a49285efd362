"""An export's weights as safetensors files of at most a given size, written one at a time.

safetensors turns every tensor of a file into bytes before it writes any: one file of a 7B model's weights would make
a second copy of them in memory. In shards, the copy is one shard's. The layout is transformers' own (the shards and
`model.safetensors.index.json`), which every loader reads.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import _remove_duplicate_names, save_file, save_model
from torch import nn

from fwsvd_core.compression.checkpoint import WEIGHTS_FILE, WEIGHTS_INDEX_FILE
from fwsvd_core.inputs.memory import parse_bytes

MAX_SHARD_SIZE = "5G"  # transformers' usual shard size for the hub


def shard_limit(max_shard_size: int | str) -> int:
    """Bytes of '5G', '500M' (binary units) or a byte count."""
    return max_shard_size if isinstance(max_shard_size, int) else parse_bytes(max_shard_size)


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def shard_groups(tensors: dict[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    """The tensors in order, cut into groups of at most `limit` bytes (a larger tensor alone in its group)."""
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        if groups[-1] and size + tensor_bytes(tensor) > limit:
            groups.append({})
            size = 0
        groups[-1][name] = tensor
        size += tensor_bytes(tensor)
    return groups


def save_weights(model: nn.Module, directory: Path, max_shard_size: int | str = MAX_SHARD_SIZE) -> list[str]:
    """Write the model's weights into `directory`: `model.safetensors` when they fit in one shard, else numbered
    shards and their index. Tensors sharing storage (tied embeddings) are written once, as safetensors does.
    Returns the files written."""
    limit = shard_limit(max_shard_size)
    state = model.state_dict()
    for others in _remove_duplicate_names(state).values():
        for name in others:
            del state[name]
    groups = shard_groups(state, limit)
    if len(groups) == 1:
        save_model(model, str(directory / WEIGHTS_FILE))
        return [WEIGHTS_FILE]
    names = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map = {}
    for name, group in zip(names, groups, strict=True):
        save_file({k: t.contiguous() for k, t in group.items()}, str(directory / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, name))
    index = {"metadata": {"total_size": sum(tensor_bytes(t) for t in state.values())}, "weight_map": weight_map}
    (directory / WEIGHTS_INDEX_FILE).write_text(json.dumps(index, indent=1))
    return [*names, WEIGHTS_INDEX_FILE]
