"""Rank editor: a rank per layer, by hand, from a ratio or from a budget; recompress, score, export."""
import io
import json
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from fwsvd_core.analysis.direction import best_first_ascending
from fwsvd_core.analysis.figures import frontier_figure, history_figure, mismatch_figure, ranks_figure
from fwsvd_core.analysis.forecast import forecast, measured_run, sweep_dense_score, sweep_runs
from fwsvd_core.analysis.latency import device_label, latency_break_even, measured_break_even
from fwsvd_core.analysis.summary import summary_html
from fwsvd_core.compression.allocation import ALLOCATORS, allocate, spectral_curves, spectral_source
from fwsvd_core.compression.apply import layer_form
from fwsvd_core.compression.export import check_export_target, is_replaceable_export, save_compressed
from fwsvd_core.compression.methods import method_names
from fwsvd_core.compression.ranks import (
    count_params,
    summarize,
    uniform_ranks,
    validate_ranks,
)
from fwsvd_core.errors import ExportError, FwsvdError
from fwsvd_core.estimation.evaluation import EvalResult, evaluate
from fwsvd_core.inputs.batching import check_cancel
from fwsvd_core.screens import DEFAULTS
from studio.exports import export_extra
from studio.labels import delta_color, metric_label
from studio.samples import show_sample
from studio.serving import example_path, writable
from studio.state import (
    dense_score,
    prepare_methods,
    ready,
    request,
    requested,
    requested_result,
    sweeps_with_stored,
)
from studio.tables import show_table

st.title("Rank editor")
state = ready()
if state is None:
    st.stop()
session, choice = state.session, state.choice
layers = session.layers
metric = state.dev.task.primary_metric

if "ranks" not in st.session_state or set(st.session_state["ranks"]) != {l.name for l in layers}:
    st.session_state["ranks"] = uniform_ranks(layers, 0.25)
    st.session_state["rank_origin"] = "uniform"
st.session_state.setdefault("table_version", 0)
st.session_state.setdefault("history", [])

methods = method_names()
if "pending_method" in st.session_state:  # a frontier point chose the method of its run
    st.session_state["editor_method"] = st.session_state.pop("pending_method")
st.session_state.setdefault("editor_method", DEFAULTS.editor_method)
method = st.selectbox("Method", methods, key="editor_method",
                      help="SVD, FWSVD, ASVD and SVD-LLM ranks are slices of factors computed once: changing a rank "
                           "recomputes no SVD. TFWSVD solves each layer anew for each rank (seconds per layer).")


def sides_compared() -> str:
    """Where this model's sweeps measured both sides: at which rank ratios each side scored higher."""
    wins: dict[str, list[str]] = {"fwsvd-input": [], "fwsvd-output": []}
    for key, table in sweeps_with_stored(state).items():
        if key[0] != choice or "rank ratio" not in table:
            continue
        rows = table[table["method"].isin(list(wins)) & (table.get("allocator", "uniform") == "uniform")]
        for ratio, part in rows.groupby("rank ratio", sort=False):
            if len(part) == 2:
                wins[part.sort_values(metric, ascending=best_first_ascending(metric))["method"].iloc[0]].append(
                    f"{ratio:g}")
    said = [f"{m} at rank ratio{'s' if len(r) > 1 else ''} {', '.join(r)}" for m, r in wins.items() if r]
    return f" On this model's sweep the better {metric_label(metric)}: " + "; ".join(said) + "." if said else ""


st.caption(f"The editor opens on {DEFAULTS.editor_method} (the output side weighted by its Fisher), which kept the most "
           "accuracy at the middle rank ratios of the demo's stored sweep (docs/first_screens.md); fwsvd-input (the "
           "input side) is the paper's FWSVD, a choice away." + sides_compared())
if not prepare_methods(state, [method, spectral_source(method)]):
    st.stop()

f1, f2 = st.columns(2)
with f1:
    ratio = st.slider("Uniform rank ratio r / min(out, in)", 0.02, 1.0, 0.25, 0.01)
    if st.button("Fill from rank ratio"):
        st.session_state["ranks"] = uniform_ranks(layers, ratio)
        st.session_state["rank_origin"] = "uniform"
        st.session_state["table_version"] += 1
