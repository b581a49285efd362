"""TFWSVD (Hua et al., EMNLP 2022): the element-wise Fisher-weighted problem solved at each rank, by alternating
weighted least squares or EM, from the best FWSVD start."""
from __future__ import annotations

from functools import partial

import torch

from fwsvd_core.compression.factorization import Factors
from fwsvd_core.compression.methods.registry import FISHER, LayerInputs, Method, register
from fwsvd_core.compression.tfwsvd import SOLVERS, SolveResult, solve
from fwsvd_core.errors import FwsvdError


def tfwsvd_solve(weight: torch.Tensor, inputs: LayerInputs, start: Factors, rank: int, solver: str,
                 **settings) -> SolveResult:
    if inputs.fisher is None:
        raise FwsvdError("TFWSVD needs the element-wise Fisher: estimate the full Fisher first (the low-memory one "
                         "keeps row and column sums only).")
    return solve(weight, inputs.fisher.to(weight.device), start, rank, solver, **settings)


_NAMES = {"als": "alternating weighted least squares", "em": "EM (iterative imputation)"}
for _order, _solver in enumerate(SOLVERS, start=40):
    register(Method(
        name=f"tfwsvd-{_solver}", description=f"TFWSVD solved by {_NAMES[_solver]}", needs=frozenset({FISHER}),
        solve=partial(tfwsvd_solve, solver=_solver), starts_from=("fwsvd-input", "fwsvd-output", "fwsvd-both"),
        aliases=("tfwsvd",) if _solver == "als" else (), color={"als": "#17becf", "em": "#bcbd22"}[_solver],
        order=_order,
    ))
