"""Nearest neighbours by cosine similarity: exact in blocks, or approximate (IVF), cached.

:func:`mine_neighbors` finds the ``k`` most cosine-similar rows of every row of ``X``
(itself excluded), from an array, a memory map or an embedding store (read shard by shard,
float16 blocks widened one at a time, never concatenated).

Methods
-------
``"exact"``
    Every query block against every database block, searched exactly (faiss on the CPU, a
    matrix product on a GPU); the per-query top-``k`` lists are merged in a
    ``faiss.ResultHeap``, so it runs on millions of rows in bounded memory. Its cost is
    ``n^2 d`` multiply-adds.
``"ivf"``
    A faiss ``IndexIVFFlat`` on the unit rows (inner product): ``nlist = round(4 sqrt(n))``
    lists, trained (spherical k-means, 10 iterations) on ``32 nlist`` sampled rows, filled
    a block at a time, then searched a block of queries at a time. ``nprobe`` is the
    smallest (doubling, then bisecting) whose recall@k on 1 000 sample rows against their
    exact fp32 neighbours reaches ``target_recall`` (0.95); that recall is recorded as
    ``info["recall_estimate"]``. Rows whose probed lists held fewer than ``k + 1`` rows are
    searched exactly. The index holds the rows in float32 (``4 n d`` bytes: 5 GB for
    1M x 1280). Chosen over HNSW because it is filled a block at a time from a store,
    trains on a sample, and its one knob (``nprobe``) can be calibrated to a measured recall.
``"auto"``
    ``"exact"`` up to :data:`EXACT_MAX_ROWS` = 250 000 rows, ``"ivf"`` above -- except when
    the exact search runs in bfloat16 on a GPU, where it stays exact (1M x 1280 is 2.6e15
    flop, seconds at a GPU's hundreds of TFLOP/s; an estimate, not measured here).

Why exact up to 250 000 rows: the exact cost grows as ``n^2`` and the index's as about
``n^1.5``; on real embeddings the index needs more probes than on synthetic data and was no
faster than the exact bfloat16 search at 60 000 rows, and from about 250 000 rows on it is at
least twice as fast as the best exact search. The measurements are in docs/heads.md
("Neighbour mining: exact or IVF").

Precisions of the exact search:

``"fp32"``
    faiss ``knn`` on L2-normalised float32 rows: exact up to float32 rounding.
``"bf16"``
    a bfloat16 matrix product (float32 accumulation) and ``topk``: faster than faiss's
    float32 search on CPUs with native bfloat16 (AVX-512 BF16, AMX) and on GPUs. Rounding
    the unit rows to bfloat16 perturbs a cosine by up to a few 1e-3, so neighbours that
    close in similarity may swap places or trade the last places: on EfficientNet-Lite0
    embeddings of Fashion-MNIST test, 97 % of the 50 listed are the exact 50 nearest and
    the others are within 0.003 of the 50th. The heads draw a partner uniformly from the
    ``k`` nearest, so this does not matter to them (nor does the 0.95 recall of ``ivf``);
    ask for ``method="exact", precision="fp32"`` when exact lists do.

``"auto"`` takes ``bf16`` where it is native (a GPU with bfloat16, or a CPU with AVX-512 BF16
/ AMX) and ``fp32`` elsewhere: the ``neighbors`` row of the table in :mod:`deepclust.runtime`.

:func:`neighbors_for` adds the cache: a store's table lives in the store directory
(``STORE/neighbors/``), an array's in ``cache_dir()/neighbors/`` under a fingerprint of its
contents; a table with more neighbours than asked serves smaller ``k`` too. Each table
records its method and parameters, and serves only requests at most as exact as itself
(the request's ``"auto"`` resolved first, by the same rule as mining): an exact float32
table serves every request, an exact bfloat16 table every request but exact float32, and an
ivf table only ivf requests -- ``method="ivf"``, or ``"auto"`` above
:data:`EXACT_MAX_ROWS` -- whose ``target_recall`` its calibration reached (or whose explicit
``nlist`` / ``nprobe`` it was mined with). So a caller who asked for exact neighbours never
gets approximate ones, and one who let ``"auto"`` choose gets what auto would have mined or
better. Among the tables that may serve, the most exact is taken, then the smallest ``k``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import torch

from deepclust.data.rows import as_row_source
from deepclust.errors import InputError
from deepclust.runinfo import write_json, write_npy
from deepclust.runtime import resolve_device, resolve_precision

__all__ = [
    "Neighbors",
    "default_nlist",
    "exact_by_groups",
    "mine_neighbors",
    "neighbors_for",
    "resolve_knn_method",
    "search",
]

Precision = Literal["auto", "fp32", "bf16"]
Method = Literal["auto", "exact", "ivf"]
#: Rows per block of queries and of database rows (float32 block: 64 Ki x 1280 = 320 MiB).
BLOCK_ROWS = 1 << 16
#: ``method="auto"`` searches exactly up to this many rows, approximately (IVF) above.
EXACT_MAX_ROWS = 250_000
#: Recall@k that ``nprobe`` is calibrated for when not given.
TARGET_RECALL = 0.95
#: Queries whose exact neighbours calibrate ``nprobe`` (the recall estimate's sample).
CALIBRATION_QUERIES = 1000
#: IVF coarse centroids are trained on this many rows per list (faiss asks for >= 30).
TRAIN_ROWS_PER_LIST = 32
#: Version 2 added ``method`` (version-1 tables are all exact and are still read).
CACHE_VERSION = 2


@dataclass
class Neighbors:
    """A neighbour table: row ``i``'s neighbours, most similar first.

    Attributes
    ----------
    indices : ndarray of shape (n, k), int32 or int64
    similarities : ndarray of shape (n, k), float32
        Cosine similarity of each neighbour.
    info : dict
        How the table was made (precision, seconds, cache path, ...).
    """

    indices: np.ndarray
    similarities: np.ndarray
    info: dict

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def first(self, k: int) -> Neighbors:
        """The ``k`` nearest of each row (a view)."""
        if k > self.k:
            raise InputError(f"this table holds {self.k} neighbours per row, {k} were asked")
        return Neighbors(self.indices[:, :k], self.similarities[:, :k], dict(self.info))


# ----------------------------------------------------------------------------- inputs


# ----------------------------------------------------------------------------- mining


def resolve_knn_method(method: str, n_rows: int, device: torch.device | None = None,
                       precision: str = "auto") -> str:
    """``"auto"`` → ``"exact"`` up to :data:`EXACT_MAX_ROWS` rows or when the exact search
    runs in bfloat16 on a GPU, else ``"ivf"``."""
    if method not in ("auto", "exact", "ivf"):
        raise InputError(f"method must be 'auto', 'exact' or 'ivf', got {method!r}")
    if method != "auto":
        return method
    if n_rows <= EXACT_MAX_ROWS:
        return "exact"
    if device is not None and device.type == "cuda" and \
            resolve_precision("neighbors", precision, device) == "bf16":
        return "exact"
    return "ivf"


def default_nlist(n_rows: int) -> int:
    """IVF lists for ``n_rows`` rows: ``round(4 sqrt(n))``, so a list holds ``sqrt(n) / 4``."""
    return max(1, min(n_rows, round(4 * math.sqrt(n_rows))))


def _unit_rows(block: np.ndarray) -> np.ndarray:
    """float32 copy of ``block`` with unit rows (zero rows stay zero)."""
    out = np.array(block, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _drop_self(ids: np.ndarray, sims: np.ndarray, own, k: int):
    """Remove each query's own row from its ``k + 1`` results (the last one if absent).

    ``own`` is the first query's row (the queries are consecutive rows) or an array of
    each query's row.
    """
    n = ids.shape[0]
    own = np.arange(own, own + n) if np.isscalar(own) else np.asarray(own)
    is_self = ids == own[:, None]
    # a row without itself among the results (duplicates tie with it) drops its last result
    missing = ~is_self.any(axis=1)
    is_self[missing, -1] = True
    keep = ~is_self
    # exactly one False per row, so each row keeps k entries in order
    return ids[keep].reshape(n, k), sims[keep].reshape(n, k)


def _search_block_fp32(q: np.ndarray, db: np.ndarray, kk: int):
    return faiss.knn(q, db, kk, metric=faiss.METRIC_INNER_PRODUCT)


def _search_block_bf16(q: np.ndarray, db: np.ndarray, kk: int, device: torch.device):
    """Top ``kk`` of ``q @ db.T`` computed in bfloat16 (float32 accumulation)."""
    qt = torch.from_numpy(q).to(device, torch.bfloat16)
    dbt = torch.from_numpy(db).to(device, torch.bfloat16)
    sims = torch.empty((q.shape[0], kk), dtype=torch.float32)
    ids = torch.empty((q.shape[0], kk), dtype=torch.int64)
    step = 4096
    for s in range(0, q.shape[0], step):
        top = (qt[s : s + step] @ dbt.T).topk(kk, dim=1)
        sims[s : s + step] = top.values.float().cpu()
        ids[s : s + step] = top.indices.cpu()
    return sims.numpy(), ids.numpy()


def _exact_search(q: np.ndarray, rows, kk: int, *, precision: str, device: torch.device,
                  block_rows: int, db_full: np.ndarray | None = None):
    """Top ``kk`` rows of ``rows`` (a RowSource) by cosine for unit queries ``q``, one
    database block at a time, merged in a heap. Returns ``(sims, ids)``, most similar first."""
    heap = faiss.ResultHeap(q.shape[0], kk, keep_max=True)
    blocks = [(0, db_full)] if db_full is not None else \
        ((ds, _unit_rows(b)) for ds, b in rows.blocks(block_rows))
    for ds, db in blocks:
        kb = min(kk, db.shape[0])
        if precision == "fp32":
            sims, ids = _search_block_fp32(q, db, kb)
        else:
            sims, ids = _search_block_bf16(q, db, kb, device)
        ids = ids.astype(np.int64) + ds
        if kb < kk:  # a short last block: pad with empty results
            sims = np.pad(sims, ((0, 0), (0, kk - kb)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, kk - kb)), constant_values=-1)
        heap.add_result(np.ascontiguousarray(sims, dtype=np.float32), np.ascontiguousarray(ids))
    heap.finalize()
    return heap.D, heap.I


def _build_ivf(rows, nlist: int, *, block_rows: int, verbose: bool):
    """An ``IndexIVFFlat`` (inner product) over the unit rows, trained on a sample and
    filled a block at a time. Deterministic: fixed sample and k-means seeds."""
    n, d = rows.n, rows.d
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    index.cp.spherical = True  # unit centroids: the inner product ranks the lists by cosine
    index.cp.seed = 1234
    index.cp.min_points_per_centroid = 1  # small inputs: no faiss warning, fewer rows per list
    index.cp.max_points_per_centroid = 1 << 30  # the sample below is the training set
    m = min(n, TRAIN_ROWS_PER_LIST * nlist)
    sample = np.sort(np.random.default_rng(0).choice(n, m, replace=False)) if m < n \
        else np.arange(n)
    index.train(_unit_rows(rows.take(sample)))
    for s, block in rows.blocks(block_rows):
        index.add(_unit_rows(block))
        if verbose:
            print(f"  ivf index: {s + len(block)}/{n} rows added", flush=True)
    return index, quantizer, m


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row's true neighbours that were found."""
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / truth.shape[1])


