"""TFWSVD: the element-wise Fisher-weighted low-rank problem min_{A,B} sum_ij I_ij (W_ij - (AB)_ij)^2, solved numerically.

Two solvers, both started from Fisher-weighted SVD factors:
- `em`: expectation-maximisation / iterative imputation (Srebro & Jaakkola, 2003): with weights scaled into
  [0, 1], X <- SVD_r(w * W + (1 - w) * X). Each step does not increase the objective.
- `als`: alternating weighted least squares: every row of A, then every column of B, is the exact
  minimiser of a small r x r weighted least-squares problem. Each half-step does not increase it either.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from fwsvd_core.compression.factorization import Factors
from fwsvd_core.errors import FwsvdError, RankError

SOLVERS = ("em", "als")
# rows are solved in chunks so that the r x r systems of one chunk stay within this many elements
_ALS_CHUNK_ELEMENTS = 64 * 1024 * 1024


@dataclass
class SolveResult:
    left: torch.Tensor  # A, [out, r]
    right: torch.Tensor  # B, [r, in]
    objective: list[float] = field(default_factory=list)  # per iteration, the start first
    seconds: float = 0.0
    stopped: str = ""  # "tolerance", "time budget", "iterations"

    @property
    def improvement(self) -> float:
        """Relative decrease of the objective from the start."""
        return 1.0 - self.objective[-1] / self.objective[0] if self.objective[0] > 0 else 0.0

    def as_factors(self, method: str) -> Factors:
        r = self.left.shape[1]
        return Factors(self.left, self.right, torch.ones(r, device=self.left.device), None, None, method)


def weighted_objective(weight: torch.Tensor, fisher: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> float:
    residual = weight - left @ right
    return float((fisher * residual * residual).sum())


def _truncated(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    return u[:, :rank] * s[:rank], vh[:rank]


def _em_step(w: torch.Tensor, scaled: torch.Tensor, left, right, rank: int):
    filled = scaled * w + (1.0 - scaled) * (left @ right)
    return _truncated(filled, rank)


def _solve_rows(w: torch.Tensor, fisher: torch.Tensor, right: torch.Tensor, ridge: float) -> torch.Tensor:
    """Each row a of A minimises sum_j I_ij (W_ij - a . B_:j)^2: (B diag(I_i) B^T) a = B diag(I_i) W_i."""
    rows, rank = w.shape[0], right.shape[0]
    step = max(1, _ALS_CHUNK_ELEMENTS // max(1, rank * w.shape[1]))
    eye = torch.eye(rank, device=w.device, dtype=w.dtype)
    out = torch.empty(rows, rank, device=w.device, dtype=w.dtype)
    for start in range(0, rows, step):
        f = fisher[start : start + step]
        weighted = f[:, None, :] * right[None, :, :]  # [chunk, r, in]
        gram = weighted @ right.T  # [chunk, r, r]
        rhs = weighted @ w[start : start + step, :, None]  # [chunk, r, 1]
        scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-30)[:, None, None]
        out[start : start + step] = torch.linalg.solve(gram + ridge * scale * eye, rhs)[..., 0]
    return out


def _als_step(w: torch.Tensor, fisher: torch.Tensor, left, right, ridge: float):
    left = _solve_rows(w, fisher, right, ridge)
    right = _solve_rows(w.T, fisher.T, left.T, ridge).T
    return left, right


def solve(
    weight: torch.Tensor, fisher: torch.Tensor, start: Factors, rank: int, solver: str = "als",
    max_iter: int = 50, tol: float = 1e-4, time_budget: float | None = 5.0, ridge: float = 1e-6,
) -> SolveResult:
    """Minimise the element-wise weighted error at `rank`, from `start` truncated to `rank`.

    Stops when an iteration lowers the objective by less than `tol` (relative), after `time_budget`
    seconds, or after `max_iter` iterations. The result is never worse than the start.
    """
    if solver not in SOLVERS:
        raise FwsvdError(f"Unknown TFWSVD solver {solver!r}; choose from {', '.join(SOLVERS)}.")
    if not 1 <= rank <= start.max_rank:
        raise RankError(f"Rank must be between 1 and {start.max_rank}, got {rank}.")
    t0 = time.perf_counter()
    w = weight.detach().float()
    f = torch.nan_to_num(fisher.detach().float().to(w.device), nan=0.0, posinf=0.0).clamp_min(0.0)
    left, right = start.left[:, :rank].float().clone(), start.right[:rank].float().clone()
    history = [weighted_objective(w, f, left, right)]
    best = (history[0], left, right)
    top = float(f.max())
    scaled = f / top if top > 0 else torch.ones_like(f)
    stopped = "iterations"
    for _ in range(max_iter):
        if solver == "em":
            left, right = _em_step(w, scaled, left, right, rank)
        else:
            left, right = _als_step(w, f, left, right, ridge)
        history.append(weighted_objective(w, f, left, right))
        if history[-1] < best[0]:
            best = (history[-1], left, right)
        previous = history[-2]
        if previous <= 0 or (previous - history[-1]) / previous < tol:
            stopped = "tolerance"
            break
        if time_budget is not None and time.perf_counter() - t0 > time_budget:
            stopped = "time budget"
            break
    return SolveResult(best[1].contiguous(), best[2].contiguous(), history, time.perf_counter() - t0, stopped)
