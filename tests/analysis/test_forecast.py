import numpy as np
import pytest

from fwsvd_core.analysis.forecast import (
    DEFAULT_SLOPE,
    fitted_slope,
    forecast,
    predicted_loss_increase,
    sweep_runs,
)
from fwsvd_core.compression.allocation import spectral_curves
from fwsvd_core.compression.ranks import uniform_ranks


def test_the_predicted_loss_is_the_sum_of_the_layer_curves_at_their_ranks(tiny_session):
    layers = tiny_session.layers
    curves = spectral_curves(tiny_session, "fwsvd-output")
    ranks = uniform_ranks(layers, 0.3)
    expected = sum(float(curves[l.name][ranks[l.name]] - curves[l.name][l.max_rank]) for l in layers)
    assert predicted_loss_increase(layers, curves, ranks) == pytest.approx(expected)
    assert predicted_loss_increase(layers, curves, {l.name: l.max_rank for l in layers}) == 0.0
    # fewer ranks cost more, layer by layer
    lower = uniform_ranks(layers, 0.1)
    assert predicted_loss_increase(layers, curves, lower) > predicted_loss_increase(layers, curves, ranks) > 0


def test_the_slope_is_fitted_through_the_origin_on_measured_runs():
    assert fitted_slope([]) == (DEFAULT_SLOPE, 0)
    assert fitted_slope([(0.0, 0.1)]) == (DEFAULT_SLOPE, 0)  # a run predicted to cost nothing says nothing
    slope, used = fitted_slope([(0.1, 0.02), (0.2, 0.04), (0.4, 0.08)])
    assert slope == pytest.approx(0.2) and used == 3
    x = np.array([0.1, 0.3, 0.5])
    y = np.array([0.05, 0.1, 0.2])
    assert fitted_slope(zip(x, y, strict=True))[0] == pytest.approx(float((x * y).sum() / (x * x).sum()))
    assert fitted_slope([(0.1, -0.05)]) == (0.0, 1)  # a better score at more loss: no negative slope


def test_the_forecast_follows_the_fitted_slope(tiny_session):
    layers = tiny_session.layers
    curves = spectral_curves(tiny_session, "fwsvd-input")
    ranks = uniform_ranks(layers, 0.2)
    loss = predicted_loss_increase(layers, curves, ranks)
    uncalibrated = forecast(layers, curves, ranks, 0.9)
    assert uncalibrated.calibrated_on == 0 and uncalibrated.score == pytest.approx(0.9 - DEFAULT_SLOPE * loss)
    calibrated = forecast(layers, curves, ranks, 0.9, [(2 * loss, 0.1)])
    assert calibrated.calibrated_on == 1 and calibrated.score == pytest.approx(0.9 - 0.05)


def test_a_sweeps_uniform_points_of_the_method_are_runs_measured_against_its_own_dense_row(tiny_session):
    import pandas as pd

    layers = tiny_session.layers
    curves = spectral_curves(tiny_session, "fwsvd-input")
    nan = float("nan")
    sweep = pd.DataFrame([
        {"method": "dense", "allocator": None, "rank ratio": 1.0, "accuracy": 0.9},
        {"method": "fwsvd-input", "allocator": "uniform", "rank ratio": 0.2, "accuracy": 0.8},
        {"method": "fwsvd-input", "allocator": "uniform", "rank ratio": 0.5, "accuracy": 0.85},
        {"method": "fwsvd-input+ft", "allocator": "uniform", "rank ratio": 0.2, "accuracy": 0.88},  # fine-tuned
        {"method": "fwsvd-input", "allocator": "spectral", "rank ratio": nan, "accuracy": 0.87},  # ranks not kept
        {"method": "svd", "allocator": "uniform", "rank ratio": 0.2, "accuracy": 0.5},  # another method
    ])
    runs = sweep_runs(layers, curves, sweep, "fwsvd-input", "accuracy")
    expected = [(predicted_loss_increase(layers, curves, uniform_ranks(layers, r)), drop)
                for r, drop in ((0.2, 0.1), (0.5, 0.05))]
    assert np.allclose(runs, expected)
    assert sweep_runs(layers, curves, sweep[sweep["method"] != "dense"], "fwsvd-input", "accuracy") == []


def test_a_rise_of_perplexity_is_a_drop_and_the_forecast_lies_above_the_dense_perplexity(tiny_session):
    """Issue 24, 4: the score lost is measured in the metric's direction, so the slope is positive and the
    predicted perplexity rises with the predicted loss, while accuracy's forecast is as before."""
    import pandas as pd

    from fwsvd_core.analysis.forecast import measured_run

    layers = tiny_session.layers
    curves = spectral_curves(tiny_session, "fwsvd-input")
    sweep = pd.DataFrame([
        {"method": "dense", "allocator": None, "rank ratio": 1.0, "perplexity": 20.0},
        {"method": "fwsvd-input", "allocator": "uniform", "rank ratio": 0.2, "perplexity": 30.0},
        {"method": "fwsvd-input", "allocator": "uniform", "rank ratio": 0.5, "perplexity": 24.0},
    ])
    runs = sweep_runs(layers, curves, sweep, "fwsvd-input", "perplexity")
    assert [drop for _, drop in runs] == [pytest.approx(10.0), pytest.approx(4.0)]  # rises: positive drops
    slope, used = fitted_slope(runs)
    assert slope > 0 and used == 2
    ranks = uniform_ranks(layers, 0.3)
    loss = predicted_loss_increase(layers, curves, ranks)
    ppl = forecast(layers, curves, ranks, 20.0, runs, metric="perplexity")
    assert ppl.score == pytest.approx(20.0 + slope * loss) and ppl.score > 20.0
    accuracy = sweep.assign(accuracy=[0.9, 0.8, 0.85]).drop(columns="perplexity")
    acc_runs = sweep_runs(layers, curves, accuracy, "fwsvd-input", "accuracy")
    acc = forecast(layers, curves, ranks, 0.9, acc_runs, metric="accuracy")
    assert acc.score == pytest.approx(0.9 - fitted_slope(acc_runs)[0] * loss)
    assert acc.score == forecast(layers, curves, ranks, 0.9, acc_runs).score  # as before the metric was given
    assert measured_run("perplexity", 0.3, 20.0, 26.0) == (0.3, pytest.approx(6.0))
    assert measured_run("accuracy", 0.3, 0.9, 0.8) == (0.3, pytest.approx(0.1))
