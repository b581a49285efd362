"""Statistics in passes over groups of blocks, or of layers when not even one block's fit.

When the statistics of every layer do not fit at once (a 7B decoder's Kronecker factors are about 70 GB in float32),
each pass over the calibration data computes those of a group of consecutive blocks only (of consecutive layers when
one block's alone are too large: a LLaMA-7B block's K-FAC sums are about 6 GiB, its largest layer's 1.6 GiB): the
per-example gradients, the captured layer inputs and the accumulated sums are then a group's, and each group's result
is cached on disk as soon as it is finished (the estimators' own cache, keyed by the group's layers). A pass repeats
the forward of the whole model and the backward down to the group's first layer, so N groups cost N passes; every
statistic is per layer, so the merged result equals one pass's (tested). Each estimator merges its own groups'
results; the Kronecker factors, the largest, stay on disk after their pass and are read back one layer at a time.
`plan_passes` picks the groups from a memory estimate.
"""
from __future__ import annotations

import hashlib
from collections import ChainMap
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from fwsvd_core.errors import FwsvdError, InsufficientMemoryError
from fwsvd_core.inputs.layers import LayerInfo
from fwsvd_core.inputs.memory import format_bytes

T = TypeVar("T")
# the share of the memory available that `auto` lets the statistics take; the rest is for the passes themselves
# (the model's activations, the captured layer inputs and gradients of a batch)
STATISTICS_SHARE = 0.5
AUTO = "auto"  # blocks per pass planned by `plan_passes`


def block_groups(layers: Sequence[LayerInfo], blocks_per_pass: int | PassPlan | None) -> list[list[LayerInfo]]:
    """The layers in groups of `blocks_per_pass` consecutive blocks (None: one group of all), or in a plan's groups; a
    layer outside the blocks (a pooler, a head), or one the plan does not name, joins the last group."""
    if blocks_per_pass is None:
        return [list(layers)]
    if isinstance(blocks_per_pass, PassPlan):
        plan = blocks_per_pass
        if not plan.layer_groups:
            return block_groups(layers, plan.blocks_per_pass)
        position = {name: i for i, group in enumerate(plan.layer_groups) for name in group}
        by_plan: list[list[LayerInfo]] = [[] for _ in plan.layer_groups]
        for layer in layers:
            by_plan[position.get(layer.name, len(by_plan) - 1)].append(layer)
        return [g for g in by_plan if g]
    if blocks_per_pass < 1:
        raise FwsvdError(f"Blocks per pass must be 1 or more, not {blocks_per_pass}.")
    blocks = sorted({l.block for l in layers if l.block is not None})
    starts = blocks[::blocks_per_pass]
    groups: list[list[LayerInfo]] = [[] for _ in starts] or [[]]
    for layer in layers:
        index = len(groups) - 1 if layer.block is None else sum(1 for s in starts if s <= layer.block) - 1
        groups[index].append(layer)
    return [g for g in groups if g]


def joined_key(keys: Sequence[str | None]) -> str | None:
    """One cache key naming the groups' keys together (None when one of them has none)."""
    if any(k is None for k in keys):
        return None
    return hashlib.sha256("/".join(str(k) for k in keys).encode()).hexdigest()[:32]


def chained(parts: Sequence[Mapping[str, T]]) -> Mapping[str, T]:
    """One view of the groups' per-layer mappings (each layer is in one group), reading none of them until asked:
    a group kept on disk (`cache.StoredTensors`) stays there."""
    return ChainMap(*cast(list[MutableMapping[str, T]], list(parts)))


@dataclass(frozen=True)
class PassPlan:
    """How many blocks each pass over the calibration data takes (or which layers, when a block is split), and why."""

    blocks_per_pass: int | None  # None: every block in one pass, or the layer groups below
    passes: int
    one_pass_bytes: int  # the statistics of every layer at once
    largest_group_bytes: int
    budget: int
    layer_groups: tuple[tuple[str, ...], ...] = ()  # each pass's layers, by name, when not even one block fits

    def describe(self, what: str) -> str:
        if self.passes == 1:
            return f"{what}: one pass ({format_bytes(self.one_pass_bytes)} within {format_bytes(self.budget)})"
        if self.layer_groups:
            unit = f"at most {max(len(g) for g in self.layer_groups)} layer(s), as one block's statistics do not fit"
        else:
            unit = f"{self.blocks_per_pass} block(s)"
        return (f"{what}: {self.passes} passes of {unit}, planned from the memory estimate: "
                f"one pass would need {format_bytes(self.one_pass_bytes)}, a group needs at most "
                f"{format_bytes(self.largest_group_bytes)} of the {format_bytes(self.budget)} the statistics may take")


def plan_passes(layers: Sequence[LayerInfo], group_bytes: Callable[[list[LayerInfo]], int], budget: int) -> PassPlan:
    """The most blocks per pass whose every group's statistics (`group_bytes`) fit in `budget` bytes: every block in
    one pass when they all fit; when not even a single block's do, consecutive layers packed into as few groups as
    fit; InsufficientMemoryError when not even one layer's do."""
    one_pass = group_bytes(list(layers))
    if one_pass <= budget:
        return PassPlan(None, 1, one_pass, one_pass, budget)
    n_blocks = len({l.block for l in layers if l.block is not None})
    for size in range(n_blocks - 1, 0, -1):
        groups = block_groups(layers, size)
        if (largest := max(group_bytes(g) for g in groups)) <= budget:
            return PassPlan(size, len(groups), one_pass, largest, budget)
    return _layer_plan(layers, group_bytes, budget, one_pass)


def _layer_plan(layers: Sequence[LayerInfo], group_bytes: Callable[[list[LayerInfo]], int], budget: int,
                one_pass: int) -> PassPlan:
    """Consecutive layers, each group as long as it fits (the fewest passes for groups in the model's order)."""
    groups: list[list[LayerInfo]] = []
    for layer in layers:
        if (alone := group_bytes([layer])) > budget:
            raise InsufficientMemoryError(
                f"Not enough memory for the statistics of even one layer per pass: {layer.name} needs "
                f"{format_bytes(alone)}, {format_bytes(budget)} may be used. Options: a machine with more memory; a "
                "method whose statistics are smaller (FWSVD's are vectors).")
        if groups and group_bytes([*groups[-1], layer]) <= budget:
            groups[-1].append(layer)
        else:
            groups.append([layer])
    return PassPlan(None, len(groups), one_pass, max(group_bytes(g) for g in groups), budget,
                    tuple(tuple(l.name for l in g) for g in groups))
