"""The one way rows are read: an array in memory or a store larger than memory.

Every consumer of rows -- k-means, mini-batch and hierarchical k-means, the deep clustering
heads, neighbour mining, the pipeline -- takes its input through :func:`as_row_source` and
reads it through a :class:`RowSource`: ``n`` and ``d``, every row once per pass in blocks
(:meth:`RowSource.blocks`), chosen rows (:meth:`RowSource.take`), a process's share
(:meth:`RowSource.part`), and, for consumers that need the rows in memory,
:meth:`RowSource.to_array`. Two kinds:

- :class:`ArrayRows`: an ``(n, d)`` array (or a memory map) in memory,
- :class:`StoreRows`: an :class:`~deepclust.store.EmbeddingStore`, read shard by shard from
  its memory maps, so a store of any size is clustered with memory for one block.

Both hand out float32 blocks (float16 shards are widened one block at a time) and cut the
rows into the same blocks -- ``[i * block_rows, (i + 1) * block_rows)`` of the global row
order, whatever the shard boundaries -- so the same data clusters to the same result from
either. :meth:`RowSource.part` restricts a source to a contiguous range of rows: a process
of a ``torchrun`` group reads only its own range.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterator

import numpy as np

from deepclust.data.featureset import FeatureSet
from deepclust.errors import InputError
from deepclust.store import EmbeddingStore, is_store, npy_header, open_store
from deepclust.validation import check_features

__all__ = ["BLOCK_ROWS", "ArrayRows", "RowSource", "StoreRows", "as_row_source",
           "fewer_distinct_rows", "unit_rows"]

#: Rows per block of a pass: large enough for fast matrix products, small enough that a
#: block's scores (block x k float32) stay a few hundred MB at k = 1 000.
BLOCK_ROWS = 1 << 16


class RowSource:
    """Rows ``[start, stop)`` of some data, read as float32 blocks.

    Subclasses implement :meth:`_read` (rows ``[a, b)`` of the whole data, any float dtype)
    and set ``n_total`` and ``d``.
    """

    n_total: int
    d: int
    start: int = 0
    stop: int | None = None
    description: str = "array"
    #: False until one full pass has found every value finite (then blocks are not checked)
    checked: bool = False
    #: Hand out rows scaled to unit length (cosine k-means)
    unit: bool = False

    # -- the range

    @property
    def n(self) -> int:
        """Rows in this source (its range)."""
        return (self.n_total if self.stop is None else self.stop) - self.start

    def part(self, rank: int, world_size: int) -> RowSource:
        """The contiguous share of rank ``rank`` of ``world_size`` (whole blocks of the
        global order, so every process cuts the same blocks)."""
        n_blocks = -(-self.n_total // BLOCK_ROWS)
        lo_block = n_blocks * rank // world_size
        hi_block = n_blocks * (rank + 1) // world_size
        out = copy.copy(self)
        out.start = min(self.n_total, lo_block * BLOCK_ROWS)
        out.stop = min(self.n_total, hi_block * BLOCK_ROWS)
        return out

    # -- reading

    def _read(self, a: int, b: int) -> np.ndarray:
        raise NotImplementedError

    def blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(offset, block)`` for consecutive float32 blocks of this range; ``offset`` is
        the block's first row relative to ``start``. Block edges fall on multiples of
        ``block_rows`` of the global row order (default :data:`BLOCK_ROWS`)."""
        block_rows = BLOCK_ROWS if block_rows is None else block_rows
        stop = self.n_total if self.stop is None else self.stop
        a = self.start
        check = not self.checked
        while a < stop:
            b = min(stop, (a // block_rows + 1) * block_rows)
            block = _float32(self._read(a, b), check=check, first_row=a)
            yield a - self.start, (unit_rows(block, row_ids=np.arange(a, b)) if self.unit
                                   else block)
            a = b
        self.checked = True

    def take(self, rows: np.ndarray) -> np.ndarray:
        """float32 copies of the (sorted, global) ``rows``."""
        raise NotImplementedError

    def to_array(self, dtype=np.float32) -> np.ndarray:
        """All rows of this range in one ``(n, d)`` array of ``dtype`` (``None``: the data's
        own dtype, e.g. a float16 store stays float16), checked finite, read block by block.
        For consumers that need every row in memory (the heads, hierarchical k-means)."""
        stop = self.n_total if self.stop is None else self.stop
        out = np.empty((self.n, self.d), dtype=self.dtype if dtype is None else dtype)
        for a in range(self.start, stop, BLOCK_ROWS):
            b = min(stop, a + BLOCK_ROWS)
            block = self._read(a, b)
            if not self.checked:
                _float32(block, check=True, first_row=a)
            out[a - self.start: b - self.start] = (
                unit_rows(_float32(block, check=False), row_ids=np.arange(a, b)) if self.unit
                else block)
        self.checked = True
        return out

    def fingerprint(self) -> str:
        """A short key that changes when the data does (for caches of derived tables)."""
        raise NotImplementedError

    @property
    def home(self):
        """The folder the data lives in (a store's), where derived tables may be cached;
        None for data in memory."""
        return None


def _float32(block: np.ndarray, *, check: bool, first_row: int = 0,
             row_ids: np.ndarray | None = None) -> np.ndarray:
    out = np.ascontiguousarray(block, dtype=np.float32)
    if check and not np.isfinite(out).all():
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))[:5]
        where = f"rows {(row_ids[bad] if row_ids is not None else bad + first_row).tolist()}"
        raise InputError(f"the data has NaN or infinite values ({where} ...); remove or "
                         "repair those rows before clustering")
    return out


