"""Classic clusterers from scikit-learn, behind deepclust's validation and naming.

Each class keeps scikit-learn's estimator contract and adds what the zero-shot study needs:
input checks with clear messages, ``random_state`` where the method is random, ``n_noise_``
for methods that leave points unassigned, and ``cluster_centers_`` (cluster means) so that
``predict`` can place new points where scikit-learn has no ``predict``.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from deepclust.cluster.base import BaseClusterer, register
from deepclust.data.rows import fewer_distinct_rows
from deepclust.errors import InputError
from deepclust.validation import (
    METRICS,
    NON_NEGATIVE,
    POSITIVE_INT,
    RANDOM_STATE,
    Interval,
    Options,
    seed_from,
)

# Methods that hold an (N, N) matrix refuse inputs whose matrix would pass this size.
PAIRWISE_MEMORY_LIMIT_BYTES = 8 * 2**30


def _check_pairwise_memory(n: int, method: str, copies: float = 1.0) -> None:
    need = 8.0 * n * n * copies
    if need > PAIRWISE_MEMORY_LIMIT_BYTES:
        raise InputError(
            f"{method} on {n} points needs about {need / 2**30:.0f} GiB for its pairwise "
            f"matrix (limit {PAIRWISE_MEMORY_LIMIT_BYTES / 2**30:.0f} GiB); cluster a subsample, "
            "or use kmeans / gmm / hdbscan, which scale"
        )


def _labels_if_few_distinct(X: np.ndarray, k: int, method: str) -> np.ndarray | None:
    """One cluster per distinct row when ``X`` has at most ``k`` of them, else None.

    That is the exact answer; the graph and tree methods would instead split copies of one
    point into different clusters. Fewer than ``k`` distinct rows warns, as KMeans does.
    """
    found = fewer_distinct_rows(X, k + 1)  # None unless there are at most k distinct rows
    if found is None:
        return None
    uniq, inverse = found
    if len(uniq) < k:
        warnings.warn(
            f"X has only {len(uniq)} distinct row(s), fewer than n_clusters={k}: {method} "
            f"returns one cluster per distinct row ({len(uniq)} cluster(s))",
            ConvergenceWarning, stacklevel=3,
        )
    return inverse.astype(np.int64)


def _cluster_means(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels[labels >= 0])
    return np.stack([X[labels == c].mean(axis=0) for c in ids]) if ids.size else np.empty((0, X.shape[1]))


class _CentroidPredictMixin:
    """``predict`` by the nearest cluster mean, for methods scikit-learn cannot extend."""

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        X = self._validate_X(X, reset=False)
        if len(self.cluster_centers_) == 0:
            return np.full(len(X), -1, dtype=np.int64)
        import faiss

        _, idx = faiss.knn(np.ascontiguousarray(X, dtype=np.float32),
                           np.ascontiguousarray(self.cluster_centers_, dtype=np.float32), 1)
        return self._center_labels_[idx[:, 0]]


@register("agglomerative", "hierarchical agglomerative clustering (ward/average/complete/single)")
class Agglomerative(_CentroidPredictMixin, BaseClusterer):
    """Agglomerative (hierarchical) clustering.

    Parameters
    ----------
    n_clusters : int or None
        Number of clusters; None together with ``distance_threshold`` lets the tree decide.
    linkage : {"ward", "average", "complete", "single"}
        Ward (the zero-shot study's recipe on UMAP features) needs the Euclidean metric.
    metric : str
        Any metric scikit-learn's AgglomerativeClustering accepts (euclidean, cosine, l1, ...).
    distance_threshold : float, optional
        Merge distance above which clusters are not merged (needs ``n_clusters=None``).

    Notes
    -----
    When ``X`` has at most ``n_clusters`` distinct rows (e.g. all rows equal), every
    distinct row becomes one cluster and copies of a row are never split; with fewer
    distinct rows than ``n_clusters`` a ConvergenceWarning says so and ``n_clusters_`` is
    the number of distinct rows.
    """

    _parameter_constraints = {
        "linkage": [Options("ward", "average", "complete", "single")],
        "metric": [Options("euclidean", "l1", "l2", "manhattan", "cosine")],
        "distance_threshold": [NON_NEGATIVE, None],
        "random_state": RANDOM_STATE,
    }

    def __init__(self, n_clusters: int | None = 8, *, linkage: str = "ward",
                 metric: str = "euclidean", distance_threshold: float | None = None,
                 random_state=None):
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.metric = metric
        self.distance_threshold = distance_threshold
        self.random_state = random_state  # deterministic method; kept for a uniform API

    def fit(self, X, y=None):
        from sklearn.cluster import AgglomerativeClustering

        X = self._validate_X(X)
        if self.linkage not in ("ward", "average", "complete", "single"):
            raise InputError(
                f"linkage must be ward, average, complete or single, got {self.linkage!r}"
            )
        if self.linkage == "ward" and self.metric != "euclidean":
            raise InputError("ward linkage works only with metric='euclidean'; "
                             "use linkage='average' for other metrics")
        if (self.n_clusters is None) == (self.distance_threshold is None):
            raise InputError("give exactly one of n_clusters and distance_threshold")
        k = None if self.n_clusters is None else self._validate_k(len(X))
        _check_pairwise_memory(len(X), "agglomerative", copies=0.5)
        exact = None if k is None else _labels_if_few_distinct(X, k, "agglomerative")
        if len(X) == 1:
            self.labels_ = np.zeros(1, dtype=np.int64)
        elif exact is not None:
            self.labels_ = exact
        else:
            model = AgglomerativeClustering(
                n_clusters=k, linkage=self.linkage, metric=self.metric,
                distance_threshold=self.distance_threshold,
                compute_full_tree=self.distance_threshold is not None or "auto",
            )
            self.labels_ = model.fit_predict(X).astype(np.int64)
        self.n_clusters_ = int(self.labels_.max()) + 1
        self.cluster_centers_ = _cluster_means(X, self.labels_)
        self._center_labels_ = np.arange(self.n_clusters_, dtype=np.int64)
        return self

    def fit_predict_ks(self, X, ks) -> dict[int, np.ndarray]:
        """Labels of ``X`` for each k in ``ks`` from ONE tree (cut at k clusters), as
        ``fit_predict`` with ``n_clusters=k`` would give up to ties; the label-free choice
        of k uses it so that the tree is built once, not once per k."""
        from scipy.cluster.hierarchy import fcluster, linkage

        X = self._validate_X(X)
        _check_pairwise_memory(len(X), "agglomerative", copies=0.5)
        if self.linkage == "ward" and self.metric != "euclidean":
            raise InputError("ward linkage works only with metric='euclidean'; "
                             "use linkage='average' for other metrics")
        tree = linkage(X, method=self.linkage, metric=self.metric)
        out = {}
        for k in ks:
            k = int(min(max(1, k), len(X)))
            labels = fcluster(tree, t=k, criterion="maxclust")
            out[k] = (np.unique(labels, return_inverse=True)[1]).astype(np.int64)
        return out


@register("spectral", "spectral clustering on a k-nearest-neighbour affinity graph")
class Spectral(_CentroidPredictMixin, BaseClusterer):
    """Spectral clustering with a k-nearest-neighbour affinity.

    Parameters
    ----------
    n_clusters : int
    n_neighbors : int
        Neighbours per point in the affinity graph (reduced on tiny inputs).
    assign_labels : {"kmeans", "discretize", "cluster_qr"}
        How the spectral embedding is turned into labels.
    random_state : int, optional

    Notes
    -----
    When ``X`` has at most ``n_clusters`` distinct rows (e.g. all rows equal), every
    distinct row becomes one cluster instead of the affinity graph splitting copies of a
    row; with fewer distinct rows than ``n_clusters`` a ConvergenceWarning says so.
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(Integral, 2, None)],
        "assign_labels": [Options("kmeans", "discretize", "cluster_qr")],
        "random_state": RANDOM_STATE,
    }

    def __init__(self, n_clusters: int = 8, *, n_neighbors: int = 10,
                 assign_labels: str = "cluster_qr", random_state=None):
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.assign_labels = assign_labels
        self.random_state = random_state

    def fit(self, X, y=None):
        from sklearn.cluster import SpectralClustering

        X = self._validate_X(X)
        k = self._validate_k(len(X))
        exact = _labels_if_few_distinct(X, k, "spectral")
        if k == 1:
            self.labels_ = np.zeros(len(X), dtype=np.int64)
        elif exact is not None:
            self.labels_ = exact
        else:
            n_neighbors = min(int(self.n_neighbors), len(X) - 1)  # fewer on tiny inputs only
            model = SpectralClustering(
                n_clusters=k, affinity="nearest_neighbors", n_neighbors=n_neighbors,
                assign_labels=self.assign_labels, random_state=seed_from(self.random_state),
            )
            with warnings.catch_warnings():
                # "Graph is not fully connected": the embedding is still computed; recorded below.
                warnings.simplefilter("ignore", UserWarning)
                self.labels_ = model.fit_predict(X).astype(np.int64)
        self.n_clusters_ = int(len(np.unique(self.labels_)))
        self.cluster_centers_ = _cluster_means(X, self.labels_)
        self._center_labels_ = np.unique(self.labels_)
        return self


