"""Device, precision and ranks: the one module of deepclust that knows about them.

**Device.** :func:`resolve_device` turns a ``device`` setting into a torch device: ``"auto"``
(or None) is this process's GPU when CUDA is available, else the CPU; ``"cuda"`` without an
index is this process's GPU too (``cuda:<local rank>`` under ``torchrun``).

**Precision.** :func:`resolve_precision` (``use``, ``precision``, ``device``) turns
``"auto"`` into ``"bf16"`` or ``"fp32"`` by one table; ``"bf16"`` and ``"fp32"`` pass
through, except ``"bf16"`` on a GPU without bfloat16, which is refused.

=============== ============================= ============= ============== ==================
use             what runs in bf16             GPU with bf16 CPU, native    CPU, no native
                                                            bf16 (AVX-512  bf16
                                                            BF16 or AMX)
=============== ============================= ============= ============== ==================
``embed``       encoder forward (autocast)    bf16          bf16           fp32
``embed-engine`` ONNX Runtime / OpenVINO      (CPU only)    fp32           fp32
``deepcluster`` training and feature passes   bf16          bf16           fp32
``heads``       TEMI/SCAN training (autocast) bf16          bf16           fp32
``neighbors``   exact kNN candidate product   bf16          bf16           fp32
``kmeans``      k-means assignment product    bf16 if       fp32           fp32
                (certified, float32 re-check) k >= 64
=============== ============================= ============= ============== ==================

A GPU without bfloat16 is fp32 for every use. Why: where bf16 is native, autocast speeds up
the encoder, the DeepCluster network and the heads at no cost in clustering quality, and the
bf16 neighbour product beats faiss's float32 search, and so does the certified k-means
assignment (on a CPU it re-checks the rows it cannot certify against their few candidates
only: 1.7x faster than faiss on real embeddings at k = 10 to 1 000, ``benchmarks/kmeans.py``);
on a GPU below 64 clusters the product is cheap anyway. The measurements are in
docs/architecture.md ("Decisions and why") and docs/scale.md.

**Ranks.** Launch any deepclust command with ``torchrun`` to spread its work over processes,
GPUs and nodes::

    torchrun --nproc_per_node=4 -m deepclust embed photos/ --encoder effnet-lite0 --out store

:func:`init_from_env` joins the process group that ``torchrun`` describes in the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), with the ``nccl``
backend when CUDA is available and ``gloo`` on CPUs. Without ``torchrun`` every helper acts as
a single process of rank 0 (collectives are the identity), so library code calls them
unconditionally. Helpers that take a ``group`` (a :class:`DistInfo`) act on it instead of the
whole process group: ``DistInfo()`` makes a process work alone even under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from deepclust.errors import InputError

__all__ = [
    "AUTO_RULES",
    "BF16_MIN_CLUSTERS",
    "PRECISIONS",
    "PRECISION_HELP",
    "USES",
    "AutoRule",
    "DistInfo",
    "all_gather_object",
    "all_reduce_mean_",
    "all_reduce_sum_",
    "barrier",
    "broadcast_",
    "broadcast_array",
    "broadcast_object",
    "busy_cores",
    "chunk",
    "cpu_has_native_bf16",
    "cuda_lacks_bf16",
    "default_device",
    "gather_rows",
    "info",
    "init_from_env",
    "is_main",
    "launched_by_torchrun",
    "local_slice",
    "mean_over_ranks",
    "numpy_blas_single_thread",
    "rank",
    "resolve_device",
    "resolve_precision",
    "shutdown",
    "split_work",
    "sum_over_ranks",
    "thread_pools",
    "world_size",
]

# ----------------------------------------------------------------------------- precision

PRECISIONS = ("auto", "bf16", "fp32")
#: The ``--precision`` help of every command (the CLI shows this line).
PRECISION_HELP = ("compute precision (default auto: bf16 on GPUs with bfloat16 and on CPUs with "
                  "AVX-512 BF16 or AMX, fp32 elsewhere; k-means assignment on a GPU: bf16 "
                  "for k >= 64)")
#: Smallest k for which ``"auto"`` gives the k-means assignment the bf16 path on a GPU.
BF16_MIN_CLUSTERS = 64


@dataclass(frozen=True)
class AutoRule:
    """Where ``precision="auto"`` is bf16 for one use."""

    gpu: bool  # on GPUs with bfloat16
    cpu: bool  # on CPUs with native bfloat16
    gpu_min_clusters: int = 0  # on GPUs only when k is at least this


#: The rule table of the module docstring.
AUTO_RULES: dict[str, AutoRule] = {
    "embed": AutoRule(gpu=True, cpu=True),
    # bf16 in OpenVINO (and in torch) gave a per-row cosine of 0.9988 to the fp32 forward on
    # photo crops: below the 0.999 the engine promises (docs/embedding.md).
    "embed-engine": AutoRule(gpu=False, cpu=False),
    "deepcluster": AutoRule(gpu=True, cpu=True),
    "heads": AutoRule(gpu=True, cpu=True),
    "neighbors": AutoRule(gpu=True, cpu=True),
    "kmeans": AutoRule(gpu=True, cpu=True, gpu_min_clusters=BF16_MIN_CLUSTERS),
}
USES = tuple(AUTO_RULES)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX-512 BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return bool(set(flags.split()) & {"avx512_bf16", "amx_bf16"})


def cuda_lacks_bf16() -> bool:
    """Whether CUDA is here and its GPU cannot compute in bfloat16.

    Without CUDA the answer is False: a ``"cuda"`` device named on a machine without one is
    judged as a usual GPU (it cannot run here anyway; :func:`resolve_device` refuses it), so
    the rule table can be evaluated for a GPU anywhere.
    """
    return torch.cuda.is_available() and not torch.cuda.is_bf16_supported()


def resolve_precision(use: str, precision: str, device: str | torch.device, *,
                      n_clusters: int | None = None) -> str:
    """``"bf16"`` or ``"fp32"``: what ``precision`` means for ``use`` on ``device``.

    Parameters
    ----------
    use : {"embed", "embed-engine", "deepcluster", "heads", "neighbors", "kmeans"}
        What runs in that precision; see the table in the module docstring.
    precision : {"auto", "bf16", "fp32"}
    device : str or torch.device
        Only its type matters (``"cpu"`` or ``"cuda"``).
    n_clusters : int, optional
        k; needed by ``use="kmeans"``.

    Returns
    -------
    str
        ``"bf16"`` or ``"fp32"``.
    """
    if use not in AUTO_RULES:
        raise ValueError(f"use must be one of {', '.join(USES)}, got {use!r}")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    gpu = torch.device(device).type == "cuda"
    if precision == "bf16" and gpu and cuda_lacks_bf16():
        raise InputError("this GPU does not support bfloat16; use precision fp32")
    if precision != "auto":
        return precision
    rule = AUTO_RULES[use]
    if rule.gpu_min_clusters:
        if n_clusters is None:
            raise ValueError(f"use={use!r} needs n_clusters")
        if gpu and n_clusters < rule.gpu_min_clusters:
            return "fp32"
    native = (rule.gpu and not cuda_lacks_bf16()) if gpu else (rule.cpu and cpu_has_native_bf16())
    return "bf16" if native else "fp32"


# ----------------------------------------------------------------------------- device

def busy_cores(window: float = 0.2) -> float:
    """Cores that other processes keep busy now.

    On Linux: the busy share of every core over ``window`` seconds (``/proc/stat``), less
    what this process itself used meanwhile (its own idle-spinning thread pools are not
    other work). Elsewhere: the 1-minute load average. The load average alone misleads
    on a small machine: right after one of our own runs it still counts that run, and the
    next command then took one thread instead of two (TEMI on digits: 42-44 s instead of
    26 s, 2 cores).
    """
    def ticks(first_line: str) -> tuple[int, int]:  # all ticks, idle + iowait ticks
        fields = [int(v) for v in first_line.split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)

    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
        cores = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        total0, idle0 = ticks(lines[0])
        self0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(window)
        with open("/proc/stat") as f:
            total1, idle1 = ticks(f.readline())
        own = (time.process_time() - self0) / max(time.perf_counter() - wall0, 1e-9)
        if total1 <= total0 or cores == 0:
            raise OSError("no /proc/stat ticks")
        busy = (1.0 - (idle1 - idle0) / (total1 - total0)) * cores
        return max(0.0, busy - own)
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):  # not available on this platform
            return 0.0


def auto_threads() -> int:
    """torch CPU threads that do not oversubscribe a busy machine.

    torch's default (one thread per core) unless other processes keep cores busy
    (:func:`busy_cores`): then only the cores that look free, at least one.
    ``OMP_NUM_THREADS`` (as set by ``torchrun``) is always respected. Oversubscribed
    intra-op threads wait on each other, so fewer threads run faster on a busy machine
    (measured in docs/embedding.md and, for the heads, docs/heads.md).
    """
    n = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS"):
        return n
    free = (os.cpu_count() or n) - busy_cores()
    return max(1, min(n, int(free + 0.5)))


@functools.cache
def thread_pools():
    """threadpoolctl's controller of every thread pool loaded now (built once: building it
    scans every loaded library)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def numpy_blas_single_thread():
    """A context in which numpy's own BLAS (not faiss's) runs on one thread.

    OpenBLAS's idle threads keep spinning for a while after every call; on a machine with
    few cores they take the cores from the next library's threads. k-means on the CPU
    calls numpy's BLAS on small products between faiss calls, and ran 1.6x slower for it
    (Fashion-MNIST test embeddings, k = 100, 2 cores: docs/scale.md).
    """
    pools = thread_pools()
    mine = [lib.filepath for lib in pools.lib_controllers
            if lib.user_api == "blas" and "faiss" not in lib.filepath]
    return pools.select(filepath=mine).limit(limits=1)


