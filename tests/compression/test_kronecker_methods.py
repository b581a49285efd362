"""kfac and gfwsvd: the SVD of L_B^T W L_A, checked against the objective it minimises."""
import pytest
import torch

from fwsvd_core.compression.factorization import damped, kronecker_svd, scaled_svd, whitening
from fwsvd_core.compression.methods import LayerInputs, factorize
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.errors import FwsvdError
from fwsvd_core.estimation.kronecker import estimate_kronecker


def kronecker_objective(dw: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    """tr(dW^T B dW A), written out as the quadratic form of A (x) B on vec(dW) (columns stacked)."""
    v = dw.double().T.reshape(-1)
    return float(v @ torch.kron(a.double(), b.double()) @ v)


def random_spd(n: int, seed: int, spread: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (q * torch.logspace(0, spread, n, dtype=torch.float64)) @ q.T


@pytest.mark.parametrize("damping", [0.0, 1e-2])
def test_the_objective_is_the_discarded_spectrum_and_below_plain_svd(damping):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 9, generator=g)
    a, b = random_spd(9, 1), random_spd(12, 2)
    factors = kronecker_svd(w, a.float(), b.float(), "gfwsvd", damping)
    a_d, b_d = damped(a, damping), damped(b, damping)
    plain = scaled_svd(w, "svd")
    for rank in (1, 3, 6):
        dw = w - factors.reconstruct(rank)
        objective = kronecker_objective(dw, a_d, b_d)
        # the discarded squared singular values of L_B^T W L_A, from an independent SVD
        l_a, l_b = torch.linalg.cholesky(a_d), torch.linalg.cholesky(b_d)
        s = torch.linalg.svdvals(l_b.T @ w.double() @ l_a)
        assert objective == pytest.approx(float((s[rank:] ** 2).sum()), rel=1e-3)
        assert objective == pytest.approx(float((factors.spectrum.double()[rank:] ** 2).sum()), rel=1e-3)
        assert objective < kronecker_objective(w - plain.reconstruct(rank), a_d, b_d)
    torch.testing.assert_close(factors.reconstruct(9), w, rtol=1e-4, atol=1e-4)


def test_a_large_damping_turns_the_method_into_plain_svd():
    w = torch.randn(10, 7, generator=torch.Generator().manual_seed(3))
    factors = kronecker_svd(w, random_spd(7, 4).float(), random_spd(10, 5).float(), "kfac", damping=1e7)
    plain = scaled_svd(w, "svd")
    for rank in (1, 4):
        torch.testing.assert_close(factors.reconstruct(rank), plain.reconstruct(rank), rtol=1e-3, atol=1e-3)


def test_a_singular_factor_falls_back_and_still_gives_finite_exact_factors():
    w = torch.randn(8, 6, generator=torch.Generator().manual_seed(6))
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(7))
    x[:, 2] = 0.0  # a dead input channel: A is singular, its Cholesky fails without damping
    a = (x.T @ x / 20).double()
    assert int(torch.linalg.cholesky_ex(a)[1]) != 0
    assert whitening(a)[2] != "cholesky"
    factors = kronecker_svd(w, a.float(), random_spd(8, 8).float(), "kfac", damping=0.0)
    assert all(torch.isfinite(t).all() for t in (factors.left, factors.right, factors.spectrum))
    torch.testing.assert_close(factors.reconstruct(6), w, rtol=1e-3, atol=1e-3)


def test_the_methods_refuse_missing_or_mismatched_factors():
    w = torch.randn(5, 4)
    with pytest.raises(FwsvdError, match="needs the nearest Kronecker factors"):
        factorize(w, "gfwsvd")
    with pytest.raises(FwsvdError, match="do not match"):
        from fwsvd_core.compression.methods import get_method
        get_method("kfac").factorize(w, LayerInputs(kronecker={"kfac": (torch.eye(5), torch.eye(4))}))