@register("hdbscan", "HDBSCAN density clustering (finds k itself; noise labelled -1)")
class HDBSCAN(_CentroidPredictMixin, BaseClusterer):
    """HDBSCAN (Campello et al.), scikit-learn's implementation.

    Points in no dense region get the label -1 (noise); ``n_noise_`` counts them and the
    metrics treat them as the ``noise`` argument of :func:`deepclust.metrics.evaluate` says.
    ``predict`` places new points at the nearest cluster mean (never noise).

    If every row is the same point, the result is one cluster (scikit-learn's HDBSCAN
    never returns a single cluster and would call every point noise).

    Parameters
    ----------
    min_cluster_size : int
        Smallest group called a cluster.
    min_samples : int, optional
        Neighbourhood size for core distances (defaults to ``min_cluster_size``).
    cluster_selection_epsilon : float
    cluster_selection_method : {"eom", "leaf"}
    metric : str
    """

    takes_n_clusters = False
    _parameter_constraints = {
        "min_cluster_size": [Interval(Integral, 2, None)],
        "min_samples": [POSITIVE_INT, None],
        "cluster_selection_epsilon": [NON_NEGATIVE],
        "cluster_selection_method": [Options("eom", "leaf")],
        "metric": [Options(*METRICS)],
        "random_state": RANDOM_STATE,
    }

    def __init__(self, *, min_cluster_size: int = 5, min_samples: int | None = None,
                 cluster_selection_epsilon: float = 0.0, cluster_selection_method: str = "eom",
                 metric: str = "euclidean", random_state=None):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.cluster_selection_method = cluster_selection_method
        self.metric = metric
        self.random_state = random_state  # deterministic method; kept for a uniform API

    def fit(self, X, y=None):
        from sklearn.cluster import HDBSCAN as SkHDBSCAN

        X = self._validate_X(X)
        if int(self.min_cluster_size) < 2:
            raise InputError(f"min_cluster_size must be at least 2, got {self.min_cluster_size}")
        if len(X) < int(self.min_cluster_size):
            raise InputError(
                f"HDBSCAN with min_cluster_size={self.min_cluster_size} needs at least that many "
                f"points, got {len(X)} sample(s)"
            )
        min_samples = self.min_samples
        if min_samples is not None:
            min_samples = min(int(min_samples), len(X) - 1) or 1
        model = SkHDBSCAN(
            min_cluster_size=int(self.min_cluster_size), min_samples=min_samples,
            cluster_selection_epsilon=self.cluster_selection_epsilon,
            cluster_selection_method=self.cluster_selection_method, metric=self.metric,
            copy=True,
        )
        if not (X != X[0]).any():
            self.labels_ = np.zeros(len(X), dtype=np.int64)
            self.probabilities_ = np.ones(len(X))
        else:
            self.labels_ = model.fit_predict(X).astype(np.int64)
            self.probabilities_ = model.probabilities_
        self.n_clusters_ = int(self.labels_.max()) + 1 if (self.labels_ >= 0).any() else 0
        self.cluster_centers_ = _cluster_means(X, self.labels_)
        self._center_labels_ = np.arange(self.n_clusters_, dtype=np.int64)
        return self


