"""Images in, embeddings out: the batched, resumable, distributed extraction loop.

:func:`embed` reads an :class:`~deepclust.data.sources.ImageSource` through a torch
``DataLoader`` (decoding and preprocessing in worker processes), runs the encoder under
``torch.inference_mode`` (optionally with bfloat16 autocast and channels-last memory) and
writes an :class:`~deepclust.store.EmbeddingStore` shard by shard.

- **Resumable**: shards are committed atomically; a re-run with the same inputs and settings
  continues at the missing shards, and a run on a finished store does nothing.
- **Reproducible**: batches never straddle shards, so each shard's rows are computed the same
  way whichever process computes them and whenever it does.
- **Distributed**: under ``torchrun`` the missing shards are dealt round-robin to the ranks;
  rank 0 writes ``meta.json`` before and the index after (see :mod:`deepclust.runtime`).
- **Robust**: items that cannot be decoded or preprocessed are counted and listed in the
  store's ``failed.parquet`` with the reason; they never stop the run.
"""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deepclust import runtime
from deepclust.data.sources import ArraySource, ImageSource, open_source
from deepclust.encoders import DEFAULT_ENCODER, Encoder, get_encoder
from deepclust.encoders.engine import resolve_engine, with_engine
from deepclust.errors import DataNotFoundError, DeepclustError, InputError
from deepclust.progress import progress_disabled
from deepclust.runtime import auto_threads
from deepclust.store import STORE_DTYPES, EmbeddingStore, StoreWriter, open_store
from deepclust.version import __version__

#: Default rows per shard: the most work an interruption can cost.
DEFAULT_SHARD_SIZE = 4096
DEFAULT_DTYPE = "float16"
#: Default batch size on the CPU (measured on EfficientNet-Lite0: see docs/embedding.md).
CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 256


