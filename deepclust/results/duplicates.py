"""Exact and near duplicates among the rows of a run.

- **Exact copies** (:func:`exact_duplicate_groups`): files with byte-identical content, found by
  the SHA-256 of each file. Only files whose size another file shares are read (a file with a
  unique size has no copy), and each of those is read once, in 1 MiB chunks.
- **Near duplicates** (:func:`near_duplicate_groups`): rows whose embeddings have a cosine
  similarity of at least :data:`NEAR_DUPLICATE_COSINE`, joined into groups by connected
  components of that graph (so A~B and B~C put A, B and C in one group). The pairs come from a
  neighbour table (:func:`deepclust.neighbors.neighbors_for`), which is mined block-wise, so
  the cost stays bounded on large inputs; a group larger than the table's ``k + 1`` is still
  found through chains of neighbours.

Group ids are 0, 1, ... in the order of each group's first row; -1 means "no copy".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np

__all__ = ["NEAR_DUPLICATE_COSINE", "exact_duplicate_groups", "file_sha256",
           "near_duplicate_groups"]

#: Cosine similarity from which two embeddings count as near duplicates, calibrated for
#: effnet-lite0 by ``benchmarks/duplicates.py`` (crops, flips, JPEG re-encodes, resizes and
#: brightness changes of 22 photos against distinct photos and halves of one photo): the
#: point where copies missed and distinct shots joined are about equal (docs/results.md).
NEAR_DUPLICATE_COSINE = 0.88

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str | None:
    """The SHA-256 (hex) of a file's content, or None when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _group_ids(keys: Sequence) -> np.ndarray:
    """Ids 0, 1, ... for keys shared by two or more rows (in order of first row); -1 else.
    None keys are never grouped."""
    counts: dict = {}
    for key in keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    ids: dict = {}
    out = np.full(len(keys), -1, dtype=np.int64)
    for i, key in enumerate(keys):
        if key is not None and counts[key] > 1:
            out[i] = ids.setdefault(key, len(ids))
    return out


def exact_duplicate_groups(paths: Sequence[str | os.PathLike | None], *,
                           progress: bool = False) -> np.ndarray:
    """Groups of byte-identical files.

    Parameters
    ----------
    paths : sequence of path or None
        One file per row; None or ``""`` for a row without a file (never grouped).
    progress : bool
        A progress bar over the files that are hashed.

    Returns
    -------
    ndarray of int64, shape (len(paths),)
        Rows whose files have the same SHA-256 share an id >= 0; -1 for a row with no copy
        (or no readable file).

    Examples
    --------
    >>> exact_duplicate_groups([None, ""]).tolist()
    [-1, -1]
    """
    sizes: list[int | None] = []
    for p in paths:
        try:
            sizes.append(os.stat(p).st_size if p else None)
        except OSError:
            sizes.append(None)
    todo = np.flatnonzero(_group_ids(sizes) >= 0).tolist()  # sizes another file shares
    digests: list[str | None] = [None] * len(paths)
    from tqdm.auto import tqdm

    from deepclust.progress import progress_disabled

    for i in tqdm(todo, desc="hashing files", unit="file",
                  disable=not progress or not todo or progress_disabled(),
                  leave=False):
        digests[i] = file_sha256(paths[i])
    # the size is part of the key: only files of one size are compared
    keys = [(sizes[i], d) if d is not None else None for i, d in enumerate(digests)]
    return _group_ids(keys)


def near_duplicate_groups(neighbors, threshold: float = NEAR_DUPLICATE_COSINE) -> np.ndarray:
    """Groups of rows joined by a cosine similarity of at least ``threshold``.

    Parameters
    ----------
    neighbors : deepclust.neighbors.Neighbors
        Each row's nearest rows by cosine similarity (itself excluded).
    threshold : float
        Smallest cosine similarity of a near-duplicate pair.

    Returns
    -------
    ndarray of int64, shape (n,)
        Connected components of the graph of pairs above the threshold; components of one
        row are -1.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = np.asarray(neighbors.indices)
    sims = np.asarray(neighbors.similarities)
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows, cols = np.nonzero((sims >= threshold) & (ids >= 0))
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, ids[rows, cols])),
                       shape=(n, n))
    _, comp = connected_components(graph, directed=True, connection="weak")
    sizes = np.bincount(comp)
    return _group_ids([int(c) if sizes[c] > 1 else None for c in comp])