@register("affinity-propagation", "affinity propagation (finds k itself from the preference)")
class AffinityPropagation(BaseClusterer):
    """Affinity propagation (Frey & Dueck), scikit-learn's implementation.

    Parameters
    ----------
    damping : float in [0.5, 1)
    preference : float, optional
        Lower values give fewer clusters; default: the median similarity.
    max_iter, convergence_iter : int
    random_state : int, optional

    Attributes
    ----------
    converged_ : bool
        False when the messages did not settle in ``max_iter`` iterations (labels are then
        scikit-learn's fallback and should not be trusted).
    n_iter_ : int
        Message-passing iterations run (0 for a single point).
    n_features_in_ : int
    """

    takes_n_clusters = False
    _parameter_constraints = {
        "damping": [Interval(Real, 0.5, 1, closed="left")],
        "preference": [Interval(Real, None, None), None],
        "max_iter": [POSITIVE_INT],
        "convergence_iter": [POSITIVE_INT],
        "random_state": RANDOM_STATE,
    }

    def __init__(self, *, damping: float = 0.5, preference: float | None = None,
                 max_iter: int = 200, convergence_iter: int = 15, random_state=None):
        self.damping = damping
        self.preference = preference
        self.max_iter = max_iter
        self.convergence_iter = convergence_iter
        self.random_state = random_state

    def fit(self, X, y=None):
        from sklearn.cluster import AffinityPropagation as SkAP

        X = self._validate_X(X)
        if not 0.5 <= float(self.damping) < 1.0:
            raise InputError(f"damping must lie in [0.5, 1), got {self.damping}")
        _check_pairwise_memory(len(X), "affinity propagation", copies=4)
        if len(X) == 1:
            self.labels_ = np.zeros(1, dtype=np.int64)
            self.cluster_centers_ = X.copy()
            self.converged_ = True
            self.n_iter_ = 0
        else:
            model = SkAP(damping=self.damping, preference=self.preference,
                         max_iter=self.max_iter, convergence_iter=self.convergence_iter,
                         random_state=seed_from(self.random_state))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model.fit(X)
            self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            self.labels_ = model.labels_.astype(np.int64)
            self.cluster_centers_ = np.asarray(model.cluster_centers_, dtype=X.dtype)
            self.n_iter_ = int(model.n_iter_)
            self._model = model
            if not self.converged_:
                warnings.warn(
                    "affinity propagation did not converge; raise max_iter or damping",
                    ConvergenceWarning, stacklevel=2,
                )
        self.n_clusters_ = int(self.labels_.max()) + 1 if (self.labels_ >= 0).any() else 0
        return self

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        X = self._validate_X(X, reset=False)
        if len(self.cluster_centers_) == 0:
            return np.full(len(X), -1, dtype=np.int64)
        d = ((X[:, None, :] - self.cluster_centers_[None, :, :]) ** 2).sum(-1)
        return d.argmin(axis=1).astype(np.int64)


