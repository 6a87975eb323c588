"""k-means (Lloyd) with faiss doing the nearest-centroid search.

The loop is built from small functions that each work on one block of rows, so the same
loop can later run over data that does not fit in memory:

- :func:`nearest_centroids` -- faiss assignment of a block (float32),
- :func:`accumulate_cluster_sums` -- per-cluster float64 sums and counts of a block,
- :func:`centroids_from_sums` -- the update step,
- :func:`reseed_empty_clusters` -- the faiss / DeepCluster rule for empty clusters,
- :func:`kmeans_plus_plus_init` -- greedy k-means++ seeding, vectorised.

:class:`KMeans` puts them together behind the scikit-learn estimator API.
"""

from __future__ import annotations

import copy
import time
import warnings
from numbers import Integral, Real

import faiss
import numpy as np
import scipy.sparse as sp
import torch
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from deepclust.validation import check_features, check_n_clusters, check_random_state
from deepclust.cluster.base import BaseClusterer, register
from deepclust.cluster.rows import unit_rows
from deepclust.errors import InputError

__all__ = [
    "KMeans",
    "accumulate_cluster_sums",
    "block_objective",
    "centroids_from_sums",
    "default_plus_plus_samples",
    "kmeans_plus_plus_init",
    "nearest_centroids",
    "random_init",
    "reseed_empty_clusters",
]

#: Rows per block of the Lloyd pass (assignment and accumulation are fused per block).
BLOCK_ROWS = 1 << 16
#: Centroids that moved most, checked against every row directly in a pruned pass.
FAST_CENTROIDS = 32
#: Rows per sparse product in the update; small enough that a float64 copy stays in cache.
_UPDATE_CHUNK = 4096
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
    X: np.ndarray, labels: np.ndarray, sums: np.ndarray, counts: np.ndarray
) -> None:
    """Add the rows of one block to per-cluster sums and counts, in place.

    Sums are accumulated in float64: each chunk of rows is copied to float64 and summed
    per cluster with a sparse one-hot product (much faster than ``np.add.at``).

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
    """
    k = sums.shape[0]
    counts += np.bincount(labels, minlength=k)
    for start in range(0, X.shape[0], _UPDATE_CHUNK):
        lab = labels[start : start + _UPDATE_CHUNK]
        n = lab.shape[0]
        rows = np.ones(n)
        chunk = X[start : start + n].astype(np.float64)
        if k <= n:
            one_hot = sp.csc_matrix((rows, lab, np.arange(n + 1)), shape=(k, n))
            sums += one_hot @ chunk
        else:  # many clusters: a product over the present ones only stays small
            present, local = np.unique(lab, return_inverse=True)
            one_hot = sp.csc_matrix((rows, local, np.arange(n + 1)), shape=(present.shape[0], n))
            sums[present] += one_hot @ chunk


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


# ----------------------------------------------------------------------------- seeding


def default_plus_plus_samples(n_samples: int, n_clusters: int) -> int:
    """Rows that :func:`kmeans_plus_plus_init` seeds from by default.

    ``min(n_samples, max(32 * n_clusters, 10_000))``: 32 points per centroid (faiss warns
    below 39 per centroid for the whole fit; seeding needs fewer) keeps k-means++ to a few
    seconds for 200 000 x 256 with k = 1000, and small data is seeded from all its rows.
    """
    return int(min(n_samples, max(32 * n_clusters, 10_000)))


