"""torch.distributed helpers: the only module of deepclust that knows about ranks.

Launch any deepclust command with ``torchrun`` to spread its work over processes, GPUs and
nodes::

    torchrun --nproc_per_node=4 -m deepclust embed photos/ --encoder effnet-lite0 --out store

:func:`init_from_env` joins the process group that ``torchrun`` describes in the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), with the ``nccl``
backend when CUDA is available and ``gloo`` on CPUs. Without ``torchrun`` every helper acts as
a single process of rank 0, so library code calls them unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when the environment describes a process group of more than one process."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(backend: str | None = None) -> DistInfo:
    """Join the process group described by ``torchrun``'s environment, if any.

    Parameters
    ----------
    backend : {"gloo", "nccl"}, optional
        Default: ``nccl`` when CUDA is available, else ``gloo``.

    Returns
    -------
    DistInfo
    """
    if not launched_by_torchrun():
        return info()
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return info()


def info() -> DistInfo:
    """This process's rank, world size and local rank (rank 0 of 1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", "0")), dist.get_backend())
    return DistInfo()


def default_device(di: DistInfo | None = None) -> torch.device:
    """``cuda:<local rank>`` when CUDA is available, else the CPU."""
    di = di or info()
    if torch.cuda.is_available():
        return torch.device("cuda", di.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def resolve_device(device) -> torch.device:
    """A ``device`` setting as a torch device.

    ``"auto"`` (or None): this process's GPU when CUDA is available, else the CPU; a
    string (``"cpu"``, ``"cuda"``, ``"cuda:1"``) or a torch device passes through, after a
    check that CUDA exists when it is asked for.
    """
    from deepclust.errors import InputError

    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked but CUDA is not available here; use "
                         "device='cpu' (or 'auto')")
    return dev


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if info().distributed:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src``, on every rank (must be picklable)."""
    if not info().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list:
    """A list with every rank's ``obj``, in rank order."""
    di = info()
    if not di.distributed:
        return [obj]
    out: list[Any] = [None] * di.world_size
    dist.all_gather_object(out, obj)
    return out


def split_work(items: list, di: DistInfo | None = None) -> list:
    """This rank's share of ``items``: every ``world_size``-th item from ``rank``."""
    di = di or info()
    return list(items[di.rank :: di.world_size])


def shutdown() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
