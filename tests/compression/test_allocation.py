import numpy as np
import pytest
import torch

from fwsvd_core.compression.allocation import (
    allocate,
    allocate_exact,
    allocate_greedy,
    candidate_ranks,
    predicted_loss,
    sensitivity_curves,
    sensitivity_table,
    spectral_curves,
)
from fwsvd_core.compression.ranks import compressed_params, original_params, ranks_for_param_ratio
from fwsvd_core.errors import RankError
from fwsvd_core.inputs.layers import LayerInfo

LAYERS = [LayerInfo("a", 0, "query", 64, 64, "linear"), LayerInfo("b", 0, "FFN in", 64, 256, "linear"),
          LayerInfo("c", 1, "FFN out", 256, 64, "linear")]


def convex_curves(weights):
    return {l.name: w * np.exp(-np.arange(l.max_rank + 1) / 8.0) * (np.arange(l.max_rank + 1) < l.max_rank)
            for l, w in zip(LAYERS, weights, strict=True)}


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.6, 0.95])
def test_greedy_meets_the_budget_and_respects_break_even(ratio):
    budget = int(ratio * original_params(LAYERS))
    ranks = allocate_greedy(LAYERS, convex_curves([1.0, 5.0, 0.2]), budget)
    spent = compressed_params(LAYERS, ranks)
    assert spent <= budget
    smallest_step = min(l.in_features + l.out_features for l in LAYERS if ranks[l.name] < l.break_even_rank)
    assert budget - spent < smallest_step or all(ranks[l.name] >= l.break_even_rank for l in LAYERS)
    for l in LAYERS:  # never a rank that costs more than the dense layer yet is not dense
        assert ranks[l.name] <= l.break_even_rank or ranks[l.name] == l.max_rank


def test_greedy_gives_more_rank_where_the_loss_is_larger():
    ranks = allocate_greedy(LAYERS, convex_curves([0.01, 10.0, 0.01]), int(0.3 * original_params(LAYERS)))
    assert ranks["b"] > ranks["a"] and ranks["b"] > ranks["c"]


def test_greedy_refuses_an_impossible_budget():
    with pytest.raises(RankError, match="below rank 1"):
        allocate_greedy(LAYERS, convex_curves([1, 1, 1]), 10)


def test_spectral_curves_fall_to_zero_at_full_rank(tiny_session):
    session = tiny_session
    for method in ("svd", "fwsvd-input", "fwsvd-output", "fwsvd-both"):
        curves = spectral_curves(tiny_session, method)
        for l in session.layers:
            c = curves[l.name]
            assert len(c) == l.max_rank + 1 and c[-1] == pytest.approx(0.0, abs=1e-12)
            assert np.all(np.diff(c) <= 1e-15)


def test_spectral_fwsvd_input_curve_is_the_taylor_estimate_under_a_column_fisher(tiny_session):
    """With a Fisher constant down each column, the curve equals 0.5 * sum I dW^2 exactly."""
    session = tiny_session
    name = session.layers[0].name
    f = session.fisher.per_layer[name]
    session.fisher.per_layer[name] = f.mean(dim=0, keepdim=True).expand_as(f).clone()
    session.set_fisher(session.fisher)
    curve = spectral_curves(tiny_session, "fwsvd-input")[name]
    w, fac = session.weight(name), session.factors("fwsvd-input")[name]
    for r in (1, 5, 20):
        residual = w - fac.reconstruct(r)
        expected = 0.5 * float((session.fisher.per_layer[name] * residual**2).sum())
        assert curve[r] == pytest.approx(expected, rel=1e-3)
    assert torch.isfinite(torch.as_tensor(curve)).all()


def test_sensitivity_table_is_cached_and_curves_are_monotone(tiny_session, sst2_small):
    session = tiny_session
    table = sensitivity_table(tiny_session, sst2_small[0], "fwsvd-input", ratios=(0.1, 0.5), n_examples=16)
    assert len(table) == len(session.layers) * 2 and set(table["rank ratio"]) == {0.1, 0.5}
    again = sensitivity_table(tiny_session, sst2_small[0], "fwsvd-input", ratios=(0.1, 0.5), n_examples=16)
    assert table.equals(again)
    curves = sensitivity_curves(session.layers, table)
    for l in session.layers:
        assert np.all(np.diff(curves[l.name]) <= 0) and curves[l.name][-1] == 0.0


SMALL = [LayerInfo("p", 0, "query", 6, 5, "linear"), LayerInfo("q", 0, "FFN in", 9, 4, "linear"),
         LayerInfo("s", 1, "FFN out", 4, 9, "linear")]


def staircase_curves(layers, seed):
    """Falling but not convex: flat stretches then sudden drops, where buying one rank at a time misleads."""
    rng = np.random.default_rng(seed)
    curves = {}
    for l in layers:
        drops = rng.exponential(1.0, l.max_rank) * (rng.random(l.max_rank) < 0.4)
        curves[l.name] = np.concatenate([np.cumsum(drops[::-1])[::-1], [0.0]])
    return curves