def default_workers(device: torch.device, threads: int | None = None) -> int:
    """Decoding worker processes: the cores the model's threads leave free, at least a
    quarter of the cores (at most 4) on bigger machines, 8 at most for a GPU."""
    n = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, n)
    threads = torch.get_num_threads() if threads is None else threads
    return min(4, max(n // 4, n - threads))


class _Items(torch.utils.data.Dataset):
    """Source items decoded and preprocessed, failures carried along instead of raised."""

    def __init__(self, source: ImageSource, transform):
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        try:
            item = self.source.load(i)
        except Exception as exc:  # a source bug must not kill a long run: record it
            return i, None, f"unreadable: {type(exc).__name__}: {exc}", -1, str(i), ""
        x, error = None, item.error
        if item.image is not None:
            try:
                x = self.transform(item.image)
            except Exception as exc:
                error = f"preprocessing failed: {type(exc).__name__}: {exc}"
        return i, x, error, item.label, item.id, item.path


def _collate(batch):
    tensors = [b[1] for b in batch if b[1] is not None]
    x = torch.stack(tensors) if tensors else None
    return x, [(b[0], b[1] is not None, b[2], b[3], b[4], b[5]) for b in batch]


def _shard_batches(shards: list[int], shard_size: int, n: int, batch_size: int) -> list[list[int]]:
    batches = []
    for k in shards:
        start, stop = k * shard_size, min((k + 1) * shard_size, n)
        for b in range(start, stop, batch_size):
            batches.append(list(range(b, min(b + batch_size, stop))))
    return batches


@dataclass
class _ShardBuffer:
    expected: int
    rows: list = field(default_factory=list)
    records: list = field(default_factory=list)

    @property
    def done(self) -> bool:
        return len(self.records) == self.expected


def _versions() -> dict:
    out = {"deepclust": __version__, "torch": torch.__version__, "numpy": np.__version__,
           "python": platform.python_version()}
    for mod in ("transformers", "PIL"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            pass
    return out


def embed(
    source,
    encoder: str | Encoder = DEFAULT_ENCODER,
    out: str | os.PathLike = "store",
    *,
    batch_size: int | None = None,
    num_workers: int | None = None,
    precision: str = "auto",
    dtype: str | None = None,
    shard_size: int | None = None,
    channels_last: bool | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    encoder_options: dict | None = None,
    source_options: dict | None = None,
    engine: str = "auto",
) -> EmbeddingStore:
    """Embed every image of ``source`` with ``encoder`` into the store at ``out``.

    Parameters
    ----------
    source : ImageSource, Dataset, path or str
        Anything :func:`deepclust.data.sources.open_source` accepts.
    encoder : str or Encoder
        A registry name (see :func:`deepclust.encoders.list_encoders`) or a built encoder.
    out : path
        The store directory: created, resumed, or (when complete) returned as is.
    batch_size : int, optional
        Default 32 on the CPU, 256 on a GPU.
    num_workers : int, optional
        DataLoader worker processes decoding images; default :func:`default_workers`
        (the cores the model's threads leave free).
    precision : {"auto", "bf16", "fp32"}
        Compute precision; bf16 uses ``torch.autocast`` (OpenVINO: its bf16 inference
        precision). ``auto``: see :func:`deepclust.runtime.resolve_precision` (use
        ``"embed"``; ``"embed-engine"``, always fp32, when an engine runs the encoder).
    dtype : {"float16", "float32"}, optional
        Storage dtype of the rows; default: the existing store's when resuming, else float16.
    shard_size : int, optional
        Items per shard; default: the existing store's when resuming, else 4096.
    channels_last : bool, optional
        NHWC memory layout; default: on for convolutional encoders.
    device : str or torch.device, optional
        Default: ``cuda:<local rank>`` when available, else the CPU.
    threads : int, optional
        torch intra-op threads for this run (restored afterwards); default on the CPU:
        `deepclust.runtime.auto_threads` (one per core, fewer when the load average shows other work).
    overwrite : bool
        Replace a store made from other inputs or settings instead of refusing.
    progress : bool
        Show a progress bar (images/s) on rank 0.
    encoder_options, source_options : dict, optional
        Passed to :func:`~deepclust.encoders.get_encoder` / :func:`~deepclust.data.sources.open_source`.
    engine : {"auto", "torch", "onnxruntime", "openvino"}
        ``auto``: on the CPU, for an encoder that exports, ONNX Runtime (OpenVINO for
        ``precision="bf16"`` or where ONNX Runtime is not installed), else torch (the rule:
        :func:`deepclust.encoders.engine.resolve_engine`). The engines use ``threads`` when
        given, else every core.

    Returns
    -------
    EmbeddingStore
        The finished store; ``store.meta["last_run"]`` holds this run's counts and timings.

    Examples
    --------
    >>> store = embed("photos/", "effnet-lite0", "photos-lite0")  # doctest: +SKIP
    >>> store.X.shape  # doctest: +SKIP
    (1234, 1280)
    """
    started = time.time()
    di = runtime.info()
    writer = StoreWriter(out)
    existing = writer.existing_meta() or {}
    if dtype is None:
        dtype = existing.get("dtype", DEFAULT_DTYPE)
    if shard_size is None:
        shard_size = existing.get("shard_size", DEFAULT_SHARD_SIZE)
    if dtype not in STORE_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(STORE_DTYPES)}, not {dtype!r}")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise InputError(f"shard_size must be a positive integer, got {shard_size!r}")
    src = open_source(source, **(source_options or {}))
    n = len(src)
    if n == 0:
        raise InputError("the image source is empty; there is nothing to embed")
    dev = runtime.resolve_device(device)
    if batch_size is None:
        batch_size = GPU_BATCH_SIZE if dev.type == "cuda" else CPU_BATCH_SIZE
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    engine_threads = threads
    if threads is None and dev.type == "cpu":
        threads = auto_threads()
    if num_workers is None:
        num_workers = default_workers(dev, threads)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise InputError(f"num_workers={num_workers!r} is not allowed; give 0 (decode in this "
                         "process) or a positive number of worker processes")
    enc = get_encoder(encoder, **(encoder_options or {}))
    use = "embed-engine" if resolve_engine(engine, enc, dev, precision) != "torch" else "embed"
    prec = runtime.resolve_precision(use, precision, dev)
    enc, chosen = with_engine(enc, engine, dev, prec, threads=engine_threads)
    if chosen == "torch" and use != "embed":  # the engine failed under auto: torch's rule
        prec = runtime.resolve_precision("embed", precision, dev)
    engine = chosen
    n_shards = (n + shard_size - 1) // shard_size
    meta = {
        "format": "deepclust-store",
        "format_version": 1,
        "encoder": enc.name,
        "encoder_config": enc.describe(),
        "dim": int(enc.dim),
        "dtype": dtype,
        "precision": prec,
        "engine": engine,
        "source": src.describe(),
        "source_fingerprint": src.fingerprint(),
        "n_items": n,
        "shard_size": shard_size,
        "n_shards": n_shards,
        "class_names": src.class_names,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "deepclust_version": __version__,
    }

    # Rank 0 checks and creates the store; every rank learns the outcome (or the error).
    payload = None
    if di.is_main:
        try:
            payload = ("ok",) + writer.prepare(meta, overwrite=overwrite)
        except DeepclustError as exc:
            payload = ("error", type(exc).__name__, str(exc))
    payload = runtime.broadcast_object(payload)
    if payload[0] == "error":
        from deepclust import errors

        raise getattr(errors, payload[1], InputError)(payload[2])
    _, missing, complete = payload
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _embed_prepared(src, enc, writer, out, missing, complete, meta, di, started,
                               batch_size=batch_size, num_workers=num_workers, precision=prec,
                               dtype=dtype, shard_size=shard_size, device=dev,
                               channels_last=channels_last, progress=progress)
    finally:
        writer.release()  # the store lock (held by rank 0 only)
        torch.set_num_threads(old_threads)


def _embed_prepared(src, enc, writer, out, missing, complete, meta, di, started, *, batch_size,
                    num_workers, precision, dtype, shard_size, device, channels_last,
                    progress) -> EmbeddingStore:
    n, n_shards = meta["n_items"], meta["n_shards"]
    run = {
        "command": "embed",
        "parameters": {
            "source": meta["source"], "encoder": enc.name, "out": str(Path(out).expanduser()),
            "batch_size": batch_size, "num_workers": num_workers, "precision": precision,
            "dtype": dtype, "shard_size": shard_size, "device": str(device),
            "engine": meta["engine"],
            "threads": torch.get_num_threads(), "world_size": di.world_size,
        },
        "versions": _versions(),
    }
    if complete:
        if di.is_main:
            run.update({"rows_written": 0, "seconds": round(time.time() - started, 3),
                        "note": "store already complete; nothing to do"})
            writer.record_run(run)
        runtime.barrier()
        return open_store(out)

    mine = runtime.split_work(missing, di)
    stats = _run_shards(src, enc, writer, mine, n, shard_size, batch_size=batch_size,
                        num_workers=num_workers, precision=precision, dtype=dtype, device=device,
                        channels_last=channels_last, progress=progress and di.is_main)
    totals = runtime.all_gather_object(stats)
    runtime.barrier()
    if di.is_main:
        seconds = time.time() - started
        items = sum(t["items"] for t in totals)
        run.update({
            "shards_written": sum(t["shards"] for t in totals),
            "items_processed": items,
            "rows_written": sum(t["rows"] for t in totals),
            "failed": sum(t["failed"] for t in totals),
            "seconds": round(seconds, 3),
            "compute_seconds": round(max(t["seconds"] for t in totals), 3),
            "images_per_second": round(items / max(seconds, 1e-9), 2),
            "channels_last": stats["channels_last"],
            "resumed": len(missing) < n_shards,
        })
        writer.finalize(src.extra_labels(), run)
    runtime.barrier()
    return open_store(out)


def _run_shards(src, enc, writer, shards, n, shard_size, *, batch_size, num_workers,
                precision, dtype, device, channels_last, progress) -> dict:
    """Embed this process's ``shards`` and write them; returns counts and seconds."""
    t0 = time.time()
    stats = {"shards": 0, "items": 0, "rows": 0, "failed": 0, "seconds": 0.0}
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # denormal floats are slow on x86 and change nothing here
    enc.to(device)
    use_cl = enc.prefers_channels_last if channels_last is None else bool(channels_last)
    enc.set_channels_last(use_cl)
    stats["channels_last"] = use_cl
    if not shards:
        return stats
    batches = _shard_batches(shards, shard_size, n, batch_size)
    loader = torch.utils.data.DataLoader(
        _Items(src, enc.transform), batch_sampler=batches, num_workers=num_workers,
        collate_fn=_collate, pin_memory=device.type == "cuda",
        prefetch_factor=4 if num_workers > 0 else None,
    )
    total = sum(min((k + 1) * shard_size, n) - k * shard_size for k in shards)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="img", disable=not progress or progress_disabled(),
               desc=f"embed {enc.name}", dynamic_ncols=True, smoothing=0.1)
    np_dtype = np.dtype(dtype)
    buffers: dict[int, _ShardBuffer] = {}
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    try:
        for x, records in loader:
            rows = bad_rows = None
            if x is not None:
                with autocast:
                    out = enc(x).float().cpu().numpy()
                if out.ndim != 2 or out.shape != (len(x), enc.dim):
                    raise InputError(f"encoder {enc.name} gave features of shape {out.shape} for "
                                     f"{len(x)} images, but declares dim={enc.dim}; nothing more "
                                     "is written (fix the encoder's declared dim)")
                with np.errstate(over="ignore", invalid="ignore"):  # handled just below
                    rows = out.astype(np_dtype)
                # A non-finite row fails its item (with the reason) rather than the whole run.
                bad_rows = {
                    j: ("the encoder gave NaN or infinite values (try --precision fp32)"
                        if not np.isfinite(out[j]).all() else
                        f"the embedding exceeds the {dtype} range (use --dtype float32)")
                    for j in np.flatnonzero(~np.isfinite(rows).all(axis=1))
                }
            r = 0
            for item, ok, error, label, id_, path in records:
                k = item // shard_size
                buf = buffers.get(k)
                if buf is None:
                    buf = buffers[k] = _ShardBuffer(min((k + 1) * shard_size, n) - k * shard_size)
                if ok and r in bad_rows:
                    ok, error = False, bad_rows[r]
                    r += 1
                if ok:
                    buf.rows.append(rows[r])
                    buf.records.append((item, id_, label, path, len(buf.rows) - 1, None))
                    r += 1
                else:
                    buf.records.append((item, id_, label, path, -1, error or "unknown error"))
                    stats["failed"] += 1
                if buf.done:
                    _commit(writer, k, buf, enc.dim, np_dtype)
                    stats["shards"] += 1
                    stats["rows"] += len(buf.rows)
                    del buffers[k]
            stats["items"] += len(records)
            bar.update(len(records))
            if stats["failed"]:
                bar.set_postfix(failed=stats["failed"], refresh=False)
    finally:
        bar.close()
    stats["seconds"] = time.time() - t0
    return stats


def _commit(writer: StoreWriter, k: int, buf: _ShardBuffer, dim: int, np_dtype) -> None:
    rows = np.stack(buf.rows).astype(np_dtype, copy=False) if buf.rows else np.zeros((0, dim), np_dtype)
    cols = list(zip(*buf.records, strict=True))
    names = ("item", "id", "label", "path", "row", "error")
    table = {name: list(col) for name, col in zip(names, cols, strict=True)}
    writer.write_shard(k, rows, table)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def builtin_store_path(name: str, split: str, encoder: str) -> Path:
    """Where :func:`builtin_embeddings` keeps the store of ``name:split`` under ``encoder``."""
    from deepclust.data.builtin import cache_dir

    return cache_dir() / "stores" / f"{_slug(name)}-{_slug(split)}-{_slug(encoder)}"


def builtin_subset_store_path(name: str, split: str, encoder: str, rows: np.ndarray) -> Path:
    """Where :func:`builtin_embeddings` keeps the store of some ``rows`` of ``name:split``:
    beside the whole split's, named by the row count and a digest of the rows."""
    import hashlib

    digest = hashlib.blake2b(np.asarray(rows, dtype=np.int64).tobytes(), digest_size=8).hexdigest()
    full = builtin_store_path(name, split, encoder)
    return full.with_name(f"{_slug(name)}-{_slug(split)}-rows{len(rows)}-{digest}-{_slug(encoder)}")


def _open_complete(path: Path, encoder: str):
    """The finished store at ``path`` made with ``encoder``, else None."""
    try:
        store = open_store(path)
    except DeepclustError:
        return None  # absent or unfinished
    return store if store.meta.get("encoder") == encoder else None


def builtin_embeddings(name: str, split: str, encoder: str = DEFAULT_ENCODER, *,
                       progress: bool = True, rows=None, compute: bool = True):
    """Embeddings of a built-in dataset, computed once and cached.

    The store lives in ``cache_dir()/stores/<dataset>-<split>-<encoder>``: the first call
    embeds the dataset (resuming an interrupted attempt), later calls just open it. With
    ``rows``, only those rows: taken from the whole split's store when it is cached, else
    embedded into a store of their own (:func:`builtin_subset_store_path`), so a quick look
    at a subset costs the subset's images, not the split's.

    Parameters
    ----------
    name : str
        A built-in dataset (``"fashion-mnist"``, ``"digits"``).
    split : str
        ``"train"``, ``"test"`` (``"all"`` for digits).
    encoder : str
        Encoder registry name.
    progress : bool
        Show a progress bar while embedding.
    rows : array of int, optional
        Row numbers of the split (any order; the result follows it). Default: every row.
    compute : bool
        Embed what is not cached (True), or raise :class:`DataNotFoundError` instead.

    Returns
    -------
    FeatureSet
        ``X`` float32 ``(N, dim)``, ``y`` labels, ``ids``, ``class_names``; with ``rows``,
        those rows in that order, ``ids`` the row numbers.
    """
    from deepclust.data.builtin import load_dataset
    from deepclust.data.featureset import FeatureSet

    path = builtin_store_path(name, split, encoder)
    store = _open_complete(path, encoder)
    if rows is None:
        if store is None:
            if not compute:
                raise DataNotFoundError(f"no cached {encoder} embeddings of {name}:{split} "
                                        f"in {path}; run `deepclust embed` or the demo again")
            store = embed(load_dataset(name, split), encoder, path, progress=progress)
        return store.as_feature_set()
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if store is not None:
        fs = store.as_feature_set()
        if len(rows) and (rows.min() < 0 or rows.max() >= len(fs.X)):
            raise InputError(f"rows must lie in [0, {len(fs.X)}) for {name}:{split}")
        return FeatureSet(fs.X[rows], None if fs.y is None else fs.y[rows],
                          rows.astype(str), fs.class_names, f"{fs.source} rows")
    sub_path = builtin_subset_store_path(name, split, encoder, rows)
    sub = _open_complete(sub_path, encoder)
    if sub is None:
        if not compute:
            raise DataNotFoundError(f"no cached {encoder} embeddings of these {len(rows)} rows "
                                    f"of {name}:{split} in {sub_path}; run the demo again")
        ds = load_dataset(name, split)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(ds)):
            raise InputError(f"rows must lie in [0, {len(ds)}) for {name}:{split}")
        src = ArraySource(ds.images[rows], ds.labels[rows], ids=rows.astype(str),
                          class_names=ds.class_names, name=f"{ds.name}:{ds.split}")
        sub = embed(src, encoder, sub_path, progress=progress)
    return sub.as_feature_set()