def unit_rows(X: np.ndarray, *, name: str = "X", row_ids: np.ndarray | None = None
              ) -> np.ndarray:
    """float32 copy of ``X`` with unit rows; all-zero rows are an error naming them (by
    ``row_ids`` when given, else by position)."""
    norms = np.linalg.norm(X, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        ids = zero if row_ids is None else np.asarray(row_ids)[zero]
        shown = ", ".join(map(str, ids[:5])) + (" ..." if zero.size > 5 else "")
        raise InputError(
            f"{name} has {zero.size} all-zero rows (rows {shown}); cosine (spherical) "
            "k-means needs a direction for every row: drop them or use spherical=False"
        )
    return np.ascontiguousarray(X / norms[:, None], dtype=np.float32)


class ArrayRows(RowSource):
    """An ``(n, d)`` float array (a memory map is read block by block)."""

    def __init__(self, X: np.ndarray):
        self.X = X
        self.n_total, self.d = X.shape
        self.dtype = X.dtype
        self.checked = not isinstance(X, np.memmap) and X.dtype == np.float32
        self.description = f"array {X.shape[0]} x {X.shape[1]} {X.dtype}"

    def _read(self, a: int, b: int) -> np.ndarray:
        return self.X[a:b]

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = _float32(self.X[rows], check=not self.checked, row_ids=np.asarray(rows))
        return unit_rows(out, row_ids=rows) if self.unit else out

    def to_array(self, dtype=np.float32) -> np.ndarray:
        whole = self.start == 0 and self.stop in (None, self.n_total)
        if (whole and self.checked and not self.unit and type(self.X) is np.ndarray
                and self.X.flags.c_contiguous and self.X.dtype == (dtype or self.X.dtype)):
            return self.X  # already what was asked for: no copy
        return super().to_array(dtype)

    def fingerprint(self) -> str:
        return "array-" + array_fingerprint(self.X[self.start: self.stop])


class StoreRows(RowSource):
    """The rows of an :class:`~deepclust.store.EmbeddingStore`, shard by shard."""

    def __init__(self, store):
        self.store = store
        self.n_total, self.d = len(store), int(store.dim)
        self.dtype = np.dtype(store.dtype)
        self.description = f"store {store.path} ({self.n_total} x {self.d} {store.dtype})"
        sizes = store.shard_rows  # checked against the files when the store was opened
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._headers: dict[int, tuple[int, int]] = {}
        if self._offsets[-1] != self.n_total:
            raise InputError(f"{store.path}: the shards hold {self._offsets[-1]} rows but "
                             f"meta.json says {self.n_total}; the store is damaged")

    def _read(self, a: int, b: int) -> np.ndarray:
        """Rows ``[a, b)`` read into a fresh buffer.

        Plain reads, not the memory map: pages of a map stay resident in this process
        (and count in its RSS) until the map is closed, so streaming a 15 GB store
        through maps would hold it all; read pages are the kernel's cache, not ours.
        """
        first = int(np.searchsorted(self._offsets, a, side="right")) - 1
        last = int(np.searchsorted(self._offsets, b, side="left"))
        out = np.empty((b - a, self.d), dtype=self.store.dtype)
        at = 0
        for k in range(first, last):
            lo = max(a, self._offsets[k]) - self._offsets[k]
            hi = min(b, self._offsets[k + 1]) - self._offsets[k]
            if hi <= lo:
                continue
            header, row_bytes = self._layout(k)
            view = out[at: at + hi - lo]
            with open(_shard_path(self.store, k), "rb") as f:
                f.seek(header + lo * row_bytes)
                if f.readinto(memoryview(view).cast("B")) != view.nbytes:
                    raise InputError(f"{self.store.path}: shard {k} is shorter than its header "
                                     "says; the store is damaged")
            at += hi - lo
        if at != b - a:
            raise InputError(f"{self.store.path}: rows [{a}, {b}) could not all be read; the store "
                             "is damaged")
        return out

    def _layout(self, k: int) -> tuple[int, int]:
        """Byte offset of shard ``k``'s rows in its .npy file, and bytes per row (from the
        header alone: a memory map of a large shard would take its size in address space)."""
        if k not in self._headers:
            try:
                shape, fortran, dtype, offset = npy_header(_shard_path(self.store, k))
            except (OSError, ValueError) as exc:
                raise InputError(f"{self.store.path}: shard {k} is damaged ({exc}); the store "
                                 "is damaged") from None
            if fortran or dtype != np.dtype(self.store.dtype) or len(shape) != 2:
                raise InputError(f"{self.store.path}: shard {k} is not a C-ordered "
                                 f"{self.store.dtype} array; the store is damaged")
            self._headers[k] = (int(offset), int(dtype.itemsize * shape[1]))
        return self._headers[k]

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_total):
            raise InputError(f"rows {rows.min()}..{rows.max()} are outside the store's "
                             f"{self.n_total} rows")
        # plain reads of each row, like _read: no memory map of a whole shard
        raw = np.empty((rows.shape[0], self.d), dtype=self.store.dtype)
        shard_of = np.searchsorted(self._offsets, rows, side="right") - 1
        for k in np.unique(shard_of):
            header, row_bytes = self._layout(int(k))
            with open(_shard_path(self.store, int(k)), "rb") as f:
                for i in np.flatnonzero(shard_of == k):
                    f.seek(header + int(rows[i] - self._offsets[k]) * row_bytes)
                    if f.readinto(memoryview(raw[i]).cast("B")) != row_bytes:
                        raise InputError(f"{self.store.path}: shard {k} is shorter than its "
                                         "header says; the store is damaged")
        out = _float32(raw, check=not self.checked, row_ids=rows)
        return unit_rows(out, row_ids=rows) if self.unit else out

    def fingerprint(self) -> str:
        part = "" if (self.start, self.stop) in ((0, None), (0, self.n_total)) else \
            f"-{self.start}-{self.stop}"
        return "store-" + self.store.fingerprint() + part

    @property
    def home(self):
        return self.store.path


