"""Per-layer ranks: uniform ratios, parameter budgets and parameter counts.

Two different quantities, never both called "ratio":
- rank ratio: r / min(out, in) of a layer;
- parameter ratio: parameters kept / parameters originally (of the compressible part, or of the model).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from fwsvd_core.errors import RankError
from fwsvd_core.inputs.layers import LayerInfo

RankMap = dict[str, int]


def count_params(model: nn.Module) -> int:
    """Unique parameters (a shared tensor counts once)."""
    return sum(p.numel() for p in model.parameters())


def validate_ranks(layers: list[LayerInfo], ranks: RankMap) -> RankMap:
    """Every rank an integer in 1..max rank, every name a known layer; layers not named keep full rank."""
    if not isinstance(ranks, dict):
        raise RankError(f"A rank map is an object {{layer: rank}}, got {type(ranks).__name__}.")
    by_name = {l.name: l for l in layers}
    unknown = [n for n in ranks if n not in by_name]
    if unknown:
        raise RankError(f"Unknown layer(s) in the rank map: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}.")
    out = {}
    for layer in layers:
        value = ranks.get(layer.name, layer.max_rank)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise RankError(f"Rank of {layer.name} must be a whole number, got {value!r}.")
        rank = int(value)
        if not 1 <= rank <= layer.max_rank:
            raise RankError(f"Rank of {layer.name} must be between 1 and {layer.max_rank}, got {rank}.")
        out[layer.name] = rank
    return out


def read_rank_file(path: str | Path) -> RankMap:
    """The {layer: rank} map of a JSON file ({layer: rank}, or {"ranks": {layer: rank}, ...} as the dashboard writes)."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise RankError(f"The rank file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RankError(f"The rank file {path} cannot be read: {exc}.") from None
    except ValueError as exc:
        raise RankError(f"The rank file {path} is not valid JSON: {exc}.") from None
    ranks = content.get("ranks", content) if isinstance(content, dict) else content
    if not isinstance(ranks, dict):
        raise RankError(f"The rank file {path} must hold an object {{layer: rank}} (or {{\"ranks\": {{...}}}}), "
                        f"not a {type(ranks).__name__}.")
    wrong = [name for name, rank in ranks.items() if isinstance(rank, bool) or not isinstance(rank, (int, float))]
    if wrong:
        raise RankError(f"The rank file {path} gives no whole-number rank for: {', '.join(wrong[:5])}"
                        f"{' ...' if len(wrong) > 5 else ''}.")
    return ranks


def uniform_ranks(layers: list[LayerInfo], rank_ratio: float) -> RankMap:
    """Each layer at round(rank_ratio * min(out, in)), at least 1."""
    if not 0.0 < rank_ratio <= 1.0:
        raise RankError(f"The rank ratio must be in (0, 1], got {rank_ratio}.")
    return {l.name: max(1, min(l.max_rank, round(rank_ratio * l.max_rank))) for l in layers}


def compressed_params(layers: list[LayerInfo], ranks: RankMap) -> int:
    """Weight parameters of the compressible part after compression (dense where factorizing would not save)."""
    return sum(l.compressed_params(ranks.get(l.name, l.max_rank)) for l in layers)


def original_params(layers: list[LayerInfo]) -> int:
    return sum(l.params for l in layers)


def ranks_for_param_ratio(layers: list[LayerInfo], param_ratio: float) -> tuple[RankMap, float]:
    """The largest uniform rank ratio whose compressible parameters stay within `param_ratio` of the original.

    Returns the ranks and the rank ratio used.
    """
    if not 0.0 < param_ratio <= 1.0:
        raise RankError(f"The parameter ratio must be in (0, 1], got {param_ratio}.")
    budget = param_ratio * original_params(layers)
    # the candidate ratios are the finitely many points where some layer's rounded rank changes
    candidates = sorted({r / l.max_rank for l in layers for r in range(1, l.max_rank + 1)})
    lo, hi, best = 0, len(candidates) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if compressed_params(layers, uniform_ranks(layers, candidates[mid])) <= budget:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best is None:
        smallest = compressed_params(layers, {l.name: 1 for l in layers}) / original_params(layers)
        raise RankError(f"A parameter ratio of {param_ratio:.4f} is below what rank 1 everywhere gives ({smallest:.4f}).")
    return uniform_ranks(layers, candidates[best]), candidates[best]


@dataclass(frozen=True)
class CompressionSummary:
    model_params_before: int
    model_params_after: int
    compressible_before: int
    compressible_after: int
    macs_per_token_before: int
    macs_per_token_after: int
    mean_rank_ratio: float

    @property
    def param_ratio(self) -> float:
        """Kept over original, whole model."""
        return self.model_params_after / self.model_params_before

    @property
    def compressible_param_ratio(self) -> float:
        """Kept over original, compressible layers only."""
        return self.compressible_after / self.compressible_before


def summarize(model_params: int, layers: list[LayerInfo], ranks: RankMap) -> CompressionSummary:
    """Parameter and multiply-add counts before and after applying `ranks` to a model of `model_params`."""
    before, after = original_params(layers), compressed_params(layers, ranks)
    mean_ratio = sum(ranks.get(l.name, l.max_rank) / l.max_rank for l in layers) / max(len(layers), 1)
    # one multiply-add per weight per token, for a dense or a factorized layer alike
    return CompressionSummary(model_params, model_params - before + after, before, after, before, after, mean_ratio)
