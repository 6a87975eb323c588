"""The k-means loop and the block steps it is built from.

Each step works on one block of rows, so the same loop runs over an array in memory, a
store larger than memory, or one process's share of either under ``torchrun``:

- :func:`nearest_centroids` -- faiss assignment of a block (float32),
- :func:`accumulate_cluster_sums` -- per-cluster float64 sums and counts of a block,
- :func:`centroids_from_sums` -- the update step,
- :func:`reseed_empty_clusters` -- the faiss / DeepCluster rule for empty clusters,
- :func:`lloyd` -- the iterations: exact Lloyd pruned by bounds (a low-rank projection's,
  :mod:`deepclust.cluster.projected`, for float32 on the CPU; Hamerly's elsewhere).

:class:`deepclust.cluster.kmeans.KMeans` puts them together behind the scikit-learn API;
seeding lives in :mod:`deepclust.cluster.seeding`.
"""

from __future__ import annotations

import time

import faiss
import numpy as np
import torch

from deepclust import runtime
from deepclust.errors import InputError
from deepclust.validation import check_random_state

__all__ = [
    "FAST_CENTROIDS",
    "RESEED_EPS",
    "accumulate_cluster_sums",
    "block_objective",
    "centroids_from_sums",
    "lloyd",
    "nearest_centroids",
    "reseed_empty_clusters",
]

#: Centroids that moved most, checked against every row directly in a pruned pass.
FAST_CENTROIDS = 32
#: Bytes of one chunk's float64 copy in the update: small enough to stay in cache (a
#: chunk of 4 096 rows of 1 280 floats did not, and the update then cost twice as much).
_UPDATE_CHUNK_BYTES = 1 << 23
#: bf16 search on a CPU: gathering a row for a pruned pass costs about as much as scoring
#: it against this many centroids, so a pass searches every row when more than
#: ``k / (k + GATHER_CLUSTERS)`` of them would be searched anyway.
GATHER_CLUSTERS = 128
#: Most memory for rows kept prepared for the bf16 product between passes (bf16 on a CPU).
PREPARED_CACHE_BYTES = 1 << 30
#: Relative size of the perturbation that splits a centroid (the value faiss uses).
RESEED_EPS = 1.0 / 1024

# ----------------------------------------------------------------------------- block steps


