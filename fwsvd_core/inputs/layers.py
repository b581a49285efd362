"""Finding the compressible linear layers of a model, with their block, role and sizes."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from fwsvd_core.errors import NoCompressibleLayersError


@functools.cache
def conv1d_class() -> type:
    """GPT-2's `Conv1D` (imported when first asked for: transformers is slow to import, and `--help` needs none of it)."""
    from transformers.pytorch_utils import Conv1D

    return Conv1D

ROLES = ("query", "key", "value", "qkv", "attention output", "FFN in", "FFN gate", "FFN gate+in", "FFN out", "other")
GATED_FFN_ROLES = ("FFN gate", "FFN gate+in")  # a gated FFN (LLaMA's gate_proj, Phi-3's fused gate_up_proj)

# (role, pattern on the module's dotted name); first match wins, so specific names come first
_ROLE_PATTERNS: list[tuple[str, re.Pattern]] = [
    (role, re.compile(pattern))
    for role, pattern in [
        ("qkv", r"(c_attn|query_key_value|qkv_proj|Wqkv|\.qkv|in_proj)$"),  # in_proj: DeBERTa (v1)
        ("query", r"(query|query_proj|q_proj|q_lin|\.q)$"),  # query_proj: DeBERTa-v2
        ("key", r"(key|key_proj|k_proj|k_lin|\.k)$"),
        ("value", r"(value|value_proj|v_proj|v_lin|\.v)$"),
        ("attention output", r"(attention\.output\.dense|attention\.dense|out_lin|o_proj|attn\.c_proj|out_proj|attention\.o)$"),
        ("FFN gate+in", r"(gate_up_proj|w12)$"),  # Phi-3 (and xformers' SwiGLU w12): gate and up in one map
        ("FFN gate", r"(gate_proj|w1)$"),
        ("FFN in", r"(intermediate\.dense|lin1|\.ffn|mlp\.c_fc|up_proj|fc1|w3)$"),
        ("FFN out", r"(output\.dense|lin2|ffn_output|mlp\.c_proj|down_proj|fc2|w2)$"),
    ]
]
_BLOCK = re.compile(r"\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class LayerInfo:
    """A linear map of the model. Shapes use PyTorch's [out, in] convention."""

    name: str
    block: int | None
    role: str
    in_features: int
    out_features: int
    kind: str  # "linear" (nn.Linear) or "conv1d" (GPT-2's Conv1D, weight stored [in, out])

    @property
    def params(self) -> int:
        """Weight parameters (the bias is kept as is by compression)."""
        return self.in_features * self.out_features

    @property
    def max_rank(self) -> int:
        return min(self.in_features, self.out_features)

    @property
    def break_even_rank(self) -> int:
        """Largest rank whose factorization r*(in+out) still has fewer parameters than in*out."""
        return (self.params - 1) // (self.in_features + self.out_features)

    def factorized_params(self, rank: int) -> int:
        return rank * (self.in_features + self.out_features)

    def compressed_params(self, rank: int) -> int:
        """Parameters actually kept at `rank`: the factorized form only while it is smaller."""
        return self.factorized_params(rank) if rank <= self.break_even_rank else self.params

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)


def role_of(name: str) -> str:
    for role, pattern in _ROLE_PATTERNS:
        if pattern.search(name):
            return role
    return "other"


def block_of(name: str) -> int | None:
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else None


def block_module_name(name: str) -> str | None:
    """The repeated block a layer sits in, by module name ('model.layers.3' for 'model.layers.3.mlp.up_proj')."""
    match = _BLOCK.search(name)
    return name[: match.end(1)] if match else None


def weight_out_in(module: nn.Module) -> torch.Tensor:
    """The weight as [out, in] whatever the module type (a view, not a copy).

    A weight that accelerate offloaded (device_map: on the 'meta' device, kept on the CPU or the disk until
    the layer runs) is read from where accelerate keeps it.
    """
    weight = stored_tensor(module, "weight")
    return weight.t() if isinstance(module, conv1d_class()) else weight


def stored_tensor(module: nn.Module, name: str) -> torch.Tensor:
    """A parameter of the module as it holds values: from accelerate's store when offloaded (on 'meta')."""
    tensor = cast(torch.Tensor, getattr(module, name))
    weights = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
    return weights[name] if tensor.device.type == "meta" and weights is not None else tensor


def execution_device(module: nn.Module) -> torch.device:
    """Where a layer computes: the device accelerate moves an offloaded layer to, else its weight's device."""
    target = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
    if target is not None:
        return torch.device(target)
    device = cast(torch.Tensor, module.weight).device
    return torch.device("cpu") if device.type == "meta" else device



def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, conv1d_class()))


def find_layers(model: nn.Module, include_other: bool = False) -> list[LayerInfo]:
    """The compressible linear layers, each once even when shared (ALBERT).

    Layers outside the repeated blocks (embedding projections, pooler, classifier head)
    are left out unless `include_other` is set.
    """
    found = []
    factorized: list[str] = []  # the parts of a factorized layer are not layers of their own
    for name, module in model.named_modules():  # named_modules yields a shared module once, parents first
        if getattr(module, "holds_factors", False):
            factorized.append(name + ".")
        if not _is_linear(module) or name.startswith(tuple(factorized)):
            continue
        block = block_of(name)
        role = role_of(name) if block is not None else "other"
        if block is None and not include_other:
            continue
        weight = weight_out_in(module)
        out_f, in_f = weight.shape
        kind = "conv1d" if isinstance(module, conv1d_class()) else "linear"
        found.append(LayerInfo(name, block, role, int(in_f), int(out_f), kind))
    return found


def require_layers(model: nn.Module, include_other: bool = False) -> list[LayerInfo]:
    layers = find_layers(model, include_other)
    if not layers:
        raise NoCompressibleLayersError(
            f"{type(model).__name__} has no linear layer inside repeated blocks that the tool can factorize."
        )
    return layers


def layer_table(layers: list[LayerInfo]):
    """A pandas table of the layers for display and export."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "layer": l.name, "block": l.block, "role": l.role, "out": l.out_features, "in": l.in_features,
                "params": l.params, "break-even rank": l.break_even_rank, "max rank": l.max_rank,
            }
            for l in layers
        ]
    )
