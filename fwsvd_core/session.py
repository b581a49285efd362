"""One model under study: its layers, its Fisher, and factors per method computed once and cached."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .activations import ActivationStats
from .cache import Check, cache_key, cache_root, load_tensors, store_tensors
from .compression import compress
from .errors import FwsvdError
from .factorization import (
    ACTIVATION_METHODS,
    FISHER_METHODS,
    METHODS,
    Factors,
    canonical_method,
    factorize,
    reconstruction_errors,
)
from .fisher import FisherResult
from .layers import LayerInfo, require_layers, weight_out_in
from .models import LoadedModel
from .ranks import RankMap, validate_ranks
from .tfwsvd import SOLVERS, solve, weighted_objective

TFWSVD_METHODS = tuple(f"tfwsvd-{s}" for s in SOLVERS)
COMPRESSION_METHODS = METHODS + TFWSVD_METHODS


def canonical_compression_method(method: str) -> str:
    """Any method `compress` takes: a decomposition of METHODS, or TFWSVD with a named solver."""
    name = method.strip().lower()
    if name in ("tfwsvd",):
        return "tfwsvd-als"
    if name in TFWSVD_METHODS:
        return name
    try:
        return canonical_method(name)
    except FwsvdError:
        raise FwsvdError(f"Unknown method {method!r}; choose from {', '.join(COMPRESSION_METHODS)}.") from None


def factors_check(layers: list[LayerInfo]) -> Check:
    """A cache check: every layer's factors are there, with shapes that fit the layer."""
    def check(tensors: dict[str, torch.Tensor]) -> str:
        for l in layers:
            left, right = tensors.get(f"{l.name}/left"), tensors.get(f"{l.name}/right")
            if left is None or right is None:
                return f"no factors for {l.name}"
            if left.ndim != 2 or right.ndim != 2 or left.shape[0] != l.out_features or right.shape[1] != l.in_features \
                    or left.shape[1] != right.shape[0]:
                return f"factors of {l.name} do not fit its {l.out_features}x{l.in_features} weight"
        return ""
    return check


