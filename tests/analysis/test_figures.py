import numpy as np
import pandas as pd

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