@contextlib.contextmanager
def single_threaded():
    """Run the block with one thread in torch and in every BLAS/OpenMP pool: many small fits
    (the candidates of ``--method auto`` on a few thousand rows) run about twice as fast one
    thread each as with threads that wait on each other (measured in docs/selection.md)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def default_device(di: DistInfo | None = None) -> torch.device:
    """``cuda:<local rank>`` when CUDA is available, else the CPU."""
    di = di or info()
    if torch.cuda.is_available():
        return torch.device("cuda", di.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A ``device`` setting as a torch device.

    ``"auto"`` (or None): this process's GPU when CUDA is available, else the CPU; a
    string (``"cpu"``, ``"cuda"``, ``"cuda:1"``) or a torch device passes through, a string
    after a check that CUDA exists when it asks for it; ``cuda`` without an index is this
    process's GPU (``cuda:<local rank>`` under ``torchrun``).
    """
    if device in (None, "auto"):
        return default_device()
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked but CUDA is not available here; use "
                             "device='cpu' (or 'auto')")
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", info().local_rank % torch.cuda.device_count())
    return dev


# ----------------------------------------------------------------------------- ranks


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


def rank() -> int:
    return info().rank


def world_size() -> int:
    return info().world_size


def is_main() -> bool:
    """Whether this is rank 0 (the one that writes and prints)."""
    return info().is_main


