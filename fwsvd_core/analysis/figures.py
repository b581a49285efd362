"""Plotly figures of the dashboard and the reports (no Streamlit here)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from fwsvd_core.analysis.direction import best_first_ascending, loss_title, loss_word, score_title
from fwsvd_core.compression.methods import method_colors
from fwsvd_core.inputs.layers import ROLES, LayerInfo

DENSE_COLOR = "#444444"


def method_color_map() -> dict[str, str]:
    """A colour per method (the registry's) and for the dense model."""
    return {"dense": DENSE_COLOR, **method_colors()}


def pooled(matrix: torch.Tensor, max_cells: int = 128) -> tuple[np.ndarray, int, int]:
    """Average-pool a matrix so neither side exceeds `max_cells`; returns the pooled array and the pool sizes."""
    m = matrix.detach().float().cpu()
    ph, pw = max(1, -(-m.shape[0] // max_cells)), max(1, -(-m.shape[1] // max_cells))
    out = torch.nn.functional.avg_pool2d(m[None, None], (ph, pw), ceil_mode=True)[0, 0]
    return out.numpy(), ph, pw


def matrix_heatmap(matrix: torch.Tensor, title: str, log: bool = True, max_cells: int = 128,
                   colorscale: str = "Viridis") -> go.Figure:
    """A zoomable heatmap, output rows by input columns, pooled for large matrices."""
    values, ph, pw = pooled(matrix.abs() if not log else matrix, max_cells)
    if log:
        positive = values[values > 0]
        floor = float(positive.min()) if positive.size else 1e-30
        values = np.log10(np.maximum(values, floor))
    rows, cols = values.shape
    fig = go.Figure(go.Heatmap(
        z=values, x=np.arange(cols) * pw, y=np.arange(rows) * ph, colorscale=colorscale,
        colorbar={"title": "log10" if log else ""},
        hovertemplate="out %{y}, in %{x}: %{z:.3g}<extra></extra>",
    ))
    pool = f" (mean over {ph}x{pw} blocks)" if ph * pw > 1 else ""
    fig.update_layout(title=f"{title}{pool}", xaxis_title="input feature", yaxis_title="output feature",
                      yaxis_autorange="reversed", height=420, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig


def _blocks_by_roles(layers: list[LayerInfo], value) -> tuple[np.ndarray, list[list[str]], list[str], list[int]]:
    """A roles x blocks grid of value(layer) (NaN where a block has no such role) and its cell labels."""
    roles = [r for r in ROLES if any(l.role == r for l in layers)]
    blocks = sorted({l.block for l in layers if l.block is not None})
    z = np.full((len(roles), len(blocks)), np.nan)
    text = [["" for _ in blocks] for _ in roles]
    for l in layers:
        if l.block is None:
            continue
        i, j = roles.index(l.role), blocks.index(l.block)
        z[i, j], text[i][j] = value(l)
    return z, text, roles, blocks


def fisher_overview(layers: list[LayerInfo], mass: dict[str, float],
                    title: str = "Fisher mass per layer (sum of the element-wise Fisher)") -> go.Figure:
    """Blocks x roles: a positive number per layer (the Fisher mass by default), log scale."""
    z, text, roles, blocks = _blocks_by_roles(
        layers, lambda l: (np.log10(max(mass.get(l.name, 0.0), 1e-30)), f"{mass.get(l.name, 0.0):.2e}"))
    fig = go.Figure(go.Heatmap(z=z, x=[f"block {b}" for b in blocks], y=roles, text=text, texttemplate="%{text}",
                               colorscale="Viridis", colorbar={"title": "log10"},
                               hovertemplate="%{y}, %{x}: %{text}<extra></extra>"))
    fig.update_layout(title=title, height=360,
                      margin={"l": 120, "r": 20, "t": 50, "b": 40})
    return fig


def signed_layer_map(layers: list[LayerInfo], values: dict[str, float], title: str) -> go.Figure:
    """Blocks x roles: a signed number per layer, red above zero and blue below, white at zero."""
    z, text, roles, blocks = _blocks_by_roles(layers, lambda l: (values.get(l.name, 0.0), f"{values.get(l.name, 0.0):.2g}"))
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(z=z, x=[f"block {b}" for b in blocks], y=roles, text=text, texttemplate="%{text}",
                               colorscale="RdBu_r", zmid=0.0, zmin=-bound, zmax=bound,
                               hovertemplate="%{y}, %{x}: %{text}<extra></extra>"))
    fig.update_layout(title=title, height=360, margin={"l": 120, "r": 20, "t": 50, "b": 40})
    return fig


def importance_profiles(col_sums: torch.Tensor, row_sums: torch.Tensor) -> go.Figure:
    """The sums FWSVD weights with: per input feature (column sums) and per output feature (row sums)."""
    cols, rows = (v.detach().float().cpu().numpy() for v in (col_sums, row_sums))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("input side (sum over outputs)", "output side (sum over inputs)"))
    fig.add_trace(go.Scatter(y=cols, mode="lines", name="input side", line={"color": "#1f77b4"}), 1, 1)
    fig.add_trace(go.Scatter(y=rows, mode="lines", name="output side", line={"color": "#2ca02c"}), 1, 2)
    fig.update_yaxes(type="log", title_text="Fisher (sum)", dtick=1, exponentformat="power")  # whole decades, 10^k
    fig.update_xaxes(title_text="input feature", row=1, col=1)
    fig.update_xaxes(title_text="output feature", row=1, col=2)
    fig.update_layout(height=320, showlegend=False, margin={"l": 60, "r": 20, "t": 40, "b": 40})
    return fig


def _error_bars(part: pd.DataFrame, low: str, high: str, y: str) -> dict | None:
    """Plotly error bars from interval columns (asymmetric), or None where the table has none."""
    if low not in part or high not in part or part[low].isna().all():
        return None
    return {"type": "data", "symmetric": False, "array": (part[high] - part[y]).clip(lower=0).tolist(),
            "arrayminus": (part[y] - part[low]).clip(lower=0).tolist(), "thickness": 1.2, "width": 4}


def mismatch_figure(table: pd.DataFrame, score_column: str, examples: int | None = None) -> go.Figure:
    """Task score (with its 95% bootstrap interval where the table has one) and reconstruction errors against the
    parameter ratio, one colour per method; the dense line is the table's own dense row, on the same `examples`.
    The score's axis names its direction ("perplexity (lower is better)")."""
    on = f" on {examples} examples" if examples else ""
    fig = make_subplots(rows=1, cols=3, subplot_titles=(f"task score ({score_column}{on})", "plain error ||W-W_r|| / ||W||",
                                                        "Fisher-weighted error"))
    dense = table[table["method"] == "dense"]
    for method, part in table[table["method"] != "dense"].groupby("method", sort=False):
        part = part.sort_values("param ratio (layers)")
        color = method_color_map().get(method)
        for col, y in enumerate((score_column, "plain error", "fisher error"), start=1):
            fig.add_trace(go.Scatter(x=part["param ratio (layers)"], y=part[y], mode="lines+markers", name=method,
                                     legendgroup=method, showlegend=col == 1, line={"color": color},
                                     error_y=_error_bars(part, "ci low", "ci high", y) if col == 1 else None), 1, col)
    if not dense.empty:
        fig.add_hline(y=float(dense[score_column].iloc[0]), line_dash="dot", annotation_text=f"dense{on}", row=1, col=1)
    fig.update_xaxes(title_text="parameter ratio (layers)")
    fig.update_yaxes(title_text=score_title(score_column), row=1, col=1)
    fig.update_layout(height=380, margin={"l": 50, "r": 20, "t": 50, "b": 50}, legend={"orientation": "h", "y": -0.25})
    return fig


def score_curves_figure(table: pd.DataFrame, score_column: str) -> go.Figure:
    """Task score against the parameter ratio: one colour per method, one line style per variant.

    Variants: the uniform ratio, the same after fine-tuning (method names ending in "+ft"), and each
    automatic allocator (the "allocator" column).
    """
    dashes = {"uniform": "solid", "+ft": "dash", "spectral": "dot", "sensitivity": "dashdot",
              "exact-spectral": "longdash", "exact-sensitivity": "longdashdot"}
    fig = go.Figure()
    rows = table[table["method"] != "dense"].assign(
        base=lambda t: t["method"].str.removesuffix("+ft"),
        variant=lambda t: t["method"].str.endswith("+ft").map({True: "+ft", False: None})
        .fillna(t["allocator"].fillna("uniform")),
    )
    for (base, variant), part in rows.groupby(["base", "variant"], sort=False):
        part = part.sort_values("param ratio (layers)")
        fig.add_trace(go.Scatter(x=part["param ratio (layers)"], y=part[score_column], mode="lines+markers",
                                 name=f"{base} ({variant})",
                                 line={"color": method_color_map().get(base), "dash": dashes.get(variant)}))
    dense = table[table["method"] == "dense"]
    if not dense.empty:
        fig.add_hline(y=float(dense[score_column].iloc[0]), line_dash="dot", annotation_text="dense")
    fig.update_layout(title=f"Task score ({score_column}) against the parameter ratio: uniform, fine-tuned, allocated",
                      xaxis_title="parameter ratio (layers)", yaxis_title=score_title(score_column), height=480,
                      margin={"l": 60, "r": 20, "t": 50, "b": 40})
    return fig


def coinciding_spectra(spectra: dict[str, torch.Tensor], decades: float = 0.03,
                       floor: float = 1e-6) -> list[tuple[str, str]]:
    """Pairs (earlier, later) whose spectra, each divided by its largest value, differ nowhere by more than
    `decades` on the log scale they are drawn on (0.03: 7%, a pixel or two), values below `floor` left out:
    drawn as they are, the later curve would hide the earlier one."""
    logs = {}
    for label, spectrum in spectra.items():
        s = spectrum.detach().double().cpu()
        logs[label] = (s / s[0]).clamp_min(floor).log10() if s.numel() and s[0] > 0 else s
    labels = list(logs)
    return [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]
            if logs[a].shape == logs[b].shape and float((logs[a] - logs[b]).abs().max()) <= decades]


def spectra_figure(spectra: dict[str, torch.Tensor]) -> go.Figure:
    """Singular values, normalised to the largest, of W and of its Fisher-weighted versions. A curve that coincides
    with an earlier one is drawn dashed over it (the earlier one wide and pale), so that both can be seen."""
    covering = {later: earlier for earlier, later in coinciding_spectra(spectra)}
    covered = set(covering.values())
    fig = go.Figure()
    for label, spectrum in spectra.items():
        s = spectrum.detach().float().cpu().numpy()
        line: dict[str, object] = {"color": method_color_map().get(label)}
        if label in covering:
            line["dash"] = "dash"
        elif label in covered:
            line["width"] = 6
        name = f"{label} (= {covering[label]})" if label in covering else label
        fig.add_trace(go.Scatter(y=s / s[0], mode="lines", name=name, line=line,
                                 opacity=0.45 if label in covered and label not in covering else 1.0))
    fig.update_layout(title="Singular value spectra (each divided by its largest)", xaxis_title="index i",
                      yaxis_title="s_i / s_1", yaxis_type="log", yaxis_dtick=1, yaxis_exponentformat="power",
                      height=340, margin={"l": 60, "r": 20, "t": 50, "b": 40})
    return fig


def ablation_figure(table: pd.DataFrame) -> go.Figure:
    """The score lost per singular-value group (a drop of accuracy, a rise of perplexity: the table's `drop`, in its
    metric's direction), with its paired 95% bootstrap interval where the table has one."""
    examples = int(table["examples"].iloc[0]) if "examples" in table and len(table) else None
    metric = str(table["metric"].iloc[0]) if "metric" in table and len(table) else None
    drop = "drop" if metric is None else loss_word(metric)
    fig = go.Figure(go.Bar(x=table["group"], y=table["drop"], marker_color="#1f77b4", name=f"score {drop}",
                           error_y=_error_bars(table, "drop low", "drop high", "drop"),
                           customdata=table[["components", "score"]].to_numpy(),
                           hovertemplate=f"group %{{x}} (%{{customdata[0]}})<br>{drop} %{{y:.4f}}<br>"
                                         f"{metric or 'score'} %{{customdata[1]:.4f}}"
                                         "<extra></extra>"))
    fig.add_hline(y=0.0, line_color="#888888", line_width=1)
    on = f", {examples} examples" if examples else ""
    what = "Score drop" if metric is None else f"{metric.capitalize()} {drop}"
    axis = "task score drop" if metric is None else loss_title(metric)
    fig.update_layout(title=f"{what} when one group of singular values is removed from every layer{on}",
                      xaxis_title="singular value group (1 = largest)", yaxis_title=axis,
                      height=340, margin={"l": 60, "r": 20, "t": 50, "b": 40})
    fig.update_xaxes(dtick=1)
    return fig


def ranks_figure(layers: list[LayerInfo], ranks: dict[str, int]) -> go.Figure:
    """Chosen rank per layer against its break-even rank."""
    names = [l.name for l in layers]
    short = [f"{l.block}:{l.role}" for l in layers]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=short, y=[ranks.get(n, 0) for n in names], name="rank", marker_color="#1f77b4"))
    fig.add_trace(go.Scatter(x=short, y=[l.break_even_rank for l in layers], mode="markers", name="break-even rank",
                             marker={"symbol": "line-ew-open", "size": 14, "color": "#d62728", "line": {"width": 3}}))
    fig.update_layout(height=300, margin={"l": 50, "r": 20, "t": 30, "b": 80}, xaxis_title="block:role",
                      yaxis_title="rank", legend={"orientation": "h", "y": 1.15})
    return fig


