"""EmbeddingStore: a directory of embeddings that the rest of deepclust reads.

Layout
------
::

    STORE/
      meta.json            what made the store (see below); "complete": true once finished
      shards/shard-00000.npy      rows of items [0, S) of the source that decoded, in order
      shards/shard-00000.parquet  that shard's item table (also its commit marker)
      shards/shard-00001.npy ...
      index.parquet        one row per embedding: id, label, path, shard, row, item
                           (+ label_<name> for extra label columns)
      failed.parquet       one row per item that could not be embedded: item, id, label,
                           path, reason
      run.json             parameters, versions and timings of the last run
      .lock                flock-ed by the run writing the store (one writer at a time)

Shard ``k`` covers source items ``[k * S, (k + 1) * S)`` where ``S`` is ``shard_size``;
its ``.npy`` holds the rows of those items that decoded (``float16`` or ``float32``,
shape ``(n_ok, dim)``) and its ``.parquet`` lists all of its items, with ``row`` (-1 when it
failed) and ``error``. Both files are written to a temporary name and moved into place with
:func:`os.replace`, the ``.parquet`` last: a shard exists exactly when its ``.parquet`` does,
so an interrupted extraction (even ``kill -9``) resumes at the missing shards and never
duplicates or loses a row.

``meta.json`` keys: ``format``, ``format_version``, ``encoder`` (name),
``encoder_config`` (the encoder's full description, with its ``transform``), ``dim``,
``dtype``, ``precision``, ``source`` (description), ``source_fingerprint``, ``n_items``,
``shard_size``, ``n_shards``, ``class_names``; after completion also ``count`` (rows),
``n_failed``, ``complete``, ``completed_at``.

Reading
-------
:func:`open_store` returns an :class:`EmbeddingStore`. ``store.X`` is an ``(N, dim)`` array:
a read-only memory map when the store has one shard; with several shards numpy cannot map
them as one array, so ``X`` concatenates them into memory on first access (use
:meth:`EmbeddingStore.shard` / :meth:`EmbeddingStore.iter_shards` to stream large stores
shard by shard without loading them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.data.featureset import FeatureSet
from deepclust.errors import DataNotFoundError, InputError
from deepclust.runinfo import atomic_write

FORMAT = "deepclust-store"
FORMAT_VERSION = 1
META = "meta.json"
INDEX = "index.parquet"
FAILED = "failed.parquet"
RUN = "run.json"
LOCK = ".lock"
SHARDS = "shards"
#: key of a shard table's schema metadata holding its .npy's size and checksums.
SHARD_RECORD_KEY = "deepclust.npy"
STORE_DTYPES = ("float16", "float32")

#: meta.json keys that must agree for a run to resume (or be a no-op on) an existing store.
IDENTITY_KEYS = ("format", "encoder", "encoder_config", "dim", "dtype", "precision",
                 "source_fingerprint", "n_items", "shard_size")


def shard_stem(k: int) -> str:
    return f"shard-{k:05d}"


def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder laid out as an embedding store (finished or not)."""
    return (Path(path).expanduser() / META).is_file()


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta.json`` of the store folder ``path``, finished or not (OSError or ValueError
    when it cannot be read)."""
    return _read_json(Path(path).expanduser() / META)


def read_index(path: str | os.PathLike):
    """The ``index.parquet`` table (pyarrow) of the store folder ``path``."""
    import pyarrow.parquet as pq

    f = Path(path).expanduser() / INDEX
    if not f.is_file():
        raise InputError(f"{f} is missing; re-run the same `deepclust embed` command to rebuild it")
    try:
        return pq.read_table(f)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{f} is damaged ({str(exc).splitlines()[0][:80]}); re-run the same "
                         "`deepclust embed` command to rebuild it") from None


def _write_json(path: Path, obj: dict) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not readable JSON ({exc}); the store is damaged") from None


def _normalise(obj):
    """JSON round trip, so tuples and lists compare equal."""
    return json.loads(json.dumps(obj, default=str))


def _pid_in(text: str) -> int | None:
    try:
        pid = int(text.strip())
    except ValueError:
        return None
    return pid if pid > 0 else None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _same_file(f, path: Path) -> bool:
    try:
        a, b = os.fstat(f.fileno()), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class StoreWriter:
    """Creates, resumes and finalises a store directory (used by :func:`deepclust.embed.embed`).

    Parameters
    ----------
    path : path
        The store directory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self.shard_dir = self.path / SHARDS
        self._lock_file = None

    def _lock(self) -> None:
        """Hold an exclusive lock on the store for this run (released by the OS on any exit).

        The lock file records the owner's pid. Children forked by the owner (DataLoader
        workers) share its lock, and one orphaned by a kill -9 keeps it for seconds; a lock
        whose recorded owner is dead is therefore taken over (the old file is unlinked and a
        new one locked), so that a re-run right after a crash is not refused.
        """
        try:
            import fcntl
        except ImportError:  # not POSIX: no protection against two concurrent runs
            return
        path = self.path / LOCK
        for _ in range(10):
            f = open(path, "a+")
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                owner = _pid_in(f.read())
                if owner is None or _alive(owner):
                    f.close()
                    raise InputError(
                        f"{self.path} is being written by another deepclust process right now"
                        + (f" (pid {owner})" if owner else "") + "; wait for it to finish (or "
                        "stop it) and run this command again") from None
                if _same_file(f, path):  # the owner died: its children hold this file
                    path.unlink(missing_ok=True)
                f.close()
                continue
            if not _same_file(f, path):  # replaced by a takeover meanwhile: lock the new one
                f.close()
                continue
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            self._lock_file = f
            return
        raise InputError(f"{path} keeps changing; another deepclust process is taking over "
                         "this store; run this command again")

    def release(self) -> None:
        """Release the lock taken by :meth:`prepare`."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def existing_meta(self) -> dict | None:
        """The ``meta.json`` of a store already at ``path``, or None."""
        meta_path = self.path / META
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None

    def _committed(self, k: int) -> bool:
        return (self.shard_dir / f"{shard_stem(k)}.parquet").is_file()

    def prepare(self, meta: dict, *, overwrite: bool = False) -> tuple[list[int], bool]:
        """Create or check the store and lock it; return (shards still to write, already complete).

        Raises :class:`InputError` when ``path`` holds something else, a store made from
        other inputs (unless ``overwrite``), or is locked by another running extraction.
        Call :meth:`release` when done.
        """
        meta = _normalise(meta)
        meta_path = self.path / META
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path} exists and is not a directory; choose another --out")
        if not meta_path.is_file() and self.path.is_dir() and any(
            p.name != LOCK for p in self.path.iterdir()
        ):
            raise InputError(
                f"{self.path} exists, is not empty and is not an embedding store; choose another output folder"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            return self._prepare_locked(meta, overwrite)
        except BaseException:
            self.release()
            raise

    def _prepare_locked(self, meta: dict, overwrite: bool) -> tuple[list[int], bool]:
        meta_path = self.path / META
        if meta_path.is_file():
            old = _read_json(meta_path)
            if overwrite:
                self.remove()
            elif not isinstance(old, dict):
                raise InputError(f"{meta_path} is damaged (not a JSON object); pass --overwrite "
                                 "(overwrite=True) to rebuild the store")
            else:
                diffs = [k for k in IDENTITY_KEYS if old.get(k) != meta.get(k)]
                if diffs:
                    shown = "; ".join(
                        f"{k}: store has {_short(old.get(k))}, this run {_short(meta.get(k))}" for k in diffs
                    )
                    raise InputError(
                        f"{self.path} holds embeddings made from other inputs or settings ({shown}). "
                        "Choose another output folder, or pass --overwrite (overwrite=True) to replace it."
                    )
                if old.get("complete"):
                    check_meta(self.path, old)
                    bad, index_bad = damaged_parts(self.path, old)
                    if not bad and not index_bad:
                        return [], True
                    for k in bad:  # rebuilt from the source: the same rows as before
                        for ext in (".parquet", ".npy"):
                            (self.shard_dir / f"{shard_stem(k)}{ext}").unlink(missing_ok=True)
                meta = {**old, **meta, "created_at": old.get("created_at", meta.get("created_at"))}
        self.shard_dir.mkdir(exist_ok=True)
        for stray in self.shard_dir.glob(".*.tmp"):  # left by an interrupted write
            stray.unlink(missing_ok=True)
        meta["complete"] = False
        _write_json(meta_path, meta)
        missing = [k for k in range(int(meta["n_shards"])) if not self._committed(k)]
        return missing, False

    def remove(self) -> None:
        """Delete the files of a store (only the ones a store consists of)."""
        for name in (META, INDEX, FAILED, RUN):
            (self.path / name).unlink(missing_ok=True)
        if self.shard_dir.is_dir():
            shutil.rmtree(self.shard_dir)

    def write_shard(self, k: int, rows: np.ndarray, table: dict[str, list]) -> None:
        """Write shard ``k`` atomically: its rows, then its item table (the commit marker).

        Parameters
        ----------
        rows : ndarray of shape (n_ok, dim)
            Already in the store's dtype.
        table : dict of columns
            ``item``, ``id``, ``label``, ``path``, ``row``, ``error`` (one entry per item).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        stem = shard_stem(k)
        npy = self.shard_dir / f"{stem}.npy"
        atomic_write(npy, lambda f: np.save(f, rows, allow_pickle=False))
        # The .npy's size and checksums travel in its table (the commit marker), so a shard
        # damaged between its commit and the end of the run is caught by finalize.
        record = json.dumps(file_record(npy, rows=len(rows)))
        schema = pa.schema([
            ("item", pa.int64()), ("id", pa.string()), ("label", pa.int64()),
            ("path", pa.string()), ("row", pa.int64()), ("error", pa.string()),
        ], metadata={SHARD_RECORD_KEY: record})
        t = pa.table({name: table[name] for name in schema.names}, schema=schema)
        atomic_write(self.shard_dir / f"{stem}.parquet", lambda f: pq.write_table(t, f))

    def finalize(self, extra_labels: dict[str, tuple[np.ndarray, list[str] | None]] | None = None,
                 run: dict | None = None) -> dict:
        """Build ``index.parquet`` and ``failed.parquet`` from the shards and mark the store complete."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        meta = _read_json(self.path / META)
        n_shards = int(meta["n_shards"])
        missing = [k for k in range(n_shards) if not self._committed(k)]
        if missing:
            raise InputError(f"{self.path}: shards {missing[:5]} are missing; cannot finalise")
        parts, records, count = [], [], 0
        for k in range(n_shards):
            t = pq.read_table(self.shard_dir / f"{shard_stem(k)}.parquet")
            n_ok = int((t["row"].to_numpy() >= 0).sum())
            npy = self.shard_dir / f"{shard_stem(k)}.npy"
            raw = (t.schema.metadata or {}).get(SHARD_RECORD_KEY.encode())
            rec = json.loads(raw) if raw else file_record(npy, rows=n_ok)  # older writers
            rec["rows"] = n_ok
            try:
                check_shard(self.path, {**meta, "shards": [None] * k + [rec]}, k, checksum=True)
            except InputError:  # uncommit it, so that the re-run the message asks for rewrites it
                for ext in (".parquet", ".npy"):
                    (self.shard_dir / f"{shard_stem(k)}{ext}").unlink(missing_ok=True)
                raise
            records.append(rec)
            count += n_ok
            parts.append(t.append_column("shard", pa.array(np.full(t.num_rows, k, dtype=np.int64))))
        table = pa.concat_tables(parts)
        ok_mask = pc.greater_equal(table["row"], 0)
        index = table.filter(ok_mask).select(["id", "label", "path", "shard", "row", "item"])
        extra_names = {}
        for name, (codes, names) in (extra_labels or {}).items():
            items = index["item"].to_numpy()
            index = index.append_column(f"label_{name}", pa.array(np.asarray(codes)[items], type=pa.int64()))
            extra_names[name] = names
        failed = table.filter(pc.invert(ok_mask)).select(["item", "id", "label", "path", "error"])
        failed = failed.rename_columns(["item", "id", "label", "path", "reason"])
        atomic_write(self.path / INDEX, lambda f: pq.write_table(index, f))
        atomic_write(self.path / FAILED, lambda f: pq.write_table(failed, f))
        meta.update({
            "count": count,
            "shards": records,
            "index_file": file_record(self.path / INDEX),
            "n_failed": failed.num_rows,
            "extra_label_names": extra_names,
            "complete": True,
            "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        if run is not None:
            meta["last_run"] = run
            _write_json(self.path / RUN, run)
        _write_json(self.path / META, meta)
        return meta

    def record_run(self, run: dict) -> None:
        """Record a run that found the store already complete (a no-op run)."""
        _write_json(self.path / RUN, run)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------
# Verification: the same structural checks for every reader, checksums on demand.

#: bytes of each shard file hashed at open (``head``): two shards swapped or rewritten with
#: the same number of rows are caught without reading them whole.
HEAD_BYTES = 1 << 16
_REPAIR = "re-run the same `deepclust embed` command to rebuild it"


def _hash_file(path: Path, limit: int | None = None, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 22 if left is None else min(1 << 22, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def file_record(path: Path, rows: int | None = None) -> dict:
    """Size, SHA-256 and head hash of a committed file, as recorded in ``meta.json``."""
    rec = {"bytes": path.stat().st_size, "sha256": _hash_file(path),
           "head": _hash_file(path, HEAD_BYTES, "blake2b")}
    if rows is not None:
        rec["rows"] = int(rows)
    return rec


def npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of a ``.npy`` file, from its header alone
    (ValueError or OSError when it is not one)."""
    from numpy.lib import format as npy

    with open(path, "rb") as f:
        major, _ = npy.read_magic(f)
        read = npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
        shape, fortran, dtype = read(f)
        return shape, fortran, dtype, f.tell()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: meta.json keys every finished store has: key -> (check, what is allowed).
