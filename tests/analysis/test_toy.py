import pytest
import torch

from fwsvd_core.analysis.toy import IMPORTANT, toy_matrix, toy_solutions
from fwsvd_core.compression.factorization import scaled_svd


def weighted_error(toy, reconstruction) -> float:
    """The definition, entry by entry."""
    num = sum(float(toy.importance[i, j] * (toy.weight[i, j] - reconstruction[i, j]) ** 2)
              for i in range(toy.weight.shape[0]) for j in range(toy.weight.shape[1]))
    return (num / float((toy.importance * toy.weight**2).sum())) ** 0.5


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_the_toy_shows_the_mismatch_at_low_rank(rank):
    toy = toy_matrix()
    solutions = toy_solutions(toy, rank)
    svd, weighted = solutions["svd"], solutions["weighted"]
    # SVD is the best plain approximation; the weighted solution is better where the loss cares
    assert svd.plain_error <= weighted.plain_error + 1e-6
    assert weighted.weighted_error < svd.weighted_error
    assert svd.weighted_error == pytest.approx(weighted_error(toy, svd.reconstruction), rel=1e-5)
    assert weighted.weighted_error == pytest.approx(weighted_error(toy, weighted.reconstruction), rel=1e-5)
    torch.testing.assert_close(svd.reconstruction, scaled_svd(toy.weight, "svd").reconstruct(rank))
    assert torch.linalg.matrix_rank(weighted.reconstruction.double(), rtol=1e-6) == rank


def test_at_rank_one_svd_gives_up_exactly_the_important_entries():
    solutions = toy_solutions(toy_matrix(), 1)
    assert set(solutions["svd"].sacrificed) == set(IMPORTANT)
    assert not set(solutions["weighted"].sacrificed) & set(IMPORTANT)