def _calibrate_nprobe(index, rows, k: int, target: float, *, block_rows: int):
    """The smallest ``nprobe`` (doubling, then bisecting) whose recall@k on a sample of
    queries, against their exact fp32 neighbours, reaches ``target``."""
    n, nlist = rows.n, index.nlist
    s = min(n, CALIBRATION_QUERIES)
    qidx = np.sort(np.random.default_rng(1).choice(n, s, replace=False))
    q = _unit_rows(rows.take(qidx))
    sims, ids = _exact_search(q, rows, k + 1, precision="fp32", device=torch.device("cpu"),
                              block_rows=block_rows)
    truth, _ = _drop_self(ids, sims, qidx, k)

    def recall_at(nprobe: int) -> float:
        index.nprobe = nprobe
        d, i = index.search(q, k + 1)
        found, _ = _drop_self(i, d, qidx, k)
        return _recall(found, truth)

    tried = {}
    lo, hi = 0, 1  # recall(lo) < target (lo = 0: nothing probed) ...
    while True:
        tried[hi] = recall_at(hi)
        if tried[hi] >= target or hi == nlist:
            break
        lo, hi = hi, min(2 * hi, nlist)
    while hi - lo > 1:  # ... and recall(hi) >= target, or hi = nlist
        mid = (lo + hi) // 2
        tried[mid] = recall_at(mid)
        lo, hi = (lo, mid) if tried[mid] >= target else (mid, hi)
    return hi, tried[hi], s