META_SCHEMA: dict[str, tuple[Any, str]] = {
    "format": (lambda v: v == FORMAT, f"{FORMAT!r}"),
    "dim": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "dtype": (lambda v: v in STORE_DTYPES, " or ".join(STORE_DTYPES)),
    "n_shards": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "count": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "class_names": (lambda v: v is None or (isinstance(v, list) and all(isinstance(c, str) for c in v)),
                    "a list of names or null"),
}


def check_meta(path: Path, meta: Any) -> dict:
    """``meta`` if it has the schema of a finished store, else :class:`InputError` naming the
    first bad key."""
    where = f"{path}/{META}"
    if not isinstance(meta, dict):
        raise InputError(f"{where} is damaged: it holds a {type(meta).__name__}, not an object; "
                         "re-run `deepclust embed` with --overwrite to rebuild the store")
    if meta.get("format") != FORMAT:
        raise InputError(f"{where} is not a deepclust store (format {meta.get('format')!r})")
    version = meta.get("format_version", 0)
    if not _is_int(version):
        raise InputError(f"{where} is damaged: format_version is {version!r}, not an integer")
    if version > FORMAT_VERSION:
        raise InputError(f"{path} was written by a newer deepclust; upgrade deepclust to read it")
    if not meta.get("complete"):
        done = len(list((path / SHARDS).glob("shard-*.parquet")))
        raise InputError(
            f"{path} is incomplete ({done} of {meta.get('n_shards')} shards written): "
            "the extraction was interrupted. Run the same `deepclust embed` command again to finish it."
        )
    for key, (ok, allowed) in META_SCHEMA.items():
        if key not in meta and key != "class_names":
            raise InputError(f"{where} is damaged: it has no {key!r}; re-run `deepclust embed` "
                             "with --overwrite to rebuild the store")
        if not ok(meta.get(key)):
            raise InputError(f"{where} is damaged: {key} is {_short(meta.get(key))}, but must be "
                             f"{allowed}; re-run `deepclust embed` with --overwrite to rebuild the store")
    shards = meta.get("shards")
    if shards is not None and (not isinstance(shards, list) or len(shards) != meta["n_shards"] or not all(
            isinstance(s, dict) and _is_int(s.get("rows")) and _is_int(s.get("bytes")) for s in shards)):
        raise InputError(f"{where} is damaged: its shard records do not match n_shards="
                         f"{meta['n_shards']}; re-run `deepclust embed` with --overwrite to rebuild the store")
    return meta


