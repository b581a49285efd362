"""The rank table a compressed model carries: its method and, per layer, the rank kept and the form stored."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORM_ORIGINAL, FORM_DENSE, FORM_LOWRANK = "original", "dense", "lowrank"
FORMS = (FORM_ORIGINAL, FORM_DENSE, FORM_LOWRANK)


@dataclass(frozen=True)
class LayerRank:
    """One layer: `lowrank` stores two factors, `dense` their product (the rank is past break-even), `original` is untouched."""

    rank: int
    form: str
    in_features: int
    out_features: int

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "form": self.form, "in": self.in_features, "out": self.out_features}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> LayerRank:
        if row["form"] not in FORMS:
            raise ValueError(f"unknown layer form {row['form']!r}")
        return cls(int(row["rank"]), row["form"], int(row["in"]), int(row["out"]))


@dataclass(frozen=True)
class RankTable:
    """The method and per-layer ranks of a compressed model, plus what the export adds (Fisher settings, scores)."""

    method: str
    layers: dict[str, LayerRank]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ranks(self) -> dict[str, int]:
        return {name: row.rank for name, row in self.layers.items()}

    def with_extra(self, extra: dict[str, Any]) -> RankTable:
        return RankTable(self.method, self.layers, {**self.extra, **extra})

    def as_dict(self) -> dict[str, Any]:
        """The JSON form kept in the model's config and in the export's rank file."""
        return {**self.extra, "method": self.method, "layers": {n: row.as_dict() for n, row in self.layers.items()}}

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> RankTable:
        """Read the JSON form back; KeyError, TypeError or ValueError where it is not a rank table."""
        layers = {str(name): LayerRank.from_dict(row) for name, row in table["layers"].items()}
        extra = {k: v for k, v in table.items() if k not in ("method", "layers")}
        return cls(str(table.get("method", "")), layers, extra)


def rank_table_of(model) -> RankTable | None:
    """The rank table of a compressed model (in memory or loaded from an export), or None for a dense one."""
    table = getattr(getattr(model, "config", None), "fwsvd_compression", None)
    return None if table is None else RankTable.from_dict(table)
