import numpy as np
import pytest
import torch

from fwsvd_core.compression.factorization import importance_scaling, reconstruction_errors
from fwsvd_core.compression.methods import factorize
from fwsvd_core.errors import FwsvdError


@pytest.fixture
def matrix():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 16, generator=g)
    fisher = torch.rand(24, 16, generator=g) ** 4
    return w, fisher


def weighted_truncation(w, d_out, d_in, r):
    """The definition: SVD of D_out W D_in, truncated, scaled back."""
    u, s, vh = torch.linalg.svd(torch.diag(d_out) @ w @ torch.diag(d_in), full_matrices=False)
    return torch.diag(1 / d_out) @ (u[:, :r] * s[:r]) @ vh[:r] @ torch.diag(1 / d_in)


def test_svd_slices_are_the_best_rank_r_approximations(matrix):
    w, _ = matrix
    f = factorize(w, "svd")
    s = torch.linalg.svdvals(w)
    for r in (1, 5, 16):
        assert float((w - f.reconstruct(r)).norm()) == pytest.approx(float(s[r:].norm()), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("method", ["fwsvd-input", "fwsvd-output", "fwsvd-both", "fwsvd"])
def test_fwsvd_matches_the_weighted_svd_definition(matrix, method):
    w, fisher = matrix
    f = factorize(w, method, fisher)
    ones_out, ones_in = torch.ones(24), torch.ones(16)
    d_out = fisher.sum(1).sqrt() if method in ("fwsvd-output", "fwsvd-both") else ones_out
    d_in = fisher.sum(0).sqrt() if method in ("fwsvd-input", "fwsvd-both", "fwsvd") else ones_in
    for r in (2, 7, 16):
        torch.testing.assert_close(f.reconstruct(r), weighted_truncation(w, d_out, d_in, r), rtol=1e-4, atol=1e-4)


def test_fwsvd_beats_svd_on_its_own_weighted_objective(matrix):
    w, fisher = matrix
    d = fisher.sum(1).sqrt()
    for r in (2, 6):
        fw = factorize(w, "fwsvd-output", fisher).reconstruct(r)
        sv = factorize(w, "svd").reconstruct(r)
        assert (d[:, None] * (w - fw)).norm() <= (d[:, None] * (w - sv)).norm() + 1e-5
        assert (w - sv).norm() <= (w - fw).norm() + 1e-5  # ... and SVD wins the plain error: the mismatch


def test_zero_and_nan_importance_never_divide_by_zero(matrix):
    w, fisher = matrix
    fisher = fisher.clone()
    fisher[3] = 0.0
    fisher[5, 2] = float("nan")
    f = factorize(w, "fwsvd-both", fisher)
    assert torch.isfinite(f.left).all() and torch.isfinite(f.right).all()
    torch.testing.assert_close(f.reconstruct(16), w, rtol=1e-3, atol=1e-3)
    assert torch.equal(importance_scaling(torch.zeros(4, 3), "input"), torch.ones(3))  # no information: SVD
    zero = factorize(w, "fwsvd-input", torch.zeros_like(w))
    torch.testing.assert_close(zero.reconstruct(4), factorize(w, "svd").reconstruct(4), rtol=1e-4, atol=1e-4)


def test_bad_inputs(matrix):
    w, fisher = matrix
    with pytest.raises(FwsvdError, match="Unknown method"):
        factorize(w, "pca", fisher)
    with pytest.raises(FwsvdError, match="needs the Fisher"):
        factorize(w, "fwsvd-input")
    with pytest.raises(FwsvdError, match="does not match"):
        factorize(w, "fwsvd-input", fisher.T)


@pytest.mark.parametrize("method", ["svd", "fwsvd-input", "fwsvd-both"])
def test_errors_for_all_ranks_equal_dense_reconstruction(matrix, method):
    w, fisher = matrix
    f = factorize(w, method, fisher)
    errors = reconstruction_errors(w, f, fisher)
    assert list(errors["rank"]) == list(range(17))
    for r in range(17):
        residual = w - f.reconstruct(r)
        assert errors["plain"][r] == pytest.approx(float(residual.norm() / w.norm()), abs=1e-5)
        expected = float((fisher * residual**2).sum().sqrt() / (fisher * w**2).sum().sqrt())
        assert errors["fisher"][r] == pytest.approx(expected, abs=1e-5)
    assert errors["plain"][0] == pytest.approx(1.0) and errors["plain"][16] < 1e-5
    assert np.all(np.diff(errors["objective"]) <= 1e-7)


def test_errors_at_chosen_ranks_only(matrix):
    w, _ = matrix
    f = factorize(w, "svd")
    some = reconstruction_errors(w, f, None, [3, 9, 40])
    assert list(some["rank"]) == [3, 9, 16] and np.isnan(some["fisher"]).all()
    assert some["plain"][1] == pytest.approx(reconstruction_errors(w, f, None)["plain"][9])


def test_asvd_scales_input_channels_by_mean_absolute_activation(matrix):
    w, _ = matrix
    mean_abs = torch.rand(16) + 0.1
    f = factorize(w, "asvd", mean_abs=mean_abs)
    s = mean_abs.sqrt()  # alpha = 0.5
    torch.testing.assert_close(f.reconstruct(5), weighted_truncation(w, torch.ones(24), s, 5), rtol=1e-4, atol=1e-4)


def test_svd_llm_minimises_the_output_error_on_the_calibration_inputs(matrix):
    w, _ = matrix
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 16, generator=g) @ torch.randn(16, 16, generator=g)  # correlated inputs
    second = x.T @ x / 500
    f = factorize(w, "svd-llm", second_moment=second)
    for r in (3, 8):
        out_err = lambda approx: float(((x @ (w - approx).T) ** 2).sum())  # noqa: E731
        assert out_err(f.reconstruct(r)) <= out_err(factorize(w, "svd").reconstruct(r)) + 1e-3
        # the optimum of min ||X (W - W_r)^T||: the truncated SVD of the output matrix X W^T
        s = torch.linalg.svdvals(x @ w.T)
        best = float((s[r:] ** 2).sum())
        assert out_err(f.reconstruct(r)) == pytest.approx(best, rel=1e-3)


def test_whitening_falls_back_for_a_singular_second_moment():
    from fwsvd_core.compression.factorization import whitening

    x = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
    x[:, 3] = 0.0  # a dead channel: the second moment is singular
    factor, inverse, how = whitening(x.T @ x / 100)
    assert how != "cholesky" and torch.isfinite(factor).all() and torch.isfinite(inverse).all()
    torch.testing.assert_close(factor @ inverse, torch.eye(4), rtol=1e-3, atol=1e-3)
    _, _, plain = whitening(torch.eye(4) * 2)
    assert plain == "cholesky"