with f2:
    budget = st.slider("Parameter budget: kept / original parameters of the compressible layers", 0.05, 1.0, 0.5, 0.01)
    allocator = st.radio("Allocator", ALLOCATORS, horizontal=True,
                         help="uniform: one rank ratio for all; spectral: closed form from the weighted spectra and the "
                              "Fisher (instant); sensitivity: measures each layer's calibration loss at a few ranks "
                              "(about a minute on the demo, then cached); exact-: the same curves, the budget solved "
                              "exactly as an integer program (greedy buying is optimal only on convex curves)")
    if st.button("Fill from parameter budget"):
        try:
            with st.spinner(f"Allocating ranks ({allocator}) ..."):
                st.session_state["ranks"] = allocate(session, allocator, budget, method, calibration=state.train)
            st.session_state["rank_origin"] = allocator
            st.session_state["table_version"] += 1
        except FwsvdError as exc:
            st.error(str(exc))

mass = state.fisher.mass()
total_mass = sum(mass.values()) or 1.0
dense = dense_score(choice, state.loaded, state.dev)
if dense is None:
    st.stop()
curves_key = ("loss curves", choice.model_key, state.fisher.key, method)
if curves_key not in st.session_state:
    st.session_state[curves_key] = spectral_curves(session, method)
curves = st.session_state[curves_key]
curve_source = spectral_source(method)


def calibration_runs() -> list[tuple[float, float]]:
    """(predicted loss increase, measured score drop) of this method's runs here and its points in this model's
    sweeps (the demo's stored one included): what the prediction is fitted on."""
    runs = [measured_run(metric, run["predicted loss increase"], dense.score, run[metric])
            for run in st.session_state["history"] if run["method"] == method and "predicted loss increase" in run]
    for key, table in sweeps_with_stored(state).items():
        if key[0] == choice:
            runs += sweep_runs(layers, curves, table, method, metric)
    return runs


LATENCY_TOKENS = 128  # rows of one call to a layer: a few sentences of a batch
shapes = list(dict.fromkeys((l.in_features, l.out_features) for l in layers))
device, weights_dtype = state.loaded.device, next(session.model.parameters()).dtype


def latency_break_evens() -> dict[tuple[int, int], int | None]:
    """Each layer shape's latency break-even on this machine where it was measured before (None: not yet)."""
    return {shape: measured_break_even(*shape, device=device, dtype=weights_dtype, tokens=LATENCY_TOKENS)
            for shape in shapes}


def measure_latency(progress, cancel, stage) -> bool:
    stage(f"timing the two factors against the dense product ({len(shapes)} layer shapes)")
    for done, shape in enumerate(shapes, 1):
        check_cancel(cancel)
        latency_break_even(*shape, device=device, dtype=weights_dtype, tokens=LATENCY_TOKENS)
        progress(done, len(shapes))
    return True


latency_key = (device_label(device), str(weights_dtype), tuple(shapes))
if requested("latency", latency_key):
    requested_result("latency", latency_key, "Measuring the latency break-even", measure_latency, "Measuring")
elif None in latency_break_evens().values() and st.button(
        "Measure the latency break-even here", help=f"once per machine, a few seconds per layer shape: the rank above "
        f"which the two factors take longer than the dense product on {device_label(device)} ({LATENCY_TOKENS} tokens "
        "per call)"):
    request("latency", latency_key)
    st.rerun()


def layer_frame(ranks: dict[str, int]) -> pd.DataFrame:
    latency = latency_break_evens()
    measured = any(v is not None for v in latency.values())  # the column appears once measured: the rank stays in view
    return pd.DataFrame([{
        "layer": l.name, "block": l.block, "role": l.role, "shape": f"{l.out_features}x{l.in_features}",
        "Fisher share": mass[l.name] / total_mass, "max rank": l.max_rank, "break-even rank": l.break_even_rank,
        **({"latency break-even": latency[(l.in_features, l.out_features)]} if measured else {}), "rank": ranks[l.name],
    } for l in layers])


