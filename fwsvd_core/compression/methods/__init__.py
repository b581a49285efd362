"""Compression methods, one module per family, each registering itself in `registry`.

Adding a method: a new module in this folder that calls `register(Method(...))`; it is imported here,
so the command line, the dashboard, the session and the reports list it.
"""
from __future__ import annotations

import importlib
import pkgutil

import torch

from fwsvd_core.compression.factorization import Factors
from fwsvd_core.compression.methods.registry import (
    ACTIVATIONS,
    DEFAULT_METHOD,
    FISHER,
    KRONECKER,
    NEAREST_KRONECKER,
    LayerInputs,
    Method,
    canonical_method,
    get_method,
    kronecker_iterations,
    method_colors,
    method_names,
    register,
    unregister,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")


def factorize(weight: torch.Tensor, method: str, fisher: torch.Tensor | None = None,
              mean_abs: torch.Tensor | None = None, second_moment: torch.Tensor | None = None) -> Factors:
    """Factors of one [out, in] weight by a decomposition method (see `method_names(per_rank=False)`)."""
    chosen = get_method(method)
    if chosen.factorize is None:
        raise ValueError(f"{chosen.name} solves each rank anew; it has no one-off decomposition.")
    return chosen.factorize(weight.detach().float(), LayerInputs(fisher=fisher, mean_abs=mean_abs, second_moment=second_moment))


__all__ = ["ACTIVATIONS", "DEFAULT_METHOD", "FISHER", "KRONECKER", "NEAREST_KRONECKER", "LayerInputs", "Method",
           "canonical_method", "factorize", "get_method", "kronecker_iterations", "method_colors", "method_names",
           "register", "unregister"]
