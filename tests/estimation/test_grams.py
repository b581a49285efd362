import pytest
import torch

from fwsvd_core.estimation.grams import from_upper, gram_upper


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_upper_triangle_is_the_gram_matrix_and_from_upper_fills_in_the_rest(dtype):
    x = torch.randn(50, 300, dtype=dtype, generator=torch.Generator().manual_seed(0))  # wide enough for the bands
    expected = x.T @ x
    for tensor in (x, x.T.contiguous().T, x[::2]):  # contiguous, a transposed layout, a strided view
        want = tensor.T @ tensor
        upper = gram_upper(tensor)
        assert upper.dtype == dtype
        torch.testing.assert_close(upper.triu(), want.triu())
        torch.testing.assert_close(from_upper(upper), want)
    # sums of triangles are the triangle of the sum; in place, the sum itself becomes the full matrix
    total = gram_upper(x[:20]) + gram_upper(x[20:])
    torch.testing.assert_close(from_upper(total), expected)
    assert from_upper(total, in_place=True) is total
    torch.testing.assert_close(total, expected)


def test_no_tokens_and_narrow_inputs():
    for width in (4, 300):
        assert torch.equal(from_upper(gram_upper(torch.zeros(0, width))), torch.zeros(width, width))
    x = torch.randn(9, 3).bfloat16()
    assert torch.equal(gram_upper(x), x.T @ x)
