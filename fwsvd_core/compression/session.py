"""One model under study: its layers, its Fisher, and factors per method computed once and cached."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fwsvd_core.cache import Check, cache_key, cache_root, computing, load_tensors, store_tensors
from fwsvd_core.compression.apply import compress
from fwsvd_core.compression.factorization import KRONECKER_DAMPING, Factors, reconstruction_errors
from fwsvd_core.compression.methods import (
    ACTIVATIONS,
    FISHER,
    KRONECKER,
    LayerInputs,
    Method,
    get_method,
    method_names,
)
from fwsvd_core.compression.ranks import RankMap, validate_ranks
from fwsvd_core.compression.tfwsvd import weighted_objective
from fwsvd_core.errors import FwsvdError
from fwsvd_core.estimation.activations import ActivationStats
from fwsvd_core.estimation.fisher import FisherResult
from fwsvd_core.estimation.kronecker import KroneckerFactors
from fwsvd_core.inputs.batching import ProgressFn
from fwsvd_core.inputs.layers import LayerInfo, require_layers, weight_out_in
from fwsvd_core.inputs.models import LoadedModel


def factors_check(layers: list[LayerInfo]) -> Check:
    """A cache check: every layer's factors are there, with shapes that fit the layer."""
    def check(tensors: dict[str, torch.Tensor]) -> str:
        for l in layers:
            left, right = tensors.get(f"{l.name}/left"), tensors.get(f"{l.name}/right")
            if left is None or right is None or f"{l.name}/spectrum" not in tensors:
                return f"no factors for {l.name}"
            if left.ndim != 2 or right.ndim != 2 or left.shape[0] != l.out_features or right.shape[1] != l.in_features \
                    or left.shape[1] != right.shape[0]:
                return f"factors of {l.name} do not fit its {l.out_features}x{l.in_features} weight"
        return ""
    return check


