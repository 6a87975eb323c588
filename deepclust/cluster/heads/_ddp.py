"""The few collective operations head training needs, on top of :mod:`deepclust.distributed`.

Every function is a no-op (or the identity) in a single process, so the training loop calls
them unconditionally. Ranks themselves are only known to :mod:`deepclust.distributed`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from deepclust import distributed as ddp


def world_size() -> int:
    return ddp.info().world_size


def rank() -> int:
    return ddp.info().rank


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place; returns it."""
    if ddp.info().distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over the ranks, in place; returns it."""
    w = world_size()
    if w > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(w)
    return tensor


def broadcast_(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values."""
    if ddp.info().distributed:
        for t in tensors:
            dist.broadcast(t, src=src)


def local_slice(n_global: int) -> slice:
    """This rank's contiguous share of a global batch of ``n_global`` rows.

    The global batch is the same on every rank (drawn from the same seed); rank ``r`` takes
    rows ``[r * n / W, (r + 1) * n / W)``, so the ranks together see exactly the batch one
    process would.
    """
    w, r = world_size(), rank()
    if n_global % w:
        raise ValueError(f"batch of {n_global} rows does not split evenly over {w} processes")
    per = n_global // w
    return slice(r * per, (r + 1) * per)


def is_main() -> bool:
    return ddp.info().is_main


def barrier() -> None:
    ddp.barrier()
