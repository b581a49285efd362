"""Applying a per-layer rank map to a model, without touching the model itself."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from fwsvd_core.compression.checkpoint import compressed_class, dense_class
from fwsvd_core.compression.factorization import Factors
from fwsvd_core.compression.lowrank import LowRankLinear
from fwsvd_core.compression.rank_table import (
    FORM_DENSE,
    FORM_LOWRANK,
    FORM_ORIGINAL,
    LayerRank,
    RankTable,
    rank_table_of,
)
from fwsvd_core.compression.ranks import RankMap, validate_ranks
from fwsvd_core.inputs.families import family_of_model
from fwsvd_core.inputs.layers import LayerInfo, execution_device, stored_tensor


def structural_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree that shares every parameter and buffer with `model`.

    Replacing a submodule of the copy leaves `model` as it was; no weight is copied.
    """
    memo: dict[int, Any] = {id(t): t for t in model.parameters()}
    memo.update({id(t): t for t in model.buffers()})
    return copy.deepcopy(model, memo)


def layer_form(layer: LayerInfo, rank: int) -> str:
    """How a layer is stored at `rank`: unchanged at full rank, dense while factorizing would not save."""
    if rank >= layer.max_rank:
        return FORM_ORIGINAL
    return FORM_LOWRANK if rank <= layer.break_even_rank else FORM_DENSE


def _dense_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    out_f, in_f = weight.shape
    linear = nn.Linear(in_f, out_f, bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        linear.bias = nn.Parameter(bias, requires_grad=False)
    return linear


def _bias(model: nn.Module, name: str) -> torch.Tensor | None:
    """The named layer's bias, detached (None when it has none; read from accelerate's store when offloaded)."""
    module = model.get_submodule(name)
    return None if getattr(module, "bias", None) is None else stored_tensor(module, "bias").detach()


def _weight_dtype(model: nn.Module, name: str) -> torch.dtype:
    return cast(torch.Tensor, model.get_submodule(name).weight).dtype


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def compress(
    model: nn.Module, layers: list[LayerInfo], factors: Mapping[str, Factors], ranks: RankMap, method: str = "",
    in_place: bool = False,
) -> nn.Module:
    """A compressed view of `model`: layers below break-even become LowRankLinear, the rest are shared.

    Ranks are slices of the factors, each layer's read once (a mapping may compute them as they are asked for): no
    SVD is computed here. A model compressed before keeps the layers it factorized then, with their rows of its rank
    table, and the table records each step (`history`). Its `save_pretrained` writes a factorized checkpoint
    (`checkpoint.SavesAsExport`). `in_place` replaces the layers of `model` itself, each dense weight freed as it is
    replaced: the peak is the model, not the model and its compressed copy.
    """
    ranks = validate_ranks(layers, ranks)
    compressed = model if in_place else structural_copy(model)
    previous = rank_table_of(model)
    table: dict[str, LayerRank] = dict(previous.layers) if previous is not None else {}
    for layer in layers:
        rank = ranks[layer.name]
        form = layer_form(layer, rank)
        if form == FORM_ORIGINAL and layer.name in table:
            continue  # stored dense at an earlier step's rank, left as it is: that row still says what it holds
        table[layer.name] = LayerRank(rank, form, layer.in_features, layer.out_features)
        if form == FORM_ORIGINAL:
            continue
        f = factors[layer.name]
        bias = _bias(model, layer.name)
        dtype = _weight_dtype(model, layer.name)  # factors are computed in float32; stored like the weights
        device = execution_device(model.get_submodule(layer.name))  # an offloaded layer's new form computes there
        bias = None if bias is None else bias.to(device)
        new: nn.Module
        if form == FORM_LOWRANK:
            new = LowRankLinear.from_factors(f.left[:, :rank].detach().to(device, dtype, copy=True),
                                             f.right[:rank].detach().to(device, dtype, copy=True), bias)
            new.requires_grad_(False)
        else:
            new = _dense_linear(f.reconstruct(rank).detach().to(device, dtype), bias)
        replace_module(compressed, layer.name, new)
    if getattr(compressed, "config", None) is not None:
        config = copy.deepcopy(cast(Any, model).config)
        order = {name: i for i, (name, _) in enumerate(model.named_modules())}
        rows = dict(sorted(table.items(), key=lambda item: order.get(item[0], len(order))))
        extra = {"history": compression_history(previous)} if previous is not None else {}
        config.fwsvd_compression = RankTable(method, rows, extra).as_dict()  # plain JSON: the config is saved as it is
        cast(Any, compressed).config = config
        compressed.__class__ = compressed_class(type(compressed))
    return compressed.eval()


HISTORY_KEYS = ("method", "source", "task", "ratio", "parameter ratio", "scores", "eval data")


def compression_history(previous: RankTable) -> list[dict[str, Any]]:
    """The steps that made an already compressed model, oldest first, each with what it factorized: what a second
    compression's table and card carry about the first."""
    earlier = list(previous.extra.get("history", []))
    step = {key: previous.extra[key] for key in HISTORY_KEYS if key in previous.extra}
    step["method"] = previous.method
    done = {name for entry in earlier for name in entry.get("layers", [])}
    step["layers"] = [name for name, row in previous.layers.items() if row.form != FORM_ORIGINAL and name not in done]
    return [*earlier, step]


def with_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """A view of `model` whose named layers apply the given [out, in] weights (dense), the rest shared."""
    view = structural_copy(model)
    for name, weight in weights.items():
        replace_module(view, name, _dense_linear(weight.detach().to(_weight_dtype(model, name)), _bias(model, name)))
    return view.eval()


def merged_model(compressed: nn.Module) -> nn.Module:
    """The compressed model in its original architecture: each factorized layer stored dense (its rank-r product),
    in the module type the architecture uses (GPT-2's Conv1D included). Untouched weights are shared."""
    from transformers.pytorch_utils import Conv1D

    table = rank_table_of(compressed)
    if table is None:
        raise ValueError("This model carries no rank table: it is not a compressed model.")
    config = copy.deepcopy(cast(Any, compressed).config)
    del config.fwsvd_compression
    with torch.device("meta"):  # the original module types, without allocating weights
        skeleton = family_of_model(compressed).auto_model_class().from_config(config)
    merged = structural_copy(compressed)
    for name, row in table.layers.items():
        if row.form == FORM_ORIGINAL:
            continue
        module = compressed.get_submodule(name)
        weight = (module.dense_weight() if isinstance(module, LowRankLinear) else cast(torch.Tensor, module.weight)).detach()
        bias = None if module.bias is None else cast(torch.Tensor, module.bias).detach()
        new: nn.Module
        if isinstance(skeleton.get_submodule(name), Conv1D):
            new = Conv1D(row.out_features, row.in_features).to(device=weight.device, dtype=weight.dtype)
            new.weight = nn.Parameter(weight.T.contiguous(), requires_grad=False)
            new.bias = nn.Parameter(bias if bias is not None else torch.zeros_like(new.bias), requires_grad=False)
        else:
            new = _dense_linear(weight, bias)
        replace_module(merged, name, new)
    cast(Any, merged).config = config
    merged.__class__ = dense_class(type(merged))  # a standard checkpoint, saved as one
    return merged.eval()
