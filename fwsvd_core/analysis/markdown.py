"""Markdown tables for the reports a person reads (pandas' own needs the optional tabulate package)."""
from __future__ import annotations


def markdown_table(rows: list[dict]) -> str:
    """A pipe table of dict rows; columns in order of first appearance, floats to four significant digits."""
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
