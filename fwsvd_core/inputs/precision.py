"""The dtypes a model is loaded and run in: the checkpoint's own by default, or one the user names."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from fwsvd_core.errors import FwsvdError

DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")  # auto: the dtype the checkpoint is stored in
HALF_DTYPES = (torch.bfloat16, torch.float16)


def as_dtype(value) -> torch.dtype | None:
    """A torch dtype from a dtype, its name ('float16', 'torch.bfloat16'), or None / 'auto' (the checkpoint's)."""
    if value is None or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        name = value.strip().removeprefix("torch.")
        if name in ("auto", ""):
            return None
        dtype = getattr(torch, name, None)
        if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            return dtype
    raise FwsvdError(f"Unknown dtype {value!r}: choose one of {', '.join(DTYPE_CHOICES)}.")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's floating-point weights (the first one found; float32 for a model without any)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def autocast_to(device: torch.device, dtype: torch.dtype):
    """Half-precision autocast on a GPU for a model stored in half precision; nothing elsewhere.

    On the CPU the model simply runs in its own dtype: CPU autocast would only add casts.
    """
    if device.type == "cuda" and dtype in HALF_DTYPES:
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@contextlib.contextmanager
def float32_parameters(model: nn.Module):
    """Half-precision parameters held in float32 inside the block (AdamW's small updates vanish in half
    precision), rounded back to their own dtype after it. Buffers and float32 parameters are left alone."""
    half = [p for p in model.parameters() if p.dtype in HALF_DTYPES]
    stored = [p.dtype for p in half]
    for p in half:
        p.data = p.data.float()
    try:
        yield
    finally:
        for p, dtype in zip(half, stored, strict=True):
            p.data = p.data.to(dtype)
            if p.grad is not None:
                p.grad = None