def check_shard(path: Path, meta: dict, k: int, *, checksum: bool = False) -> int:
    """The number of rows of shard ``k`` once its file agrees with ``meta`` (dtype, dim,
    size, recorded rows and hashes), else :class:`InputError` naming the damage."""
    f = path / SHARDS / f"{shard_stem(k)}.npy"
    rec = (meta.get("shards") or [None] * (k + 1))[k]

    def damaged(what: str) -> InputError:
        return InputError(f"{path}: shard {k} is damaged: {what}; {_REPAIR}")

    if not f.is_file():
        raise damaged(f"{f.name} is missing")
    try:
        shape, fortran, dtype, offset = npy_header(f)
    except (ValueError, OSError, SyntaxError, EOFError) as exc:
        raise damaged(f"{f.name} is not a readable .npy file ({str(exc).splitlines()[0][:80]})") from None
    if dtype != np.dtype(meta["dtype"]):
        raise damaged(f"it holds {dtype} values but the store says {meta['dtype']}")
    if len(shape) != 2 or fortran:
        raise damaged(f"it holds a {'Fortran-ordered ' if fortran else ''}array of shape {shape}, "
                      f"not (rows, {meta['dim']})")
    rows, dim = shape
    if dim != meta["dim"]:
        raise damaged(f"its rows have {dim} values but the store says dim={meta['dim']}")
    if rec is not None and rows != rec["rows"]:
        raise damaged(f"it holds {rows} rows but the store says {rec['rows']}")
    size = f.stat().st_size
    expected = offset + rows * dim * dtype.itemsize
    if size != expected:
        raise damaged(f"{f.name} has {size} bytes, but {rows} rows take {expected} "
                      f"({'truncated' if size < expected else 'extra bytes'})")
    if rec is not None and "head" in rec and _hash_file(f, HEAD_BYTES, "blake2b") != rec["head"]:
        raise damaged(f"{f.name} is not the file written for shard {k} (its content changed, or "
                      "shards were swapped)")
    if checksum and rec is not None and "sha256" in rec and _hash_file(f) != rec["sha256"]:
        raise damaged(f"{f.name}'s SHA-256 differs from the one recorded when it was written")
    return int(rows)


