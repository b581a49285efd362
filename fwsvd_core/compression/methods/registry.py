"""The method registry: every compression method declares here what it needs and how it factorizes.

A method is one `Method` record, registered by the module that defines it (a file in this folder is
imported, and so registered, with the package). The command line, the dashboard, the session, the
allocators and the reports read their lists from here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from fwsvd_core.compression.factorization import Factors
from fwsvd_core.errors import FwsvdError

FISHER = "fisher"  # the diagonal (element-wise) empirical Fisher of the layer
ACTIVATIONS = "activations"  # input statistics from calibration data: mean |x| and the second moment
KRONECKER = "kronecker"  # Kronecker factors A (inputs) and B (outputs) of the layer's Fisher
# those factors refined by power iterations to the Kronecker product nearest to the Fisher: a pass over the
# calibration data each, so they are computed only for a method that declares it needs them
NEAREST_KRONECKER = "nearest kronecker"
NEEDS = (FISHER, ACTIVATIONS, KRONECKER, NEAREST_KRONECKER)
DEFAULT_METHOD = "fwsvd-output"  # the command line's and the rank editor's default


@dataclass(frozen=True)
class LayerInputs:
    """What a factorization may read besides the weight, for one layer ([out, in] layout, None when not had)."""

    fisher: torch.Tensor | None = None  # element-wise [out, in]; None with the low-memory Fisher
    fisher_rows: torch.Tensor | None = None  # [out]: the Fisher summed over each output row
    fisher_cols: torch.Tensor | None = None  # [in]: the Fisher summed over each input column
    mean_abs: torch.Tensor | None = None  # [in]
    second_moment: torch.Tensor | None = None  # [in, in]
    kronecker: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None  # kind ('kfac', 'nearest') -> (A, B)
    damping: float = 0.0  # added to A and B, relative to the mean of each one's diagonal


class Solved(Protocol):
    """What an iterative per-rank solve returns: the factors and how the solve went."""

    objective: list[float]
    stopped: str

    def as_factors(self, method: str) -> Factors: ...


Factorize = Callable[[torch.Tensor, LayerInputs], Factors]
Solve = Callable[..., Solved]  # (weight, inputs, start factors, rank, **settings)


@dataclass(frozen=True)
class Method:
    """One compression method.

    A decomposition (`factorize`) is computed once per layer and any rank is a slice of it; an iterative
    method (`solve`) solves each layer anew at each rank, starting from the best of `starts_from`.
    `loss_scale(layer_out, layer_in, fisher_total)` lets the spectral allocator turn the method's discarded
    spectrum into a loss estimate (None: it uses FWSVD-input's). `order` places the method in lists.
    """

    name: str
    description: str
    needs: frozenset[str] = frozenset()
    factorize: Factorize | None = None
    solve: Solve | None = None
    starts_from: tuple[str, ...] = ()
    loss_scale: Callable[[int, int, float], float] | None = None
    aliases: tuple[str, ...] = ()
    color: str = "#7f7f7f"
    order: int = 100

    def __post_init__(self) -> None:
        if (self.factorize is None) == (self.solve is None):
            raise FwsvdError(f"Method {self.name!r} needs exactly one of factorize and solve.")
        if unknown := set(self.needs) - set(NEEDS):
            raise FwsvdError(f"Method {self.name!r} needs unknown inputs {sorted(unknown)}; known: {NEEDS}.")

    @property
    def per_rank(self) -> bool:
        """True when each rank is a new solve rather than a slice of one decomposition."""
        return self.solve is not None


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method (a later registration of the same name replaces the earlier one)."""
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    _METHODS.pop(name, None)


def method_names(*, needs: str | None = None, per_rank: bool | None = None) -> tuple[str, ...]:
    """Registered methods in list order, optionally only those that need `needs` or are (not) per-rank."""
    chosen = [m for m in _METHODS.values() if (needs is None or needs in m.needs)
              and (per_rank is None or m.per_rank == per_rank)]
    return tuple(m.name for m in sorted(chosen, key=lambda m: (m.order, m.name)))


def get_method(name: str) -> Method:
    """The method called `name` or one of its aliases (case and surrounding spaces ignored)."""
    key = name.strip().lower()
    if key in _METHODS:
        return _METHODS[key]
    for method in _METHODS.values():
        if key in method.aliases:
            return method
    aliases = [f"{a} = {m.name}" for m in _METHODS.values() for a in m.aliases]
    raise FwsvdError(f"Unknown method {name!r}; choose from {', '.join(method_names())}"
                     + (f" ({', '.join(aliases)})." if aliases else "."))


def canonical_method(name: str) -> str:
    return get_method(name).name


def method_colors() -> dict[str, str]:
    return {m.name: m.color for m in _METHODS.values()}


def kronecker_iterations(methods, requested: int) -> int:
    """The power iterations the Kronecker statistics of `methods` need: `requested` when one of them needs the
    nearest Kronecker product, else 0 (K-FAC alone, one pass)."""
    return requested if any(NEAREST_KRONECKER in get_method(m).needs for m in methods) else 0