@register("gmm", "Gaussian mixture model (soft assignments via predict_proba)")
class GaussianMixture(BaseClusterer):
    """Gaussian mixture fitted by EM (scikit-learn), with soft assignments.

    Parameters
    ----------
    n_clusters : int
        Number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}
        "diag" scales to high dimensions; "full" is the most flexible.
    n_init, max_iter : int
    reg_covar : float
        Added to covariance diagonals; keeps degenerate data (identical points) finite.
    random_state : int, optional

    Attributes
    ----------
    converged_ : bool
        False when EM did not settle in ``max_iter`` iterations; a ConvergenceWarning
        says so.
    n_iter_ : int
        EM iterations of the kept initialisation.
    n_features_in_ : int
    """

    _parameter_constraints = {
        "covariance_type": [Options("full", "tied", "diag", "spherical")],
        "n_init": [POSITIVE_INT],
        "max_iter": [POSITIVE_INT],
        "reg_covar": [NON_NEGATIVE],
        "random_state": RANDOM_STATE,
    }

    def __init__(self, n_clusters: int = 8, *, covariance_type: str = "diag", n_init: int = 1,
                 max_iter: int = 200, reg_covar: float = 1e-6, random_state=None):
        self.n_clusters = n_clusters
        self.covariance_type = covariance_type
        self.n_init = n_init
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.random_state = random_state

    def fit(self, X, y=None):
        from sklearn.mixture import GaussianMixture as SkGMM

        X = self._validate_X(X)
        k = self._validate_k(len(X))
        if self.covariance_type not in ("full", "tied", "diag", "spherical"):
            raise InputError(
                f"covariance_type must be full, tied, diag or spherical, got {self.covariance_type!r}"
            )
        if len(X) < 2:
            raise InputError(f"a Gaussian mixture needs at least 2 points, got {len(X)} sample(s)")
        X = X.astype(np.float64)  # EM in float32 collapses covariances on tight (UMAP) clusters
        model = SkGMM(n_components=k, covariance_type=self.covariance_type, n_init=self.n_init,
                      max_iter=self.max_iter, reg_covar=self.reg_covar,
                      random_state=seed_from(self.random_state))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # replaced by the one below
            try:
                model.fit(X)
            except ValueError as exc:
                raise InputError(
                    f"the Gaussian mixture could not be fitted ({exc}); raise reg_covar, "
                    "use covariance_type='diag', or reduce the dimension first"
                ) from None
        self.converged_ = bool(model.converged_)
        if not self.converged_:
            warnings.warn("the Gaussian mixture did not converge; raise max_iter or n_init",
                          ConvergenceWarning, stacklevel=2)
        self.model_ = model
        self.labels_ = model.predict(X).astype(np.int64)
        self.cluster_centers_ = model.means_
        self.n_clusters_ = k
        self.n_iter_ = int(model.n_iter_)
        return self

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        return self.model_.predict(self._validate_X(X, reset=False, dtype=np.float64)).astype(np.int64)

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component, shape (n_samples, n_clusters)."""
        self._check_fitted()
        return self.model_.predict_proba(self._validate_X(X, reset=False, dtype=np.float64))