LAYERS_RATIO_AXIS = "kept / original parameters of the compressible layers"


def history_figure(history: pd.DataFrame, score_column: str, dense: float | None = None,
                   examples: int | None = None) -> go.Figure:
    """Score against the parameter ratio of the compressible layers (the frontier's axis) of every run, the score
    predicted before each run as an open marker, and the dense score, on the same `examples`, as a line."""
    x = "param ratio (layers)"
    fig = px.scatter(history, x=x, y=score_column, color="method", hover_data=["run"],
                     color_discrete_map=method_color_map(), text="run")
    fig.update_traces(marker={"size": 11}, textposition="top center")
    predicted = f"predicted {score_column}"
    values = [*history[score_column].dropna()]
    if predicted in history and history[predicted].notna().any():
        fig.add_trace(go.Scatter(x=history[x], y=history[predicted], mode="markers",
                                 name="predicted", marker={"size": 11, "symbol": "circle-open", "color": "#555555"}))
        values += [*history[predicted].dropna()]
    if dense is not None:
        fig.add_hline(y=dense, line_dash="dot", annotation_text="dense" + (f" on {examples} examples" if examples else ""))
        values.append(dense)
    if values:  # runs that all score alike would otherwise fill the plot with a range of 1e-6
        low, high = min(values), max(values)
        pad = max(0.02, 0.1 * (high - low))
        fig.update_yaxes(range=[low - pad, high + pad])
    on = f" (each scored on {examples} examples)" if examples else ""
    fig.update_layout(title=f"Runs of this session{on}", height=320, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      xaxis_title=LAYERS_RATIO_AXIS, xaxis_range=[0, 1.02], yaxis_title=score_title(score_column))
    return fig


