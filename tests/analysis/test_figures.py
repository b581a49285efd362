import numpy as np
import pandas as pd

from fwsvd_core.analysis.figures import score_curves_figure, signed_layer_map


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
