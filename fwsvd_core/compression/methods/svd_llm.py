"""SVD-LLM-style whitening: the SVD of W S, where S S^T is the input second moment, mapped back by S^-1."""
from __future__ import annotations

import torch

from fwsvd_core.compression.factorization import Factors, whitening
from fwsvd_core.compression.methods.registry import ACTIVATIONS, LayerInputs, Method, register
from fwsvd_core.errors import FwsvdError


def svd_llm_factors(weight: torch.Tensor, inputs: LayerInputs) -> Factors:
    if inputs.second_moment is None:
        raise FwsvdError("svd-llm needs the input second moment of the layer (calibration activations).")
    factor, inverse, _ = whitening(inputs.second_moment.to(weight.device))
    u, s, vh = torch.linalg.svd(weight @ factor, full_matrices=False)
    return Factors((u * s[None, :]).contiguous(), (vh @ inverse).contiguous(), s, None, None, "svd-llm")


register(Method(
    name="svd-llm", description="SVD-LLM: whitened by the Cholesky factor of the input second moment",
    needs=frozenset({ACTIVATIONS}), factorize=svd_llm_factors, color="#8c564b", order=30,
))