def check_index(path: Path, meta: dict, *, checksum: bool = False) -> None:
    """:class:`InputError` unless ``index.parquet`` is there, readable, of the recorded size
    (and checksum) and has one row per embedding."""
    import pyarrow.parquet as pq

    f = path / INDEX
    fix = "re-run the same `deepclust embed` command to rebuild it"
    if not f.is_file():
        raise InputError(f"{path}: {INDEX} is missing; {fix}")
    rec = meta.get("index_file")
    if rec is not None and f.stat().st_size != rec.get("bytes"):
        raise InputError(f"{path}: {INDEX} is damaged: it has {f.stat().st_size} bytes, but "
                         f"{rec.get('bytes')} were written; {fix}")
    if checksum and rec is not None and _hash_file(f) != rec.get("sha256"):
        raise InputError(f"{path}: {INDEX} is damaged: its SHA-256 differs from the one recorded; {fix}")
    try:
        n = pq.read_metadata(f).num_rows
    except Exception as exc:  # pyarrow raises several types for a garbage file
        raise InputError(f"{path}: {INDEX} is damaged ({str(exc).splitlines()[0][:80]}); {fix}") from None
    if n != meta["count"]:
        raise InputError(f"{path}: {INDEX} is damaged: it lists {n} rows but the store holds "
                         f"{meta['count']}; {fix}")