def _shard_path(store, k: int):
    return store.shard_path(k)


def array_fingerprint(X: np.ndarray) -> str:
    """A short content hash of an array (shape, dtype and bytes), for cache keys."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{X.shape}|{X.dtype.str}".encode())
    view = np.ascontiguousarray(X).reshape(-1).view(np.uint8)
    step = 1 << 26
    for s in range(0, view.size, step):
        h.update(view[s: s + step])
    return h.hexdigest()


def as_row_source(X, *, name: str = "X", unit: bool = False) -> RowSource:
    """The :class:`RowSource` of an array, a FeatureSet, an EmbeddingStore, a store path or
    a RowSource (returned as is, or as a unit-row copy when ``unit``).

    Arrays must be 2-D and numeric; stores are never loaded whole. ``unit`` hands out rows
    scaled to unit length (cosine methods); a source handed in is never changed.
    """
    if isinstance(X, RowSource):
        source = X
    elif isinstance(X, (str, os.PathLike)):
        if not is_store(X):
            raise InputError(f"{name}: {X} is not an embedding store directory; pass an array "
                             "or a store")
        source = _store_rows(open_store(X), name)
    elif isinstance(X, EmbeddingStore):
        source = _store_rows(X, name)
    else:
        if isinstance(X, FeatureSet):
            X = X.X
        if isinstance(X, np.memmap) or (isinstance(X, np.ndarray) and X.dtype == np.float16
                                        and X.ndim == 2):
            if X.ndim != 2 or X.shape[0] == 0:
                raise InputError(f"{name} must be a non-empty 2-D array, got shape {X.shape}")
            source = ArrayRows(X)
        else:
            source = ArrayRows(check_features(X, name=name, dtype=np.float32))
    if unit and not source.unit:
        source = copy.copy(source)
        source.unit = True
    return source


def _store_rows(store: EmbeddingStore, name: str) -> StoreRows:
    if len(store) == 0:
        raise InputError(f"{name}: the store {store.path} has no rows")
    return StoreRows(store)


def fewer_distinct_rows(X, k: int, *, max_load: int | None = None
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(unique_rows, inverse)`` if ``X`` has fewer than ``k`` distinct rows, else None.

    ``X`` is an array or a :class:`~deepclust.data.rows.RowSource`. A spread-out sample
    of ``min(n, 4k)`` rows usually proves there are enough distinct rows; only when it does
    not are all rows read -- and refused when there are more than ``max_load`` values.
    """
    if isinstance(X, RowSource):
        n, d, take = X.n_total, X.d, X.take
    else:
        (n, d), take = X.shape, X.__getitem__
    if k == 1:
        return None
    sample = take(np.unique(np.linspace(0, n - 1, min(n, 4 * k)).astype(np.int64)))
    if np.unique(sample, axis=0).shape[0] >= k:
        return None
    if max_load is not None and n * d > max_load:
        raise InputError(f"a sample of {sample.shape[0]} rows has fewer than n_clusters={k} "
                         "distinct rows and the data is too large to check them all: "
                         "ask for fewer clusters")
    uniq, inverse = np.unique(take(np.arange(n)) if isinstance(X, RowSource) else X, axis=0,
                              return_inverse=True)
    if uniq.shape[0] >= k:
        return None
    return uniq, inverse.reshape(-1)
