"""A compressed model for deployment: factorized only where two products are faster than one.

A factorized layer saves time only below its latency break-even rank (measured per device and runtime by
`fwsvd_core.analysis.latency`), which can lie below its parameter break-even: there the two small products of
up(down(x)) run slower than the one dense product they replace. `merge_slow_layers` stores those layers as their
rank-r product, so the model computes the same numbers and is nowhere slower than the dense layer it replaced.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

from torch import nn

from fwsvd_core.compression.apply import replace_module, structural_copy
from fwsvd_core.compression.lowrank import LowRankLinear
from fwsvd_core.compression.rank_table import FORM_DENSE, FORM_LOWRANK, LayerRank, RankTable, rank_table_of
from fwsvd_core.errors import RankError

BreakEven = Callable[[int, int], int]  # (in_features, out_features) -> the largest rank worth factorizing


def slow_layers(compressed: nn.Module, break_even: BreakEven) -> dict[str, int]:
    """The factorized layers whose rank is above their shape's break-even, with that break-even."""
    table = rank_table_of(compressed)
    if table is None:
        raise RankError("This model carries no rank table: it is not a compressed model.")
    found = {}
    for name, row in table.layers.items():
        if row.form == FORM_LOWRANK and row.rank > (limit := break_even(row.in_features, row.out_features)):
            found[name] = limit
    return found


def merge_slow_layers(compressed: nn.Module, break_even: BreakEven) -> nn.Module:
    """`compressed` with each factorized layer above its latency break-even stored as one dense product (the same
    rank-r matrix, so the same outputs); the other layers shared. Its rank table marks those layers `dense`, so
    it saves and exports like any compressed model."""
    slow = slow_layers(compressed, break_even)
    table = cast(RankTable, rank_table_of(compressed))
    if not slow:
        return compressed
    merged = structural_copy(compressed)
    rows = dict(table.layers)
    for name in slow:
        layer = cast(LowRankLinear, compressed.get_submodule(name))
        dense = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
        dense.weight = nn.Parameter(layer.dense_weight().detach(), requires_grad=False)
        if layer.bias is not None:
            dense.bias = nn.Parameter(layer.bias.detach(), requires_grad=False)
        replace_module(merged, name, dense)
        row = rows[name]
        rows[name] = LayerRank(row.rank, FORM_DENSE, row.in_features, row.out_features)
    config = copy.deepcopy(cast(Any, compressed).config)
    config.fwsvd_compression = RankTable(table.method, rows, table.extra).as_dict()
    cast(Any, merged).config = config
    return merged.eval()
