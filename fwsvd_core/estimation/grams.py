"""Gram matrices X^T X, most of the arithmetic of the K-FAC factors and the activation statistics.

X^T X is symmetric, so only its upper triangle need be computed. On the CPU `gram_upper` computes it as a row of
blocks per band of columns (X_i^T [X_i ... X_n]): 10 of the 16 blocks of a 4 x 4 tiling, measured 0.55-0.65 of the
full product's time. (BLAS's own symmetric update, syrk through scipy, is faster alone but its threads fight torch's
for the cores inside a pass: slower there, measured.) Sums of upper triangles stay upper triangles, so a statistic
accumulates them and fills in the lower half once, at the end (`from_upper`).
"""
from __future__ import annotations

from itertools import pairwise

import torch

BANDS = 4  # column bands of the blocked product
MIN_BANDED = 256  # narrower inputs: one product (the blocks would be too small to pay)


def gram_upper(x: torch.Tensor) -> torch.Tensor:
    """[d, d] whose upper triangle, with the diagonal, is x^T x for x [tokens, d] (below the diagonal blocks it is
    zero on the CPU: read it through `from_upper`)."""
    d = x.shape[-1]
    if x.device.type != "cpu" or d < MIN_BANDED:
        return x.T @ x
    cuts = [round(i * d / BANDS) for i in range(BANDS + 1)]
    out = x.new_zeros(d, d)
    for start, stop in pairwise(cuts):
        out[start:stop, start:] = x[:, start:stop].T @ x[:, start:]
    return out


def from_upper(m: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """The symmetric matrix whose upper triangle (with the diagonal) is m's (`in_place`: made in m itself, with one
    temporary of its size)."""
    full = m.triu_() if in_place else m.triu()
    return full.add_(full.triu(1).T)