def nearest_centroids(
    X: np.ndarray, centroids: np.ndarray, *, spherical: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row of one block, searched exhaustively by faiss.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32, C-contiguous
        One block of rows (L2-normalised when ``spherical``).
    centroids : ndarray of shape (k, d), float32, C-contiguous
        Unit-length rows when ``spherical``.
    spherical : bool
        Largest inner product (cosine) instead of smallest L2 distance.

    Returns
    -------
    labels : ndarray of shape (n,), int64
    scores : ndarray of shape (n,), float32
        Squared L2 distance to the chosen centroid, or its cosine when ``spherical``.
    """
    metric = faiss.METRIC_INNER_PRODUCT if spherical else faiss.METRIC_L2
    scores, labels = faiss.knn(X, centroids, 1, metric=metric)
    return labels[:, 0], scores[:, 0]


def block_objective(scores: np.ndarray, *, spherical: bool = False) -> float:
    """The k-means objective of one block from :func:`nearest_centroids` scores.

    Sum of squared distances, or of ``1 - cos`` when ``spherical``, accumulated in float64.
    """
    if spherical:
        return float(scores.size - scores.sum(dtype=np.float64))
    # faiss computes |x|^2 + |c|^2 - 2<x, c>, which can dip a hair below zero
    return float(np.maximum(scores, 0).sum(dtype=np.float64))


def accumulate_cluster_sums(
    X: np.ndarray, labels: np.ndarray, sums: np.ndarray, counts: np.ndarray,
    old: np.ndarray | None = None, rows: np.ndarray | None = None,
) -> None:
    """Add the rows of one block to per-cluster sums and counts, in place.

    Sums are accumulated in float64: each chunk of rows is copied to float64 and added to
    its clusters' rows by torch's ``index_add_`` (much faster than ``np.add.at``, and
    than a sparse one-hot product, whose construction cost more than the sums).

    Parameters
    ----------
    X : ndarray of shape (n, d)
        One block of rows.
    labels : ndarray of shape (n,), int
        Cluster of each row, in ``[0, k)``.
    sums : ndarray of shape (k, d), float64
        Running per-cluster sums; updated in place.
    counts : ndarray of shape (k,), int64
        Running per-cluster counts; updated in place.
    old : ndarray of shape (n,), int, optional
        Rows that move: each is also taken out of cluster ``old`` (where ``old >= 0``).
    rows : ndarray of shape (n,), int, optional
        The rows are ``X[rows]`` (gathered a chunk at a time), not ``X``.
    """
    k = sums.shape[0]
    counts += np.bincount(labels, minlength=k)
    if old is not None:
        counts -= np.bincount(old[old >= 0], minlength=k)
    target = torch.from_numpy(sums)
    step = max(64, _UPDATE_CHUNK_BYTES // (8 * max(1, X.shape[1])))
    for start in range(0, labels.shape[0], step):
        lab = labels[start : start + step]
        n = lab.shape[0]
        chunk = torch.from_numpy(X[start : start + n] if rows is None
                                 else np.take(X, rows[start : start + n], axis=0)).double()
        target.index_add_(0, torch.from_numpy(np.asarray(lab, dtype=np.int64)), chunk)
        if old is not None:
            prev = old[start : start + n]
            had = np.flatnonzero(prev >= 0)
            if had.size:
                target.index_add_(0, torch.from_numpy(prev[had].astype(np.int64)),
                                  chunk[torch.from_numpy(had)], alpha=-1.0)


def centroids_from_sums(
    sums: np.ndarray,
    counts: np.ndarray,
    previous: np.ndarray,
    *,
    spherical: bool = False,
) -> np.ndarray:
    """The update step: per-cluster means (unit directions when ``spherical``).

    Empty clusters, and spherical clusters whose sum vanishes, keep their ``previous``
    centroid; re-seed empty ones with :func:`reseed_empty_clusters`.

    Returns
    -------
    centroids : ndarray of shape (k, d), float64
    """
    centroids = np.array(previous, dtype=np.float64, copy=True)
    if spherical:
        norms = np.linalg.norm(sums, axis=1)
        ok = norms > 0
        centroids[ok] = sums[ok] / norms[ok, None]
    else:
        ok = counts > 0
        centroids[ok] = sums[ok] / counts[ok, None]
    return centroids


def reseed_empty_clusters(
    centroids: np.ndarray,
    counts: np.ndarray,
    random_state=None,
    *,
    eps: float = RESEED_EPS,
) -> int:
    """Give every empty cluster a split copy of a populated one (in place).

    The rule of faiss (``Clustering::train``) and DeepCluster: for each empty cluster pick
    a donor cluster with probability proportional to ``size - 1`` (clusters of one point
    are never split; if no cluster has two points, proportional to ``size``), copy its
    centroid ``c`` and move the two copies apart symmetrically, ``c * (1 + eps * s)`` for
    the empty cluster and ``c * (1 - eps * s)`` for the donor, where ``s`` alternates
    ``+1, -1, ...`` over the features (a radial split would vanish after spherical
    re-normalisation). The donor's count is split in two, so a large cluster can be split
    again for the next empty one.

    Parameters
    ----------
    centroids : ndarray of shape (k, d), float
        Modified in place. Re-normalise afterwards for spherical k-means.
    counts : ndarray of shape (k,), int or float
        Points per cluster; modified in place (the split counts).
    random_state : None, int or numpy Generator
    eps : float
        Relative size of the perturbation.

    Returns
    -------
    n_reseeded : int
        How many empty clusters were re-seeded.

    Examples
    --------
    >>> import numpy as np
    >>> C = np.array([[1.0, 1.0], [9.0, 9.0]])
    >>> counts = np.array([10, 0])
    >>> reseed_empty_clusters(C, counts, random_state=0)
    1
    >>> counts.tolist()
    [5, 5]
    """
    empty = np.flatnonzero(counts == 0)
    if empty.size == 0:
        return 0
    if not np.any(counts > 0):
        raise InputError("cannot re-seed empty clusters: every cluster is empty")
    rng = check_random_state(random_state)
    sign = np.where(np.arange(centroids.shape[1]) % 2 == 0, 1.0, -1.0)
    for ci in empty:
        weights = np.maximum(counts - 1, 0).astype(np.float64)
        if weights.sum() <= 0:
            weights = counts.astype(np.float64)
        cumulative = np.cumsum(weights)
        cj = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        cj = min(cj, len(counts) - 1)
        c = centroids[cj].copy()
        centroids[ci] = c * (1 + eps * sign)
        centroids[cj] = c * (1 - eps * sign)
        counts[ci] = counts[cj] // 2 if np.issubdtype(counts.dtype, np.integer) else counts[cj] / 2
        counts[cj] -= counts[ci]
    return int(empty.size)


# ----------------------------------------------------------------------------- the loop


def lloyd(
    source,
    centroids: np.ndarray,
    *,
    max_iter: int,
    tol: float,
    spherical: bool,
    rng: np.random.Generator,
    verbose: bool,
    precision: str = "fp32",
    device=None,
    center: np.ndarray | None = None,
    ranks=None,
) -> dict:
    """Lloyd iterations from ``centroids``; one pass over ``source`` per iteration.

    Exact Lloyd, pruned by bounds. On the CPU in float32 (with enough dimensions, and rows
    that fit :data:`deepclust.cluster.projected.PROJECTION_BYTES`) a low-rank projection
    bounds every (row, centroid) distance and only the pairs it cannot settle are computed
    (:class:`deepclust.cluster.projected.ProjectedSearch`). Elsewhere, Hamerly's bounds
    (G. Hamerly, "Making k-means even faster", SDM 2010): each row keeps an upper bound on
    the distance to its centroid and a lower bound on the distance to every other one;
    after an update the bounds move by how far the centroids moved, and only rows whose
    bounds cross are searched again. The labels
    are those of plain Lloyd (the bounds are rigorous, float32 rounding included). On the
    CPU's bf16 path (``CentroidSearch.candidates_path``) the bounds come from the product's
    scores and their error bound, the rows are prepared once per fit when they fit
    :data:`PREPARED_CACHE_BYTES`, and a pass searches every row when more than
    ``k / (k + GATHER_CLUSTERS)`` of them would be searched anyway.

    The per-cluster float64 sums and counts are kept up to date as rows change cluster,
    and the objective of each assignment comes from them:
    ``sum |x|^2 - 2 sum_j <c_j, S_j> + sum_j n_j |c_j|^2``. Each pass assigns every block
    and the assignment at the start of the next pass doubles as the check for
    convergence, so the returned labels always belong to the returned centroids.
    ``ranks`` (a :class:`~deepclust.runtime.DistInfo`; default: every process) are the
    processes whose findings are summed under ``torchrun``; ``source`` is then this
    process's share of the rows.
    """
    from deepclust.cluster import projected
    from deepclust.cluster.assign import CentroidSearch

    device = device if device is not None else torch.device("cpu")
    n, d = source.n, source.d
    k = centroids.shape[0]
    # the exact float32 search on the CPU prunes by a projection's bounds where they fit
    proj = None
    if device.type == "cpu" and precision == "fp32" and projected.fits(n, d, k):
        s = min(n, projected.SAMPLE_ROWS)
        proj = projected.ProjectedSearch(
            source.take(source.start + np.unique(np.linspace(0, n - 1, s).astype(np.int64))),
            n)
    C = np.ascontiguousarray(centroids, dtype=np.float32)
    labels = np.full(n, -1, dtype=np.int64)
    upper = np.empty(n, dtype=np.float64)
    lower = np.empty(n, dtype=np.float64)
    row_n2 = np.empty(n, dtype=np.float32)  # |x|^2 of every row, for the fast bound
    sums = np.zeros((k, d), dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    sq_norms = 0.0
    prev_obj = None
    history: list[float] = []
    searched: list[int] = []
    pairs_done: list[int] = []
    n_iter = n_reseeded = reseeded = 0
    converged = False
    moved = None  # how far each centroid moved in the last update
    prepared: dict[int, object] = {}  # block offset -> its rows prepared for the bf16 product
    for it in range(max_iter + 1):
        t0 = time.perf_counter()
        update = it < max_iter
        search = CentroidSearch(C, spherical=spherical, precision=precision, device=device,
                                center=center)
        n_changed = n_searched = n_pairs = 0
        first = moved is None
        # the bf16 search on a CPU bounds the distances from its product: no exact
        # tightening, and no fast-centroid product (it would cost a share of the search)
        cheap = search.candidates_path
        keep = cheap and n * (search.d_pad * 2 + 24) <= PREPARED_CACHE_BYTES
        if not first and cheap:
            order = np.argsort(moved)
            fast = order[:0]
            top = order[-1]
            runner_up = order[-2] if k > 1 else order[-1]
        elif not first and proj is None:
            # the fastest-moving centroids are checked against every row directly, so
            # one far jump (a re-seeded cluster, a small cluster) does not loosen the
            # lower bound of every row; the others move the bound by their largest step
            order = np.argsort(moved)
            # at small k the thin product would cost a sizable share of a full search
            n_fast = min(k - 1, FAST_CENTROIDS) if k >= 8 * FAST_CENTROIDS else 0
            fast = np.sort(order[k - n_fast:]) if n_fast else order[:0]
            rest = order[: k - n_fast]
            top = rest[-1]
            runner_up = rest[-2] if rest.size > 1 else rest[-1]
            fast_C = np.ascontiguousarray(C[fast])
            fast_n2 = np.einsum("ij,ij->i", fast_C, fast_C).astype(np.float32)
            fast_pos = np.full(k, -1, dtype=np.int64)
            fast_pos[fast] = np.arange(fast.size)
        if proj is not None:
            proj.centroids(C, moved)
        for off, block in source.blocks():
            sl = slice(off, off + block.shape[0])
            if first:
                n2 = np.einsum("ij,ij->i", block, block, dtype=np.float64)
                row_n2[sl] = n2
                sq_norms += float(n2.sum())
            if proj is not None:  # every row, pruned pair by pair
                if first:
                    proj.project(block, off, n2)
                    new, upper[sl], found, pairs = proj.search(block, off)
                else:  # the last labels are the guesses; their distances grew by the moves
                    lab = labels[sl]
                    new, upper[sl], found, pairs = proj.search(block, off, lab,
                                                               upper[sl] + moved[lab])
                rows = np.arange(block.shape[0])
                near = second = None
            else:
                if first:
                    rows = np.arange(block.shape[0])
                else:
                    lab = labels[sl]
                    up = upper[sl] + moved[lab]
                    low = lower[sl] - np.where(lab == top, moved[runner_up], moved[top])
                    if fast.size:
                        low = np.minimum(low, _fast_lower_bound(
                            block, row_n2[sl], fast_C, fast_n2, fast_pos[lab], search.gamma))
                    rows = np.flatnonzero(up > low)
                    if rows.size and not cheap:  # tighten the upper bound before searching
                        up[rows] = search._up(search.exact_distances(block, lab[rows], rows))
                        rows = rows[up[rows] > low[rows]]
                    upper[sl] = up
                    lower[sl] = low
                    if cheap and rows.size > block.shape[0] * k / (k + GATHER_CLUSTERS):
                        rows = np.arange(block.shape[0])  # gathering would cost more
                if rows.size == 0:
                    continue
                whole = rows.size == block.shape[0]
                if cheap:  # the search gathers what it needs from the block
                    prep = prepared.get(off)
                    if prep is None and keep:
                        prep = prepared[off] = search.prepare(block)
                    if prep is not None and not whole:
                        prep = prep.take(rows)
                    # without kept rows, search prepares only the rows it searches
                    new, near, second = search.search(block, prep, None if whole else rows)
                else:
                    new, near, second = search.search(block if whole else
                                                      np.take(block, rows, axis=0))
            at = off + rows
            old = labels[at]
            changed = np.flatnonzero(new != old)
            if changed.size:
                accumulate_cluster_sums(block, new[changed], sums, counts, old[changed],
                                        None if changed.size == block.shape[0]
                                        else rows[changed])
            labels[at] = new
            if near is not None:
                upper[at] = near
                lower[at] = second
            n_changed += int(changed.size)
            n_searched += found if proj is not None else int(rows.size)
            n_pairs += pairs if proj is not None else int(rows.size) * k
        if first:
            sq_norms = runtime.sum_over_ranks(sq_norms, ranks)
        g_sums = runtime.sum_over_ranks(sums, ranks)
        g_counts = runtime.sum_over_ranks(counts, ranks)
        n_changed = runtime.sum_over_ranks(n_changed, ranks)
        searched.append(runtime.sum_over_ranks(n_searched, ranks))
        pairs_done.append(runtime.sum_over_ranks(n_pairs, ranks))
        C64 = C.astype(np.float64)
        obj = (sq_norms - 2.0 * float(np.einsum("ij,ij->", C64, g_sums))
               + float(g_counts @ np.einsum("ij,ij->i", C64, C64)))
        obj = max(obj, 0.0) / (2.0 if spherical else 1.0)
        history.append(obj)
        if verbose:
            print(f"  iteration {it:3d}  objective {obj:.6g}  changed {n_changed}  searched "
                  f"{searched[-1]} rows, {pairs_done[-1]} pairs  "
                  f"({time.perf_counter() - t0:.2f} s)")
        if prev_obj is not None:
            # unchanged labels: the update would return the same centroids. A re-seed can
            # raise the objective a little, so the tol test skips the pass after one.
            small_gain = tol > 0 and not reseeded and prev_obj - obj <= tol * prev_obj
            if n_changed == 0 or small_gain:
                converged = True
                break
        if not update:
            break
        new_C = centroids_from_sums(g_sums, g_counts, C, spherical=spherical)
        reseeded = reseed_empty_clusters(new_C, g_counts.copy(), rng)
        if reseeded and spherical:
            new_C /= np.linalg.norm(new_C, axis=1, keepdims=True)
        n_reseeded += reseeded
        new_C = new_C.astype(np.float32)
        moved = np.linalg.norm(new_C.astype(np.float64) - C64, axis=1) * (1.0 + 1e-6)
        C = new_C
        n_iter += 1
        prev_obj = obj
        if verbose and reseeded:
            print(f"  re-seeded {reseeded} empty cluster(s)")
    return {
        "centroids": C,
        "labels": labels,
        "inertia": history[-1],
        "n_iter": n_iter,
        "n_reseeded": n_reseeded,
        "converged": converged,
        "objective_history": history,
        "rows_searched": searched,
        "pairs_computed": pairs_done,
    }


def _fast_lower_bound(X: np.ndarray, x_n2: np.ndarray, fast_C: np.ndarray,
                      fast_n2: np.ndarray, own: np.ndarray, gamma: float) -> np.ndarray:
    """Per row, a lower bound on the distance to the fast-moving centroids other than its
    own: a float32 product ``|x|^2 + |c|^2 - 2 <x, c>`` less its worst-case rounding
    (``3 gamma (|x|^2 + |c|^2)``). ``own`` is each row's position in ``fast_C``, or -1."""
    d2 = X @ fast_C.T
    d2 *= -2.0
    d2 += ((1.0 - 3.0 * gamma) * x_n2)[:, None]
    d2 += ((1.0 - 3.0 * gamma) * fast_n2)[None, :]
    mine = np.flatnonzero(own >= 0)
    d2[mine, own[mine]] = np.inf  # a row's own centroid is not "other"
    low = d2.min(axis=1)
    np.maximum(low, 0.0, out=low)
    return np.sqrt(low, dtype=np.float64)