def source_store_path(source, encoder: str = DEFAULT_ENCODER) -> Path:
    """Where :func:`cached_embeddings` keeps the store of ``source`` under ``encoder``:
    ``cache_dir()/stores/<key>-<encoder>``, the key a digest of the source's fingerprint and
    description (a folder's description holds its absolute root, so two copies of one folder
    keep their own paths)."""
    import hashlib
    import json

    from deepclust.data.builtin import cache_dir

    src = open_source(source)
    text = json.dumps([src.fingerprint(), src.describe()], sort_keys=True, default=str)
    key = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return cache_dir() / "stores" / f"{src.kind}-{key}-{_slug(str(encoder))}"


def cached_embeddings(source, encoder: str = DEFAULT_ENCODER, store=None, *,
                      progress: bool = True, **options) -> tuple[EmbeddingStore, bool]:
    """The embedding store of an image source, embedding only what is not there yet.

    Parameters
    ----------
    source : ImageSource or path
        Anything :func:`~deepclust.data.sources.open_source` opens (a folder, a manifest,
        tar shards, a saved HF dataset).
    encoder : str
        Encoder registry name.
    store : path, optional
        The store folder; default :func:`source_store_path` (in the deepclust cache), so
        runs on the same images with the same encoder share one store.
    progress : bool
        Progress bar while embedding.
    **options
        Passed to :func:`embed` (``batch_size``, ``device``, ``precision``, ...).

    Returns
    -------
    (EmbeddingStore, bool)
        The finished store, and whether this call embedded anything (False: it was reused).
    """
    src = open_source(source)
    path = Path(store).expanduser() if store is not None else source_store_path(src, encoder)
    try:
        found = open_store(path)
        name = encoder if isinstance(encoder, str) else encoder.name
        if (found.meta.get("source_fingerprint") == src.fingerprint()
                and found.meta.get("n_items") == len(src) and found.meta.get("encoder") == name):
            return found, False
    except DeepclustError:
        pass  # absent or unfinished: embed (resuming what is there)
    return embed(src, encoder, path, progress=progress, **options), True