def frontier_points() -> tuple[pd.DataFrame, dict[str, tuple[str, dict[str, int]]]]:
    """Every score measured in this session on this model and data: the editor's runs and the mismatch page's
    sweeps (uniform rank ratios), each with the method and ranks that made it."""
    rows, made_by = [], {}
    for run in st.session_state["history"]:
        point = f"run {run['run']}"
        rows.append({"point": point, "method": run["method"], "allocator": run.get("allocator", "by hand"),
                     "param ratio (layers)": run["param ratio (layers)"], metric: run[metric],
                     "examples": dense.n_examples, "dense score": dense.score})
        made_by[point] = (run["method"], run["ranks"])
    for key, table in sweeps_with_stored(state).items():
        if key[0] != choice:
            continue
        examples = key[-1] or len(state.dev)  # the number of examples the sweep scored (0: all of them)
        reference = sweep_dense_score(table, metric)
        for row in table.to_dict(orient="records"):
            if row["method"] == "dense" or row["method"].endswith("+ft") or row.get("allocator") != "uniform":
                continue
            point = f"sweep {row['method']} rank ratio {row['rank ratio']}"
            rows.append({"point": point, "method": row["method"], "allocator": "uniform",
                         "param ratio (layers)": row["param ratio (layers)"], metric: row[metric],
                         "examples": examples, "dense score": reference})
            made_by[point] = (row["method"], uniform_ranks(layers, float(row["rank ratio"])))
    return pd.DataFrame(rows), made_by


def measurement_at(points: pd.DataFrame, made_by: dict, ranks: dict[str, int]) -> dict | None:
    """The frontier's point measured with the editor's method at exactly `ranks` (the latest run first, then a
    sweep's), or None: where one exists, the page shows it and draws no prediction."""
    same = [p for p, (m, r) in made_by.items() if m == method and dict(r) == dict(ranks)]
    if not same:
        return None
    runs = [p for p in same if p.startswith("run ")]
    chosen = runs[-1] if runs else same[0]
    return points[points["point"] == chosen].iloc[0].to_dict()


def budget_frontier(points: pd.DataFrame, made_by: dict, now: tuple[float, float], measured: dict | None) -> None:
    """The measured scores against kept parameters, with a star at `now` (the ranks' kept parameter ratio and
    predicted score), or a ring on the point `measured` at exactly these ranks. Drawn in the editor's fragment so
    that the star follows every edit; a click loads a point into the editor."""
    st.subheader("Budget frontier")
    if points.empty:
        st.info("Scores measured in this session (Recompress and evaluate here, or a sweep on the mismatch page) gather "
                "here as a frontier of score against kept parameters; the star is the current ranks' predicted score.")
        return
    ring = None if measured is None else (measured["param ratio (layers)"], measured[metric])
    event = st.plotly_chart(frontier_figure(points, metric, None if measured else now, dense.score, dense.n_examples,
                                            measured_now=ring),
                            width="stretch", key="frontier", on_select="rerun", selection_mode="points")
    chosen = [p["customdata"] for p in event["selection"]["points"] if p.get("customdata")]
    point = chosen[0][0] if chosen and isinstance(chosen[0], list) else chosen[0] if chosen else None
    if point in made_by and point != st.session_state.get("frontier_loaded"):
        st.session_state["frontier_loaded"] = point
        st.session_state["pending_method"], st.session_state["ranks"] = made_by[point][0], dict(made_by[point][1])
        st.session_state["rank_origin"] = f"from {point}"
        st.session_state["table_version"] += 1
        st.rerun()  # the whole page: the table and the method change
    st.caption("Click a point to load its method and ranks into the editor above. Dotted lines: automatic allocators "
               "and hand-edited ranks; dashed: the best score measured at or below each budget; horizontal: the dense "
               "score on the examples the points were scored on (a sweep scores a subsample, the runs here all of "
               "the chosen examples), so read each point against its own. The star is the current ranks' predicted "
               "score; where these ranks were measured, a ring marks that point instead.")


