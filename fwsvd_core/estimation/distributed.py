"""Data-parallel statistics on torch.distributed: each process takes a shard of the examples, sums are all-reduced.

The Fisher and the calibration statistics are sums over examples, so N processes (launched by `torchrun` or
`accelerate launch`, one per GPU or machine) each sum their own examples and add the sums up. Without a
process group everything here is the identity: one process, all the examples.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from fwsvd_core.errors import FwsvdError
from fwsvd_core.inputs.data import TaskData


def process_group() -> tuple[int, int]:
    """(this process's rank, the number of processes); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def writes_results() -> bool:
    """Whether this process writes what all of them computed (the cache, reports): rank 0 only."""
    return process_group()[0] == 0


def shard(data: TaskData) -> TaskData:
    """This process's examples: every N-th from its rank on (all of them for one process)."""
    rank, size = process_group()
    if size == 1:
        return data
    if len(data) < size:
        raise FwsvdError(f"{len(data)} examples cannot be shared among {size} processes: give at least one each.")
    return data.subset(np.arange(rank, len(data), size))


def sum_over_processes(tensors: dict[str, torch.Tensor]) -> None:
    """Add each tensor up over the processes, in place (the same names in every process)."""
    if process_group()[1] == 1:
        return
    for name in sorted(tensors):  # one order in every process: the collectives pair up by position
        dist.all_reduce(tensors[name])


def count_over_processes(*counts: int) -> list[int]:
    """Integer counts added up over the processes."""
    if process_group()[1] == 1:
        return list(counts)
    total = torch.tensor(counts, dtype=torch.int64, device=_collective_device())
    dist.all_reduce(total)
    return [int(c) for c in total.tolist()]


def _collective_device() -> torch.device:
    """NCCL reduces tensors on the GPU; gloo on the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
