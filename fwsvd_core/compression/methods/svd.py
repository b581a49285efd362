"""Plain truncated SVD: the smallest reconstruction error at every rank, blind to the task."""
from __future__ import annotations

import torch

from fwsvd_core.compression.factorization import Factors, scaled_svd
from fwsvd_core.compression.methods.registry import LayerInputs, Method, register


def svd_factors(weight: torch.Tensor, inputs: LayerInputs) -> Factors:
    return scaled_svd(weight, "svd")


register(Method(
    name="svd", description="plain truncated SVD (smallest reconstruction error)", factorize=svd_factors,
    # the unweighted tail energy, in loss units with the layer's mean Fisher
    loss_scale=lambda out_f, in_f, total: total / (out_f * in_f),
    color="#d62728", order=0,
))