@st.fragment
def rank_table() -> None:
    """The editable table, the parameter counts, the predicted score and the frontier: an edit reruns only this."""
    ranks = st.session_state["ranks"]
    table = layer_frame(ranks)
    edited = st.data_editor(
        table, hide_index=True, width="stretch", key=f"rank_table_{st.session_state['table_version']}",
        disabled=[c for c in table.columns if c != "rank"],
        column_config={
            "rank": st.column_config.NumberColumn("rank", min_value=1, step=1, required=True,
                                                  help="above the break-even rank the layer is kept dense"),
            "latency break-even": st.column_config.NumberColumn(
                "latency break-even", help=f"above this rank the two factors take longer than the dense product on "
                f"{device_label(device)} ({LATENCY_TOKENS} tokens per call); empty until measured here"),
            "role": st.column_config.TextColumn("role", width=115),  # "attention output" whole, the rank in view
            "Fisher share": st.column_config.ProgressColumn("Fisher share", format="%.3f", min_value=0.0,
                                                            max_value=float(table["Fisher share"].max())),
        },
    )
    if refusal := st.session_state.pop("rank_refusal", None):
        st.error(refusal)
    typed = {row.layer: row.rank for row in edited.itertuples()}
    try:
        ranks = validate_ranks(layers, typed)
    except FwsvdError as exc:
        if typed != ranks:  # the user's edit was refused: the table is drawn again with the ranks used
            st.session_state["rank_refusal"] = f"{exc} The last valid rank is kept, and the table shows it."
            st.session_state["table_version"] += 1
            st.rerun()
        st.error(f"{exc} The last valid ranks are kept.")
        ranks = st.session_state["ranks"]
    if ranks != st.session_state["ranks"]:
        st.session_state["rank_origin"] = "by hand"
    st.session_state["ranks"] = ranks
    summary = summarize(count_params(session.model), layers, ranks)
    predicted = forecast(layers, curves, ranks, dense.score, calibration_runs(), metric)
    points, made_by = frontier_points()
    measured = measurement_at(points, made_by, ranks)
    m0, m1, m2, m3, m4 = st.columns(5)
    if measured is None:
        m0.metric(f"Predicted {metric_label(metric)}", f"{predicted.score:.4f}",
                  f"{predicted.score - dense.score:+.4f} vs dense", delta_color=delta_color(metric),
                  help=f"the loss increase the {curve_source} spectra predict at these ranks "
                       f"({predicted.loss_increase:.4g}), times a slope fitted on this method's measured runs; no "
                       "model is evaluated")
    else:
        m0.metric(f"Measured {metric_label(metric)}", f"{measured[metric]:.4f}",
                  f"{measured[metric] - measured['dense score']:+.4f} vs dense", delta_color="off",
                  help=f"measured at exactly these ranks ({measured['point']}, on {measured['examples']} examples, "
                       "against the dense score on the same examples), so no prediction is needed")
    m1.metric("Parameters (model)", f"{summary.model_params_after / 1e6:.2f} M",
              f"{summary.model_params_after - summary.model_params_before:+,}", delta_color="inverse")
    m2.metric("Param ratio (layers)", f"{summary.compressible_param_ratio:.3f}",
              help="kept / original parameters of the compressible layers: the budget above, and the x-axis of "
                   "every chart on this page")
    m3.metric("Param ratio (model)", f"{summary.param_ratio:.3f}",
              help="kept / original parameters of the whole model (embeddings and heads included)")
    m4.metric("Mean rank ratio", f"{summary.mean_rank_ratio:.3f}", help="the mean of r / min(out, in) over the layers")
    st.caption(f"Predicted loss increase {predicted.loss_increase:.4g} from the {curve_source} spectra; "
               + (f"score slope {predicted.slope:.3g} per unit of loss, fitted on {predicted.calibrated_on} measured "
                  "run(s) of this method (here and in the mismatch page's sweeps)." if predicted.calibrated_on else
                  "the score is uncalibrated until the first run of this method is measured (Recompress and "
                  "evaluate, or a sweep with this method on the mismatch page)."))
    dense_layers = sum(layer_form(l, ranks[l.name]) == "dense" for l in layers)
    if dense_layers:
        st.caption(f"{dense_layers} layer(s) sit above their break-even rank: they are kept as dense matrices of that "
                   "rank, since two factors would hold more parameters.")
    if measured is not None:
        st.caption(f"These exact ranks were measured ({measured['point']}: {measured[metric]:.4f} on "
                   f"{measured['examples']} examples): the prediction ({predicted.score:.4f}) is not needed, and the "
                   "frontier draws no star over the measurement.")
    st.plotly_chart(ranks_figure(layers, ranks), width="stretch", key="ranks_chart")
    budget_frontier(points, made_by, (summary.compressible_param_ratio, predicted.score), measured)


def measured_key(method: str, ranks: dict[str, int]) -> tuple:
    """What names a measured score: the model, data and Fisher settings, the method and the ranks."""
    return choice, method, tuple(sorted(ranks.items()))


