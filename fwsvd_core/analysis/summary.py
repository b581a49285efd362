"""One self-contained HTML page summing up a session: what was loaded, the settings, the figures, the runs."""
from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go


def summary_html(title: str, facts: dict[str, str], figures: list[go.Figure], tables: dict[str, pd.DataFrame]) -> str:
    """The page as one string: plotly.js inlined once, so it opens offline and can be mailed as one file."""
    parts = [f"<h1>{html.escape(title)}</h1>", "<table class='facts'>"]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()]
    parts.append("</table>")
    for i, figure in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=i == 0))
    for caption, table in tables.items():
        parts += [f"<h2>{html.escape(caption)}</h2>", table.to_html(index=False, border=0, na_rep="")]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px} table{border-collapse:collapse;margin:1em 0} "
             "th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