def kmeans_plus_plus_init(
    X,
    n_clusters: int,
    random_state=None,
    *,
    n_local_trials: int | None = None,
    max_samples: int | None = None,
) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; as in scikit-learn).

    The first centre is a uniformly random row; each next one is the best, by the
    resulting potential, of ``n_local_trials`` rows drawn with probability proportional to
    their squared distance to the nearest centre so far. Distances to all the trials are
    one matrix product per centre. When ``X`` is large the seeding runs on a uniform random
    subsample of ``max_samples`` rows (default :func:`default_plus_plus_samples`), so the
    centres are always rows of ``X``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Seed from these rows (L2-normalise them first for spherical k-means: squared
        Euclidean distance between unit vectors is ``2 - 2 cos``).
    n_clusters : int
        Number of centres.
    random_state : None, int or numpy Generator
    n_local_trials : int, optional
        Candidates per centre; default ``2 + int(log(n_clusters))``, 1 gives plain
        k-means++.
    max_samples : int, optional
        Largest number of rows to seed from.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float32

    Examples
    --------
    >>> import numpy as np
    >>> X = np.r_[np.zeros((50, 2)), np.full((50, 2), 10.0)]
    >>> C = kmeans_plus_plus_init(X, 2, random_state=0)
    >>> sorted(C[:, 0].tolist())
    [0.0, 10.0]
    """
    X = check_features(X, dtype=np.float32)
    k = check_n_clusters(n_clusters, X.shape[0])
    return _plus_plus(
        X,
        k,
        check_random_state(random_state),
        n_local_trials=n_local_trials,
        max_samples=max_samples,
    )


def _plus_plus(
    X: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    n_local_trials: int | None = None,
    max_samples: int | None = None,
) -> np.ndarray:
    """:func:`kmeans_plus_plus_init` on validated float32 rows."""
    n = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(k))
    if not isinstance(n_local_trials, Integral) or n_local_trials < 1:
        raise InputError(f"n_local_trials must be a positive integer, got {n_local_trials!r}")
    m = default_plus_plus_samples(n, k) if max_samples is None else int(max_samples)
    if m < k:
        raise InputError(f"max_samples={m} is smaller than n_clusters={k}")
    rows = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
    m = rows.shape[0]
    # a centred float32 copy (the expansion |x|^2 + |c|^2 - 2<x, c> then loses less to
    # rounding), stored transposed: (t, d) @ (d, m) is the product shape BLAS runs fastest
    S = X[rows]
    S -= S.mean(axis=0, dtype=np.float64).astype(np.float32)
    sq = np.einsum("ij,ij->i", S, S)
    S_T = np.ascontiguousarray(S.T)
    del S
    prod = np.empty((n_local_trials, m), dtype=np.float32)

    def sq_dist(cand: np.ndarray) -> np.ndarray:
        # (t, m): squared distances from the sample rows ``cand`` to every sample row
        d2 = prod[: cand.shape[0]]
        np.matmul(np.ascontiguousarray(S_T[:, cand].T), S_T, out=d2)
        d2 *= -2.0
        d2 += sq[None, :]
        d2 += sq[cand][:, None]
        return np.maximum(d2, 0.0, out=d2)

    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(m)
    # the products are small: threaded BLAS gains little on them and, on a busy machine,
    # loses many times over waiting for its threads
    with threadpool_limits(1, user_api="blas"):
        closest = sq_dist(chosen[:1])[0].copy()
        for c in range(1, k):
            cumulative = np.cumsum(closest, dtype=np.float64)
            total = cumulative[-1]
            if total > 0:
                draws = rng.random(n_local_trials) * total
                trials = np.minimum(np.searchsorted(cumulative, draws, side="right"), m - 1)
            else:  # every sample row coincides with a centre: no preference left
                trials = rng.integers(m, size=n_local_trials)
            d2 = sq_dist(trials)
            np.minimum(d2, closest[None, :], out=d2)
            best = int(np.argmin(d2.sum(axis=1, dtype=np.float64)))
            chosen[c] = trials[best]
            closest = d2[best].copy()
    return np.array(X[rows[chosen]], dtype=np.float32)


def random_init(X: np.ndarray, n_clusters: int, random_state=None) -> np.ndarray:
    """``n_clusters`` distinct rows of ``X`` chosen uniformly at random (float32)."""
    rng = check_random_state(random_state)
    idx = rng.choice(X.shape[0], n_clusters, replace=False)
    return np.array(X[np.sort(idx)], dtype=np.float32)


# ----------------------------------------------------------------------------- the loop


def _add_rows(X: np.ndarray, labels: np.ndarray, old: np.ndarray, sums: np.ndarray,
              counts: np.ndarray) -> None:
    """Move rows between clusters in the running sums: add each row of ``X`` to its new
    cluster ``labels`` and take it out of ``old`` (where ``old >= 0``)."""
    accumulate_cluster_sums(X, labels, sums, counts)
    had = old >= 0
    if had.any():
        neg_sums = np.zeros_like(sums)
        neg_counts = np.zeros_like(counts)
        accumulate_cluster_sums(X[had], old[had], neg_sums, neg_counts)
        sums -= neg_sums
        counts -= neg_counts


def _lloyd(
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
    comm=None,
) -> dict:
    """Lloyd iterations from ``centroids``; one pass over ``source`` per iteration.

    Exact Lloyd, pruned with Hamerly's bounds (G. Hamerly, "Making k-means even faster",
    SDM 2010): each row keeps an upper bound on the distance to its centroid and a lower
    bound on the distance to every other one; after an update the bounds move by how far
    the centroids moved, and only rows whose bounds cross are searched again. The labels
    are those of plain Lloyd (the bounds are rigorous, float32 rounding included).

    The per-cluster float64 sums and counts are kept up to date as rows change cluster,
    and the objective of each assignment comes from them:
    ``sum |x|^2 - 2 sum_j <c_j, S_j> + sum_j n_j |c_j|^2``. Each pass assigns every block
    and the assignment at the start of the next pass doubles as the check for
    convergence, so the returned labels always belong to the returned centroids.
    ``comm`` (a :class:`_Comm`) sums what every process found when running under
    ``torchrun``; ``source`` is then this process's share of the rows.
    """
    from deepclust.cluster.assign import CentroidSearch

    comm = comm or _Comm(None)
    device = device if device is not None else torch.device("cpu")
    n, d = source.n, source.d
    k = centroids.shape[0]
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
    n_iter = n_reseeded = reseeded = 0
    converged = False
    moved = None  # how far each centroid moved in the last update
    for it in range(max_iter + 1):
        t0 = time.perf_counter()
        update = it < max_iter
        search = CentroidSearch(C, spherical=spherical, precision=precision, device=device,
                                center=center)
        n_changed = n_searched = 0
        first = moved is None
        if not first:
            # the fastest-moving centroids are checked against every row directly, so
            # one far jump (a re-seeded cluster, a small cluster) does not loosen the
            # lower bound of every row; the others move the bound by their largest step
            order = np.argsort(moved)
            n_fast = min(k - 1, FAST_CENTROIDS)
            fast = np.sort(order[k - n_fast:]) if n_fast else order[:0]
            rest = order[: k - n_fast]
            top = rest[-1]
            runner_up = rest[-2] if rest.size > 1 else rest[-1]
            fast_C = np.ascontiguousarray(C[fast])
            fast_n2 = np.einsum("ij,ij->i", fast_C, fast_C).astype(np.float32)
            fast_pos = np.full(k, -1, dtype=np.int64)
            fast_pos[fast] = np.arange(fast.size)
        for off, block in source.blocks(BLOCK_ROWS):
            sl = slice(off, off + block.shape[0])
            if first:
                n2 = np.einsum("ij,ij->i", block, block, dtype=np.float64)
                row_n2[sl] = n2
                sq_norms += float(n2.sum())
                rows = np.arange(block.shape[0])
            else:
                lab = labels[sl]
                up = upper[sl] + moved[lab]
                low = lower[sl] - np.where(lab == top, moved[runner_up], moved[top])
                if fast.size:
                    low = np.minimum(low, _fast_lower_bound(block, row_n2[sl], fast_C, fast_n2,
                                                            fast_pos[lab], search.gamma))
                rows = np.flatnonzero(up > low)
                if rows.size:  # tighten the upper bound before searching
                    up[rows] = search._up(search.exact_distances(block[rows], lab[rows]))
                    rows = rows[up[rows] > low[rows]]
                upper[sl] = up
                lower[sl] = low
            if rows.size == 0:
                continue
            sub = block if rows.size == block.shape[0] else np.ascontiguousarray(block[rows])
            new, near, second = search.search(sub)
            at = off + rows
            old = labels[at]
            changed = np.flatnonzero(new != old)
            if changed.size:
                _add_rows(sub[changed], new[changed], old[changed], sums, counts)
            labels[at] = new
            upper[at] = near
            lower[at] = second
            n_changed += int(changed.size)
            n_searched += int(rows.size)
        if first:
            sq_norms = comm.sum_float(sq_norms)
        g_sums, g_counts = comm.sum_arrays(sums, counts)
        n_changed = comm.sum_int(n_changed)
        searched.append(comm.sum_int(n_searched))
        C64 = C.astype(np.float64)
        obj = (sq_norms - 2.0 * float(np.einsum("ij,ij->", C64, g_sums))
               + float(g_counts @ np.einsum("ij,ij->i", C64, C64)))
        obj = max(obj, 0.0) / (2.0 if spherical else 1.0)
        history.append(obj)
        if verbose:
            print(f"  iteration {it:3d}  objective {obj:.6g}  changed {n_changed}  searched "
                  f"{searched[-1]}  ({time.perf_counter() - t0:.2f} s)")
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


class _Comm:
    """Sums across the processes of a ``torchrun`` group (identity in one process)."""

    def __init__(self, info=None):
        from deepclust import distributed

        self.info = info if info is not None else distributed.info()

    def _reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.info.distributed:
            import torch.distributed as dist

            dev = torch.device("cuda") if self.info.backend == "nccl" else torch.device("cpu")
            t = t.to(dev)
            dist.all_reduce(t)
            t = t.cpu()
        return t

    def sum_float(self, x: float) -> float:
        return float(self._reduce(torch.tensor([x], dtype=torch.float64))[0])

    def sum_int(self, x: int) -> int:
        return int(self._reduce(torch.tensor([x], dtype=torch.int64))[0])

    def sum_arrays(self, sums: np.ndarray, counts: np.ndarray):
        return self.sum_array(sums), self.sum_array(counts)

    def sum_array(self, a: np.ndarray) -> np.ndarray:
        if not self.info.distributed:
            return a
        # a copy: the reduction is in place and ``a`` (e.g. this process's sums) must stay
        return self._reduce(torch.from_numpy(np.array(a, order="C", copy=True))).numpy()


# ----------------------------------------------------------------------------- helpers


def _fewer_distinct_rows(X, k: int, *, max_load: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(unique_rows, inverse)`` if ``X`` has fewer than ``k`` distinct rows, else None.

    ``X`` is an array or a :class:`~deepclust.cluster.rows.RowSource`. A spread-out sample
    of ``min(n, 4k)`` rows usually proves there are enough distinct rows; only when it does
    not are all rows read -- and refused when there are more than ``max_load`` values.
    """
    from deepclust.cluster.rows import RowSource

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


