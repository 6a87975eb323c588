"""The per-row results of a clustering run: ``RUN/assignments.parquet`` and ``.csv``.

One row per clustered row, in row order, with exactly the columns of :data:`SCHEMA`:

============================  ================================================================
``row`` (int64)               row number in the input
``id`` (string)               image path relative to the source root (folders), the id column
                              of a feature file, else the row number as text
``path`` (string or null)     absolute path of the image file when the input has files
``cluster`` (int64)           cluster label, -1 = noise
``probability`` (float64)     the method's soft assignment of the row to its cluster (GMM
                              ``predict_proba``, heads' probabilities, HDBSCAN
                              ``probabilities_``); null when the method has none
``distance`` (float64)        Euclidean distance to the cluster's centre (the mean of its
                              members) in the space that was clustered; null for noise
``rank`` (int64)              0 = closest to the centre within its cluster, ...; -1 for noise
``representative`` (bool)     among the :data:`REPRESENTATIVES_PER_CLUSTER` closest to the centre
``outlier_score`` (float64)   percentile rank of the mean cosine distance to the 10 nearest rows (null: not computed)
                              (:mod:`deepclust.results.outliers`; 1 = most isolated)
``duplicate_group`` (int64)   byte-identical files share an id >= 0; -1 = no exact copy
``near_duplicate_group``      rows joined by embedding cosine similarity >= the threshold
(int64)                       (:mod:`deepclust.results.duplicates`); -1 = none
============================  ================================================================
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from deepclust.data.rows import as_row_source
from deepclust.errors import InputError

__all__ = ["ASSIGNMENTS_CSV", "ASSIGNMENTS_FILE", "REPRESENTATIVES_PER_CLUSTER", "SCHEMA",
           "assignments_table", "centre_distances", "read_assignments", "soft_probability",
           "write_assignments"]

ASSIGNMENTS_FILE = "assignments.parquet"
ASSIGNMENTS_CSV = "assignments.csv"
#: Rows per cluster flagged ``representative`` (the closest to the centre).
REPRESENTATIVES_PER_CLUSTER = 5

SCHEMA = pa.schema([
    pa.field("row", pa.int64(), nullable=False),
    pa.field("id", pa.string(), nullable=False),
    pa.field("path", pa.string()),
    pa.field("cluster", pa.int64(), nullable=False),
    pa.field("probability", pa.float64()),
    pa.field("distance", pa.float64()),
    pa.field("rank", pa.int64(), nullable=False),
    pa.field("representative", pa.bool_(), nullable=False),
    pa.field("outlier_score", pa.float64(), nullable=True),
    pa.field("duplicate_group", pa.int64(), nullable=False),
    pa.field("near_duplicate_group", pa.int64(), nullable=True),
])


def centre_distances(Z, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's Euclidean distance to its cluster's mean, and its rank in its cluster.

    Parameters
    ----------
    Z : array, RowSource or store
        The rows that were clustered (read block by block: two passes).
    labels : ndarray of int, shape (n,)
        -1 = noise.

    Returns
    -------
    distance : ndarray of float64
        NaN for noise.
    rank : ndarray of int64
        0 = closest to the centre within its cluster (ties by row number); -1 for noise.

    Examples
    --------
    >>> Z = np.array([[0.0], [1.0], [3.0], [10.0], [7.0]])
    >>> d, r = centre_distances(Z, np.array([0, 0, 0, 1, -1]))
    >>> d.round(3).tolist()[:4], r.tolist()
    ([1.333, 0.333, 1.667, 0.0], [1, 0, 2, 0, -1])
    """
    rows = as_row_source(Z, name="clustered rows")
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != rows.n:
        raise InputError(f"{len(labels)} labels for {rows.n} rows")
    kept = labels >= 0
    n_clusters = int(labels.max()) + 1 if kept.any() else 0
    sums = np.zeros((n_clusters, rows.d))
    for start, block in rows.blocks():
        lab = labels[start:start + len(block)]
        ok = lab >= 0
        np.add.at(sums, lab[ok], block[ok])  # float64 sums, no float64 copy of the block
    counts = np.bincount(labels[kept], minlength=n_clusters)
    centres = sums / np.maximum(counts, 1)[:, None]
    distance = np.full(len(labels), np.nan)
    for start, block in rows.blocks():
        lab = labels[start:start + len(block)]
        ok = np.flatnonzero(lab >= 0)
        diff = block[ok].astype(np.float64) - centres[lab[ok]]
        distance[start + ok] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    rank = np.full(len(labels), -1, dtype=np.int64)
    members = np.flatnonzero(kept)
    order = members[np.lexsort((members, distance[members], labels[members]))]
    if len(order):
        lab = labels[order]
        first = np.r_[0, np.flatnonzero(np.diff(lab)) + 1]
        starts = np.repeat(first, np.diff(np.r_[first, len(order)]))
        rank[order] = np.arange(len(order)) - starts
    return distance, rank


