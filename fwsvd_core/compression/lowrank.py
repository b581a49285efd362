"""The factorized layer: two linear maps in -> r -> out, each an `nn.Linear`."""
from __future__ import annotations

import torch
from torch import nn


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An nn.Linear holding the given tensors themselves (no copy, no initialisation)."""
    out_f, in_f = weight.shape
    linear = nn.Linear(in_f, out_f, bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(weight, requires_grad=weight.requires_grad)
    if bias is not None:
        linear.bias = nn.Parameter(bias, requires_grad=bias.requires_grad)
    return linear


class LowRankLinear(nn.Module):
    """y = up(down(x)): `down` is an nn.Linear in -> r without bias, `up` an nn.Linear r -> out with the layer's bias.

    Two standard linear modules, so that what looks for `nn.Linear` (dynamic quantization, peft's LoRA, pruning)
    sees both factors. Parameters r*(in+out) (+ bias) instead of in*out; multiply-adds per token likewise.
    `right` ([r, in]), `left` ([out, r]) and `bias` name the same tensors as the papers' factors.
    """

    # its nn.Linear parts are not layers of the model to find, compress or hook on their own
    # (`inputs.layers.find_layers` reads this mark without importing this module)
    holds_factors = True

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 dtype: torch.dtype | None = None, device: torch.device | None = None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, dtype=dtype, device=device)
        self.up = nn.Linear(rank, out_features, bias=bias, dtype=dtype, device=device)

    @classmethod
    def from_factors(cls, left: torch.Tensor, right: torch.Tensor, bias: torch.Tensor | None) -> LowRankLinear:
        """The layer applying left @ right (+ bias), holding these tensors themselves."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.out_features, layer.rank = left.shape
        layer.in_features = right.shape[1]
        layer.down = _linear(right, None)
        layer.up = _linear(left, bias)
        return layer

    @property
    def right(self) -> torch.Tensor:
        return self.down.weight

    @property
    def left(self) -> torch.Tensor:
        return self.up.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.up.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def dense_weight(self) -> torch.Tensor:
        """The [out, in] matrix this layer applies."""
        return self.left @ self.right

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, bias={self.bias is not None}"


def legacy_factor_names(name: str) -> dict[str, str]:
    """How an export written before the factors were `nn.Linear` modules named the parameters of layer `name`."""
    return {f"{name}.right": f"{name}.down.weight", f"{name}.left": f"{name}.up.weight", f"{name}.bias": f"{name}.up.bias"}
