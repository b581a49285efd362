import numpy as np
import pandas as pd
import pytest

from fwsvd_core.analysis.figures import frontier_figure, score_curves_figure, signed_layer_map


def test_signed_layer_map_places_each_layer_and_centres_zero(tiny_session):
    layers = tiny_session.layers
    values = {l.name: (-1.0) ** i * (i + 1) for i, l in enumerate(layers)}
    heat = signed_layer_map(layers, values, "t").data[0]
    z = np.asarray(heat.z, dtype=float)
    for l in layers:
        assert z[list(heat.y).index(l.role), list(heat.x).index(f"block {l.block}")] == values[l.name]
    assert heat.zmid == 0 and heat.zmax == -heat.zmin == max(abs(v) for v in values.values())


def test_score_curves_separate_uniform_fine_tuned_and_allocated_rows():
    table = pd.DataFrame([
        {"method": "dense", "allocator": None, "param ratio (layers)": 1.0, "accuracy": 0.9},
        *({"method": m, "allocator": a, "param ratio (layers)": p, "accuracy": p / 2}
          for m, a in (("svd", "uniform"), ("svd+ft", "uniform"), ("fwsvd-output", "uniform"), ("fwsvd-output", "spectral"))
          for p in (0.3, 0.5)),
    ])
    fig = score_curves_figure(table, "accuracy")
    names = [t.name for t in fig.data]
    assert names == ["svd (uniform)", "svd (+ft)", "fwsvd-output (uniform)", "fwsvd-output (spectral)"]
    assert {t.line.dash for t in fig.data} == {"solid", "dash", "dot"}
    assert all(list(t.x) == [0.3, 0.5] for t in fig.data)


def test_the_frontier_draws_a_dense_line_for_each_set_of_scored_examples():
    def point(name: str, method: str, ratio: float, score: float, examples: int, dense: float) -> dict:
        return {"point": name, "method": method, "allocator": "uniform", "param ratio (layers)": ratio,
                "accuracy": score, "examples": examples, "dense score": dense}

    points = pd.DataFrame([point("run 1", "svd", 0.4, 0.80, 872, 0.858),
                           point("sweep svd 0.25", "svd", 0.3, 0.75, 400, 0.8725),
                           point("sweep svd 0.5", "svd", 0.5, 0.81, 400, 0.8725)])
    fig = frontier_figure(points, "accuracy", (0.45, 0.78), dense=0.858, dense_examples=872)
    lines = {a.text: a.y for a in fig.layout.annotations}
    assert lines == {"dense on 872 examples": 0.858, "dense on 400 examples": 0.8725}
    svd = next(t for t in fig.data if t.name == "svd / uniform")
    assert [list(c) for c in svd.customdata] == [["sweep svd 0.25", 400], ["run 1", 872], ["sweep svd 0.5", 400]]
    assert "on %{customdata[1]} examples" in svd.hovertemplate
    # every point on the same examples: one line, called dense
    same = frontier_figure(points.iloc[:1], "accuracy", dense=0.858, dense_examples=872)
    assert {a.text: a.y for a in same.layout.annotations} == {"dense": 0.858}


def test_the_runs_chart_uses_the_frontiers_parameter_ratio_with_a_stated_axis_and_a_full_range():
    """Issue 23, 4: one convention per page, stated on the axis, a range that means something for one point."""
    from fwsvd_core.analysis.figures import history_figure

    history = pd.DataFrame([{"run": 1, "method": "fwsvd-output", "param ratio (model)": 0.766,
                             "param ratio (layers)": 0.5, "accuracy": 0.83, "predicted accuracy": 0.82}])
    runs = history_figure(history, "accuracy", dense=0.86, examples=872)
    points = history.assign(point="run 1", allocator="by hand", examples=872, **{"dense score": 0.86})
    frontier = frontier_figure(points, "accuracy", (0.5, 0.82), dense=0.86, dense_examples=872)
    assert runs.layout.xaxis.title.text == frontier.layout.xaxis.title.text
    assert "compressible layers" in runs.layout.xaxis.title.text
    assert [t.x[0] for t in runs.data] == [0.5, 0.5]  # the run and its prediction, at the layers' ratio
    assert list(runs.layout.xaxis.range) == list(frontier.layout.xaxis.range) == [0, 1.02]
    assert "872 examples" in runs.layout.title.text and runs.layout.annotations[0].text == "dense on 872 examples"


