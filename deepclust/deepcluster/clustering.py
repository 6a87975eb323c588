"""The clustering step of each DeepCluster epoch: PCA-whitening, L2, k-means, statistics.

PCA and L2 come from :mod:`deepclust.reduce` (scikit-learn's PCA and Normalizer), k-means
from :class:`deepclust.cluster.kmeans.KMeans` (faiss search, empty clusters re-seeded by
splitting a populated one, as DeepCluster does).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from deepclust.cluster.kmeans import KMeans
from deepclust.reduce import build_reducer
from deepclust.validation import check_random_state

__all__ = ["ClusteringStep", "cluster_features", "cluster_size_stats", "pca_whiten_l2"]

#: PCA is fitted on at most this many rows (then applied to all): the components of a
#: random 200 000-row sample of 4096-d features are as good and ~6x cheaper on ImageNet.
PCA_FIT_MAX_ROWS = 200_000


def pca_whiten_l2(features: np.ndarray, n_components: int = 256, *, random_state=None,
                  max_fit_rows: int = PCA_FIT_MAX_ROWS) -> np.ndarray:
    """DeepCluster's pre-processing: PCA to ``n_components`` with whitening, then L2.

    Parameters
    ----------
    features : ndarray of shape (n, d)
    n_components : int
        Output dimensions; lowered to ``min(n, d)`` when the data has fewer.
    random_state : None, int or numpy Generator
        Seeds the fitting sample and scikit-learn's randomised SVD.
    max_fit_rows : int
        PCA is fitted on a uniform sample of this many rows when there are more.

    Returns
    -------
    ndarray of shape (n, n_components), float32, unit rows
    """
    rng = check_random_state(random_state)
    X = np.ascontiguousarray(features, dtype=np.float32)
    nc = int(min(n_components, X.shape[0], X.shape[1]))
    seed = int(rng.integers(2**31 - 1))
    pipe = build_reducer([("pca", {"n_components": nc, "whiten": True}), "l2"], random_state=seed)
    if X.shape[0] > max_fit_rows:
        pipe.fit(X[np.sort(rng.choice(X.shape[0], max_fit_rows, replace=False))])
        out = pipe.transform(X)
    else:
        out = pipe.fit_transform(X)
    return np.ascontiguousarray(out, dtype=np.float32)


def cluster_size_stats(labels: np.ndarray, n_clusters: int) -> dict:
    """Sizes of the clusters of one assignment: empty count, min, median, max, and the
    share of the items held by the largest cluster."""
    sizes = np.bincount(np.asarray(labels), minlength=n_clusters)
    nonempty = sizes[sizes > 0]
    return {
        "n_clusters": int(n_clusters),
        "n_empty": int(n_clusters - nonempty.size),
        "min": int(nonempty.min()),
        "median": float(np.median(nonempty)),
        "max": int(nonempty.max()),
        "largest_share": float(nonempty.max() / sizes.sum()),
    }


@dataclass
class ClusteringStep:
    """What one clustering step produced.

    Attributes
    ----------
    labels : ndarray of int64
        Pseudo-label of each item.
    centroids : ndarray of float32
        In the space that was clustered (PCA-whitened or the v2 embedding).
    objective : float
        k-means objective.
    n_reseeded : int
        Empty clusters re-seeded during k-means.
    sizes : dict
        :func:`cluster_size_stats`.
    seconds : dict
        ``pca`` and ``kmeans`` times.
    """

    labels: np.ndarray
    centroids: np.ndarray
    objective: float
    n_reseeded: int
    sizes: dict
    seconds: dict = field(default_factory=dict)


def cluster_features(features: np.ndarray, n_clusters: int, *, pca: int | None = 256,
                     spherical: bool = False, init="random", max_iter: int = 20,
                     random_state=None) -> ClusteringStep:
    """Cluster ``features`` as a DeepCluster epoch does.

    Parameters
    ----------
    features : ndarray of shape (n, d)
    n_clusters : int
    pca : int or None
        PCA-whitening to this many dimensions and L2 before k-means (DeepCluster); None
        clusters the rows as they are (DeepCluster-v2's unit embeddings).
    spherical : bool
        Cosine k-means (DeepCluster-v2).
    init : "random", "k-means++" or ndarray
        k-means initialisation; the paper's faiss k-means starts from random rows.
    max_iter : int
        Lloyd iterations (20 in DeepCluster, 10 in DeepCluster-v2).
    random_state : None, int or numpy Generator
        A fresh seed each epoch.

    Returns
    -------
    ClusteringStep
    """
    rng = check_random_state(random_state)
    t0 = time.perf_counter()
    X = pca_whiten_l2(features, pca, random_state=rng) if pca else np.asarray(features, np.float32)
    t1 = time.perf_counter()
    km = KMeans(n_clusters=n_clusters, init=init, max_iter=max_iter, tol=0.0,
                spherical=spherical, random_state=rng)
    with warnings.catch_warnings():
        # a cluster that stays empty after re-seeding is reported in the size statistics
        warnings.simplefilter("ignore", ConvergenceWarning)
        km.fit(X)
    labels = km.labels_.astype(np.int64)
    return ClusteringStep(labels=labels, centroids=km.cluster_centers_,
                          objective=float(km.inertia_), n_reseeded=int(km.n_reseeded_),
                          sizes=cluster_size_stats(labels, n_clusters),
                          seconds={"pca": t1 - t0, "kmeans": time.perf_counter() - t1})