def verify_store(path: str | os.PathLike, *, checksums: bool = True) -> tuple[dict | None, list[str]]:
    """Check a store fully: ``(meta, problems)`` with one line per problem found (none: whole).

    Structural checks (what every reader does at open) on every shard and the index, plus,
    with ``checksums``, each file's SHA-256 against the one recorded when it was written.
    """
    path = Path(path).expanduser()
    if not (path / META).is_file():
        return None, [f"{path} is not an embedding store (no {META})"]
    try:
        meta = check_meta(path, _read_json(path / META))
    except InputError as exc:
        return None, [str(exc)]
    problems, total = [], 0
    for k in range(meta["n_shards"]):
        try:
            total += check_shard(path, meta, k, checksum=checksums)
        except InputError as exc:
            problems.append(str(exc))
    if not problems and total != meta["count"]:
        problems.append(f"{path}: the shards hold {total} rows but {META} says count={meta['count']}; "
                        f"{_REPAIR}")
    try:
        check_index(path, meta, checksum=checksums)
    except InputError as exc:
        problems.append(str(exc))
    return meta, problems


def damaged_parts(path: Path, meta: dict) -> tuple[list[int], bool]:
    """Shards whose files fail the structural checks, and whether the index does."""
    bad = []
    for k in range(meta["n_shards"]):
        try:
            check_shard(path, meta, k)
        except InputError:
            bad.append(k)
    try:
        check_index(path, meta)
        index_bad = False
    except InputError:
        index_bad = True
    return bad, index_bad


