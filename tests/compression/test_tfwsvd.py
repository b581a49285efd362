from itertools import pairwise

import pytest
import torch

from fwsvd_core.compression.methods import factorize
from fwsvd_core.compression.tfwsvd import SOLVERS, solve, weighted_objective
from fwsvd_core.errors import FwsvdError


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 30, generator=g)
    fisher = torch.rand(40, 30, generator=g) ** 4
    return w, fisher


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("start", ["fwsvd-input", "fwsvd-output", "fwsvd-both"])
def test_each_solver_lowers_the_weighted_objective_monotonically(problem, solver, start):
    w, fisher = problem
    factors = factorize(w, start, fisher)
    result = solve(w, fisher, factors, 5, solver, max_iter=40, time_budget=None)
    steps = result.objective
    assert all(b <= a * (1 + 1e-5) for a, b in pairwise(steps))
    assert steps[-1] < 0.8 * steps[0]  # a real improvement over FWSVD, not a rounding one
    assert weighted_objective(w, fisher, result.left, result.right) == pytest.approx(min(steps), rel=1e-5)
    assert result.left.shape == (40, 5) and result.right.shape == (5, 30)


@pytest.mark.parametrize("solver", SOLVERS)
def test_with_uniform_weights_it_recovers_svd(problem, solver):
    w, fisher = problem
    ones = torch.ones_like(w)
    result = solve(w, ones, factorize(w, "fwsvd-input", fisher), 5, solver, max_iter=300, tol=1e-10, time_budget=None)
    tail = float((torch.linalg.svdvals(w)[5:] ** 2).sum())
    assert result.objective[-1] == pytest.approx(tail, rel=1e-3)


def test_never_worse_than_the_start_and_stops_on_budget(problem):
    w, fisher = problem
    start = factorize(w, "fwsvd-both", fisher)
    result = solve(w, fisher, start, 4, "em", max_iter=1_000_000, tol=float("-inf"), time_budget=0.2)
    assert result.stopped == "time budget" and result.seconds < 5
    assert result.objective[-1] <= result.objective[0]
    quick = solve(w, fisher, start, 4, "als", max_iter=2, time_budget=None, tol=float("-inf"))
    assert quick.stopped == "iterations" and len(quick.objective) == 3


def test_zero_weights_rows_stay_finite(problem):
    w, fisher = problem
    fisher = fisher.clone()
    fisher[:5] = 0.0
    result = solve(w, fisher, factorize(w, "fwsvd-input", fisher), 4, "als", max_iter=10, time_budget=None)
    assert torch.isfinite(result.left).all() and torch.isfinite(result.right).all()


def test_bad_solver_and_rank(problem):
    w, fisher = problem
    start = factorize(w, "svd")
    with pytest.raises(FwsvdError, match="Unknown TFWSVD solver"):
        solve(w, fisher, start, 3, "newton")
    with pytest.raises(FwsvdError, match="between 1 and 30"):
        solve(w, fisher, start, 31)
