"""ASVD-style activation-aware SVD: input channels scaled by their mean |activation| before the SVD."""
from __future__ import annotations

import torch

from fwsvd_core.compression.factorization import Factors, activation_scaling, scaled_svd
from fwsvd_core.compression.methods.registry import ACTIVATIONS, LayerInputs, Method, register
from fwsvd_core.errors import FwsvdError


def asvd_factors(weight: torch.Tensor, inputs: LayerInputs) -> Factors:
    if inputs.mean_abs is None:
        raise FwsvdError("asvd needs the mean absolute input of the layer (calibration activations).")
    return scaled_svd(weight, "asvd", d_in=activation_scaling(inputs.mean_abs.to(weight.device)))


register(Method(
    name="asvd", description="ASVD: input channels scaled by mean |activation|", needs=frozenset({ACTIVATIONS}),
    factorize=asvd_factors, color="#ff7f0e", order=20,
))