class EmbeddingStore:
    """A finished embedding store, opened for reading (see the module docstring).

    Use :func:`open_store` to create one.

    Attributes
    ----------
    path : Path
    meta : dict
        The contents of ``meta.json``.
    dim : int
    dtype : numpy dtype
        Storage dtype of the rows (float16 or float32).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise DataNotFoundError(f"embedding store {self.path} does not exist")
        if not (self.path / META).is_file():
            raise InputError(f"{self.path} is not an embedding store (no {META})")
        # The structural checks of verify_store, cheap enough for every open: a damaged store
        # is named, never read.
        self.meta = check_meta(self.path, _read_json(self.path / META))
        self.dim = int(self.meta["dim"])
        self.dtype = np.dtype(self.meta["dtype"])
        self.shard_rows = [check_shard(self.path, self.meta, k) for k in range(self.n_shards)]
        if sum(self.shard_rows) != self.meta["count"]:
            raise InputError(f"{self.path}: the shards hold {sum(self.shard_rows)} rows but {META} says "
                             f"count={self.meta['count']}; the store is damaged: {_REPAIR}")
        check_index(self.path, self.meta)
        self._index = None
        self._X = None

    def __len__(self) -> int:
        return int(self.meta["count"])

    def __repr__(self) -> str:
        return (f"EmbeddingStore({str(self.path)!r}, count={len(self)}, dim={self.dim}, "
                f"encoder={self.meta.get('encoder')!r})")

    @property
    def n_shards(self) -> int:
        return int(self.meta["n_shards"])

    @property
    def index(self):
        """The ``index.parquet`` table (pyarrow)."""
        if self._index is None:
            self._index = read_index(self.path)
        return self._index

    @property
    def labels(self) -> np.ndarray:
        """int64 labels, one per row (-1 where unknown)."""
        if self._index is None:  # the label column alone: ids and paths of 20 M rows are GBs
            import pyarrow.parquet as pq

            return pq.read_table(self.path / INDEX, columns=["label"])["label"].to_numpy() \
                .astype(np.int64)
        return self.index["label"].to_numpy().astype(np.int64)

    @property
    def ids(self) -> np.ndarray:
        """Item ids (strings), one per row."""
        return np.asarray(self.index["id"].to_pylist(), dtype=object)

    @property
    def paths(self) -> np.ndarray:
        return np.asarray(self.index["path"].to_pylist(), dtype=object)

    @property
    def class_names(self) -> list[str] | None:
        return self.meta.get("class_names")

    def extra_labels(self, name: str) -> np.ndarray:
        """The labels of extra column ``name`` (e.g. a coarse level), one per row."""
        col = f"label_{name}"
        if col not in self.index.column_names:
            have = [c[6:] for c in self.index.column_names if c.startswith("label_")]
            raise InputError(f"{self.path} has no extra labels {name!r} (has: {', '.join(have) or 'none'})")
        return self.index[col].to_numpy().astype(np.int64)

    @property
    def failed(self) -> list[dict]:
        """Items that could not be embedded: item, id, label, path, reason."""
        import pyarrow.parquet as pq

        return pq.read_table(self.path / FAILED).to_pylist()

    def shard_path(self, k: int) -> Path:
        """The ``.npy`` file of shard ``k``."""
        return self.path / SHARDS / f"{shard_stem(k)}.npy"

    def shard(self, k: int) -> np.ndarray:
        """Rows of shard ``k`` as a read-only memory map."""
        if not 0 <= k < self.n_shards:
            raise IndexError(f"shard {k} out of range (store has {self.n_shards})")
        rows = np.load(self.shard_path(k), mmap_mode="r", allow_pickle=False)
        if rows.shape != (self.shard_rows[k], self.dim) or rows.dtype != self.dtype:
            raise InputError(f"{self.path}: shard {k} is damaged: it changed since the store was "
                             f"opened ({rows.shape} {rows.dtype}); {_REPAIR}")
        return rows

    def fingerprint(self) -> str:
        """A short key of what the store holds (encoder, source, size, completion time), for
        caches of tables derived from its rows."""
        keys = ("encoder", "source_fingerprint", "count", "dim", "dtype", "completed_at")
        text = json.dumps({k: self.meta.get(k) for k in keys}, sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def iter_shards(self) -> Iterator[np.ndarray]:
        """Each shard's rows in order (memory maps): stream a store larger than memory."""
        for k in range(self.n_shards):
            yield self.shard(k)

    @property
    def X(self) -> np.ndarray:
        """(N, dim) rows in the store's dtype: a memory map for one shard, else concatenated."""
        if self._X is None:
            if self.n_shards == 1:
                self._X = self.shard(0)
            elif self.n_shards == 0:
                self._X = np.zeros((0, self.dim), dtype=self.dtype)
            else:  # shards checked at open; concatenate, never fill an uninitialised array
                out = np.concatenate(list(self.iter_shards()), axis=0)
                out.flags.writeable = False
                self._X = out
            if self._X.shape != (len(self), self.dim):
                raise InputError(f"{self.path}: rows {self._X.shape} disagree with meta.json; the store is damaged")
        return self._X

    def as_feature_set(self, dtype=np.float32):
        """The rows, labels and ids as a :class:`deepclust.data.features.FeatureSet`.

        Parameters
        ----------
        dtype : numpy dtype
            Dtype of ``X`` (float32 by default: fp16 shards are widened).
        """
        X = np.asarray(self.X, dtype=dtype)
        source = f"{self.path} ({self.meta.get('encoder')})"
        return FeatureSet(X, self.labels, self.ids, self.class_names, source)