@dataclass
class CompressionSession:
    """Everything derived from one loaded model. The model itself is never modified.

    Safe to share between threads (the dashboard's browser sessions): what it caches is computed under a lock.
    """

    loaded: LoadedModel
    layers: list[LayerInfo] = field(default_factory=list)
    fisher: FisherResult | None = None
    activations: ActivationStats | None = None
    use_disk_cache: bool = True
    tfwsvd_settings: dict = field(default_factory=lambda: {"max_iter": 30, "tol": 1e-4, "time_budget": 3.0})
    _factors: dict[str, dict[str, Factors]] = field(default_factory=dict)
    _solved: dict[tuple, Factors] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def __post_init__(self):
        if not self.layers:
            self.layers = require_layers(self.loaded.model)

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    def _layer(self, name: str) -> LayerInfo:
        return next(l for l in self.layers if l.name == name)

    def weight(self, name: str) -> torch.Tensor:
        return weight_out_in(self.model.get_submodule(name)).detach()

    def set_fisher(self, fisher: FisherResult) -> None:
        with self._lock:
            self.fisher = fisher
            for method in FISHER_METHODS:
                self._factors.pop(method, None)
            self._solved.clear()

    def set_activations(self, stats: ActivationStats) -> None:
        with self._lock:
            self.activations = stats
            for method in ACTIVATION_METHODS:
                self._factors.pop(method, None)

    def _inputs(self, method: str, name: str) -> dict[str, torch.Tensor]:
        """What `factorize` needs beside the weight, for one layer."""
        if method in FISHER_METHODS:
            if self.fisher is None:
                raise ValueError(f"{method} needs the Fisher: estimate it first.")
            return {"fisher": self.fisher.per_layer[name]}
        if method in ACTIVATION_METHODS:
            if self.activations is None:
                raise ValueError(f"{method} needs calibration activations: collect them first.")
            return {"mean_abs": self.activations.mean_abs[name], "second_moment": self.activations.second_moment[name]}
        return {}

    def _source_key(self, method: str) -> str | None:
        """The cache key of what the method's factors derive from besides the weights ('' for SVD)."""
        if method in FISHER_METHODS:
            return None if self.fisher is None else self.fisher.key
        if method in ACTIVATION_METHODS:
            return None if self.activations is None else self.activations.key or None
        return ""

    def _disk_key(self, method: str) -> str | None:
        source = self._source_key(method)
        if not self.use_disk_cache or source is None:
            return None
        return cache_key(kind="factors", model=self.loaded.fingerprint, method=method, source=source,
                         layers=[l.name for l in self.layers])

    def factors(self, method: str) -> dict[str, Factors]:
        """Factors of every layer by `method`: from memory, else the disk cache, else computed."""
        method = canonical_method(method)
        with self._lock:
            if method in self._factors:
                return self._factors[method]
            inputs = {l.name: self._inputs(method, l.name) for l in self.layers}
            key = self._disk_key(method)
            path = cache_root() / "factors" / f"{key}.safetensors" if key else None
            cached = load_tensors(path, factors_check(self.layers)) if path else None
            if cached is not None:
                out = {l.name: Factors.from_tensors(cached[0], l.name, method, self.loaded.device) for l in self.layers}
            else:
                out = {l.name: factorize(self.weight(l.name), method, **inputs[l.name]) for l in self.layers}
                if path:
                    store_tensors(path, {k: v for n, f in out.items() for k, v in f.to_tensors(n).items()},
                                  {"method": method})
            self._factors[method] = out
            return out

    def solved_factors(self, solver: str, name: str, rank: int) -> Factors:
        """TFWSVD factors of one layer at one rank (a new rank is a new solve), cached in memory and on disk.

        The solve starts from whichever FWSVD variant has the smallest element-wise weighted error at that rank.
        """
        with self._lock:
            if self.fisher is None:
                raise ValueError("TFWSVD needs the Fisher: estimate it first.")
            memo = (solver, name, rank, tuple(sorted(self.tfwsvd_settings.items())))
            if memo in self._solved:
                return self._solved[memo]
            method = f"tfwsvd-{solver}"
            path = None
            if self.use_disk_cache and self.fisher.key:
                key = cache_key(kind="tfwsvd", model=self.loaded.fingerprint, fisher=self.fisher.key, solver=solver,
                                layer=name, rank=rank, settings=self.tfwsvd_settings)
                path = cache_root() / "tfwsvd" / f"{key}.safetensors"
                if (hit := load_tensors(path, factors_check([self._layer(name)]))) is not None:
                    self._solved[memo] = Factors.from_tensors(hit[0], name, method, self.loaded.device)
                    return self._solved[memo]
            weight, fisher = self.weight(name), self.fisher.per_layer[name].to(self.loaded.device)
            start = min((self.factors(m)[name] for m in FISHER_METHODS),
                        key=lambda f: weighted_objective(weight, fisher, f.left[:, :rank], f.right[:rank]))
            result = solve(weight, fisher, start, rank, solver, **self.tfwsvd_settings)
            factors = result.as_factors(method)
            if path is not None:
                store_tensors(path, factors.to_tensors(name),
                              {"objective": json.dumps(result.objective), "stopped": result.stopped})
            self._solved[memo] = factors
            return factors

    def factors_at(self, method: str, ranks: RankMap) -> dict[str, Factors]:
        """Factors whose first r columns give each layer's rank-r approximation: slices of the cached
        decomposition, or for TFWSVD a solve per layer and rank (full-rank layers need none)."""
        method = canonical_compression_method(method)
        if not method.startswith("tfwsvd-"):
            return self.factors(method)
        solver = method.removeprefix("tfwsvd-")
        return {l.name: self.solved_factors(solver, l.name, ranks.get(l.name, l.max_rank))
                for l in self.layers if ranks.get(l.name, l.max_rank) < l.max_rank}

    def compress(self, method: str, ranks: RankMap) -> nn.Module:
        """A compressed copy from cached factors (slicing only, but for TFWSVD's per-rank solves)."""
        method = canonical_compression_method(method)
        ranks = validate_ranks(self.layers, ranks)
        return compress(self.model, self.layers, self.factors_at(method, ranks), ranks, method)

    def layer_errors(self, method: str, name: str, ranks: list[int] | None = None) -> dict[str, np.ndarray]:
        fisher = None if self.fisher is None else self.fisher.per_layer[name]
        return reconstruction_errors(self.weight(name), self.factors(method)[name], fisher, ranks)

    def model_errors(self, method: str, ranks: RankMap) -> dict[str, float]:
        """Relative errors over the whole compressible part: sqrt(sum of squared errors / sum of squared norms)."""
        ranks = validate_ranks(self.layers, ranks)
        factors = self.factors_at(method, ranks)
        sq = {"plain": 0.0, "fisher": 0.0}
        norms = {"plain": 0.0, "fisher": 0.0}
        for l in self.layers:
            w = self.weight(l.name).float()
            rank = ranks[l.name]
            residual = w - factors[l.name].reconstruct(rank) if rank < l.max_rank else torch.zeros_like(w)
            sq["plain"] += float((residual**2).sum())
            norms["plain"] += float((w**2).sum())
            if self.fisher is not None:
                f = self.fisher.per_layer[l.name].to(w.device)
                sq["fisher"] += float((f * residual**2).sum())
                norms["fisher"] += float((f * w**2).sum())
        return {k: (sq[k] / norms[k]) ** 0.5 if norms[k] > 0 else float("nan") for k in sq}
