"""The method registry: every method declared once; a method defined in a test file reaches every list."""
import json

import pytest
import torch

from fwsvd_core.cli import main
from fwsvd_core.compression.factorization import Factors, scaled_svd
from fwsvd_core.compression.methods import (
    FISHER,
    KRONECKER,
    LayerInputs,
    Method,
    factorize,
    get_method,
    method_names,
    register,
    unregister,
)
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.errors import FwsvdError

TOY = "toy-row-normed"


def row_normed_svd(weight: torch.Tensor, inputs: LayerInputs) -> Factors:
    """A toy method: rows scaled to unit norm before the SVD, the scaling undone on the factors."""
    return scaled_svd(weight, TOY, d_out=1.0 / weight.norm(dim=1).clamp_min(1e-12))


@pytest.fixture
def toy_method():
    method = register(Method(name=TOY, description="rows scaled to unit norm (a test's method)",
                             factorize=row_normed_svd, aliases=("toy",)))
    yield method
    unregister(TOY)


def test_the_built_in_methods_are_listed_in_their_order_with_what_they_need():
    assert method_names() == ("svd", "fwsvd-input", "fwsvd-output", "fwsvd-both", "asvd", "svd-llm", "tfwsvd-em",
                              "tfwsvd-als", "kfac", "gfwsvd")
    assert method_names(needs=KRONECKER) == ("kfac", "gfwsvd")
    assert method_names(needs=FISHER, per_rank=False) == ("fwsvd-input", "fwsvd-output", "fwsvd-both")
    assert method_names(per_rank=True) == ("tfwsvd-em", "tfwsvd-als")
    assert get_method(" FWSVD ").name == "fwsvd-input" and get_method("tfwsvd").name == "tfwsvd-als"
    with pytest.raises(FwsvdError, match="choose from svd, fwsvd-input"):
        get_method("pca")


def test_a_method_declares_exactly_one_way_to_factorize_and_known_needs():
    with pytest.raises(FwsvdError, match="exactly one of factorize and solve"):
        Method(name="x", description="", needs=frozenset())
    with pytest.raises(FwsvdError, match="unknown inputs"):
        Method(name="x", description="", needs=frozenset({"gradients"}), factorize=row_normed_svd)


def test_a_method_defined_in_a_test_reaches_the_cli_the_dashboard_and_the_session(
        toy_method, tiny_models, tiny_session, glue_dir, tmp_path, capsys):
    from test_pages import make_app

    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert TOY in "".join(capsys.readouterr().out.split())  # argparse wraps help lines, at hyphens too
    # the session: factors computed once, full rank reconstructs the weight exactly
    layer = tiny_session.layers[0]
    factors = tiny_session.factors("toy")[layer.name]
    torch.testing.assert_close(factors.reconstruct(layer.max_rank), tiny_session.weight(layer.name), rtol=1e-4,
                               atol=1e-5)
    ranks = uniform_ranks(tiny_session.layers, 0.3)
    assert tiny_session.model_errors(TOY, ranks)["plain"] > 0
    # the command line compresses with it and records its name
    save = tmp_path / "out"
    assert main(["compress", "--model", str(tiny_models["bert"]), "--task", "sst2", "--data-dir", str(glue_dir),
                 "--method", "toy", "--rank-ratio", "0.4", "--fisher-samples", "8", "--save", str(save)]) == 0
    assert json.loads((save / "fwsvd_ranks.json").read_text())["method"] == TOY
    # the dashboard's method lists
    at = make_app(str(tiny_models["bert"]), glue_dir)
    at.switch_page("pages/rank_editor.py").run()
    assert TOY in at.selectbox[0].options


def test_the_module_function_factorize_reads_the_registry(toy_method):
    w = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    f = factorize(w, TOY)
    assert f.method == TOY and f.d_out is not None
    with pytest.raises(ValueError, match="solves each rank anew"):
        factorize(w, "tfwsvd-als")


def test_a_method_that_needs_kronecker_factors_asks_for_them_first(tiny_session):
    register(Method(name="kron-toy", description="", needs=frozenset({KRONECKER}), factorize=row_normed_svd))
    try:
        with pytest.raises(ValueError, match="Kronecker factors of the Fisher: estimate them first"):
            tiny_session.factors("kron-toy")
    finally:
        unregister("kron-toy")