def measured_here(method: str, ranks: dict[str, int], compressed) -> EvalResult:
    """The score of these ranks on the examples the dense score was taken on: a run's, else measured now."""
    measured = st.session_state.setdefault("measured", {})
    key = measured_key(method, ranks)
    if key not in measured:
        with st.spinner("Scoring the compressed model for its model card ..."):
            measured[key] = evaluate(compressed, state.loaded.tokenizer, state.dev,
                                     subsample=choice.eval_subsample or None)
    return measured[key]


def card_extra(compressed, merge: bool) -> dict:
    """What the export's model card says, as the command line's export does: Fisher, scores at these ranks, the
    command that makes it again."""
    return export_extra(choice, state.loaded.source, state.fisher, method, merge, dense,
                        measured_here(method, ranks, compressed), state.dev.source, state.train)


rank_table()
ranks = st.session_state["ranks"]
summary = summarize(count_params(session.model), layers, ranks)
show_sample(state, method, ranks)

if st.button("Recompress and evaluate", type="primary"):
    start = time.perf_counter()
    with st.spinner("Compressing ..."):
        compressed = session.compress(method, ranks)
    recompress_ms = (time.perf_counter() - start) * 1000
    with st.spinner("Scoring the compressed model ..."):
        result = evaluate(compressed, state.loaded.tokenizer, state.dev, subsample=choice.eval_subsample or None)
    predicted = forecast(layers, curves, ranks, dense.score, calibration_runs(), metric)  # fitted on the earlier runs only
    st.session_state["history"].append({
        "run": len(st.session_state["history"]) + 1, "method": method,
        "allocator": st.session_state.get("rank_origin", "by hand"), "mean rank ratio": round(summary.mean_rank_ratio, 4),
        "param ratio (model)": round(summary.param_ratio, 4), "param ratio (layers)": round(summary.compressible_param_ratio, 4),
        "params": summary.model_params_after, metric: round(result.score, 4), f"predicted {metric}": round(predicted.score, 4),
        "predicted loss increase": predicted.loss_increase, "recompress ms": round(recompress_ms, 1),
        "eval s": round(result.seconds, 2), "ranks": dict(ranks),
    })
    st.session_state.setdefault("measured", {})[measured_key(method, ranks)] = result
    st.session_state["last_compressed"] = (method, dict(ranks), compressed)
    st.rerun()  # the prediction above is fitted on the runs: draw it again with this one

history = st.session_state["history"]
if history:
    last = history[-1]
    r1, r2, r3 = st.columns(3)
    r1.metric(f"Measured {metric_label(metric)} (run {last['run']})", f"{last[metric]:.4f}",
              f"{last[metric] - dense.score:+.4f} vs dense", delta_color=delta_color(metric))
    if f"predicted {metric}" in last:
        r2.metric("Predicted before the run", f"{last[f'predicted {metric}']:.4f}",
                  f"{last[metric] - last[f'predicted {metric}']:+.4f} measured - predicted", delta_color="off")
    r3.metric(f"Dense {metric_label(metric)}", f"{dense.score:.4f}",
              help=f"on the same {dense.n_examples} examples as every run here")
    st.caption(f"Recompression took {last['recompress ms']} ms (slicing cached factors); scoring {last['eval s']} s.")
    frame = pd.DataFrame(history).drop(columns=["ranks"])
    st.plotly_chart(history_figure(frame, metric, dense.score, dense.n_examples), width="stretch", key="history_chart")
    show_table(frame)

st.subheader("Export")
e1, e2, e3 = st.columns(3)
e1.download_button("Rank table (CSV)", layer_frame(ranks).to_csv(index=False), "ranks.csv", "text/csv")
e2.download_button("Rank table (JSON)", json.dumps({"method": method, "ranks": ranks}, indent=1), "ranks.json",
                   "application/json")
e3.download_button("Run history (CSV)", pd.DataFrame(history).to_csv(index=False) if history else "", "history.csv",
                   "text/csv", disabled=not history)