def pareto_front(points: pd.DataFrame, score_column: str, size_column: str = "param ratio (layers)") -> pd.DataFrame:
    """The points no other point beats with fewer or as many parameters: the best score at each budget, by size, best
    in the score's own direction (the lowest perplexity)."""
    ascending = best_first_ascending(score_column)
    sign = -1.0 if ascending else 1.0  # compare as higher-is-better
    best = float("-inf")
    kept = []
    for index, row in points.sort_values([size_column, score_column], ascending=[True, ascending]).iterrows():
        if sign * row[score_column] > best:
            kept.append(index)
            best = sign * row[score_column]
    return points.loc[kept]


def frontier_figure(points: pd.DataFrame, score_column: str, current: tuple[float, float] | None = None,
                    dense: float | None = None, dense_examples: int | None = None,
                    measured_now: tuple[float, float] | None = None, clickable: bool = True) -> go.Figure:
    """Score against the parameter ratio of the layers, one line per method and allocator, the best-so-far frontier
    dashed, and the current rank map as a star at its predicted score, or, when those ranks were measured
    (`measured_now`), a ring around that measured point and no star. Each point's `point` id is its customdata;
    `clickable` (the dashboard) says in the title that a click loads a point.

    Points scored on different examples (an `examples` column, with the `dense score` on those same examples) get
    a dense line each, so that a sweep's subsample is not read against the full split's dense score."""
    fig = go.Figure()
    colors = method_color_map()
    x = "param ratio (layers)"
    counted = "examples" in points
    for (method, allocator), part in points.groupby(["method", "allocator"], sort=False):
        part = part.sort_values(x)
        fig.add_trace(go.Scatter(
            x=part[x], y=part[score_column], mode="lines+markers", name=f"{method} / {allocator}",
            customdata=part[["point", "examples"] if counted else ["point"]].to_numpy(),
            marker={"size": 10, "color": colors.get(str(method))},
            line={"dash": "solid" if allocator == "uniform" else "dot", "color": colors.get(str(method))},
            hovertemplate=f"{method} / {allocator}<br>param ratio %{{x:.3f}}<br>{score_column} %{{y:.4f}}"
                          + (" on %{customdata[1]} examples" if counted else "") + "<extra></extra>"))
    if len(points) > 1:
        front = pareto_front(points, score_column).sort_values(x)
        fig.add_trace(go.Scatter(x=front[x], y=front[score_column], mode="lines", name="best so far",
                                 line={"color": "#444444", "dash": "dash", "width": 1}, hoverinfo="skip"))
    if measured_now is not None:
        fig.add_trace(go.Scatter(x=[measured_now[0]], y=[measured_now[1]], mode="markers",
                                 name="current ranks (measured)", hoverinfo="name",
                                 marker={"symbol": "circle-open", "size": 22, "color": "#000000", "line": {"width": 2}}))
    elif current is not None:
        fig.add_trace(go.Scatter(x=[current[0]], y=[current[1]], mode="markers", name="current ranks (predicted)",
                                 marker={"symbol": "star", "size": 16, "color": "#000000"}, hoverinfo="name"))
    references = {} if dense is None else {dense_examples: dense}
    if counted and "dense score" in points:
        for n, score in points[["examples", "dense score"]].drop_duplicates().itertuples(index=False):
            references.setdefault(int(n), float(score))
    for i, (n, score) in enumerate(sorted(references.items(), key=lambda item: -item[1])):
        label = "dense" if len(references) == 1 or n is None else f"dense on {n} examples"
        # the highest line labelled above it, the others below, so that close lines keep readable labels
        fig.add_hline(y=score, line_dash="dot", annotation_text=label,
                      annotation_position="top right" if i == 0 else "bottom right")
    click = " (click a point to load its ranks)" if clickable else ""  # a static report has nothing to load into
    fig.update_layout(title=f"Budget frontier: score against kept parameters{click}",
                      xaxis_title=LAYERS_RATIO_AXIS, xaxis_range=[0, 1.02], yaxis_title=score_title(score_column),
                      height=380, margin={"l": 60, "r": 20, "t": 50, "b": 40}, clickmode="event+select")
    return fig


