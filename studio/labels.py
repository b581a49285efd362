"""How the pages name a metric and colour its change: a lower-is-better metric says so, and its rise is red."""
from __future__ import annotations

from typing import Literal

from fwsvd_core.inputs.families import higher_is_better


def metric_label(metric: str) -> str:
    """The metric's name, with '(lower is better)' where its family declares it so (perplexity, a loss)."""
    return metric if higher_is_better(metric) else f"{metric} (lower is better)"


def delta_color(metric: str) -> Literal["normal", "inverse"]:
    """`st.metric`'s delta colour: a rise is green for accuracy, red for perplexity."""
    return "normal" if higher_is_better(metric) else "inverse"
