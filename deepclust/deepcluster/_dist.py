"""The collective operations DeepCluster needs, on top of :mod:`deepclust.distributed`.

Rows computed on each rank are gathered to rank 0 (features for k-means, the v2 memory
bank), and rank 0's pseudo-labels and centroids are broadcast back. Every function is the
identity in a single process. Ranks themselves are only known to :mod:`deepclust.distributed`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from deepclust import distributed as ddp

__all__ = ["broadcast_array", "chunk", "gather_rows", "local_part"]


def chunk(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``range(n)`` (sizes differ by at most one)."""
    bounds = np.linspace(0, n, world_size + 1).round().astype(int)
    return slice(int(bounds[rank]), int(bounds[rank + 1]))


def local_part(batch: np.ndarray) -> np.ndarray:
    """This rank's contiguous share of a global batch drawn identically on every rank."""
    di = ddp.info()
    return batch[chunk(len(batch), di.rank, di.world_size)]


def gather_rows(rows: torch.Tensor) -> torch.Tensor | None:
    """Concatenate every rank's ``rows`` (same trailing shape) on rank 0, in rank order.

    Returns the concatenation on rank 0 and None elsewhere (the rows itself when not
    distributed). Ranks may hold different numbers of rows.
    """
    di = ddp.info()
    if not di.distributed:
        return rows
    rows = rows.contiguous()
    counts = ddp.all_gather_object(int(rows.shape[0]))
    longest = max(counts)
    padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[: rows.shape[0]] = rows
    bucket = [torch.empty_like(padded) for _ in range(di.world_size)] if di.is_main else None
    dist.gather(padded, bucket, dst=0)
    if not di.is_main:
        return None
    return torch.cat([b[:c] for b, c in zip(bucket, counts, strict=True)])


def broadcast_array(array: np.ndarray | None) -> np.ndarray:
    """Rank 0's ``array`` on every rank (others pass None)."""
    di = ddp.info()
    if not di.distributed:
        return array
    meta = ddp.broadcast_object(None if array is None else (array.shape, str(array.dtype)))
    shape, dtype = meta
    t = torch.from_numpy(np.ascontiguousarray(array)) if di.is_main else torch.empty(
        shape, dtype=torch.from_numpy(np.zeros(0, dtype=dtype)).dtype)
    dist.broadcast(t, src=0)
    return t.numpy()