def write_array_store(path: str | os.PathLike, blocks, *, n: int, dim: int,
                      dtype: str = "float16", shard_size: int = 1 << 20,
                      labels: np.ndarray | None = None, name: str = "array",
                      overwrite: bool = False) -> EmbeddingStore:
    """Write rows that are already embeddings into a store (to cluster them out of core).

    Parameters
    ----------
    path : path
        The store directory to create.
    blocks : ndarray of shape (n, dim), or an iterable of (rows, dim) arrays
        The rows in order; an iterable is consumed block by block, so the data never has
        to fit in memory.
    n, dim : int
        Rows in all and features per row.
    dtype : {"float16", "float32"}
    shard_size : int
        Rows per shard file.
    labels : ndarray of shape (n,), optional
        Integer labels to store with the rows (-1 when absent).
    name : str
        Recorded as the store's encoder and source.
    """
    if dtype not in STORE_DTYPES:
        raise InputError(f"dtype must be one of {STORE_DTYPES}, got {dtype!r}")
    if isinstance(blocks, np.ndarray):
        if blocks.ndim != 2 or blocks.shape != (n, dim):
            raise InputError(f"the rows have shape {blocks.shape}, expected ({n}, {dim})")
        array = blocks
        blocks = (array[a: a + shard_size] for a in range(0, n, shard_size))
    n_shards = -(-n // shard_size)
    writer = StoreWriter(path)
    missing, complete = writer.prepare({
        "format": FORMAT, "format_version": FORMAT_VERSION, "encoder": name,
        "encoder_config": {"name": name}, "dim": int(dim), "dtype": dtype, "precision": dtype,
        "source": name, "source_fingerprint": f"{name}:{n}x{dim}", "n_items": int(n),
        "shard_size": int(shard_size), "n_shards": n_shards, "class_names": None,
    }, overwrite=overwrite)
    try:
        if not complete:
            buf: list[np.ndarray] = []
            held = at = k = 0
            for block in blocks:
                block = np.asarray(block)
                if block.ndim != 2 or block.shape[1] != dim:
                    raise InputError(f"a block has shape {block.shape}; expected (rows, {dim})")
                buf.append(block)
                held += len(block)
                while held >= shard_size or (held and at + held >= n):
                    rows = np.concatenate(buf) if len(buf) > 1 else buf[0]
                    take = min(shard_size, held)
                    shard, rest = rows[:take], rows[take:]
                    buf, held = ([rest], len(rest)) if len(rest) else ([], 0)
                    if k in missing:
                        items = np.arange(at, at + take)
                        lab = (labels[items] if labels is not None else np.full(take, -1))
                        writer.write_shard(k, np.ascontiguousarray(shard, dtype=dtype), {
                            "item": items.tolist(), "id": [str(i) for i in items],
                            "label": np.asarray(lab, dtype=np.int64).tolist(),
                            "path": [""] * take, "row": list(range(take)),
                            "error": [""] * take})
                    at += take
                    k += 1
            if at != n:
                raise InputError(f"the blocks held {at} rows, but n={n} was given")
            writer.finalize()
    finally:
        writer.release()
    return open_store(path)


def open_store(path: str | os.PathLike) -> EmbeddingStore:
    """Open a finished embedding store for reading.

    Parameters
    ----------
    path : path
        The store directory (written by :func:`deepclust.embed.embed`).

    Returns
    -------
    EmbeddingStore

    Examples
    --------
    >>> store = open_store("fmnist-lite0")  # doctest: +SKIP
    >>> store.X.shape, store.labels[:3]  # doctest: +SKIP
    ((10000, 1280), array([9, 2, 1]))
    """
    return EmbeddingStore(path)
