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

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from numbers import Integral, Real

import faiss
import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from deepclust._validation import check_features, check_n_clusters, check_random_state
from deepclust.cluster.base import BaseClusterer, register
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
#: Rows per sparse product in the update; small enough that a float64 copy stays in cache.
_UPDATE_CHUNK = 4096
#: Most memory for the per-thread float64 sums of the update (one (k, d) buffer each).
_PARTIAL_BYTES = 256 << 20
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


def _accumulate_in_threads(
    pool: ThreadPoolExecutor | None,
    X: np.ndarray,
    labels: np.ndarray,
    partials: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    """:func:`accumulate_cluster_sums` of one block, split in ``len(partials)`` row ranges
    that are summed at once, each into its own ``(sums, counts)`` buffer."""
    if pool is None:
        accumulate_cluster_sums(X, labels, *partials[0])
        return
    n = X.shape[0]
    step = -(-n // len(partials))
    futures = [
        pool.submit(accumulate_cluster_sums, X[i : i + step], labels[i : i + step], *buffers)
        for i, buffers in zip(range(0, n, step), partials, strict=False)
    ]
    for future in futures:
        future.result()


def _lloyd(
    X: np.ndarray,
    centroids: np.ndarray,
    *,
    max_iter: int,
    tol: float,
    spherical: bool,
    rng: np.random.Generator,
    verbose: bool,
) -> dict:
    """Lloyd iterations from ``centroids``; one pass over ``X`` per iteration.

    Each pass assigns every block and, in the same pass, accumulates the sums for the
    next centroids; the assignment at the start of the next pass doubles as the check for
    convergence, so the returned labels always belong to the returned centroids.
    """
    n, d = X.shape
    k = centroids.shape[0]
    C = np.ascontiguousarray(centroids, dtype=np.float32)
    # faiss assigns on all cores; the update then runs on as many threads, each summing
    # its share of a block into its own buffer (scipy and numpy release the GIL)
    n_workers = int(min(faiss.omp_get_max_threads(), max(1, _PARTIAL_BYTES // (8 * k * d))))
    partials = [
        (np.zeros((k, d), dtype=np.float64), np.zeros(k, dtype=np.int64)) for _ in range(n_workers)
    ]
    labels = np.empty(n, dtype=np.int64)
    prev_labels = np.empty(n, dtype=np.int64)
    prev_obj = None
    history: list[float] = []
    n_iter = n_reseeded = reseeded = 0
    converged = False
    with ThreadPoolExecutor(n_workers) if n_workers > 1 else nullcontext() as pool:
        for it in range(max_iter + 1):
            t0 = time.perf_counter()
            update = it < max_iter
            for sums, counts in partials:
                sums.fill(0)
                counts.fill(0)
            obj = 0.0
            for start in range(0, n, BLOCK_ROWS):
                block = X[start : start + BLOCK_ROWS]
                lab, scores = nearest_centroids(block, C, spherical=spherical)
                labels[start : start + block.shape[0]] = lab
                obj += block_objective(scores, spherical=spherical)
                if update:
                    _accumulate_in_threads(pool, block, lab, partials)
            history.append(obj)
            if prev_obj is not None:
                n_changed = int(np.count_nonzero(labels != prev_labels))
                if verbose:
                    print(
                        f"  iteration {it:3d}  objective {obj:.6g}  changed {n_changed}  "
                        f"({time.perf_counter() - t0:.2f} s)"
                    )
                # unchanged labels: the update would return the same centroids. A re-seed can
                # raise the objective a little, so the tol test skips the pass after one.
                small_gain = tol > 0 and not reseeded and prev_obj - obj <= tol * prev_obj
                if n_changed == 0 or small_gain:
                    converged = True
                    break
            elif verbose:
                print(
                    f"  iteration {it:3d}  objective {obj:.6g}  ({time.perf_counter() - t0:.2f} s)"
                )
            if not update:
                break
            sums, counts = partials[0]
            for more_sums, more_counts in partials[1:]:
                sums += more_sums
                counts += more_counts
            new = centroids_from_sums(sums, counts, C, spherical=spherical)
            reseeded = reseed_empty_clusters(new, counts, rng)
            if reseeded and spherical:
                new /= np.linalg.norm(new, axis=1, keepdims=True)
            n_reseeded += reseeded
            C = new.astype(np.float32)
            n_iter += 1
            labels, prev_labels = prev_labels, labels
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
    }


# ----------------------------------------------------------------------------- helpers


def _l2_normalise(X: np.ndarray, *, name: str = "X") -> np.ndarray:
    norms = np.linalg.norm(X, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        shown = ", ".join(map(str, zero[:5])) + (" ..." if zero.size > 5 else "")
        raise InputError(
            f"{name} has {zero.size} all-zero row(s) (rows {shown}); cosine (spherical) "
            "k-means needs a direction for every row: drop them or use spherical=False"
        )
    return np.ascontiguousarray(X / norms[:, None], dtype=np.float32)


def _fewer_distinct_rows(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(unique_rows, inverse)`` if ``X`` has fewer than ``k`` distinct rows, else None.

    A spread-out sample of ``min(n, 4k)`` rows usually proves there are enough distinct
    rows; only when it does not is the full ``np.unique`` paid for.
    """
    n = X.shape[0]
    if k == 1:
        return None
    sample = X[np.unique(np.linspace(0, n - 1, min(n, 4 * k)).astype(np.int64))]
    if np.unique(sample, axis=0).shape[0] >= k:
        return None
    uniq, inverse = np.unique(X, axis=0, return_inverse=True)
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

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init="k-means++",
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-4,
        spherical: bool = False,
        random_state=None,
        verbose: bool = False,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.spherical = spherical
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
        return _l2_normalise(X, name=name) if self.spherical else X

    # -- fitting

    def fit(self, X, y=None) -> KMeans:
        """Compute the clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to cluster; converted to float32.
        y : ignored

        Returns
        -------
        self
        """
        t_start = time.perf_counter()
        X = self._prepare(X)
        n, d = X.shape
        k = self._validate_k(n)
        init, n_init = self._check_params(d)
        rng = check_random_state(self.random_state)
        self.n_features_in_ = d

        degenerate = _fewer_distinct_rows(X, k)
        if degenerate is not None:
            self._fit_degenerate(*degenerate, k, time.perf_counter() - t_start)
            return self

        best = None
        inertias = []
        init_seconds = 0.0
        for run in range(n_init):
            t0 = time.perf_counter()
            if init is not None:
                C = _l2_normalise(init, name="init") if self.spherical else init
            elif self.init == "k-means++":
                C = _plus_plus(X, k, rng)
            else:
                C = random_init(X, k, rng)
            init_seconds += time.perf_counter() - t0
            if self.verbose:
                print(f"KMeans run {run + 1}/{n_init}: init {time.perf_counter() - t0:.2f} s")
            result = _lloyd(
                X,
                C,
                max_iter=int(self.max_iter),
                tol=float(self.tol),
                spherical=bool(self.spherical),
                rng=rng,
                verbose=bool(self.verbose),
            )
            inertias.append(result["inertia"])
            if best is None or result["inertia"] < best["inertia"]:
                best = result

        self.cluster_centers_ = best["centroids"]
        self.labels_ = best["labels"]
        self.inertia_ = float(best["inertia"])
        self.n_iter_ = int(best["n_iter"])
        self.n_reseeded_ = int(best["n_reseeded"])
        self.stats_ = {
            "inertia_per_init": inertias,
            "objective_history": best["objective_history"],
            "converged": best["converged"],
            "init_seconds": init_seconds,
            "fit_seconds": time.perf_counter() - t_start,
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
        self._check_fitted()
        X = self._prepare(X)
        if X.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {X.shape[1]} features but this KMeans was fitted with {self.n_features_in_}"
            )
        C = self.cluster_centers_
        keep = getattr(self, "_nonempty", None)
        if keep is not None:
            C = np.ascontiguousarray(C[keep])
        labels = np.empty(X.shape[0], dtype=np.int64)
        scores = np.empty(X.shape[0], dtype=np.float32)
        for start in range(0, X.shape[0], BLOCK_ROWS):
            sl = slice(start, start + BLOCK_ROWS)
            labels[sl], scores[sl] = nearest_centroids(X[sl], C, spherical=self.spherical)
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
