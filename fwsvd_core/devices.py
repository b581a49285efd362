"""Where computations run."""
from __future__ import annotations

import torch


def default_device() -> torch.device:
    """CUDA when a GPU is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    return default_device() if device is None else torch.device(device)


# glibc's M_MMAP_THRESHOLD (malloc.h): buffers at least this large are mapped on their own and unmapped when freed
_M_MMAP_THRESHOLD = -3
MAPPED_BUFFERS = 1 << 20


def release_freed_buffers() -> bool:
    """Have freed buffers of 1 MiB or more leave the process at once (Linux with glibc; False elsewhere).

    glibc raises its mapping threshold as large buffers are freed, up to 32 MiB, and then keeps such buffers in its
    heap, where a pass's activations of changing sizes fragment it: a 1B decoder's statistics pass peaked 2 GB higher,
    and a 7B decoder's about 4 GB above its estimate (`benchmarks/results/scale_kfac.md`). A fixed threshold ends that
    (the 1B pass took 85 s with it against 76 s, the 7B one 165 s against 224 s: within a shared machine's noise); the
    memory planner turns it on when memory is short.
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or not (name := ctypes.util.find_library("c")):
        return False
    try:
        return bool(ctypes.CDLL(name).mallopt(_M_MMAP_THRESHOLD, MAPPED_BUFFERS))
    except (OSError, AttributeError):  # a C library without mallopt (musl)
        return False
