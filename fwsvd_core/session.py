"""One model under study: its layers, its Fisher, and factors per method computed once and cached."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .cache import cache_key, cache_root, load_tensors, save_tensors
from .compression import compress
from .factorization import Factors, canonical_method, factorize, reconstruction_errors
from .fisher import FisherResult
from .layers import LayerInfo, require_layers, weight_out_in
from .models import LoadedModel
from .ranks import RankMap


@dataclass
class CompressionSession:
    """Everything derived from one loaded model. The model itself is never modified."""

    loaded: LoadedModel
    layers: list[LayerInfo] = field(default_factory=list)
    fisher: FisherResult | None = None
    use_disk_cache: bool = True
    _factors: dict[str, dict[str, Factors]] = field(default_factory=dict)

    def __post_init__(self):
        if not self.layers:
            self.layers = require_layers(self.loaded.model)

    @property
    def model(self) -> nn.Module:
        return self.loaded.model

    def weight(self, name: str) -> torch.Tensor:
        return weight_out_in(self.model.get_submodule(name)).detach()

    def set_fisher(self, fisher: FisherResult) -> None:
        self.fisher = fisher
        self._factors = {m: f for m, f in self._factors.items() if m == "svd"}  # weighted factors depend on it

    def _fisher_for(self, method: str) -> dict[str, torch.Tensor] | None:
        if method == "svd":
            return None
        if self.fisher is None:
            raise ValueError(f"{method} needs the Fisher: estimate it first.")
        return self.fisher.per_layer

    def _disk_key(self, method: str) -> str | None:
        if not self.use_disk_cache or (method != "svd" and (self.fisher is None or self.fisher.key is None)):
            return None
        return cache_key(kind="factors", model=self.loaded.fingerprint, method=method,
                         fisher=None if method == "svd" else self.fisher.key, layers=[l.name for l in self.layers])

    def factors(self, method: str) -> dict[str, Factors]:
        """Factors of every layer by `method`: from memory, else the disk cache, else computed."""
        method = canonical_method(method)
        if method in self._factors:
            return self._factors[method]
        fisher = self._fisher_for(method)
        key = self._disk_key(method)
        path = cache_root() / "factors" / f"{key}.safetensors" if key else None
        cached = load_tensors(path) if path else None
        if cached is not None:
            out = {l.name: Factors.from_tensors(cached[0], l.name, method, self.loaded.device) for l in self.layers}
        else:
            out = {l.name: factorize(self.weight(l.name), method, None if fisher is None else fisher[l.name])
                   for l in self.layers}
            if path:
                save_tensors(path, {k: v for n, f in out.items() for k, v in f.to_tensors(n).items()}, {"method": method})
        self._factors[method] = out
        return out

    def compress(self, method: str, ranks: RankMap) -> nn.Module:
        """A compressed copy from the cached factors (slicing only)."""
        method = canonical_method(method)
        return compress(self.model, self.layers, self.factors(method), ranks, method)

    def layer_errors(self, method: str, name: str, ranks: list[int] | None = None) -> dict[str, np.ndarray]:
        fisher = None if self.fisher is None else self.fisher.per_layer[name]
        return reconstruction_errors(self.weight(name), self.factors(method)[name], fisher, ranks)

    def model_errors(self, method: str, ranks: RankMap) -> dict[str, float]:
        """Relative errors over the whole compressible part: sqrt(sum of squared errors / sum of squared norms)."""
        factors = self.factors(method)
        sq = {"plain": 0.0, "fisher": 0.0}
        norms = {"plain": 0.0, "fisher": 0.0}
        for l in self.layers:
            w = self.weight(l.name).float()
            residual = w - factors[l.name].reconstruct(ranks.get(l.name, l.max_rank))
            sq["plain"] += float((residual**2).sum())
            norms["plain"] += float((w**2).sum())
            if self.fisher is not None:
                f = self.fisher.per_layer[l.name].to(w.device)
                sq["fisher"] += float((f * residual**2).sum())
                norms["fisher"] += float((f * w**2).sum())
        return {k: (sq[k] / norms[k]) ** 0.5 if norms[k] > 0 else float("nan") for k in sq}
