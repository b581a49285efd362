"""FWSVD (Hsu et al., ICLR 2022): rows weighted by their summed Fisher before the SVD, on the input side (the
paper), the output side, or both."""
from __future__ import annotations

from functools import partial

import torch

from fwsvd_core.compression.factorization import Factors, importance_from_sums, scaled_svd
from fwsvd_core.compression.methods.registry import FISHER, LayerInputs, Method, register
from fwsvd_core.errors import FwsvdError


def fwsvd_factors(weight: torch.Tensor, inputs: LayerInputs, side: str) -> Factors:
    method = f"fwsvd-{side}"
    rows, cols = inputs.fisher_rows, inputs.fisher_cols
    if (rows is None or cols is None) and inputs.fisher is not None:
        if inputs.fisher.shape != weight.shape:
            raise FwsvdError(f"Fisher shape {tuple(inputs.fisher.shape)} does not match weight shape "
                             f"{tuple(weight.shape)}.")
        rows, cols = inputs.fisher.sum(dim=1), inputs.fisher.sum(dim=0)
    if rows is None or cols is None:
        raise FwsvdError(f"{method} needs the Fisher of the layer.")
    if (rows.numel(), cols.numel()) != tuple(weight.shape):
        raise FwsvdError(f"Fisher profiles of sizes {rows.numel()} and {cols.numel()} do not match weight shape "
                         f"{tuple(weight.shape)}.")
    # only the row and column sums matter: the low-memory Fisher gives the same factors as the full one
    d_out = importance_from_sums(rows.to(weight.device)) if side in ("output", "both") else None
    d_in = importance_from_sums(cols.to(weight.device)) if side in ("input", "both") else None
    return scaled_svd(weight, method, d_out, d_in)


# the scaling each weighting applies, undone so that the spectra of different layers compare in loss units
_LOSS_SCALES = {
    "input": lambda out_f, in_f, total: 1.0 / out_f,
    "output": lambda out_f, in_f, total: 1.0 / in_f,
    "both": lambda out_f, in_f, total: 1.0 / total if total > 0 else 0.0,
}
_DESCRIPTIONS = {
    "input": "FWSVD, input features weighted by their Fisher (the paper)",
    "output": "FWSVD, output features weighted by their Fisher",
    "both": "FWSVD, both sides weighted (D_out W D_in)",
}
_COLORS = {"input": "#1f77b4", "output": "#2ca02c", "both": "#9467bd"}

for _order, _side in enumerate(("input", "output", "both"), start=10):
    register(Method(
        name=f"fwsvd-{_side}", description=_DESCRIPTIONS[_side], needs=frozenset({FISHER}),
        factorize=partial(fwsvd_factors, side=_side), loss_scale=_LOSS_SCALES[_side],
        aliases=("fwsvd",) if _side == "input" else (), color=_COLORS[_side], order=_order,
    ))
