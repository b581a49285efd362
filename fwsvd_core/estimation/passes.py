"""Statistics in passes over groups of blocks.

When the statistics of every layer do not fit at once (a 7B decoder's Kronecker factors are about 70 GB in float32),
each pass over the calibration data computes those of a group of consecutive blocks only: the per-example gradients,
the captured layer inputs and the accumulated sums are then a group's, and each group's result is cached on disk as
soon as it is finished (the estimators' own cache, keyed by the group's layers). A pass repeats the forward and
backward of the whole model, so N groups cost N passes; every statistic is per layer, so the merged result equals
one pass's (tested). Each estimator merges its own groups' results.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from fwsvd_core.errors import FwsvdError
from fwsvd_core.inputs.layers import LayerInfo


def block_groups(layers: Sequence[LayerInfo], blocks_per_pass: int | None) -> list[list[LayerInfo]]:
    """The layers in groups of `blocks_per_pass` consecutive blocks (None: one group of all); a layer outside the
    blocks (a pooler, a head) joins the last group."""
    if blocks_per_pass is None:
        return [list(layers)]
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