def brute_force_best(layers, curves, budget):
    """The lowest summed loss over every choice of ranks (1 to break-even, or the dense layer) within `budget`."""
    import itertools

    choices = [[*range(1, l.break_even_rank + 1), l.max_rank] for l in layers]
    best = np.inf
    for combo in itertools.product(*choices):
        ranks = {l.name: r for l, r in zip(layers, combo, strict=True)}
        if compressed_params(layers, ranks) <= budget:
            best = min(best, predicted_loss(layers, curves, ranks))
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ratio", [0.45, 0.6, 0.9])
def test_exact_allocation_is_the_brute_force_optimum_and_meets_the_budget(seed, ratio):
    """Issue 25, 6: with every rank a candidate and no gap the integer program is optimal, on curves where greedy
    buying is not."""
    budget = int(ratio * original_params(SMALL))
    curves = staircase_curves(SMALL, seed)
    ranks = allocate_exact(SMALL, curves, budget, gap=0.0)
    assert compressed_params(SMALL, ranks) <= budget
    assert predicted_loss(SMALL, curves, ranks) == pytest.approx(brute_force_best(SMALL, curves, budget), abs=1e-9)
    greedy = allocate_greedy(SMALL, curves, budget)
    assert predicted_loss(SMALL, curves, ranks) <= predicted_loss(SMALL, curves, greedy) + 1e-12


def test_exact_allocation_beats_greedy_where_the_curves_are_not_convex():
    wins = 0
    for seed in range(20):
        curves = staircase_curves(LAYERS, seed)
        budget = int(0.3 * original_params(LAYERS))
        exact, greedy = allocate_exact(LAYERS, curves, budget), allocate_greedy(LAYERS, curves, budget)
        assert compressed_params(LAYERS, exact) <= budget
        assert predicted_loss(LAYERS, curves, exact) <= predicted_loss(LAYERS, curves, greedy) + 1e-9
        wins += predicted_loss(LAYERS, curves, exact) < predicted_loss(LAYERS, curves, greedy) - 1e-9
    assert wins >= 5


def test_exact_allocation_of_wide_layers_chooses_on_a_grid_and_keeps_the_floor():
    """Past 1024 break-even ranks the candidates are every rank to 64, then every 8th, the break-even rank and the
    dense layer; the floor is respected and the budget met to the parameter."""
    wide = [LayerInfo(f"w{i}", i, "FFN in", 4096, 2048, "linear") for i in range(3)]
    grid = candidate_ranks(wide[0])
    be = wide[0].break_even_rank
    assert be > 1024 and grid[:64] == list(range(1, 65)) and all(r % 8 == 0 for r in grid[64:-2])
    assert grid[-2:] == [be, wide[0].max_rank] and candidate_ranks(wide[0], floor=300)[0] == 300
    curves = {l.name: (i + 1) * np.exp(-np.arange(l.max_rank + 1) / 200.0) for i, l in enumerate(wide)}
    for c in curves.values():
        c[-1] = 0.0
    budget = int(0.4 * original_params(wide))
    floor = {l.name: 300 for l in wide}
    ranks = allocate_exact(wide, curves, budget, floor)
    assert compressed_params(wide, ranks) <= budget and min(ranks.values()) >= 300
    assert predicted_loss(wide, curves, ranks) <= predicted_loss(wide, curves, allocate_greedy(wide, curves, budget, floor))


@pytest.mark.parametrize("allocator", ["uniform", "spectral", "sensitivity", "exact-spectral", "exact-sensitivity"])
def test_allocators_meet_the_same_budget(tiny_session, sst2_small, allocator):
    session = tiny_session
    ranks = allocate(tiny_session, allocator, 0.4, calibration=sst2_small[0], ratios=(0.1, 0.5), n_examples=16)
    assert compressed_params(session.layers, ranks) <= 0.4 * original_params(session.layers)
    uniform = ranks_for_param_ratio(session.layers, 0.4)[0]
    assert compressed_params(session.layers, ranks) >= 0.8 * compressed_params(session.layers, uniform)
    with pytest.raises(RankError, match="Unknown allocator"):
        allocate(tiny_session, "random", 0.4)


def test_exact_spectral_predicts_no_more_loss_than_spectral_on_the_same_curves(tiny_session):
    session = tiny_session
    curves = spectral_curves(session, "fwsvd-input")
    greedy, exact = (allocate(session, a, 0.3) for a in ("spectral", "exact-spectral"))
    assert predicted_loss(session.layers, curves, exact) <= predicted_loss(session.layers, curves, greedy) + 1e-12
    assert compressed_params(session.layers, exact) <= int(0.3 * original_params(session.layers))


def test_the_sensitivity_of_a_language_model_is_its_rise_of_log_perplexity(tiny_lm_session, lm_windows):
    """Issue 24, 4: the sensitivity allocator measures the task loss, lower-is-better in every family, so a layer
    whose compression raises the perplexity costs loss (windows of equal length: the loss is log perplexity)."""
    import math

    from fwsvd_core.compression.ranks import uniform_ranks
    from fwsvd_core.estimation.evaluation import evaluate

    session, calibration = tiny_lm_session, lm_windows[0]
    table = sensitivity_table(session, calibration, "svd", ratios=(0.1,), n_examples=16)
    tokenizer = session.loaded.tokenizer
    dense = evaluate(session.model, tokenizer, calibration.sample(16, 0)).score
    ranks = uniform_ranks(session.layers, 0.1)
    for layer, increase in table[["layer", "loss increase"]].itertuples(index=False):
        ppl = evaluate(session.compress("svd", {layer: ranks[layer]}), tokenizer, calibration.sample(16, 0)).score
        assert increase == pytest.approx(math.log(ppl / dense), abs=1e-6)  # float32 losses
    curves = sensitivity_curves(session.layers, table)
    costly = table.loc[table["loss increase"].idxmax(), "layer"]
    cheap = table.loc[table["loss increase"].idxmin(), "layer"]
    assert curves[costly][ranks[costly]] > curves[cheap][ranks[cheap]]