facts = {"model": state.loaded.source, "weights' dtype": choice.dtype, "task": choice.task,
         "data": f"{state.train.source} (Fisher), {state.dev.source} (scored)",
         "Fisher": f"{state.fisher.n_examples} examples, {state.fisher.estimator} estimator, {state.fisher.form} form",
         f"dense {metric}": f"{dense.score:.4f}", "method in the editor": method,
         "current ranks": f"{st.session_state.get('rank_origin', 'by hand')}, param ratio (layers) "
                          f"{summary.compressible_param_ratio:.3f}"}
shown = [ranks_figure(layers, ranks)]
if history:
    shown.append(history_figure(pd.DataFrame(history).drop(columns=["ranks"]), metric, dense.score, dense.n_examples))
points, made_by = frontier_points()
if not points.empty:
    now = (summary.compressible_param_ratio, forecast(layers, curves, ranks, dense.score, calibration_runs(), metric).score)
    measured = measurement_at(points, made_by, ranks)
    ring = None if measured is None else (measured["param ratio (layers)"], measured[metric])
    shown.append(frontier_figure(points, metric, None if measured else now, dense.score, dense.n_examples,
                                 measured_now=ring, clickable=False))
for key, table in sweeps_with_stored(state).items():  # the mismatch sweeps: the figure the tool exists for
    if key[0] == choice:
        shown.append(mismatch_figure(table, metric, key[-1] or len(state.dev)).update_layout(
            title=f"The SVD mismatch: {', '.join(key[1])} at rank ratios {', '.join(f'{r:g}' for r in key[2])}"))
tables = {"Runs": pd.DataFrame(history).drop(columns=["ranks"]) if history else pd.DataFrame(),
          "Current ranks": layer_frame(ranks)}
tables.update({f"Mismatch sweep on {key[-1] or len(state.dev)} examples": table
               for key, table in sweeps_with_stored(state).items() if key[0] == choice})
# made only when clicked: the page inlines plotly.js (megabytes), which every rerun would otherwise send
st.download_button("Session summary (HTML)",
                   lambda: summary_html(f"FWSVD Studio session: {state.loaded.source} on {choice.task}", facts, shown,
                                        tables), "fwsvd-session.html", "text/html",
                   help="one file that opens offline: the model, the settings, the figures and every run of this session")

folder = st.text_input("Save the compressed model to a folder",
                       placeholder=example_path("compressed-model", "/path/to/compressed-model"),
                       help="a new or empty folder; a folder holding anything else is refused")
overwrite = st.checkbox("Replace an earlier export", help="only an earlier export of this tool is ever replaced")
merge = st.checkbox("Merge into the original architecture",
                    help="each layer stored dense (its rank-r product): any tool loads it without custom code, but it "
                         "saves no parameters. Unticked, plain transformers loads the factorized model with "
                         "trust_remote_code=True.")
if st.button("Save compressed model", disabled=not folder):
    try:
        target = writable(folder)
        if not overwrite and target.is_dir() and is_replaceable_export(target):
            raise ExportError(f"{target} holds an earlier export of this tool: tick 'Replace an earlier export' "
                              "above to replace it, or name a new folder. Nothing was written.")
        source = None if choice.model.startswith("demo:") else choice.model
        check_export_target(target, overwrite, source)  # refused before the scoring the card needs
        compressed = session.compress(method, ranks)
        saved = save_compressed(compressed, state.loaded.tokenizer, target, card_extra(compressed, merge),
                                overwrite=overwrite, source=source, merge=merge)
        how = "" if merge else ", trust_remote_code=True"
        st.success(f"Saved to {saved}; load it with `{choice.family.auto_class}.from_pretrained('{saved}'{how})`,"
                   f" with `fwsvd_core.load_model('{saved}')` or in this app. Its README.md says how it was made.")
    except (FwsvdError, OSError) as exc:
        st.error(f"Could not save: {exc}")
if st.button("Prepare a zip of the compressed model"):
    with tempfile.TemporaryDirectory() as tmp:
        compressed = session.compress(method, ranks)
        saved = save_compressed(compressed, state.loaded.tokenizer, Path(tmp) / "model", card_extra(compressed, merge),
                                merge=merge)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in saved.iterdir():
                zf.write(path, f"compressed-model/{path.name}")
    st.session_state["model_zip"] = buffer.getvalue()
if "model_zip" in st.session_state:
    st.download_button("Download compressed model (zip)", st.session_state["model_zip"], "compressed-model.zip",
                       "application/zip")
