"""Which differences between measured scores are within their noise: the sentences a figure's caption needs."""
from __future__ import annotations

import pandas as pd

from fwsvd_core.analysis.direction import best_first_ascending, loss_word


def overlapping_methods(table: pd.DataFrame, metric: str, at: str = "rank ratio") -> list[tuple[float, str, str]]:
    """(value of `at`, better method, worse method) for every two methods whose 95% intervals (`ci low`, `ci high`)
    overlap at the same `at`: their difference is within the noise of the examples scored. The better one is named first,
    in `metric`'s direction (the lower perplexity). Empty where there are no intervals."""
    if "ci low" not in table or at not in table:
        return []
    rows = table[(table["method"] != "dense") & table["ci low"].notna() & table[at].notna()]
    pairs = []
    for value, part in rows.groupby(at, sort=True):
        part = part.sort_values(metric, ascending=best_first_ascending(metric)).to_dict(orient="records")
        for i, a in enumerate(part):
            for b in part[i + 1:]:
                if a["ci low"] <= b["ci high"] and b["ci low"] <= a["ci high"]:
                    pairs.append((float(value), a["method"], b["method"]))
    return pairs


def noise_sentence(table: pd.DataFrame, metric: str, examples: int | None) -> str:
    """One caption sentence: which methods the sweep cannot tell apart, or that it has no intervals."""
    if "ci low" not in table or table["ci low"].isna().all():
        return ("No error bars: every example of the split was scored, and the sweep keeps intervals of subsets only; "
                "score a subset to get a 95% bootstrap interval per point.")
    pairs = overlapping_methods(table, metric)
    bars = f"Bars: 95% bootstrap intervals over the {examples} examples scored." if examples else \
        "Bars: 95% bootstrap intervals over the examples scored."
    if not pairs:
        return bars + " At every rank ratio the methods' intervals are apart."
    scored = table[(table["method"] != "dense") & table["rank ratio"].notna()]
    by_ratio: dict[str, list[float]] = {}  # what is within noise -> the rank ratios where it is
    for value in sorted({v for v, _, _ in pairs}, reverse=True):
        here = [(a, b) for v, a, b in pairs if v == value]
        n = scored.loc[scored["rank ratio"] == value, "method"].nunique()
        said = f"all {n} methods" if len(here) == n * (n - 1) // 2 else ", ".join(f"{a} and {b}" for a, b in here)
        by_ratio.setdefault(said, []).append(value)
    shown = "; ".join(f"at rank ratio{'s' if len(v) > 1 else ''} {', '.join(f'{r:g}' for r in v)}, {said}"
                      for said, v in by_ratio.items())
    return bars + f" Within noise (overlapping intervals: this many examples cannot tell them apart): {shown}."


def ablation_noise_sentence(table: pd.DataFrame) -> str:
    """One caption sentence: which groups' drops are within noise (their paired interval reaches zero)."""
    if "drop low" not in table:
        return "No intervals: this ablation was stored before they were kept; run it again to get them."
    quiet = [int(g) for g, low, high in table[["group", "drop low", "drop high"]].itertuples(index=False)
             if low <= 0 <= high]
    examples = f" over the {int(table['examples'].iloc[0])} examples scored" if "examples" in table else ""
    drop = loss_word(str(table["metric"].iloc[0])) if "metric" in table and len(table) else "drop"  # perplexity: rise
    text = f"Bars: paired 95% bootstrap intervals of each {drop}{examples} (the same examples with and without the group)."
    if not quiet:
        return text + f" Every {drop} is clear of zero."
    return text + f" Within noise of no {drop} at all: group{'s' if len(quiet) > 1 else ''} {', '.join(map(str, quiet))}."