# ----------------------------------------------------------------------------- estimator


@register("kmeans", "k-means (Lloyd) on faiss: k-means++ seeding, restarts, optional cosine")
class KMeans(BaseClusterer):
    """k-means clustering, with faiss for the nearest-centroid search.

    Lloyd iterations: assign each row to its nearest centroid (faiss, float32), then move
    each centroid to the mean of its rows (sums accumulated in float64). Empty clusters
    are re-seeded by splitting a populated one (:func:`reseed_empty_clusters`, the faiss /
    DeepCluster rule). Unlike ``faiss.Kmeans`` it always uses every row.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters k, ``1 <= k <= n_samples``.
    init : {"k-means++", "random"} or array-like of shape (n_clusters, n_features)
        ``"k-means++"``: greedy k-means++ (:func:`kmeans_plus_plus_init`), on a random
        subsample of ``max(32 k, 10 000)`` rows when X is larger. ``"random"``: k distinct
        rows chosen uniformly. An array gives the initial centroids (then ``n_init`` is 1).
    n_init : int, default=1
        Independent runs from different seeds; the one with the lowest objective is kept.
    max_iter : int, default=100
        Most centroid updates per run.
    tol : float, default=1e-4
        Stop when the objective falls by no more than ``tol`` times its previous value
        between two consecutive assignments, ``J_prev - J <= tol * J_prev`` (not tested
        right after a re-seed, which may raise J slightly). A run also stops as soon as no
        label changes. ``tol=0`` runs until the labels are stable or ``max_iter`` is
        reached.
    spherical : bool, default=False
        Cosine k-means: rows are L2-normalised, centroids are unit vectors (the normalised
        sum of their rows), the objective is ``sum(1 - cos)``, and ``predict`` uses cosine.
        All-zero rows are rejected.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        Nearest-centroid search: faiss float32, or a bf16 product whose rankings are
        certified against float32 (uncertain rows searched again in float32), so the labels
        are the same. "auto": bf16 on GPUs, fp32 on CPUs (measured faster here; see
        docs/scale.md).
    device : "auto", "cpu", "cuda" or "cuda:N", default="auto"
        Where the products run ("auto": this process's GPU when there is one).
    distributed : "auto", bool, default="auto"
        Under ``torchrun``, split the rows between the processes and all-reduce the
        per-cluster sums. "auto" does so when ``X`` is a store (every process reads its
        own share); True also for arrays, which must then be the same on every process.
    random_state : None, int or numpy Generator
        Seeds initialisation and re-seeding.
    verbose : bool, default=False
        Print the objective of every iteration.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features), float32
        Unit vectors when ``spherical``.
    labels_ : ndarray of shape (n_samples,), int64
        Nearest centroid of each training row (what ``predict`` gives for them).
    inertia_ : float
        Objective of the kept run: sum of squared distances to the nearest centroid, or
        of ``1 - cos`` when ``spherical``.
    n_iter_ : int
        Centroid updates of the kept run.
    n_reseeded_ : int
        Empty clusters re-seeded during the kept run.
    stats_ : dict
        ``inertia_per_init`` (list, one per run), ``objective_history`` (objective at each
        assignment of the kept run), ``converged`` (bool), ``init_seconds`` and
        ``fit_seconds``.
    n_features_in_ : int

    Notes
    -----
    If ``X`` has fewer distinct rows m than ``n_clusters`` (e.g. all rows equal), no
    iteration is run: a :class:`~sklearn.exceptions.ConvergenceWarning` is raised and the
    exact solution is returned. The m distinct rows (in lexicographic order) are the
    centroids of clusters ``0 .. m-1``, each row is labelled with its copy's cluster,
    ``inertia_`` is 0, and clusters ``m .. k-1`` stay empty with centroids that repeat
    centroid 0. Clusters that are empty after fitting are never returned by ``predict``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.r_[np.zeros((20, 2)), np.full((20, 2), 5.0)]
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(np.bincount(km.labels_).tolist())
    [20, 20]
    """

    streams_rows = True

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init="k-means++",
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-4,
        spherical: bool = False,
        precision: str = "auto",
        device="auto",
        distributed="auto",
        random_state=None,
        verbose: bool = False,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.spherical = spherical
        self.precision = precision
        self.device = device
        self.distributed = distributed
        self.random_state = random_state
        self.verbose = verbose

    # -- validation

    def _check_params(self, n_features: int) -> tuple[np.ndarray | None, int]:
        for name in ("n_init", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if (
            isinstance(self.tol, bool)
            or not isinstance(self.tol, Real)
            or not (np.isfinite(self.tol) and self.tol >= 0)
        ):
            raise InputError(f"tol must be a non-negative number, got {self.tol!r}")
        n_init = int(self.n_init)
        if isinstance(self.init, str):
            if self.init not in ("k-means++", "random"):
                raise InputError(
                    f"init must be 'k-means++', 'random' or an array of centroids, got {self.init!r}"
                )
            return None, n_init
        init = check_features(self.init, name="init", dtype=np.float32)
        if init.shape != (self.n_clusters, n_features):
            raise InputError(
                f"init has shape {init.shape}; it must be (n_clusters, n_features) = "
                f"({self.n_clusters}, {n_features})"
            )
        if n_init != 1:
            warnings.warn(
                f"explicit initial centroids given: running once instead of n_init={n_init}",
                RuntimeWarning,
                stacklevel=3,
            )
        return init, 1

    def _prepare(self, X, *, name: str = "X") -> np.ndarray:
        """X as float32 C-contiguous rows (unit rows when spherical)."""
        X = check_features(X, name=name, dtype=np.float32)
        return unit_rows(X, name=name) if self.spherical else X

    # -- fitting

    def fit(self, X, y=None) -> KMeans:
        """Compute the clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet, EmbeddingStore or path
            Rows to cluster. Arrays are converted to float32; a store (or its directory)
            is streamed block by block and never loaded whole, so it may be larger than
            memory. Under ``torchrun`` each process reads its own share of the rows.
        y : ignored

        Returns
        -------
        self
        """
        from deepclust import distributed
        from deepclust.cluster.assign import resolve_device, resolve_precision
        from deepclust.cluster.rows import ArrayRows, StoreRows, as_row_source

        t_start = time.perf_counter()
        source = as_row_source(X)
        in_memory = (isinstance(source, ArrayRows) and source.X.dtype == np.float32
                     and not isinstance(source.X, np.memmap))
        if in_memory:
            source = ArrayRows(self._prepare(source.X))  # unit rows once, for spherical
        elif self.spherical:
            source = copy.copy(source)  # rows made unit block by block; the caller's stays
            source.unit = True
        n, d = source.n_total, source.d
        k = self._validate_k(n)
        init, n_init = self._check_params(d)
        rng = check_random_state(self.random_state)
        device = resolve_device(self.device)
        precision = resolve_precision(self.precision, device, k)
        self.n_features_in_ = d
        self.precision_ = precision
        self.device_ = device

        # a store is read whole only if a sample already shows too few distinct rows
        degenerate = _fewer_distinct_rows(
            source, k, max_load=None if in_memory else 1 << 28)
        if degenerate is not None:
            self._fit_degenerate(*degenerate, k, time.perf_counter() - t_start)
            return self

        di = distributed.info()
        if self.distributed not in ("auto", True, False):
            raise InputError(f"distributed must be 'auto', True or False, got {self.distributed!r}")
        # "auto": share the work only over data every process reads the same way (a store);
        # arrays in memory may differ between processes, so each fits its own
        shared = self.distributed is True or (self.distributed == "auto"
                                              and isinstance(source, StoreRows))
        if not shared:
            di = distributed.DistInfo()
        comm = _Comm(di)
        local = source.part(di.rank, di.world_size) if di.distributed else source
        best = None
        inertias = []
        init_seconds = 0.0
        for run in range(n_init):
            t0 = time.perf_counter()
            C, center = self._initial_centroids(source, init, k, rng, comm)
            if di.distributed:  # every process computed them; take rank 0's bits
                C = distributed.broadcast_object(C)
            init_seconds += time.perf_counter() - t0
            if self.verbose:
                print(f"KMeans run {run + 1}/{n_init}: init {time.perf_counter() - t0:.2f} s, "
                      f"{precision} assignment on {device}")
            result = _lloyd(
                local,
                C,
                max_iter=int(self.max_iter),
                tol=float(self.tol),
                spherical=bool(self.spherical),
                rng=rng,
                verbose=bool(self.verbose) and di.is_main,
                precision=precision,
                device=device,
                center=center,
                comm=comm,
            )
            inertias.append(result["inertia"])
            if best is None or result["inertia"] < best["inertia"]:
                best = result

        labels = best["labels"]
        if di.distributed:  # every process gets every row's label
            full = np.zeros(n, dtype=np.int64)
            full[local.start: local.start + local.n] = labels
            labels = comm.sum_array(full)
        self.cluster_centers_ = best["centroids"]
        self.labels_ = labels
        self.inertia_ = float(best["inertia"])
        self.n_iter_ = int(best["n_iter"])
        self.n_reseeded_ = int(best["n_reseeded"])
        self.stats_ = {
            "inertia_per_init": inertias,
            "objective_history": best["objective_history"],
            "rows_searched": best["rows_searched"],
            "converged": best["converged"],
            "init_seconds": init_seconds,
            "fit_seconds": time.perf_counter() - t_start,
            "precision": precision,
            "device": str(device),
            "world_size": di.world_size,
        }
        sizes = np.bincount(self.labels_, minlength=k)
        self._nonempty = None if sizes.all() else np.flatnonzero(sizes)
        if self._nonempty is not None:
            warnings.warn(
                f"{k - self._nonempty.size} of {k} clusters ended empty even after "
                "re-seeding; they are never predicted",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _initial_centroids(self, source, init, k: int, rng, comm):
        """Initial centroids and the centre for the bf16 product, from a sample of rows.

        The sample is drawn exactly as :func:`kmeans_plus_plus_init` draws it, so an
        array and a store holding the same rows give the same centroids.
        """
        n = source.n_total
        if init is not None:
            C = unit_rows(init, name="init") if self.spherical else init
            m = min(n, 10_000)
            rows = np.sort(check_random_state(0).choice(n, m, replace=False))
            return C, self._take(source, rows, comm).mean(axis=0, dtype=np.float64)
        if self.init == "k-means++":
            m = default_plus_plus_samples(n, k)
            rows = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
            S = self._take(source, rows, comm)
            C = _plus_plus(S, k, rng, max_samples=S.shape[0])
        else:
            rows = np.sort(rng.choice(n, k, replace=False))
            S = self._take(source, rows, comm)
            C = S.copy()
        return C, S.mean(axis=0, dtype=np.float64)

    @staticmethod
    def _take(source, rows: np.ndarray, comm) -> np.ndarray:
        """Rows ``rows`` of the whole data on every process (each reads its own range)."""
        if not comm.info.distributed:
            return source.take(rows)
        part = source.part(comm.info.rank, comm.info.world_size)
        mine = (rows >= part.start) & (rows < part.start + part.n)
        out = np.zeros((rows.shape[0], source.d), dtype=np.float32)
        out[mine] = source.take(rows[mine])
        return comm.sum_array(out)

    def _fit_degenerate(self, uniq: np.ndarray, inverse: np.ndarray, k: int, seconds: float):
        m = uniq.shape[0]
        warnings.warn(
            f"X has only {m} distinct row(s), fewer than n_clusters={k}: returning the exact "
            f"solution with {m} cluster(s) and {k - m} empty one(s)",
            ConvergenceWarning,
            stacklevel=3,
        )
        centers = np.concatenate([uniq, np.repeat(uniq[:1], k - m, axis=0)])
        self.cluster_centers_ = np.ascontiguousarray(centers, dtype=np.float32)
        self.labels_ = inverse.astype(np.int64)
        self.inertia_ = 0.0
        self.n_iter_ = 0
        self.n_reseeded_ = 0
        self.stats_ = {
            "inertia_per_init": [0.0],
            "objective_history": [0.0],
            "converged": True,
            "init_seconds": 0.0,
            "fit_seconds": seconds,
        }
        self._nonempty = np.arange(m)

    # -- using the fit

    def _assign(self, X) -> tuple[np.ndarray, np.ndarray]:
        from deepclust.cluster.assign import CentroidSearch
        from deepclust.cluster.rows import as_row_source

        self._check_fitted()
        source = as_row_source(X)
        if source.d != self.n_features_in_:
            raise InputError(
                f"X has {source.d} features but this KMeans was fitted with {self.n_features_in_}"
            )
        if self.spherical:
            source = copy.copy(source)
            source.unit = True
        C = self.cluster_centers_
        keep = getattr(self, "_nonempty", None)
        if keep is not None:
            C = np.ascontiguousarray(C[keep])
        search = CentroidSearch(C, spherical=self.spherical,
                                precision=getattr(self, "precision_", "fp32"),
                                device=getattr(self, "device_", torch.device("cpu")))
        labels = np.empty(source.n, dtype=np.int64)
        scores = np.empty(source.n, dtype=np.float32)
        for start, block in source.blocks(BLOCK_ROWS):
            sl = slice(start, start + block.shape[0])
            labels[sl], scores[sl] = search(block)
        if keep is not None:
            labels = keep[labels]
        return labels, scores

    def predict(self, X) -> np.ndarray:
        """Nearest centroid of each row (cosine when ``spherical``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        """
        return self._assign(X)[0]

    def score(self, X, y=None) -> float:
        """Opposite of the objective of ``X`` on the fitted centroids (higher is better)."""
        _, scores = self._assign(X)
        return -block_objective(scores, spherical=self.spherical)

    def transform(self, X) -> np.ndarray:
        """Distance of each row to every centroid: Euclidean, or ``1 - cos`` when spherical.

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters), float32
        """
        self._check_fitted()
        X = self._prepare(X)
        if X.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {X.shape[1]} features but this KMeans was fitted with {self.n_features_in_}"
            )
        C = self.cluster_centers_
        dots = X @ C.T
        if self.spherical:
            return 1.0 - dots
        d2 = np.einsum("ij,ij->i", X, X)[:, None] + np.einsum("ij,ij->i", C, C)[None, :]
        d2 -= 2.0 * dots
        return np.sqrt(np.maximum(d2, 0.0, out=d2))
