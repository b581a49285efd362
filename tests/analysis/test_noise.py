"""Issue 23, 11: which measured differences are within noise."""
import pandas as pd

from fwsvd_core.analysis.noise import ablation_noise_sentence, noise_sentence, overlapping_methods


def sweep() -> pd.DataFrame:
    return pd.DataFrame([
        {"method": "dense", "rank ratio": 1.0, "accuracy": 0.875, "ci low": 0.84, "ci high": 0.90},
        {"method": "svd", "rank ratio": 0.25, "accuracy": 0.575, "ci low": 0.53, "ci high": 0.62},
        {"method": "fwsvd-input", "rank ratio": 0.25, "accuracy": 0.7125, "ci low": 0.67, "ci high": 0.755},
        {"method": "fwsvd-output", "rank ratio": 0.25, "accuracy": 0.7375, "ci low": 0.695, "ci high": 0.78},
    ])


def test_methods_with_overlapping_intervals_at_one_ratio_are_within_noise():
    assert overlapping_methods(sweep(), "accuracy") == [(0.25, "fwsvd-output", "fwsvd-input")]
    text = noise_sentence(sweep(), "accuracy", 400)
    assert "400 examples" in text and "at rank ratio 0.25, fwsvd-output and fwsvd-input." in text
    assert "svd and" not in text


def test_ratios_where_every_method_is_within_noise_are_said_once():
    close = pd.DataFrame([{"method": m, "rank ratio": r, "accuracy": 0.8, "ci low": 0.75, "ci high": 0.85}
                          for r in (0.5, 0.33) for m in ("svd", "fwsvd-input", "fwsvd-output")])
    text = noise_sentence(pd.concat([sweep(), close]), "accuracy", 400)
    assert "at rank ratios 0.5, 0.33, all 3 methods; at rank ratio 0.25, fwsvd-output and fwsvd-input." in text


def test_a_sweep_of_the_whole_split_says_it_has_no_intervals():
    whole = sweep().drop(columns=["ci low", "ci high"])
    assert overlapping_methods(whole, "accuracy") == []
    assert noise_sentence(whole, "accuracy", 872).startswith("No error bars")


def test_ablation_groups_whose_paired_interval_reaches_zero_are_named():
    table = pd.DataFrame({"group": [1, 2, 3], "drop": [0.2, 0.003, 0.037], "drop low": [0.15, -0.01, 0.01],
                          "drop high": [0.25, 0.016, 0.06], "examples": [300] * 3})
    text = ablation_noise_sentence(table)
    assert "300 examples" in text and text.endswith("group 2.")
    assert "run it again" in ablation_noise_sentence(table.drop(columns=["drop low", "drop high"]))


def test_the_better_method_of_a_pair_within_noise_is_named_first_in_the_metrics_direction():
    """Issue 24, 4: for perplexity the lower one is the better one."""
    table = pd.DataFrame([
        {"method": "dense", "rank ratio": 1.0, "perplexity": 20.0, "ci low": 19.0, "ci high": 21.0},
        {"method": "svd", "rank ratio": 0.25, "perplexity": 90.0, "ci low": 80.0, "ci high": 100.0},
        {"method": "fwsvd-input", "rank ratio": 0.25, "perplexity": 31.0, "ci low": 28.0, "ci high": 34.0},
        {"method": "fwsvd-output", "rank ratio": 0.25, "perplexity": 29.0, "ci low": 26.0, "ci high": 32.0},
    ])
    assert overlapping_methods(table, "perplexity") == [(0.25, "fwsvd-output", "fwsvd-input")]
    # the same numbers as accuracy: the higher one is named first
    assert overlapping_methods(table.rename(columns={"perplexity": "accuracy"}), "accuracy") == \
        [(0.25, "fwsvd-input", "fwsvd-output")]


def test_an_ablation_of_perplexity_speaks_of_rises():
    table = pd.DataFrame({"group": [1, 2], "drop": [850.0, 0.5], "drop low": [700.0, -0.2], "drop high": [990.0, 1.1],
                          "examples": [48] * 2, "metric": ["perplexity"] * 2})
    text = ablation_noise_sentence(table)
    assert "intervals of each rise over the 48 examples" in text and text.endswith("Within noise of no rise at all: group 2.")
    assert "of each drop" in ablation_noise_sentence(table.assign(metric="accuracy"))
