"""From a finished clustering to the files of its run folder: ``labels.npy``,
``assignments.parquet``/``.csv`` (:mod:`deepclust.results.assignments`) and ``run.json``.

:func:`compute_assignments` adds to the labels what a person acts on: distance to the centre
and rank (in the space that was clustered), the method's probability, an outlier score and
near-duplicate groups (from one neighbour table of the input rows, mined block-wise and
cached beside a store), and exact-copy groups (SHA-256 of the files, when the rows have files).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from deepclust.progress import spinner
from deepclust.results.assignments import (
    ASSIGNMENTS_FILE,
    assignments_table,
    centre_distances,
    soft_probability,
    write_assignments,
)
from deepclust.results.duplicates import (
    NEAR_DUPLICATE_COSINE,
    exact_duplicate_groups,
    near_duplicate_groups,
)
from deepclust.results.outliers import OUTLIER_NEIGHBORS, outlier_scores

__all__ = ["compute_assignments", "failed_items", "store_file_paths", "write_run"]

#: Source kinds whose items are files of their own (tar members and in-memory arrays are not).
_FILE_KINDS = ("folder", "manifest", "hf")


def _absolute(path: str, id_: str, kind: str | None, root: str | None) -> str | None:
    if not path or kind not in _FILE_KINDS:
        return None
    if kind == "folder" and root:  # the id is the path relative to the folder's root
        return os.path.normpath(os.path.join(root, id_))
    if os.path.isabs(path):
        return os.path.normpath(path)
    if root and os.path.exists(os.path.join(root, path)):
        return os.path.normpath(os.path.join(root, path))
    return os.path.abspath(path)


def _source_of(store) -> tuple[str | None, str | None]:
    src = store.meta.get("source")
    src = src if isinstance(src, dict) else {}  # a store written from arrays names a string
    return src.get("kind"), src.get("root") or src.get("path")


def store_file_paths(store) -> list[str | None]:
    """Absolute image paths of a store's rows (None where a row has no file of its own).

    A folder store's paths are its recorded absolute root joined with each id, so they hold
    from any working folder even when ``embed`` was given a relative path.
    """
    kind, root = _source_of(store)
    return [_absolute(p, i, kind, root) for p, i in zip(store.paths, store.ids, strict=True)]


def failed_items(store) -> list[dict]:
    """The store's images that could not be embedded: ``path`` (absolute), ``id``, ``reason``."""
    kind, root = _source_of(store)
    return [{"path": _absolute(r.get("path") or "", r.get("id") or "", kind, root)
             or r.get("path") or None, "id": r.get("id"), "reason": r.get("reason")}
            for r in store.failed]


#: Above this many rows the neighbour-based columns (``outlier_score``,
#: ``near_duplicate_group``) are left empty and the run says why: each row's neighbours would
#: be mined by an approximate index holding every row (docs/results.md).
NEIGHBOR_COLUMNS_MAX_ROWS = 250_000
#: Up to this many bytes of float32 rows, the neighbour table is searched only where the
#: run's clusters allow a nearer row (:func:`deepclust.neighbors.exact_by_groups`: the same
#: exact table, the rows read into memory); above, block by block over every pair.
GROUPED_SEARCH_MAX_BYTES = 1 << 30


def compute_assignments(result, *, progress: bool = False,
                        near_duplicate_cosine: float = NEAR_DUPLICATE_COSINE) -> pa.Table:
    """The assignments table of a :class:`~deepclust.pipeline.ClusteringResult`.

    Ids and paths come from the input: a store's index (absolute paths), a feature file's
    id column, else row numbers and no paths.
    """
    from deepclust.neighbors import neighbors_for

    data = result.input
    labels = np.asarray(result.labels, dtype=np.int64)
    n = len(labels)
    store = getattr(data.rows, "store", None)
    ids, paths = None, None
    if store is not None:
        ids, paths = store.ids, store_file_paths(store)
    elif data.ids is not None:
        ids = data.ids
    with spinner("distances to the cluster centres", enabled=progress):
        distance, rank = centre_distances(result.clustered, labels)
        probability = soft_probability(result.estimator, result.clustered, labels)
    outlier = near = None
    if n > NEIGHBOR_COLUMNS_MAX_ROWS:
        result.warnings.append(
            f"outlier_score and near_duplicate_group are left empty: {n} rows is more than "
            f"{NEIGHBOR_COLUMNS_MAX_ROWS}, where every row's nearest neighbours would cost more "
            "than the clustering; exact copies are still found")
    elif n >= 2:
        rows = data.rows if data.rows is not None else data.X
        d = data.rows.d if data.rows is not None else np.shape(data.X)[1]
        fits = n * d * 4 <= GROUPED_SEARCH_MAX_BYTES
        with spinner(f"{min(OUTLIER_NEIGHBORS, n - 1)} nearest neighbours of {n} rows",
                     enabled=progress):
            table = neighbors_for(rows, min(OUTLIER_NEIGHBORS, n - 1),
                                  cache=data.rows is not None and data.rows.home is not None,
                                  groups=labels if fits else None)
        outlier = outlier_scores(table)
        near = near_duplicate_groups(table, near_duplicate_cosine)
    exact = exact_duplicate_groups(paths, progress=progress) if paths is not None else None
    return assignments_table(labels, ids=ids, paths=paths, probability=probability,
                             distance=distance, rank=rank, outlier_score=outlier,
                             duplicate_group=exact, near_duplicate_group=near)


def write_run(result, out: str | os.PathLike, *, command: str = "cluster",
              input_info: dict | None = None, failed: list[dict] | None = None,
              progress: bool = False, t0: float | None = None, **fields):
    """Write ``out/labels.npy``, ``out/assignments.parquet``/``.csv`` and ``out/run.json``.

    Parameters
    ----------
    result : deepclust.pipeline.ClusteringResult
    out : path
        The run folder (created).
    input_info : dict, optional
        ``path`` (absolute), ``fingerprint``, ``store``: merged into the record's ``input``.
    failed : list of dict, optional
        Images that could not be read (recorded in run.json).
    t0 : float, optional
        ``time.perf_counter()`` at the start of the run: ``timings["total_s"]`` is set from it
        once the assignments are computed.
    **fields
        Set on the run record (argv, seed, k_requested, noise, started, finished, ...).

    Returns
    -------
    (RunRecord, pyarrow.Table)
        The record written and the assignments table.
    """
    from deepclust.runinfo import write_npy

    out = Path(out)
    write_npy(out / "labels.npy", result.labels)
    t = time.perf_counter()
    table = compute_assignments(result, progress=progress)
    result.timings["assignments_s"] = time.perf_counter() - t
    if t0 is not None:
        result.timings["total_s"] = time.perf_counter() - t0
    write_assignments(table, out)
    record = result.record(command, input=input_info or {}, failed=failed,
                           assignments=ASSIGNMENTS_FILE, **fields)
    record.write(out)
    return record, table