def test_a_measured_point_at_the_current_ranks_is_ringed_and_gets_no_predicted_star():
    """Issue 23, 3: never a prediction drawn on top of a measurement."""
    points = pd.DataFrame([{"point": "run 1", "method": "svd", "allocator": "uniform", "param ratio (layers)": 0.4,
                            "accuracy": 0.80, "examples": 872, "dense score": 0.858}])
    fig = frontier_figure(points, "accuracy", None, dense=0.858, dense_examples=872, measured_now=(0.4, 0.80))
    names = [t.name for t in fig.data]
    assert "current ranks (measured)" in names and "current ranks (predicted)" not in names
    predicted = frontier_figure(points, "accuracy", (0.3, 0.7), dense=0.858, dense_examples=872)
    assert "current ranks (predicted)" in [t.name for t in predicted.data]


def test_coinciding_spectra_are_named_and_both_drawn_visibly():
    """Issue 23, 5: a curve lying exactly under another is said, and drawn so that both show."""
    import torch

    from fwsvd_core.analysis.figures import coinciding_spectra, spectra_figure

    base = torch.tensor([4.0, 2.0, 1.0, 0.5])
    spectra = {"svd": base, "fwsvd-input": 3 * base, "fwsvd-output": torch.tensor([4.0, 3.0, 2.5, 2.0]),
               "fwsvd-both": torch.tensor([4.0, 3.0, 2.5, 2.0]) * 0.5}
    assert coinciding_spectra(spectra) == [("svd", "fwsvd-input"), ("fwsvd-output", "fwsvd-both")]
    fig = spectra_figure(spectra)
    traces = {t.name: t for t in fig.data}
    assert traces["fwsvd-input (= svd)"].line.dash == "dash" and traces["svd"].line.width == 6
    assert traces["fwsvd-both (= fwsvd-output)"].line.dash == "dash"
    assert coinciding_spectra({"svd": base, "fwsvd-output": torch.tensor([4.0, 3.0, 2.5, 2.0])}) == []
    # on the log axis they are drawn on: 3% apart is one curve to the eye, 15% apart is two
    assert coinciding_spectra({"svd": base, "near": base * torch.tensor([1.0, 1.03, 0.97, 1.03])}) == [("svd", "near")]
    assert coinciding_spectra({"svd": base, "apart": base * torch.tensor([1.0, 1.15, 1.0, 1.0])}) == []


def test_log_axes_label_whole_decades_as_powers_of_ten():
    """Issue 23, 6: no '2, 5' between decades and no SI prefixes (10µ) on a log axis."""
    import torch

    from fwsvd_core.analysis.figures import importance_profiles, spectra_figure

    profiles = importance_profiles(torch.logspace(-6, 0, 32), torch.logspace(-5, -1, 16))
    spectra = spectra_figure({"svd": torch.logspace(0, -4, 20)})
    for axis in (profiles.layout.yaxis, profiles.layout.yaxis2, spectra.layout.yaxis):
        assert axis.type == "log" and axis.dtick == 1 and axis.exponentformat == "power"


def test_the_sweep_and_ablation_figures_draw_their_intervals_and_examples():
    """Issue 23, 10 and 11: bootstrap intervals as error bars, the number of examples on every score figure."""
    from fwsvd_core.analysis.figures import ablation_figure, mismatch_figure

    table = pd.DataFrame([
        {"method": "dense", "param ratio (layers)": 1.0, "accuracy": 0.875, "plain error": 0, "fisher error": 0,
         "ci low": 0.84, "ci high": 0.9},
        {"method": "svd", "param ratio (layers)": 0.5, "accuracy": 0.6, "plain error": 0.3, "fisher error": 0.5,
         "ci low": 0.55, "ci high": 0.64}])
    fig = mismatch_figure(table, "accuracy", 400)
    score = next(t for t in fig.data if t.xaxis == "x")
    assert list(score.error_y.array) == [pytest.approx(0.04)] and list(score.error_y.arrayminus) == [pytest.approx(0.05)]
    assert all(t.error_y.array is None for t in fig.data if t.xaxis != "x")  # the errors have no interval
    assert "on 400 examples" in fig.layout.annotations[0].text
    assert any(a.text == "dense on 400 examples" for a in fig.layout.annotations)
    ablation = pd.DataFrame({"group": [1, 2], "components": ["0-10%", "10-20%"], "score": [0.6, 0.86],
                             "drop": [0.27, 0.015], "drop low": [0.22, -0.005], "drop high": [0.31, 0.03],
                             "examples": [300, 300]})
    bars = ablation_figure(ablation)
    assert list(bars.data[0].error_y.array) == pytest.approx([0.04, 0.015])
    assert "300 examples" in bars.layout.title.text