#: Margin added to the pruning bound of :func:`exact_by_groups`, for float32 rounding of the
#: similarities (unit rows: each product is off by at most about d * 6e-8).
PRUNE_MARGIN = 1e-4
#: :func:`exact_by_groups` searches every pair at once (as :func:`mine_neighbors`) when a
#: sample of queries says the groups would leave more than this share of the pairs to search:
#: the group-by-group search costs about twice the plain one per pair.
PRUNE_MAX_SHARE = 0.4
#: Queries of that estimate.
PRUNE_SAMPLE = 512


def exact_by_groups(X, k: int, groups, *, fallback_precision: Precision = "fp32",
                    device: str | torch.device = "cpu") -> Neighbors:
    """The exact ``k`` most cosine-similar rows of every row, searching only the groups that
    can hold one (a clustering's labels make the groups).

    Each group ``g`` has a centre ``c_g`` (the mean of its unit rows) and a radius ``r_g``
    (the largest distance of one of its unit rows to ``c_g``). For a unit query ``q`` and any
    row ``x`` of ``g``, ``q . x = q . c_g + q . (x - c_g) <= q . c_g + r_g`` (Cauchy-Schwarz).
    A query is first searched in its own group; another group is searched for the queries
    whose bound for it reaches their current ``k``-th similarity (less
    :data:`PRUNE_MARGIN`), groups taken by decreasing bound. The others cannot hold a
    nearer row, so the table equals :func:`mine_neighbors` ``(method="exact",
    precision="fp32")`` up to the order of tied similarities, at a cost that falls with how
    well the groups separate the rows (``info["pairs_searched"]``: the share of all pairs
    computed). When a sample of :data:`PRUNE_SAMPLE` queries says more than
    :data:`PRUNE_MAX_SHARE` of the pairs would be searched (groups that do not separate the
    rows, as in high-dimensional embeddings whose clusters overlap), every pair is searched
    at once instead (``info["pruned_by"]`` None, ``info["pairs_estimate"]`` the estimate).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or anything :func:`as_row_source` reads
        Read into memory (float32 unit rows).
    k : int
    groups : array-like of int, shape (n_samples,)
        Any labels (``-1`` is a group like the others); correctness does not depend on them.
    fallback_precision, device
        Of the every-pair search when the groups do not separate (as in
        :func:`mine_neighbors`); the pruned search is float32.

    Returns
    -------
    Neighbors
        ``info["method"] == "exact"``, ``precision`` ``"fp32"``, ``pruned_by`` ``"groups"``.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> exact_by_groups(X, 1, [0, 0, 1, 1]).indices.ravel().tolist()
    [1, 0, 3, 2]
    """
    t0 = time.perf_counter()
    rows = as_row_source(X)
    n = rows.n
    k = _check_k(k, n)
    U = _unit_rows(rows.to_array(np.float32))
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise InputError(f"groups must hold one label per row ({n}), got shape {groups.shape}")
    names, code = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(code == g) for g in range(len(names))]
    centres = np.stack([U[m].astype(np.float64).mean(axis=0) for m in members])
    radii = np.array([np.sqrt(((U[m] - c) ** 2).sum(axis=1)).max()
                      for m, c in zip(members, centres, strict=True)])
    kk = k + 1
    sizes = np.array([len(m) for m in members], dtype=np.float64)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, PRUNE_SAMPLE), replace=False))
    q = U[sample]
    kth = faiss.knn(q, U, kk, metric=faiss.METRIC_INNER_PRODUCT)[0][:, -1]
    reach = (q.astype(np.float64) @ centres.T + radii) >= (kth[:, None] - PRUNE_MARGIN)
    estimate = float((reach * sizes).sum() / (len(sample) * float(n)))
    if estimate > PRUNE_MAX_SHARE:
        table = mine_neighbors(U, k, method="exact", precision=fallback_precision,
                               device=device)
        table.info.update(pruned_by=None, pairs_estimate=estimate,
                          seconds=time.perf_counter() - t0)
        return table
    out_ids = np.empty((n, k), dtype=np.int32 if n < 2**31 else np.int64)
    out_sims = np.empty((n, k), dtype=np.float32)
    pairs = 0
    for a, rows_a in enumerate(members):
        q = U[rows_a]
        heap = faiss.ResultHeap(len(q), kk, keep_max=True)
        bounds = q.astype(np.float64) @ centres.T + radii  # (queries, groups)
        order = np.argsort(-bounds.max(axis=0), kind="stable")
        order = np.concatenate([[a], order[order != a]])
        kth = np.full(len(q), -np.inf)
        for b in order:
            need = np.flatnonzero(bounds[:, b] >= kth - PRUNE_MARGIN) if b != a else \
                np.arange(len(q))
            if need.size == 0:
                continue
            db = U[members[b]]
            kb = min(kk, len(db))
            sims, ids = faiss.knn(q[need], db, kb, metric=faiss.METRIC_INNER_PRODUCT)
            pairs += need.size * len(db)
            ids = members[b][ids].astype(np.int64)
            if kb < kk:
                sims = np.pad(sims, ((0, 0), (0, kk - kb)), constant_values=-np.inf)
                ids = np.pad(ids, ((0, 0), (0, kk - kb)), constant_values=-1)
            part_sims = np.full((len(q), kk), -np.inf, dtype=np.float32)
            part_ids = np.full((len(q), kk), -1, dtype=np.int64)
            part_sims[need], part_ids[need] = sims, ids
            heap.add_result(part_sims, part_ids)
            # the k-th best so far (k + 1 with the row itself), read without finalising
            kth = np.sort(_heap_values(heap, len(q), kk), axis=1)[:, 0]
        heap.finalize()
        ids, sims = _drop_self(heap.I, heap.D, rows_a, k)
        out_ids[rows_a], out_sims[rows_a] = ids, sims
    info = {"k": k, "n": n, "metric": "cosine", "method": "exact", "precision": "fp32",
            "pruned_by": "groups", "groups": int(len(names)), "pairs_estimate": estimate,
            "pairs_searched": pairs / float(n) / float(n), "device": "cpu",
            "seconds": time.perf_counter() - t0}
    return Neighbors(out_ids, out_sims, info)


