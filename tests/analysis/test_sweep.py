import pandas as pd
import pytest

from fwsvd_core.analysis.sweep import allocation_gains


def test_allocation_gains_compare_the_best_allocation_with_the_best_uniform_fwsvd():
    rows = [("dense", None, None, 0.9)]
    rows += [("svd", "uniform", 0.3, 0.50), ("fwsvd-input", "uniform", 0.3, 0.60), ("fwsvd-output", "uniform", 0.3, 0.70),
             ("svd-llm", "uniform", 0.3, 0.95),  # not an FWSVD variant: not the baseline
             ("fwsvd-output", "spectral", 0.3, 0.72), ("svd-llm", "sensitivity", 0.3, 0.80),
             ("svd-llm+ft", "uniform", 0.3, 0.99),  # fine-tuned rows are left out
             ("fwsvd-both", "uniform", 0.5, 0.81), ("fwsvd-both", "spectral", 0.5, 0.78)]
    table = pd.DataFrame(rows, columns=["method", "allocator", "target param ratio", "accuracy"])
    gains = allocation_gains(table, "accuracy").set_index("param ratio")
    assert list(gains.index) == [0.3, 0.5]
    assert gains.loc[0.3, "best allocation"] == "svd-llm / sensitivity"
    assert gains.loc[0.3, "gain"] == pytest.approx(0.80 - 0.70)
    assert gains.loc[0.5, "gain"] == pytest.approx(0.78 - 0.81)  # a loss is reported as one


def test_allocation_gains_read_perplexity_as_lower_is_better():
    import fwsvd_core.inputs.families  # noqa: F401  (the families declare the metrics' directions)

    rows = [("fwsvd-output", "uniform", 0.6, 40.0), ("fwsvd-input", "uniform", 0.6, 55.0),
            ("kfac", "spectral", 0.6, 31.0), ("svd", "sensitivity", 0.6, 90.0)]
    table = pd.DataFrame(rows, columns=["method", "allocator", "target param ratio", "perplexity"])
    gains = allocation_gains(table, "perplexity").set_index("param ratio")
    assert gains.loc[0.6, "best uniform FWSVD"] == 40.0 and gains.loc[0.6, "best allocation"] == "kfac / spectral"
    assert gains.loc[0.6, "gain"] == pytest.approx(9.0)  # 40 -> 31: a gain
