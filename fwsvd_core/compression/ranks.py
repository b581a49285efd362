"""Per-layer ranks: uniform ratios, parameter budgets and parameter counts.

Two different quantities, never both called "ratio":
- rank ratio: r / min(out, in) of a layer;
- parameter ratio: parameters kept / parameters originally (of the compressible part, or of the model).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from fwsvd_core.compression.model_card import MERGED_RANKS_FILE, RANKS_FILE
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


@dataclass(frozen=True)
class RankRequest:
    """What a rank file asks for: ranks of named layers, peft-style patterns, a default rank and the method it names."""

    ranks: RankMap
    patterns: dict[str, int] = field(default_factory=dict)  # peft's rank_pattern: a layer-name suffix or a regex
    default: int | None = None  # peft's r: the rank of every layer neither named nor matched
    method: str | None = None
    source: str = ""

    def resolve(self, layers: list[LayerInfo]) -> RankMap:
        """Each layer's rank: its own, else the first pattern matching its name, else the default; none: full rank.

        A pattern's or the default's rank above a layer's full rank keeps that layer whole (one `r` fits every shape).
        """
        if not self.patterns and self.default is None:
            return dict(self.ranks)
        unused = [p for p in self.patterns if not any(pattern_matches(p, l.name) for l in layers)]
        if unused:
            raise RankError(f"The rank pattern(s) {unused[:5]} of {self.source} match no compressible layer of this "
                            f"model (its layers are named like {layers[0].name if layers else '(none)'}).")
        out = dict(self.ranks)
        for layer in layers:
            if layer.name in out:
                continue
            rank = next((r for p, r in self.patterns.items() if pattern_matches(p, layer.name)), self.default)
            if rank is not None:
                out[layer.name] = min(rank, layer.max_rank)
        return out


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether a peft-style rank pattern picks the layer `name`: the name ends with it, whole dotted parts, or it is a
    regular expression matching the end of the name (peft's `get_pattern_key`)."""
    try:
        return re.match(rf"(.*\.)?({pattern})$", name) is not None
    except re.error:
        return False


def _rank_value(value, what: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer() or value < 1:
        raise RankError(f"The rank file {path} gives no whole-number rank of 1 or more for {what} (got {value!r}).")
    return int(value)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RankError(f"The rank file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RankError(f"The rank file {path} cannot be read: {exc}.") from None
    except ValueError as exc:
        raise RankError(f"The rank file {path} is not valid JSON: {exc}.") from None


def read_rank_request(path: str | Path) -> RankRequest:
    """What a rank file or folder asks for. Read: a compressed export (its folder, or its fwsvd_ranks.json), the rank
    editor's {"method": ..., "ranks": {layer: rank}}, a plain {layer: rank}, and peft's {"rank_pattern": {pattern:
    rank}, "r": default} (a LoraConfig or its adapter_config.json)."""
    path = Path(path)
    if path.is_dir():
        found = next((path / name for name in (RANKS_FILE, MERGED_RANKS_FILE) if (path / name).is_file()), None)
        if found is None:
            raise RankError(f"The folder {path} holds no rank table ({RANKS_FILE} or {MERGED_RANKS_FILE}): give a "
                            "compressed export of this tool, or a JSON rank file.")
        path = found
    content = _read_json(path)
    method = content.get("method") if isinstance(content, dict) else None
    method = None if method in (None, "") else str(method)
    if isinstance(content, dict) and isinstance(content.get("layers"), dict):  # an export's rank table
        rows = content["layers"]
        bad = [name for name, row in rows.items() if not isinstance(row, dict) or "rank" not in row]
        if bad:
            raise RankError(f"The rank table {path} has no rank for: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}.")
        return RankRequest({n: _rank_value(row["rank"], n, path) for n, row in rows.items()}, method=method,
                           source=str(path))
    if isinstance(content, dict) and ("rank_pattern" in content or "peft_type" in content):  # peft
        patterns = content.get("rank_pattern") or {}
        if not isinstance(patterns, dict):
            raise RankError(f"The rank file {path}: rank_pattern must be an object {{pattern: rank}}, not a "
                            f"{type(patterns).__name__}.")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise RankError(f"The rank file {path}: the rank pattern {pattern!r} is not a valid regular "
                                f"expression ({exc}).") from None
        default = content.get("r")
        return RankRequest({}, {str(p): _rank_value(r, f"the pattern {p!r}", path) for p, r in patterns.items()},
                           None if default is None else _rank_value(default, "r (the default rank)", path), method,
                           str(path))
    ranks = content.get("ranks", content) if isinstance(content, dict) else content
    if not isinstance(ranks, dict):
        raise RankError(f"The rank file {path} must hold an object {{layer: rank}} (or {{\"ranks\": {{...}}}}), "
                        f"not a {type(ranks).__name__}.")
    if ranks is content:  # a plain map: every entry is a layer
        method = None
    wrong = [name for name, rank in ranks.items() if isinstance(rank, bool) or not isinstance(rank, (int, float))]
    if wrong:
        raise RankError(f"The rank file {path} gives no whole-number rank for: {', '.join(wrong[:5])}"
                        f"{' ...' if len(wrong) > 5 else ''}.")
    return RankRequest(ranks, method=method, source=str(path))


def read_rank_file(path: str | Path) -> RankMap:
    """The {layer: rank} map of a rank file that names its layers (see `read_rank_request`; patterns are refused)."""
    request = read_rank_request(path)
    if request.patterns or request.default is not None:
        raise RankError(f"The rank file {path} gives rank patterns: its ranks depend on the model's layers "
                        "(read it with read_rank_request and resolve it with the layers).")
    return request.ranks


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
