"""A weight matrix small enough to reason about by hand, for teaching the SVD mismatch.

Most of its entries are large and the task loss barely cares about them; a few are small and the loss cares
a hundred times more. Plain SVD keeps what is large; the Fisher-weighted solution keeps what matters. At a
low rank the first has the smaller plain error and the second the smaller weighted error: the mismatch in
a 6 x 5 matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fwsvd_core.compression.factorization import scaled_svd
from fwsvd_core.compression.tfwsvd import solve

IMPORTANT = ((0, 4), (3, 1), (5, 3))  # the entries the loss cares about
IMPORTANCE = 100.0  # how much more than the others


@dataclass(frozen=True)
class Toy:
    weight: torch.Tensor  # [rows, cols]
    importance: torch.Tensor  # [rows, cols]: the Fisher of each entry


@dataclass(frozen=True)
class ToySolution:
    reconstruction: torch.Tensor
    plain_error: float  # ||W - W_r|| / ||W||
    weighted_error: float  # sqrt(sum I (W - W_r)^2 / sum I W^2)
    sacrificed: tuple[tuple[int, int], ...]  # the entries it reconstructs worst (absolute error), worst first


def toy_matrix() -> Toy:
    """Large smooth entries of little importance, and three small entries of large importance."""
    rows = torch.arange(6, dtype=torch.float64)[:, None]
    cols = torch.arange(5, dtype=torch.float64)[None, :]
    weight = 2.0 + 0.5 * rows + 0.3 * cols + 0.4 * torch.sin(rows + 2 * cols)  # big, nearly rank 2
    importance = torch.ones_like(weight)
    for (i, j), value in zip(IMPORTANT, (-0.8, 0.9, -0.7), strict=True):
        weight[i, j] = value  # small, off the smooth pattern
        importance[i, j] = IMPORTANCE
    return Toy(weight.float(), importance.float())


def _solution(toy: Toy, reconstruction: torch.Tensor, keep: int) -> ToySolution:
    w, f = toy.weight, toy.importance
    residual = w - reconstruction
    order = torch.argsort(residual.abs().flatten(), descending=True)[:keep]
    sacrificed = tuple((int(k) // w.shape[1], int(k) % w.shape[1]) for k in order)
    weighted = float(((f * residual.square()).sum() / (f * w * w).sum()).sqrt())
    return ToySolution(reconstruction, float(residual.norm() / w.norm()), weighted, sacrificed)


def toy_solutions(toy: Toy, rank: int) -> dict[str, ToySolution]:
    """Plain SVD's rank-r reconstruction and the element-wise Fisher-weighted one (TFWSVD's solver to convergence)."""
    plain = scaled_svd(toy.weight, "svd")
    weighted = solve(toy.weight, toy.importance, plain, rank, "als", max_iter=500, tol=1e-10, time_budget=None)
    keep = len(IMPORTANT)
    return {"svd": _solution(toy, plain.reconstruct(rank), keep),
            "weighted": _solution(toy, weighted.as_factors("weighted").reconstruct(rank), keep)}
