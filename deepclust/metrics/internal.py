"""Label-free (internal) scores: how well separated the clusters are, without labels.

:func:`silhouette` (in the original space), :func:`umap_silhouette` (in the UMAP proxy space of
:mod:`deepclust.metrics.proxy`, the zero-shot study's label-free proxy for AMI),
:func:`davies_bouldin` and :func:`calinski_harabasz`, or all at once with :func:`label_free`.
The rules:

* Noise points (``-1``) are left out: they belong to no cluster, so they have no
  silhouette and no centroid. :func:`label_free` reports how many were left out.
* The scores are undefined, and returned as NaN rather than raised, when fewer than two
  clusters remain after dropping noise, or when every remaining point is its own cluster
  (scikit-learn requires ``2 <= n_clusters <= n_points - 1``). A sweep over k meets both
  cases; :func:`label_free` says which one in ``nan_reason``.
* The silhouette costs O(n²), so above ``sample_size`` points (default 10 000) it is
  computed on a uniform random subsample of the non-noise points, the same rows in both
  spaces, chosen by ``random_state`` (pass one to make it reproducible). Davies–Bouldin and
  Calinski–Harabasz are linear in n and always use every non-noise point.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np
import sklearn
from numpy.typing import ArrayLike
from sklearn import metrics as skm

from deepclust.errors import InputError
from deepclust.metrics.noise import NOISE, check_label_values
from deepclust.metrics.proxy import PROXY_UMAP, proxy_space
from deepclust.validation import check_features, check_labels, check_random_state

DEFAULT_SAMPLE_SIZE = 10_000
#: Megabytes of distances scikit-learn holds at once while computing a silhouette.
SILHOUETTE_WORKING_MB = 128
"""Above this many points the silhouette is computed on a uniform random subsample."""


def _check_X_labels(X: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    X = check_features(X, name="X")
    labels = check_labels(labels, n_samples=X.shape[0], name="labels")
    return X, check_label_values(labels, "labels")


def _check_embedding(embedding: ArrayLike, n_samples: int) -> np.ndarray:
    embedding = check_features(embedding, name="embedding")
    if embedding.shape[0] != n_samples:
        raise InputError(
            f"embedding has {embedding.shape[0]} rows but there are {n_samples} labels; "
            "embed the same points that were clustered"
        )
    return embedding


def _check_sample_size(sample_size: int | None) -> int | None:
    if sample_size is None:
        return None
    if isinstance(sample_size, bool) or not isinstance(sample_size, Integral) or sample_size < 2:
        raise InputError(f"sample_size must be None or an integer >= 2, got {sample_size!r}")
    return int(sample_size)


def _drop_noise(X: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``X`` and ``labels`` that are not noise (no copy when there is no noise)."""
    keep = labels != NOISE
    if keep.all():
        return X, labels
    return X[keep], labels[keep]


def _undefined_reason(labels: np.ndarray, where: str = "after excluding noise") -> str | None:
    """Why label-free scores are undefined for ``labels`` (noise removed), or None."""
    n = labels.size
    k = np.unique(labels).size
    if k < 2:
        return f"fewer than 2 clusters {where} ({k} cluster(s), {n} point(s))"
    if k >= n:
        return f"every point is its own cluster {where} ({n} point(s))"
    return None


