"""The factorized layer: two linear maps in -> r -> out."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LowRankLinear(nn.Module):
    """y = (x @ right.T) @ left.T + bias, with right [r, in] and left [out, r].

    Parameters r*(in+out) (+ bias) instead of in*out; multiply-adds per token likewise.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 dtype: torch.dtype | None = None, device: torch.device | None = None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.right = nn.Parameter(torch.empty(rank, in_features, dtype=dtype, device=device))
        self.left = nn.Parameter(torch.empty(out_features, rank, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_factors(cls, left: torch.Tensor, right: torch.Tensor, bias: torch.Tensor | None) -> LowRankLinear:
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.out_features, layer.rank = left.shape
        layer.in_features = right.shape[1]
        layer.right = nn.Parameter(right, requires_grad=right.requires_grad)
        layer.left = nn.Parameter(left, requires_grad=left.requires_grad)
        layer.bias = None if bias is None else nn.Parameter(bias, requires_grad=bias.requires_grad)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.right), self.left, self.bias)

    def dense_weight(self) -> torch.Tensor:
        """The [out, in] matrix this layer applies."""
        return self.left @ self.right

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, bias={self.bias is not None}"
