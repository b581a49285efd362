"""Kronecker-factored Fisher weighting: with the layer's Fisher approximated as A (x) B, the truncated SVD of
L_B^T W L_A mapped back (L L^T the Cholesky factors) minimises tr(dW^T B dW A), the second-order loss.

`kfac` takes the K-FAC factors (input and output-gradient covariances); `gfwsvd` (Chekalina et al., 2025) the
Kronecker product nearest to the per-example empirical Fisher. Both spectra are in loss units already.
"""
from __future__ import annotations

from functools import partial

import torch

from fwsvd_core.compression.factorization import Factors, kronecker_svd
from fwsvd_core.compression.methods.registry import KRONECKER, NEAREST_KRONECKER, LayerInputs, Method, register
from fwsvd_core.errors import FwsvdError


def kronecker_factors(weight: torch.Tensor, inputs: LayerInputs, kind: str, method: str) -> Factors:
    pair = (inputs.kronecker or {}).get(kind)
    if pair is None:
        raise FwsvdError(f"{method} needs the {kind} Kronecker factors of the layer's Fisher: estimate them first.")
    a, b = pair
    if (b.shape[0], a.shape[0]) != tuple(weight.shape):
        raise FwsvdError(f"Kronecker factors of sizes {a.shape[0]} (inputs) and {b.shape[0]} (outputs) do not match "
                         f"weight shape {tuple(weight.shape)}.")
    return kronecker_svd(weight, a, b, method, inputs.damping)


def _in_loss_units(out_f: int, in_f: int, total: float) -> float:
    return 1.0


register(Method(
    name="kfac", description="K-FAC weighting: SVD of L_B^T W L_A, A and B the input and output-gradient covariances",
    needs=frozenset({KRONECKER}), factorize=partial(kronecker_factors, kind="kfac", method="kfac"),
    loss_scale=_in_loss_units, color="#e377c2", order=50,
))
register(Method(
    name="gfwsvd", description="GFWSVD: SVD of L_B^T W L_A, A (x) B the Kronecker product nearest to the Fisher",
    needs=frozenset({KRONECKER, NEAREST_KRONECKER}), factorize=partial(kronecker_factors, kind="nearest", method="gfwsvd"),
    loss_scale=_in_loss_units, color="#393b79", order=51,
))