def shutdown() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if info().distributed:
        dist.barrier()


# -- sharing out work


def split_work(items: list, di: DistInfo | None = None) -> list:
    """This rank's share of ``items``: every ``world_size``-th item from ``rank``."""
    di = di or info()
    return list(items[di.rank :: di.world_size])


def chunk(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``range(n)`` (sizes differ by at most one)."""
    bounds = np.linspace(0, n, world_size + 1).round().astype(int)
    return slice(int(bounds[rank]), int(bounds[rank + 1]))


def local_slice(n: int, *, even: bool = False) -> slice:
    """This rank's contiguous share of ``n`` rows (a global batch drawn the same way on
    every rank), so that the ranks together see exactly what one process would.

    ``even``: refuse (ValueError) a batch that does not split into equal shares.
    """
    di = info()
    if even and n % di.world_size:
        raise ValueError(f"batch of {n} rows does not split evenly over {di.world_size} processes")
    return chunk(n, di.rank, di.world_size)


# -- objects


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


def mean_over_ranks(total: float, count: int) -> float:
    """``sum(total) / sum(count)`` over the ranks (NaN when no rank counted anything)."""
    pairs = all_gather_object((float(total), int(count)))
    n = sum(c for _, c in pairs)
    return sum(t for t, _ in pairs) / n if n else float("nan")


# -- numbers and arrays (host memory)


def sum_over_ranks(x, group: DistInfo | None = None):
    """The sum of ``x`` (a number or a numpy array) over the ranks of ``group``.

    ``group`` defaults to the whole process group; alone (``DistInfo()``, or not
    distributed) ``x`` itself is returned. Otherwise ``x`` is left untouched and a new value
    of its type is returned (the reduction goes through the backend's device).
    """
    group = info() if group is None else group
    if not group.distributed:
        return x
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.array(x, order="C", copy=True))
    elif isinstance(x, Integral) and not isinstance(x, bool):
        t = torch.tensor([int(x)], dtype=torch.int64)
    elif isinstance(x, Real):
        t = torch.tensor([float(x)], dtype=torch.float64)
    else:
        raise TypeError(f"sum_over_ranks takes a number or an ndarray, got {type(x).__name__}")
    dev = torch.device("cuda") if group.backend == "nccl" else torch.device("cpu")
    t = t.to(dev)
    dist.all_reduce(t)
    t = t.cpu()
    if isinstance(x, np.ndarray):
        return t.numpy()
    return int(t[0]) if t.dtype == torch.int64 else float(t[0])


def broadcast_array(array: np.ndarray | None) -> np.ndarray:
    """Rank 0's ``array`` on every rank (others pass None)."""
    di = info()
    if not di.distributed:
        return array
    meta = broadcast_object(None if array is None else (array.shape, str(array.dtype)))
    shape, dtype = meta
    t = torch.from_numpy(np.ascontiguousarray(array)) if di.is_main else torch.empty(
        shape, dtype=torch.from_numpy(np.zeros(0, dtype=dtype)).dtype)
    dist.broadcast(t, src=0)
    return t.numpy()


# -- tensors (on the process's device)


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place; returns it."""
    if info().distributed:
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
    if info().distributed:
        for t in tensors:
            dist.broadcast(t, src=src)


def gather_rows(rows: torch.Tensor) -> torch.Tensor | None:
    """Concatenate every rank's ``rows`` (same trailing shape) on rank 0, in rank order.

    Returns the concatenation on rank 0 and None elsewhere (the rows itself when not
    distributed). Ranks may hold different numbers of rows.
    """
    di = info()
    if not di.distributed:
        return rows
    rows = rows.contiguous()
    counts = all_gather_object(int(rows.shape[0]))
    longest = max(counts)
    padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[: rows.shape[0]] = rows
    bucket = [torch.empty_like(padded) for _ in range(di.world_size)] if di.is_main else None
    dist.gather(padded, bucket, dst=0)
    if not di.is_main:
        return None
    return torch.cat([b[:c] for b, c in zip(bucket, counts, strict=True)])
