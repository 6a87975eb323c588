"""Where k-means starts: greedy k-means++ on a sample of rows, or random rows."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from threadpoolctl import threadpool_limits

from deepclust.errors import InputError
from deepclust.validation import check_features, check_n_clusters, check_random_state

__all__ = ["default_plus_plus_samples", "kmeans_plus_plus_init", "plus_plus", "random_init"]

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
    return plus_plus(
        X,
        k,
        check_random_state(random_state),
        n_local_trials=n_local_trials,
        max_samples=max_samples,
    )


def plus_plus(
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