def toy_figure(weight: torch.Tensor, important: tuple[tuple[int, int], ...],
               reconstructions: dict[str, torch.Tensor]) -> go.Figure:
    """The toy matrix with its important entries boxed, and beside it each reconstruction's absolute error."""
    w = weight.detach().float().cpu().numpy()
    titles = ["W (boxed: the entries the loss cares about)", *(f"|W - W_r|, {name}" for name in reconstructions)]
    fig = make_subplots(rows=1, cols=1 + len(reconstructions), subplot_titles=titles, horizontal_spacing=0.06)
    panels = [(w, "RdBu", True), *((np.abs(w - r.detach().float().cpu().numpy()), "Reds", False)
                                   for r in reconstructions.values())]
    error_max = max([float(p.max()) for p, _, signed in panels if not signed] + [1e-9])
    for k, (values, scale, signed) in enumerate(panels, start=1):
        bound = float(np.abs(values).max()) if signed else error_max
        fig.add_trace(go.Heatmap(z=values, colorscale=scale, zmin=-bound if signed else 0.0, zmax=bound,
                                 texttemplate="%{z:.2f}", textfont={"size": 13}, showscale=False,
                                 hovertemplate="row %{y}, column %{x}: %{z:.3f}<extra></extra>"), row=1, col=k)
        for i, j in important:
            fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line={"color": "#000000", "width": 3},
                          row=1, col=k)
        fig.update_yaxes(autorange="reversed", showticklabels=k == 1, row=1, col=k)
    fig.update_layout(height=300, margin={"l": 30, "r": 10, "t": 40, "b": 20})
    return fig