def frontier_points(metric: str, scores: list[float]) -> pd.DataFrame:
    """Three points at growing size, scored `scores` in `metric`."""
    return pd.DataFrame([{"point": f"p{i}", "method": "svd", "allocator": "uniform", "param ratio (layers)": ratio,
                          metric: score} for i, (ratio, score) in enumerate(zip((0.3, 0.5, 0.7), scores, strict=True))])


def test_the_frontier_keeps_the_lowest_perplexity_and_the_highest_accuracy():
    """Issue 24, 4: "best so far" follows the metric's direction."""
    from fwsvd_core.analysis.figures import pareto_front

    # perplexity 40 at 0.3, then 55 (worse) at 0.5, then 31 (better) at 0.7
    ppl = frontier_points("perplexity", [40.0, 55.0, 31.0])
    assert list(pareto_front(ppl, "perplexity")["point"]) == ["p0", "p2"]
    acc = frontier_points("accuracy", [0.60, 0.55, 0.70])  # the same shape read higher-is-better
    assert list(pareto_front(acc, "accuracy")["point"]) == ["p0", "p2"]
    # the same numbers read in the other direction: a rise of perplexity is no progress, a rise of accuracy is
    rising = frontier_points("perplexity", [40.0, 55.0, 70.0])
    assert list(pareto_front(rising, "perplexity")["point"]) == ["p0"]
    assert list(pareto_front(rising.rename(columns={"perplexity": "accuracy"}), "accuracy")["point"]) == ["p0", "p1", "p2"]
    best = next(t for t in frontier_figure(ppl, "perplexity", dense=20.0).data if t.name == "best so far")
    assert list(best.y) == [40.0, 31.0]


def test_every_score_axis_names_the_metrics_direction():
    """Issue 24, 4: perplexity (lower is better) on every score figure; accuracy (higher is better) likewise."""
    from fwsvd_core.analysis.figures import ablation_figure, history_figure, mismatch_figure

    for metric, words in (("perplexity", "perplexity (lower is better)"), ("accuracy", "accuracy (higher is better)")):
        points = frontier_points(metric, [40.0, 35.0, 30.0])
        sweep = points.assign(**{"plain error": 0.1, "fisher error": 0.1})
        history = points.assign(run=[1, 2, 3])
        titles = [frontier_figure(points, metric, dense=25.0).layout.yaxis.title.text,
                  history_figure(history, metric, dense=25.0).layout.yaxis.title.text,
                  score_curves_figure(points, metric).layout.yaxis.title.text,
                  mismatch_figure(sweep, metric).layout.yaxis.title.text]
        assert titles == [words] * 4
    ablation = pd.DataFrame({"group": [1, 2], "components": ["0-10%", "10-20%"], "score": [900.0, 61.0],
                             "drop": [850.0, 11.0], "examples": [48, 48], "metric": ["perplexity"] * 2})
    bars = ablation_figure(ablation)
    assert bars.layout.title.text.startswith("Perplexity rise when one group")
    assert bars.layout.yaxis.title.text == "perplexity rise (compressed - dense; lower is better)"
    accuracy = ablation_figure(ablation.assign(metric="accuracy", score=[0.6, 0.86], drop=[0.27, 0.01]))
    assert accuracy.layout.yaxis.title.text == "accuracy drop (dense - compressed; higher is better)"