def test_the_session_compresses_with_kfac_and_gfwsvd_and_the_damping_is_in_the_cache_key(tiny_session, sst2_small):
    session = tiny_session
    loaded = session.loaded
    kron = estimate_kronecker(loaded.model, loaded.tokenizer, sst2_small[0], 12, iterations=2)
    session.set_kronecker(kron)
    ranks = uniform_ranks(session.layers, 0.25)
    layer = session.layers[0]
    w = session.weight(layer.name)
    for method, kind in (("kfac", "kfac"), ("gfwsvd", "nearest")):
        a, b = kron.pair(layer.name, kind)
        a_d, b_d = damped(a.double(), session.kronecker_damping), damped(b.double(), session.kronecker_damping)
        rank = ranks[layer.name]
        ours = kronecker_objective(w - session.factors(method)[layer.name].reconstruct(rank), a_d, b_d)
        svd = kronecker_objective(w - session.factors("svd")[layer.name].reconstruct(rank), a_d, b_d)
        assert ours < svd
        compressed = session.compress(method, ranks)
        assert compressed is not session.model
    before = session.factors("gfwsvd")[layer.name].spectrum.clone()
    session.set_kronecker(kron, damping=0.5)
    assert session.kronecker_damping == 0.5
    after = session.factors("gfwsvd")[layer.name].spectrum
    assert not torch.allclose(before, after)  # recomputed, not read from the cache of the other damping


def test_the_factors_are_balanced_whatever_the_scale_of_the_kronecker_factors():
    w = torch.randn(12, 9, generator=torch.Generator().manual_seed(9))
    tiny = kronecker_svd(w, 1e-9 * random_spd(9, 10).float(), 1e-6 * random_spd(12, 11).float(), "gfwsvd", 0.01)
    for rank in (2, 9):
        torch.testing.assert_close(tiny.reconstruct(rank), kronecker_svd(w, random_spd(9, 10).float(),
                                                                         random_spd(12, 11).float(), "gfwsvd",
                                                                         0.01).reconstruct(rank), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(tiny.left.norm(dim=0), tiny.right.norm(dim=1), rtol=1e-4, atol=0)


def reference_kronecker_products(weight, a, b, damping, ranks):
    """The rank-r products of the definition, in float64 with both inverse factors formed explicitly."""
    eye_a, eye_b = torch.eye(a.shape[0], dtype=torch.float64), torch.eye(b.shape[0], dtype=torch.float64)
    l_a = torch.linalg.cholesky(damped(a.double(), damping))
    l_b = torch.linalg.cholesky(damped(b.double(), damping))
    u, s, vh = torch.linalg.svd(l_b.T @ weight.double() @ l_a, full_matrices=False)
    inv_a, inv_b = torch.linalg.inv(l_a), torch.linalg.inv(l_b)
    assert torch.allclose(inv_a @ l_a, eye_a, atol=1e-8) and torch.allclose(inv_b @ l_b, eye_b, atol=1e-8)
    return {r: inv_b.T @ (u[:, :r] * s[:r]) @ vh[:r] @ inv_a for r in ranks}


@pytest.mark.parametrize(("spread", "damping", "tolerance"), [(3.0, 1e-2, 1e-4), (12.0, 1e-9, 1e-6)])
def test_triangular_solves_give_the_products_of_the_definition(spread, damping, tolerance):
    """Well-conditioned factors go through float32 solves (within 1e-4 of the float64 definition); factors too badly
    conditioned for float32 (eigenvalues spread over 12 decades, almost no damping) stay in float64 and agree to the
    float32 the factors are stored in."""
    torch.manual_seed(0)
    weight, a, b = torch.randn(24, 40), random_spd(40, 1, spread), random_spd(24, 2, spread)
    factors = kronecker_svd(weight, a, b, "kfac", damping)
    for r, expected in reference_kronecker_products(weight, a, b, damping, [1, 5, 24]).items():
        got = factors.left[:, :r].double() @ factors.right[:r].double()
        assert (got - expected).norm() / expected.norm() < tolerance


def test_the_condition_bound_is_never_below_the_true_condition_number():
    from fwsvd_core.compression.factorization import damped_condition_bound

    for seed in range(5):
        matrix = random_spd(30, seed, spread=8.0)
        for damping in (1e-4, 1e-2, 1.0):
            values = torch.linalg.eigvalsh(damped(matrix.double(), damping))
            assert damped_condition_bound(matrix.double(), damping) >= float(values.max() / values.min()) * (1 - 1e-9)
    assert damped_condition_bound(random_spd(5, 0), 0.0) == float("inf")