def soft_probability(estimator, Z, labels: np.ndarray) -> np.ndarray | None:
    """The estimator's probability of each row's own cluster, or None when it has none.

    HDBSCAN's ``probabilities_`` (membership strength, 0 for noise), else
    ``predict_proba(Z)[i, labels[i]]`` (GMM, TEMI/SCAN heads). Never for rows that were
    streamed (``Z`` not in memory).
    """
    labels = np.asarray(labels, dtype=np.int64)
    probs = getattr(estimator, "probabilities_", None)
    if probs is not None and len(probs) == len(labels):
        return np.asarray(probs, dtype=np.float64)
    if not hasattr(estimator, "predict_proba") or not isinstance(Z, np.ndarray):
        return None
    proba = np.asarray(estimator.predict_proba(Z), dtype=np.float64)
    out = np.full(len(labels), np.nan)
    ok = (labels >= 0) & (labels < proba.shape[1])
    out[ok] = proba[np.flatnonzero(ok), labels[ok]]
    return out


def _column(values, n: int, dtype, default, what: str) -> np.ndarray:
    if values is None:
        return np.full(n, default, dtype=dtype)
    arr = np.asarray(values, dtype=dtype)
    if arr.shape != (n,):
        raise InputError(f"{what}: {arr.shape[0] if arr.ndim else 0} values for {n} rows")
    return arr


def assignments_table(labels, *, ids=None, paths=None, probability=None, distance=None,
                      rank=None, outlier_score=None, duplicate_group=None,
                      near_duplicate_group=None) -> pa.Table:
    """The assignments table (:data:`SCHEMA`) from per-row columns.

    ``ids`` default to the row numbers; ``paths`` to null; ``probability`` and ``distance``
    NaN become null; ``outlier_score`` and ``near_duplicate_group`` not given are null (not
    computed); ``distance`` and ``rank`` must be given together (or neither: then every
    distance is null and every rank -1, e.g. for a run with only noise).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    ids = (pa.array(np.arange(n, dtype=np.int64)).cast(pa.string()) if ids is None
           else pa.array([str(v) for v in ids], pa.string()))
    if len(ids) != n:
        raise InputError(f"ids: {len(ids)} values for {n} rows")
    if paths is None:
        paths = pa.nulls(n, pa.string())
    else:
        paths = [p if p else None for p in (os.fspath(p) if p else None for p in paths)]
        if len(paths) != n:
            raise InputError(f"paths: {len(paths)} values for {n} rows")
    prob = _column(probability, n, np.float64, np.nan, "probability")
    dist = _column(distance, n, np.float64, np.nan, "distance")
    rnk = _column(rank, n, np.int64, -1, "rank")
    return pa.table({
        "row": pa.array(np.arange(n, dtype=np.int64)),
        "id": ids,
        "path": paths if isinstance(paths, pa.Array) else pa.array(paths, pa.string()),
        "cluster": pa.array(labels),
        "probability": pa.array(prob, pa.float64(), from_pandas=True),
        "distance": pa.array(np.where(labels >= 0, dist, np.nan), pa.float64(), from_pandas=True),
        "rank": pa.array(np.where(labels >= 0, rnk, -1)),
        "representative": pa.array((labels >= 0) & (rnk >= 0)
                                   & (rnk < REPRESENTATIVES_PER_CLUSTER)),
        # null when not computed (one row, or too many rows: see results.run)
        "outlier_score": (pa.nulls(n, pa.float64()) if outlier_score is None else
                          pa.array(_column(outlier_score, n, np.float64, 0.0, "outlier_score"))),
        "duplicate_group": pa.array(_column(duplicate_group, n, np.int64, -1, "duplicate_group")),
        "near_duplicate_group": (pa.nulls(n, pa.int64()) if near_duplicate_group is None else
                                 pa.array(_column(near_duplicate_group, n, np.int64, -1,
                                                  "near_duplicate_group"))),
    }, schema=SCHEMA)


def write_assignments(table: pa.Table, run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/assignments.parquet`` and ``assignments.csv`` (atomically); returns the
    parquet path."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from deepclust.runinfo import atomic_write

    if not table.schema.equals(SCHEMA):
        raise InputError("the table does not have the assignments schema")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / ASSIGNMENTS_FILE, lambda f: pq.write_table(table, f))
    atomic_write(run_dir / ASSIGNMENTS_CSV, lambda f: pcsv.write_csv(table, f))
    return run_dir / ASSIGNMENTS_FILE


def read_assignments(run_dir: str | os.PathLike) -> pa.Table:
    """``run_dir/assignments.parquet`` as a pyarrow Table."""
    import pyarrow.parquet as pq

    from deepclust.errors import DataNotFoundError

    path = Path(run_dir) / ASSIGNMENTS_FILE
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist; run `deepclust cluster` with --out "
                                f"{run_dir} first")
    return pq.read_table(path)