class StreamedFactors(Mapping[str, Factors]):
    """Every layer's factors by one decomposition method, each computed when it is asked for and not kept."""

    def __init__(self, session: CompressionSession, method: str):
        self.session, self.method = session, method
        self.names = [l.name for l in session.layers]

    def __getitem__(self, name: str) -> Factors:
        if name not in self.names:
            raise KeyError(name)
        return self.session.layer_factors(self.method, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def factors_bytes(layers: list[LayerInfo]) -> int:
    """The memory every layer's full-rank float32 factors take together (what `factors` keeps)."""
    return sum(4 * (l.out_features + l.in_features + 1) * l.max_rank for l in layers)


@dataclass
class CompressionSession:
    """Everything derived from one loaded model. The model itself is never modified.

    Safe to share between threads (the dashboard's browser sessions): what it caches is computed under a lock.
    `progress_for(label, unit)`, when set, gives the progress callback of each long step (factorizing a
    method's layers, the per-rank solves).
    """

    loaded: LoadedModel
    layers: list[LayerInfo] = field(default_factory=list)
    fisher: FisherResult | None = None
    activations: ActivationStats | None = None
    kronecker: KroneckerFactors | None = None
    kronecker_damping: float = KRONECKER_DAMPING
    use_disk_cache: bool = True
    tfwsvd_settings: dict = field(default_factory=lambda: {"max_iter": 30, "tol": 1e-4, "time_budget": 3.0})
    progress_for: Callable[[str, str], ProgressFn] | None = field(default=None, repr=False, compare=False)
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

    def _forget(self, need: str) -> None:
        for method in method_names(needs=need):
            self._factors.pop(method, None)
        self._solved = {memo: f for memo, f in self._solved.items() if need not in get_method(memo[0]).needs}

    def set_fisher(self, fisher: FisherResult) -> None:
        with self._lock:
            self.fisher = fisher
            self._forget(FISHER)

    def set_activations(self, stats: ActivationStats) -> None:
        with self._lock:
            self.activations = stats
            self._forget(ACTIVATIONS)

    def set_kronecker(self, factors: KroneckerFactors, damping: float | None = None) -> None:
        with self._lock:
            self.kronecker = factors
            if damping is not None:
                self.kronecker_damping = damping
            self._forget(KRONECKER)

    def _require_statistics(self, method: Method) -> None:
        """ValueError when a statistic the method reads is missing."""
        if FISHER in method.needs and self.fisher is None:
            raise ValueError(f"{method.name} needs the Fisher: estimate it first.")
        if ACTIVATIONS in method.needs and self.activations is None:
            raise ValueError(f"{method.name} needs calibration activations: collect them first.")
        if KRONECKER in method.needs and self.kronecker is None:
            raise ValueError(f"{method.name} needs Kronecker factors of the Fisher: estimate them first.")

    def _inputs(self, method: Method, name: str) -> LayerInputs:
        """What the method reads besides the weight, for one layer (statistics kept on disk are read now)."""
        self._require_statistics(method)
        stats = self.activations if ACTIVATIONS in method.needs else None
        fisher = self.fisher if FISHER in method.needs else None
        kron = self.kronecker if KRONECKER in method.needs else None
        return LayerInputs(
            fisher=None if fisher is None else fisher.per_layer.get(name),  # None for the low-memory Fisher
            fisher_rows=None if fisher is None else fisher.row_sums(name),
            fisher_cols=None if fisher is None else fisher.col_sums(name),
            mean_abs=None if stats is None else stats.mean_abs[name],
            second_moment=None if stats is None else stats.second_moment[name],
            kronecker=None if kron is None else {kind: (kron.inputs[kind][name], kron.outputs[kind][name])
                                                 for kind in kron.inputs},
            damping=self.kronecker_damping)

    def source_key(self, method: str) -> str | None:
        """The cache keys of what the method's factors derive from besides the weights ('' for SVD); None if missing."""
        needs = get_method(method).needs
        keys = []
        if FISHER in needs:
            keys.append(None if self.fisher is None else self.fisher.key)
        if ACTIVATIONS in needs:
            keys.append(None if self.activations is None else self.activations.key or None)
        if KRONECKER in needs:
            keys.append(None if self.kronecker is None or not self.kronecker.key else
                        f"{self.kronecker.key}/damping={self.kronecker_damping:g}/balanced")
        return None if None in keys else "/".join(k for k in keys if k)

    def _disk_key(self, method: Method) -> str | None:
        source = self.source_key(method.name)
        if not self.use_disk_cache or source is None:
            return None
        return cache_key(kind="factors", model=self.loaded.fingerprint, method=method.name, source=source,
                         layers=[l.name for l in self.layers])

    def computed_methods(self) -> set[str]:
        """The methods whose factors of every layer are in memory: asking for them costs nothing."""
        return set(self._factors)

    def factors(self, method: str, progress: ProgressFn | None = None) -> dict[str, Factors]:
        """Factors of every layer by `method`: from memory, else the disk cache, else computed (reporting each layer
        to `progress`, else to `progress_for`)."""
        chosen = get_method(method)
        if chosen.factorize is None:
            raise FwsvdError(f"{chosen.name} solves each rank anew: ask for factors_at(method, ranks).")
        method = chosen.name
        with self._lock:
            if method in self._factors:
                return self._factors[method]
            self._require_statistics(chosen)
            key = self._disk_key(chosen)
            path = cache_root() / "factors" / f"{key}.safetensors" if key else None
            with computing(path):  # another process factorizing the same: wait for its result and read it
                cached = load_tensors(path, factors_check(self.layers)) if path else None
                if cached is not None:
                    out = {l.name: Factors.from_tensors(cached[0], l.name, method, self.loaded.device)
                           for l in self.layers}
                else:
                    report = progress or (self.progress_for(f"factorizing ({method})", "layers") if self.progress_for
                                          else None)
                    out = {}
                    for i, l in enumerate(self.layers):
                        out[l.name] = self._factorized(chosen, l.name)
                        if report is not None:
                            report(i + 1, len(self.layers))
                    if path:
                        store_tensors(path, {k: v for n, f in out.items() for k, v in f.to_tensors(n).items()},
                                      {"method": method})
            self._factors[method] = out
            return out

    def solved_factors(self, method: str, name: str, rank: int) -> Factors:
        """Factors of one layer at one rank by an iterative method (a new rank is a new solve), cached in memory
        and on disk. The solve starts from whichever of the method's `starts_from` decompositions has the
        smallest element-wise Fisher-weighted error at that rank (the plain error without a Fisher)."""
        chosen = get_method(method)
        if chosen.solve is None:
            raise FwsvdError(f"{chosen.name} is a decomposition: its ranks are slices of factors(method).")
        with self._lock:
            inputs = self._inputs(chosen, name)
            memo = (chosen.name, name, rank, tuple(sorted(self.tfwsvd_settings.items())))
            if memo in self._solved:
                return self._solved[memo]
            path = None
            source = self.source_key(chosen.name)
            if self.use_disk_cache and source:
                key = cache_key(kind="solved", model=self.loaded.fingerprint, source=source, method=chosen.name,
                                layer=name, rank=rank, settings=self.tfwsvd_settings)
                path = cache_root() / "solved" / f"{key}.safetensors"
            with computing(path):  # another process solving the same: wait for its result and read it
                if path is not None and (hit := load_tensors(path, factors_check([self._layer(name)]))) is not None:
                    self._solved[memo] = Factors.from_tensors(hit[0], name, chosen.name, self.loaded.device)
                    return self._solved[memo]
                weight = self.weight(name).float()
                importance = torch.ones_like(weight) if inputs.fisher is None else inputs.fisher.to(weight.device)
                start = min((self.factors(m)[name] for m in chosen.starts_from or ("svd",)),
                            key=lambda f: weighted_objective(weight, importance, f.left[:, :rank], f.right[:rank]))
                result = chosen.solve(weight, inputs, start, rank, **self.tfwsvd_settings)
                factors = result.as_factors(chosen.name)
                if path is not None:
                    store_tensors(path, factors.to_tensors(name),
                                  {"objective": json.dumps(result.objective), "stopped": result.stopped})
            self._solved[memo] = factors
            return factors

    def factors_at(self, method: str, ranks: RankMap) -> dict[str, Factors]:
        """Factors whose first r columns give each layer's rank-r approximation: slices of the cached
        decomposition, or for an iterative method a solve per layer and rank (full-rank layers need none)."""
        chosen = get_method(method)
        if not chosen.per_rank:
            return self.factors(chosen.name)
        reduced = [l for l in self.layers if ranks.get(l.name, l.max_rank) < l.max_rank]
        report = self.progress_for(f"solving ({chosen.name})", "layers") if self.progress_for and reduced else None
        solved = {}
        for i, l in enumerate(reduced):
            solved[l.name] = self.solved_factors(chosen.name, l.name, ranks[l.name])
            if report is not None:
                report(i + 1, len(reduced))
        return solved

    def layer_factors(self, method: str, name: str) -> Factors:
        """One layer's factors by a decomposition method: from memory when every layer's are there, else computed
        from the layer's weight and statistics alone (statistics kept on disk are read for this layer only), and not
        kept."""
        chosen = get_method(method)
        if chosen.factorize is None:
            raise FwsvdError(f"{chosen.name} solves each rank anew: ask for factors_at(method, ranks).")
        with self._lock:
            if chosen.name in self._factors:
                return self._factors[chosen.name][name]
            self._require_statistics(chosen)
            return self._factorized(chosen, name)

    def _factorized(self, method: Method, name: str) -> Factors:
        """One layer factorized from its weight and its own statistics only: a large model's may be read from disk."""
        assert method.factorize is not None
        return method.factorize(self.weight(name).float(), self._inputs(method, name))

    def compress(self, method: str, ranks: RankMap, stream: bool = False) -> nn.Module:
        """A compressed copy from cached factors (slicing only, but for an iterative method's per-rank solves).

        `stream` is for a model whose factors of every layer would not fit beside it: each layer is factorized when
        it is replaced and its factors freed, and the layers are replaced in the session's model itself (the peak
        is the model and one layer's factors). The session's model is then the compressed one: use it last."""
        chosen = get_method(method)
        ranks = validate_ranks(self.layers, ranks)
        if not stream:
            return compress(self.model, self.layers, self.factors_at(chosen.name, ranks), ranks, chosen.name)
        factors: Mapping[str, Factors] = (self.factors_at(chosen.name, ranks) if chosen.factorize is None
                                          else StreamedFactors(self, chosen.name))
        with self._lock:
            compressed = compress(self.model, self.layers, factors, ranks, chosen.name, in_place=True)
            self._factors.clear()
            self._solved.clear()
        return compressed

    def layer_errors(self, method: str, name: str, ranks: list[int] | None = None) -> dict[str, np.ndarray]:
        fisher = None if self.fisher is None else self.fisher.per_layer.get(name)  # the weighted error needs it whole
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
            if self.fisher is not None and l.name in self.fisher.per_layer:
                f = self.fisher.per_layer[l.name].to(w.device)
                sq["fisher"] += float((f * residual**2).sum())
                norms["fisher"] += float((f * w**2).sum())
        return {k: (sq[k] / norms[k]) ** 0.5 if norms[k] > 0 else float("nan") for k in sq}