def _heap_values(heap, nq: int, kk: int) -> np.ndarray:
    """The similarities a ``faiss.ResultHeap`` holds before ``finalize`` (unordered)."""
    return np.asarray(heap.D).reshape(nq, kk)


def _check_k(k, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if k > n - 1:
        raise InputError(f"k={k} neighbours asked but X has only {n} rows (at most {n - 1})")
    return int(k)


def mine_neighbors(
    X,
    k: int = 50,
    *,
    method: Method = "auto",
    precision: Precision = "auto",
    device: str | torch.device = "auto",
    target_recall: float = TARGET_RECALL,
    nlist: int | None = None,
    nprobe: int | None = None,
    block_rows: int = BLOCK_ROWS,
    verbose: bool = False,
) -> Neighbors:
    """The ``k`` most cosine-similar rows of every row of ``X``, itself excluded.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), EmbeddingStore or store path
        Rows to search (memory maps and store shards are read block by block).
    k : int
        Neighbours per row; at most ``n_samples - 1``.
    method : {"auto", "exact", "ivf"}
        ``"exact"``: every pair, block by block; ``"ivf"``: a faiss inverted-file index
        (approximate); ``"auto"``: exact up to :data:`EXACT_MAX_ROWS` rows. See the module
        docstring.
    precision : {"auto", "fp32", "bf16"}
        Arithmetic of the exact search (see the module docstring); ``ivf`` is float32.
    device : "auto", "cpu", "cuda" or torch.device
        Where the ``bf16`` search runs (``"auto"``: CUDA when available). ``fp32`` and
        ``ivf`` always run in faiss on the CPU.
    target_recall : float
        ``ivf`` only: ``nprobe`` is the smallest that reaches this recall@k on
        :data:`CALIBRATION_QUERIES` sample rows against their exact neighbours.
    nlist, nprobe : int, optional
        ``ivf`` only: lists of the index (default :func:`default_nlist`) and lists searched
        per query (default: calibrated for ``target_recall``).
    block_rows : int
        Rows per query block and per database block.
    verbose : bool
        Print progress per query block.

    Returns
    -------
    Neighbors
        ``indices`` (int32 when ``n_samples < 2**31``) and float32 ``similarities``, most
        similar first; ``info`` records the method and its parameters (for ``ivf`` also
        ``recall_estimate``, the calibration sample's recall@k).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> mine_neighbors(X, 1, precision="fp32").indices.ravel().tolist()
    [1, 0, 3, 2]
    """
    t0 = time.perf_counter()
    rows = as_row_source(X)
    n = rows.n
    k = _check_k(k, n)
    dev = resolve_device(device)
    how = resolve_knn_method(method, n, dev, precision)
    prec = resolve_precision("neighbors", precision, dev) if how == "exact" else "fp32"
    block_rows = max(1, int(block_rows))
    kk = k + 1
    idx_dtype = np.int32 if n < 2**31 else np.int64
    out_ids = np.empty((n, k), dtype=idx_dtype)
    out_sims = np.empty((n, k), dtype=np.float32)
    info = {"k": k, "n": n, "metric": "cosine", "method": how, "precision": prec}
    if how == "ivf":
        if not (isinstance(target_recall, (float, int)) and 0 < target_recall <= 1):
            raise InputError(f"target_recall must be in (0, 1], got {target_recall!r}")
        lists = default_nlist(n) if nlist is None else int(nlist)
        if not 1 <= lists <= n:
            raise InputError(f"nlist must be between 1 and the number of rows {n}, got {nlist!r}")
        index, _quantizer, train_rows = _build_ivf(rows, lists, block_rows=block_rows,
                                                   verbose=verbose)
        if nprobe is None:
            probe, recall, n_cal = _calibrate_nprobe(index, rows, k, float(target_recall),
                                                     block_rows=block_rows)
            info.update(target_recall=float(target_recall), recall_estimate=recall,
                        calibration_queries=n_cal)
        elif not 1 <= int(nprobe) <= lists:
            raise InputError(f"nprobe must be between 1 and nlist={lists}, got {nprobe!r}")
        else:
            probe = int(nprobe)
        index.nprobe = probe
        info.update(nlist=lists, nprobe=probe, train_rows=train_rows)
        dev = torch.device("cpu")
    single_db = how == "exact" and n <= block_rows
    db_full = _unit_rows(next(rows.blocks(block_rows))[1]) if single_db else None
    n_fallback = 0
    queries = [(0, db_full)] if single_db else \
        ((qs, _unit_rows(b)) for qs, b in rows.blocks(block_rows))
    for qs, q in queries:
        if how == "exact":
            sims, ids = _exact_search(q, rows, kk, precision=prec, device=dev,
                                      block_rows=block_rows, db_full=db_full)
        else:
            sims, ids = index.search(q, kk)
            short = np.flatnonzero((ids < 0).any(axis=1))
            if short.size:  # the probed lists held fewer than k + 1 rows: search those exactly
                sims[short], ids[short] = _exact_search(
                    q[short], rows, kk, precision="fp32", device=dev, block_rows=block_rows)
                n_fallback += int(short.size)
        ids, sims = _drop_self(ids, sims, qs, k)
        out_ids[qs : qs + len(q)] = ids
        out_sims[qs : qs + len(q)] = sims
        if verbose:
            print(f"  neighbours ({how}): {min(qs + block_rows, n)}/{n} rows, "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    if how == "ivf":
        info["exact_fallback_rows"] = n_fallback
    info.update(device=str(dev), seconds=time.perf_counter() - t0)
    return Neighbors(out_ids, out_sims, info)


def search(queries, X, k: int, *, precision: Precision = "fp32", device: str | torch.device = "cpu",
           block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``X`` most cosine-similar to each query (exact, block by block).

    Unlike :func:`mine_neighbors` the queries are not rows of ``X``, so nothing is left out.

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
    X : array-like, EmbeddingStore or store path
        The rows searched (a store is read shard by shard).
    k : int
        Results per query; at most the number of rows of ``X``.
    precision, device
        As in :func:`mine_neighbors` (default exact float32 on the CPU).

    Returns
    -------
    similarities : ndarray of shape (n_queries, k), float32
        Cosine similarities, most similar first.
    indices : ndarray of shape (n_queries, k), int64
        Row numbers in ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    >>> search(np.array([[1.0, 0.1]]), X, 2)[1].tolist()
    [[0, 2]]
    """
    rows = as_row_source(X)
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if q.ndim != 2 or q.shape[1] != rows.d:
        raise InputError(f"queries have shape {q.shape}; expected (n, {rows.d}) to match the rows")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= rows.n:
        raise InputError(f"k must be an integer between 1 and the number of rows {rows.n}, got {k!r}")
    dev = resolve_device(device)
    prec = resolve_precision("neighbors", precision, dev)
    return _exact_search(_unit_rows(q), rows, int(k), precision=prec, device=dev,
                         block_rows=max(1, int(block_rows)))


# ----------------------------------------------------------------------------- caching


def _load_cached(folder: Path, fingerprint: str, k: int, n: int, request: dict) -> Neighbors | None:
    """The best cached table in ``folder`` for ``fingerprint`` that may serve ``request``
    (see :func:`_serving_rank`): the most exact, then the smallest with at least ``k``."""
    best = None
    for meta_path in folder.glob("knn-cosine-*.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (meta.get("version") not in (1, CACHE_VERSION) or meta.get("fingerprint") != fingerprint
                or meta.get("n") != n or int(meta.get("k", 0)) < k):
            continue
        rank = _serving_rank(meta, request)
        if rank is not None and (best is None or (rank, meta["k"]) < best[0]):
            best = ((rank, meta["k"]), meta_path, meta)
    if best is None:
        return None
    _, meta_path, meta = best
    stem = meta_path.with_suffix("")
    try:
        ids = np.load(f"{stem}-indices.npy", mmap_mode="r")
        sims = np.load(f"{stem}-similarities.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    if ids.shape != (n, meta["k"]) or sims.shape != ids.shape:
        return None
    info = dict(meta, method=meta.get("method", "exact"), cache=str(stem), cached=True)
    return Neighbors(np.asarray(ids[:, :k]), np.asarray(sims[:, :k]), info)


def _serving_rank(meta: dict, request: dict) -> int | None:
    """How exact a cached table is (0: exact fp32, 1: exact bf16, 2: ivf), or None when it
    must not serve ``request`` (the resolved ``method`` and ``precision``, and ``ivf``'s
    ``target_recall`` or explicit ``nlist`` / ``nprobe``).

    A table serves any request at most as exact as itself: an exact fp32 table serves
    everything; an exact bf16 table serves bf16 and ivf requests; an ivf table serves only
    ivf requests (``method="ivf"``, or ``"auto"`` above :data:`EXACT_MAX_ROWS`) whose
    target recall it reached, or whose explicit ``nlist`` / ``nprobe`` it was mined with.
    """
    method = meta.get("method", "exact")  # version-1 tables are all exact
    if method == "exact":
        rank = 0 if meta.get("precision") == "fp32" else 1
        wanted = 0 if request["method"] == "exact" and request["precision"] == "fp32" else \
            1 if request["method"] == "exact" else 2
        return rank if rank <= wanted else None
    if method != "ivf" or request["method"] != "ivf":
        return None
    for key in ("nlist", "nprobe"):
        if request.get(key) is not None and meta.get(key) != request[key]:
            return None
    if request.get("nprobe") is None:
        reached = meta.get("recall_estimate")
        if reached is None or reached < request["target_recall"]:
            return None
    return 2


def _table_name(info: dict) -> str:
    tag = "ivf" if info["method"] == "ivf" else f"exact-{info['precision']}"
    return f"knn-cosine-{tag}-k{info['k']}"


def _save_cached(folder: Path, fingerprint: str, table: Neighbors) -> str | None:
    stem = folder / _table_name(table.info)
    try:
        write_npy(f"{stem}-indices.npy", table.indices)
        write_npy(f"{stem}-similarities.npy", table.similarities)
        write_json(f"{stem}.json", {**table.info, "version": CACHE_VERSION,
                                    "fingerprint": fingerprint})  # written last: the commit
    except OSError:
        return None  # a read-only store or cache: work without the cache
    return str(stem)


def neighbors_for(
    data,
    k: int = 50,
    *,
    cache: bool | str | os.PathLike = True,
    method: Method = "auto",
    precision: Precision = "auto",
    device: str | torch.device = "auto",
    target_recall: float = TARGET_RECALL,
    nlist: int | None = None,
    nprobe: int | None = None,
    verbose: bool = False,
    groups=None,
) -> Neighbors:
    """The neighbour table of an array or an embedding store, from the cache when possible.

    Parameters
    ----------
    data : array-like, EmbeddingStore or path of a store directory
        The rows (a store is read shard by shard, never concatenated).
    k : int
        Neighbours per row.
    cache : bool or path
        True: a store's table lives in ``STORE/neighbors/`` (falling back to the deepclust
        cache when the store is read-only), an array's in ``cache_dir()/neighbors/``; a
        path: that folder; False: always mine.
    groups : array-like of int, optional
        A label per row (a clustering's): when the request resolves to an exact search, it
        is mined by :func:`exact_by_groups` (the exact float32 table, fewer pairs searched;
        the rows are read into memory; the requested precision when it falls back to every
        pair).
    method, precision, device, target_recall, nlist, nprobe, verbose
        As in :func:`mine_neighbors`. A cached table serves only requests at most as exact
        as itself: an approximate (ivf) table never serves ``method="exact"``, nor
        ``"auto"`` at or below :data:`EXACT_MAX_ROWS` rows, where auto means exact.

    Returns
    -------
    Neighbors
        ``info["cached"]`` says whether it came from the cache.
    """
    from deepclust.data.builtin import cache_dir

    X = as_row_source(data)
    n = X.n
    default_folder = None if X.home is None else Path(X.home) / "neighbors"
    fingerprint = None  # computed only if the cache is used
    mine = dict(method=method, precision=precision, device=device, target_recall=target_recall,
                nlist=nlist, nprobe=nprobe, verbose=verbose)
    dev = resolve_device(device)
    request = {"method": resolve_knn_method(method, n, dev, precision),
               "precision": resolve_precision("neighbors", precision, dev),
               "target_recall": float(target_recall), "nlist": nlist, "nprobe": nprobe}
    if groups is not None and request["method"] == "exact":
        def mine_table():  # float32 and exact: at least as exact as any exact request
            return exact_by_groups(X, k, groups, fallback_precision=request["precision"],
                                   device=dev)
    else:
        def mine_table():
            return mine_neighbors(X, k, **mine)
    if cache is False:
        return mine_table()
    fingerprint = X.fingerprint()
    folders = ([Path(cache)] if not isinstance(cache, bool)
               else [f for f in (default_folder, cache_dir() / "neighbors" / fingerprint) if f])
    for folder in folders:
        found = _load_cached(folder, fingerprint, k, n, request) if folder.is_dir() else None
        if found is not None:
            return found
    table = mine_table()
    for folder in folders:
        saved = _save_cached(folder, fingerprint, table)
        if saved is not None:
            table.info.update(cache=saved, cached=False)
            break
    return table