def _sample_rows(n: int, sample_size: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted row indices of a uniform subsample, or None when every row is used."""
    if sample_size is None or n <= sample_size:
        return None
    return np.sort(rng.choice(n, size=sample_size, replace=False))


def _silhouette_rows(
    X: np.ndarray, labels: np.ndarray, rows: np.ndarray | None, metric: str
) -> tuple[float, str | None]:
    """Silhouette of non-noise ``X, labels`` (on ``rows`` only, if given), and why NaN."""
    if rows is not None:
        X = X[np.ix_(rows, rows)] if metric == "precomputed" else X[rows]
        labels = labels[rows]
        reason = _undefined_reason(labels, f"in the silhouette subsample of {rows.size}")
        if reason is not None:
            return math.nan, reason
    # scikit-learn computes the distances in chunks of its working memory (1 GB by
    # default); a smaller chunk gives the same score at a bounded peak
    with sklearn.config_context(working_memory=SILHOUETTE_WORKING_MB):
        return float(skm.silhouette_score(X, labels, metric=metric)), None


def silhouette(
    X: ArrayLike,
    labels: ArrayLike,
    *,
    metric: str = "euclidean",
    sample_size: int | None = DEFAULT_SAMPLE_SIZE,
    random_state: int | np.random.Generator | None = None,
) -> float:
    """Mean silhouette coefficient of the non-noise points (scikit-learn's).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Features, or a square distance matrix with ``metric="precomputed"``.
    labels : array-like of shape (n_samples,)
        Cluster labels; noise points (``-1``) are left out.
    metric : str
        Any metric :func:`sklearn.metrics.silhouette_score` accepts.
    sample_size : int or None
        Above this many non-noise points, score a uniform random subsample of this size
        (the silhouette costs O(n²)). None: always use every point.
    random_state : int, numpy Generator or None
        Chooses the subsample; pass one for a reproducible score.

    Returns
    -------
    float
        In [-1, 1]; NaN when fewer than 2 clusters are left or every point is its own
        cluster (see the module docstring).

    Examples
    --------
    >>> X = [[0.0], [0.1], [5.0], [5.1], [99.0]]
    >>> round(silhouette(X, [0, 0, 1, 1, -1]), 3)  # the noise point is left out
    0.98
    >>> silhouette(X, [0, 0, 0, 0, -1])
    nan
    """
    X, labels = _check_X_labels(X, labels)
    sample_size = _check_sample_size(sample_size)
    if metric == "precomputed":
        if X.shape[0] != X.shape[1]:
            raise InputError(f"with metric='precomputed' X must be square, got shape {X.shape}")
        keep = labels != NOISE
        X, labels = X[np.ix_(keep, keep)], labels[keep]
    else:
        X, labels = _drop_noise(X, labels)
    if _undefined_reason(labels) is not None:
        return math.nan
    rows = _sample_rows(labels.size, sample_size, check_random_state(random_state))
    return _silhouette_rows(X, labels, rows, metric)[0]


def umap_silhouette(
    X: ArrayLike | None,
    labels: ArrayLike,
    *,
    embedding: ArrayLike | None = None,
    n_components: int = PROXY_UMAP["n_components"],
    n_neighbors: int = PROXY_UMAP["n_neighbors"],
    random_state: int | np.random.Generator | None = None,
    sample_size: int | None = DEFAULT_SAMPLE_SIZE,
) -> float:
    """Silhouette in a UMAP-reduced space: the zero-shot study's label-free proxy for AMI.

    Lowe et al. (2024) found that this score tracks AMI closely, so it can choose settings
    and the number of clusters when there are no labels.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or None
        Features; only used (and then required) when ``embedding`` is None.
    labels : array-like of shape (n_samples,)
        Cluster labels; noise points (``-1``) are left out of the score, but not out of
        the UMAP fit, so that clusterings of the same data are scored in the same space.
    embedding : array-like of shape (n_samples, d), optional
        A UMAP embedding of the clustered points, already computed: pass one to score many
        clusterings of the same data (a k sweep) without refitting UMAP, or to use other
        UMAP settings.
    n_components, n_neighbors : int
        UMAP settings when ``embedding`` is None; the defaults are the proxy space's
        (:data:`~deepclust.metrics.proxy.PROXY_UMAP`: 50 and 30, ``min_dist=0``, 200 epochs).
        UMAP is then fit on every row of ``X`` by
        :func:`~deepclust.metrics.proxy.proxy_space`, the slow part on large inputs: pass
        ``embedding`` to pay for it once.
    random_state : int, numpy Generator or None
        Seeds UMAP and chooses the silhouette subsample.
    sample_size : int or None
        As in :func:`silhouette`.

    Returns
    -------
    float
        NaN under the same rules as :func:`silhouette` (and then UMAP is not fit at all).
    """
    sample_size = _check_sample_size(sample_size)
    if embedding is not None:
        labels = check_label_values(check_labels(labels, name="labels"), "labels")
        space = _check_embedding(embedding, labels.size)
    elif X is None:
        raise InputError("umap_silhouette needs X or a precomputed embedding")
    else:
        X, labels = _check_X_labels(X, labels)
    keep = labels != NOISE
    if _undefined_reason(labels[keep]) is not None:
        return math.nan
    if embedding is None:
        space = proxy_space(
            X, random_state=random_state, n_components=n_components, n_neighbors=n_neighbors
        )
    space, labels = _drop_noise(space, labels)
    rows = _sample_rows(labels.size, sample_size, check_random_state(random_state))
    return _silhouette_rows(space, labels, rows, "euclidean")[0]


def davies_bouldin(X: ArrayLike, labels: ArrayLike) -> float:
    """Davies–Bouldin index of the non-noise points (scikit-learn's); lower is better.

    NaN when fewer than 2 clusters are left or every point is its own cluster.
    """
    X, labels = _drop_noise(*_check_X_labels(X, labels))
    if _undefined_reason(labels) is not None:
        return math.nan
    return float(skm.davies_bouldin_score(X, labels))


def calinski_harabasz(X: ArrayLike, labels: ArrayLike) -> float:
    """Calinski–Harabasz index of the non-noise points (scikit-learn's); higher is better.

    NaN when fewer than 2 clusters are left or every point is its own cluster.
    """
    X, labels = _drop_noise(*_check_X_labels(X, labels))
    if _undefined_reason(labels) is not None:
        return math.nan
    return float(skm.calinski_harabasz_score(X, labels))


def label_free(
    X: ArrayLike,
    y_pred: ArrayLike,
    *,
    umap_embedding: ArrayLike | None = None,
    sample_size: int | None = DEFAULT_SAMPLE_SIZE,
    random_state: int | np.random.Generator | None = None,
    include_umap: bool = True,
    metric: str = "euclidean",
    n_components: int = PROXY_UMAP["n_components"],
    n_neighbors: int = PROXY_UMAP["n_neighbors"],
) -> dict[str, Any]:
    """Every label-free score of a clustering, as a plain (JSON-ready) dict.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The features that were clustered.
    y_pred : array-like of shape (n_samples,)
        Cluster labels; noise points (``-1``) are left out of every score.
    umap_embedding : array-like of shape (n_samples, d), optional
        A UMAP embedding of ``X`` to score in; computed as in :func:`umap_silhouette` when
        None and ``include_umap`` is True. Pass one to a k sweep to fit UMAP only once.
    sample_size : int or None
        Silhouette subsample size (the same rows in both spaces); None: every point.
    random_state : int, numpy Generator or None
        Chooses the subsample and seeds UMAP. With an int, ``silhouette`` equals
        :func:`silhouette` called with the same ``random_state``.
    include_umap : bool
        False skips the UMAP silhouette (``umap_silhouette`` is then None).
    metric : str
        Metric of the silhouette in the original space (the UMAP space is Euclidean).
    n_components, n_neighbors : int
        UMAP settings when the embedding is computed here, as in :func:`umap_silhouette`.

    Returns
    -------
    dict
        ``silhouette``, ``umap_silhouette`` (None if not asked for), ``davies_bouldin``,
        ``calinski_harabasz``; ``n_samples``, ``n_noise``, ``n_clusters`` (noise not
        counted), ``n_scored`` (non-noise points), ``silhouette_sample_size`` (points the
        silhouettes used; 0 when they are NaN) and ``nan_reason``: None, or why scores are
        NaN (all of them, or only the silhouettes when their subsample is degenerate).

    Examples
    --------
    >>> r = label_free([[0.0], [0.1], [5.0], [5.1]], [0, 0, 0, -1], include_umap=False)
    >>> r["silhouette"], r["nan_reason"]
    (nan, 'fewer than 2 clusters after excluding noise (1 cluster(s), 3 point(s))')
    """
    if metric == "precomputed":
        raise InputError(
            "label_free needs features (Davies-Bouldin and Calinski-Harabasz use centroids); "
            "call silhouette(D, labels, metric='precomputed') for a distance matrix"
        )
    X, labels = _check_X_labels(X, y_pred)
    sample_size = _check_sample_size(sample_size)
    space = None
    if include_umap and umap_embedding is not None:
        space = _check_embedding(umap_embedding, labels.size)
    Xk, kept = _drop_noise(X, labels)
    reason = _undefined_reason(kept)
    result: dict[str, Any] = {
        "silhouette": math.nan,
        "umap_silhouette": math.nan if include_umap else None,
        "davies_bouldin": math.nan,
        "calinski_harabasz": math.nan,
        "n_samples": int(labels.size),
        "n_noise": int(labels.size - kept.size),
        "n_clusters": int(np.unique(kept).size),
        "n_scored": int(kept.size),
        "silhouette_sample_size": 0,
        "nan_reason": reason,
    }
    if reason is not None:
        return result
    if include_umap and space is None:
        space = proxy_space(
            X, random_state=random_state, n_components=n_components, n_neighbors=n_neighbors
        )
    rows = _sample_rows(kept.size, sample_size, check_random_state(random_state))
    result["silhouette"], reason = _silhouette_rows(Xk, kept, rows, metric)
    if include_umap:
        result["umap_silhouette"] = _silhouette_rows(
            _drop_noise(space, labels)[0], kept, rows, "euclidean"
        )[0]
    result["davies_bouldin"] = float(skm.davies_bouldin_score(Xk, kept))
    result["calinski_harabasz"] = float(skm.calinski_harabasz_score(Xk, kept))
    if reason is None:
        result["silhouette_sample_size"] = int(kept.size if rows is None else rows.size)
    result["nan_reason"] = reason
    return result
