"""How good a clustering is: against true labels, and without them.

With labels
-----------
:func:`evaluate` returns every score at once as a plain dict; the single-score functions
(:func:`cluster_acc`, :func:`many_to_one_acc`, :func:`nmi`, :func:`ami`, :func:`ari`,
:func:`purity`, :func:`homogeneity`, :func:`completeness`) and the diagnostics
(:func:`contingency`, :func:`hungarian_mapping`, :func:`many_to_one_mapping`,
:func:`per_class_table`, :func:`per_cluster_table`) apply the same rules. NMI, AMI, ARI,
homogeneity and completeness are scikit-learn's own functions; this module only decides which
rows and labels they see.

Two label values are special, and the rules for them are the same in every function:

* ``-1`` in ``y_true`` means **unknown label** (the ``ImageSource`` contract). Those rows are
  dropped before any score is computed; :func:`evaluate` reports how many as ``n_unknown``.
  They are never a class.
* ``-1`` in ``y_pred`` means **noise**: a point the clusterer declined to assign (HDBSCAN).
  The ``noise`` argument says how noise is scored:

  ``"cluster"`` (default)
      All noise points together form one extra cluster. A method that discards points pays
      for it, and the numbers are comparable with the zero-shot study (Lowe et al. 2024),
      which scores HDBSCAN this way. It is also what scikit-learn does with a ``-1`` label.
  ``"singletons"``
      Each noise point is a cluster of its own. Harsher on NMI and ACC than ``"cluster"``
      when there is much noise, but every singleton is pure, so **purity and many-to-one
      accuracy rise with the amount of noise**; do not compare those two under this mode.
  ``"exclude"``
      Only non-noise points are scored. The scores then describe the points the method
      chose to keep, so :func:`evaluate` always reports ``coverage`` (scored / labelled) and
      ``noise_fraction`` beside them: a score of 0.99 at coverage 0.2 is not a good result.
      If every point is noise, every score is NaN.

  Any other negative label is an error.

Counts in :func:`evaluate` (``n_noise``, ``n_clusters``, ``n_classes``, ``noise_fraction``)
refer to the labelled rows, the population that is scored; ``n_samples`` counts every row
given and ``n_unknown`` the rows dropped for an unknown label. ``n_clusters`` never counts
the noise as a cluster.

Without labels
--------------
:func:`silhouette` (in the original space), :func:`umap_silhouette` (in a UMAP-reduced space,
the zero-shot study's label-free proxy for AMI), :func:`davies_bouldin` and
:func:`calinski_harabasz`, or all at once with :func:`label_free`. The rules:

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
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm
from sklearn.metrics.cluster import contingency_matrix

from deepclust.validation import check_features, check_labels, check_random_state, seed_from
from deepclust.errors import InputError

__all__ = [
    "Contingency",
    "ami",
    "ari",
    "calinski_harabasz",
    "cluster_acc",
    "completeness",
    "contingency",
    "davies_bouldin",
    "evaluate",
    "homogeneity",
    "hungarian_mapping",
    "label_free",
    "many_to_one_acc",
    "many_to_one_mapping",
    "nmi",
    "per_class_table",
    "per_cluster_table",
    "purity",
    "silhouette",
    "umap_silhouette",
]

NOISE = -1
"""The label of a noise point in ``y_pred`` and of an unknown label in ``y_true``."""

NoiseMode = Literal["cluster", "singletons", "exclude"]
AverageMethod = Literal["arithmetic", "geometric", "min", "max"]

_NOISE_MODES = ("cluster", "singletons", "exclude")
_AVERAGE_METHODS = ("arithmetic", "geometric", "min", "max")
_SCORE_KEYS = (
    "acc",
    "many_to_one_acc",
    "purity",
    "nmi",
    "ami",
    "ari",
    "homogeneity",
    "completeness",
)
DEFAULT_SAMPLE_SIZE = 10_000
# The zero-shot study's recommended UMAP for clustering (and for the silhouette proxy).
UMAP_N_COMPONENTS = 50
UMAP_N_NEIGHBORS = 30


# --------------------------------------------------------------------------- input rules


def _check_label_values(labels: np.ndarray, name: str) -> np.ndarray:
    if labels.size and labels.min() < NOISE:
        bad = np.unique(labels[labels < NOISE])[:5]
        raise InputError(
            f"{name} has negative labels other than -1 ({', '.join(map(str, bad))}); "
            "-1 is the only special value (noise in y_pred, unknown in y_true): "
            "relabel the others"
        )
    return labels


def _check_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = check_labels(y_true, name="y_true")
    if t.size == 0:
        raise InputError("y_true is empty; there is nothing to score")
    p = check_labels(y_pred, n_samples=t.shape[0], name="y_pred")
    return _check_label_values(t, "y_true"), _check_label_values(p, "y_pred")


def _check_noise(noise: str, allowed: tuple[str, ...] = _NOISE_MODES) -> str:
    if noise not in allowed:
        raise InputError(f"noise must be one of {', '.join(map(repr, allowed))}, got {noise!r}")
    return noise


def _check_average(average_method: str) -> str:
    if average_method not in _AVERAGE_METHODS:
        raise InputError(
            f"average_method must be one of {', '.join(map(repr, _AVERAGE_METHODS))}, "
            f"got {average_method!r}"
        )
    return average_method


def _apply_noise(t: np.ndarray, p: np.ndarray, noise: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows and labels to score, after the unknown-label and noise rules."""
    known = t != NOISE
    if not known.any():
        raise InputError(
            "every row of y_true is -1 (unknown label); there is nothing to score. "
            "Use label_free() to judge a clustering without labels"
        )
    t, p = t[known], p[known]
    is_noise = p == NOISE
    if not is_noise.any() or noise == "cluster":
        return t, p  # -1 is then an ordinary label value: one cluster
    if noise == "exclude":
        return t[~is_noise], p[~is_noise]
    # singletons: fresh labels above every real cluster
    p = p.copy()
    start = int(p[~is_noise].max()) + 1 if (~is_noise).any() else 0
    p[is_noise] = np.arange(start, start + int(is_noise.sum()))
    return t, p


def _scored(y_true: ArrayLike, y_pred: ArrayLike, noise: str) -> tuple[np.ndarray, np.ndarray]:
    t, p = _check_pair(y_true, y_pred)
    return _apply_noise(t, p, _check_noise(noise))


# --------------------------------------------------------------------------- contingency


class Contingency(NamedTuple):
    """Counts of (class, cluster) pairs.

    ``table[i, j]`` is the number of points of class ``classes[i]`` in cluster
    ``clusters[j]``; both label arrays are sorted.
    """

    table: np.ndarray
    classes: np.ndarray
    clusters: np.ndarray


def _contingency(t: np.ndarray, p: np.ndarray) -> Contingency:
    return Contingency(
        contingency_matrix(t, p).astype(np.int64, copy=False), np.unique(t), np.unique(p)
    )


def _hungarian(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row (class) and column (cluster) indices of the one-to-one matching of most points."""
    return linear_sum_assignment(table, maximize=True)


def _acc_from_table(table: np.ndarray) -> float:
    n = table.sum()
    if n == 0:
        return math.nan
    rows, cols = _hungarian(table)
    return float(table[rows, cols].sum() / n)


def _purity_from_table(table: np.ndarray) -> float:
    n = table.sum()
    if n == 0:
        return math.nan
    return float(table.max(axis=0).sum() / n)


def contingency(
    y_true: ArrayLike, y_pred: ArrayLike, *, noise: Literal["cluster", "exclude"] = "cluster"
) -> Contingency:
    """Count the points of each class in each cluster.

    Rows with an unknown label (``y_true == -1``) are dropped. With ``noise="cluster"`` the
    noise points appear as the cluster ``-1``; with ``"exclude"`` they are dropped.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True classes and predicted clusters.
    noise : {"cluster", "exclude"}
        How noise points (``y_pred == -1``) are treated; see the module docstring.

    Returns
    -------
    Contingency
        ``(table, classes, clusters)``: an int64 array of shape (n_classes, n_clusters)
        and the sorted class and cluster labels of its rows and columns. The table is
        dense: about 870 MB for 10 450 classes and as many clusters.

    Examples
    --------
    >>> contingency([0, 0, 1], [5, 5, 5]).table
    array([[2],
           [1]])
    """
    return _contingency(*_scored(y_true, y_pred, _check_noise(noise, ("cluster", "exclude"))))


def hungarian_mapping(
    y_true: ArrayLike, y_pred: ArrayLike, *, noise: Literal["cluster", "exclude"] = "cluster"
) -> dict[int, int]:
    """The one-to-one cluster → class matching that maximises the number of hits.

    Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`) on the contingency
    table. With more clusters than classes, the extra clusters are not matched and do not
    appear in the dict; with fewer, some classes are not matched.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    noise : {"cluster", "exclude"}
        With ``"cluster"`` the noise cluster ``-1`` takes part in the matching like any
        other cluster.

    Returns
    -------
    dict
        Cluster label → class label, for the matched clusters only, sorted by cluster.

    Examples
    --------
    >>> hungarian_mapping([0, 0, 1, 1, 1], [1, 1, 0, 0, 2])  # cluster 2 is left unmatched
    {0: 1, 1: 0}
    """
    table, classes, clusters = contingency(y_true, y_pred, noise=noise)
    rows, cols = _hungarian(table)
    pairs = sorted(zip(cols.tolist(), rows.tolist(), strict=True))
    return {int(clusters[j]): int(classes[i]) for j, i in pairs}


def many_to_one_mapping(
    y_true: ArrayLike, y_pred: ArrayLike, *, noise: Literal["cluster", "exclude"] = "cluster"
) -> dict[int, int]:
    """Map every cluster to its majority class (ties go to the smallest class label).

    Several clusters may map to the same class; this is the rule for over-clustering.

    Examples
    --------
    >>> many_to_one_mapping([0, 0, 1, 1], [0, 1, 2, 2])
    {0: 0, 1: 0, 2: 1}
    """
    table, classes, clusters = contingency(y_true, y_pred, noise=noise)
    majority = table.argmax(axis=0)
    return {int(c): int(classes[i]) for c, i in zip(clusters, majority, strict=True)}


# --------------------------------------------------------------------------- single scores


def cluster_acc(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Clustering accuracy under the best one-to-one cluster → class matching.

    The matching is the Hungarian algorithm on the contingency table, which may be
    rectangular: when there are more clusters than classes, the points of the unmatched
    clusters count as wrong (use :func:`many_to_one_acc` to score an over-clustering).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True classes (``-1``: unknown, dropped) and predicted clusters (``-1``: noise).
    noise : {"cluster", "singletons", "exclude"}
        How noise is scored; see the module docstring.

    Returns
    -------
    float
        In [0, 1]; NaN if nothing is left to score (``noise="exclude"``, all noise).

    Examples
    --------
    >>> cluster_acc([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    return _acc_from_table(_contingency(*_scored(y_true, y_pred, noise)).table)


def many_to_one_acc(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Accuracy when each cluster predicts its majority class (several may share one).

    The fair accuracy for an over-clustering (more clusters than classes). It equals
    :func:`purity` by definition; deep clustering papers use this name.

    Examples
    --------
    >>> many_to_one_acc([0, 0, 1, 1], [0, 1, 2, 2])
    1.0
    """
    t, p = _scored(y_true, y_pred, noise)
    if t.size == 0:
        return math.nan
    table, classes, clusters = _contingency(t, p)
    predicted = classes[table.argmax(axis=0)][np.searchsorted(clusters, p)]
    return float(np.mean(predicted == t))


def purity(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Fraction of points that belong to the majority class of their cluster.

    Examples
    --------
    >>> purity([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 1])  # (2 + 2) / 6
    0.6666666666666666
    """
    return _purity_from_table(_contingency(*_scored(y_true, y_pred, noise)).table)


def nmi(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    average_method: AverageMethod = "arithmetic",
    *,
    noise: NoiseMode = "cluster",
) -> float:
    """Normalised mutual information (scikit-learn's).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    average_method : {"arithmetic", "geometric", "min", "max"}
        How the two entropies are averaged in the denominator. ``"arithmetic"`` is the
        current convention (scikit-learn's default); ``"geometric"`` is the one of older
        papers (DeepCluster and its contemporaries), use it to compare with them.
    noise : {"cluster", "singletons", "exclude"}
        How noise is scored; see the module docstring.
    """
    t, p = _scored(y_true, y_pred, noise)
    if t.size == 0:
        return math.nan
    return float(
        skm.normalized_mutual_info_score(t, p, average_method=_check_average(average_method))
    )


def ami(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    average_method: AverageMethod = "arithmetic",
    *,
    noise: NoiseMode = "cluster",
) -> float:
    """Adjusted mutual information (scikit-learn's), the zero-shot study's main score.

    ``average_method`` and ``noise`` as in :func:`nmi`.
    """
    t, p = _scored(y_true, y_pred, noise)
    if t.size == 0:
        return math.nan
    return float(
        skm.adjusted_mutual_info_score(t, p, average_method=_check_average(average_method))
    )


def ari(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Adjusted Rand index (scikit-learn's); ``noise`` as in :func:`nmi`."""
    t, p = _scored(y_true, y_pred, noise)
    return math.nan if t.size == 0 else float(skm.adjusted_rand_score(t, p))


def homogeneity(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Homogeneity (scikit-learn's): each cluster holds one class; ``noise`` as in :func:`nmi`."""
    t, p = _scored(y_true, y_pred, noise)
    return math.nan if t.size == 0 else float(skm.homogeneity_score(t, p))


def completeness(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Completeness (scikit-learn's): each class sits in one cluster; ``noise`` as in :func:`nmi`."""
    t, p = _scored(y_true, y_pred, noise)
    return math.nan if t.size == 0 else float(skm.completeness_score(t, p))


# --------------------------------------------------------------------------- tables


def per_class_table(
    y_true: ArrayLike, y_pred: ArrayLike, *, noise: Literal["cluster", "exclude"] = "cluster"
) -> list[dict[str, Any]]:
    """One row per class: where its points went.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    noise : {"cluster", "exclude"}
        With ``"cluster"`` the noise cluster ``-1`` can be a class's matched or top cluster.

    Returns
    -------
    list of dict
        Sorted by class, with keys

        - ``class``, ``size``: the class label and its number of (scored) points;
        - ``matched_cluster``: its cluster under the Hungarian matching, None if unmatched;
        - ``recall``: fraction of the class inside its matched cluster (0.0 if unmatched);
        - ``precision``: fraction of the matched cluster that is this class (None if
          unmatched);
        - ``top_cluster``, ``top_cluster_fraction``: the cluster holding most of the class,
          and that share;
        - ``n_clusters``: how many clusters hold at least one of its points.
    """
    table, classes, clusters = contingency(y_true, y_pred, noise=noise)
    rows, cols = _hungarian(table)
    matched = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    class_sizes, cluster_sizes = table.sum(axis=1), table.sum(axis=0)
    out = []
    for i, c in enumerate(classes):
        size = int(class_sizes[i])
        j = matched.get(i)
        top = int(table[i].argmax())
        out.append(
            {
                "class": int(c),
                "size": size,
                "matched_cluster": None if j is None else int(clusters[j]),
                "recall": 0.0 if j is None else float(table[i, j] / size),
                "precision": None if j is None else float(table[i, j] / cluster_sizes[j]),
                "top_cluster": int(clusters[top]),
                "top_cluster_fraction": float(table[i, top] / size),
                "n_clusters": int(np.count_nonzero(table[i])),
            }
        )
    return out


def per_cluster_table(
    y_true: ArrayLike, y_pred: ArrayLike, *, noise: Literal["cluster", "exclude"] = "cluster"
) -> list[dict[str, Any]]:
    """One row per cluster: what it holds.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    noise : {"cluster", "exclude"}
        With ``"cluster"`` the noise points have a row of their own, cluster ``-1``.

    Returns
    -------
    list of dict
        Sorted by cluster, with keys

        - ``cluster``, ``size``, ``is_noise`` (True for the row of cluster ``-1``);
        - ``majority_class`` (ties: smallest label) and ``purity``: its share of the cluster;
        - ``matched_class``: the class matched to it by the Hungarian matching, None if
          unmatched, and ``matched_fraction``: that class's share of the cluster (None if
          unmatched);
        - ``n_classes``: how many classes have at least one point in it.
    """
    table, classes, clusters = contingency(y_true, y_pred, noise=noise)
    rows, cols = _hungarian(table)
    matched = dict(zip(cols.tolist(), rows.tolist(), strict=True))
    sizes = table.sum(axis=0)
    out = []
    for j, k in enumerate(clusters):
        size = int(sizes[j])
        i = matched.get(j)
        top = int(table[:, j].argmax())
        out.append(
            {
                "cluster": int(k),
                "size": size,
                "is_noise": bool(k == NOISE),
                "majority_class": int(classes[top]),
                "purity": float(table[top, j] / size),
                "matched_class": None if i is None else int(classes[i]),
                "matched_fraction": None if i is None else float(table[i, j] / size),
                "n_classes": int(np.count_nonzero(table[:, j])),
            }
        )
    return out


# --------------------------------------------------------------------------- all at once


def evaluate(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    noise: NoiseMode = "cluster",
    average_method: AverageMethod = "arithmetic",
) -> dict[str, Any]:
    """Every label-based score of a clustering, as a plain (JSON-ready) dict.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True classes; ``-1`` marks an unknown label, and those rows are not scored.
    y_pred : array-like of shape (n_samples,)
        Predicted clusters; ``-1`` marks noise.
    noise : {"cluster", "singletons", "exclude"}
        How noise is scored (see the module docstring). The default, one extra cluster,
        is what the zero-shot study reports.
    average_method : {"arithmetic", "geometric", "min", "max"}
        Entropy average in the denominator of NMI and AMI; ``"geometric"`` for older papers.

    Returns
    -------
    dict
        Scores: ``acc`` (Hungarian), ``many_to_one_acc``, ``purity``, ``nmi``, ``ami``,
        ``ari``, ``homogeneity``, ``completeness`` (NaN if nothing is scored).
        Counts: ``n_samples`` (rows given), ``n_unknown`` (rows with ``y_true == -1``),
        ``n_labelled``, and over the labelled rows ``n_noise``, ``noise_fraction``,
        ``n_clusters`` (noise not counted), ``n_classes``; ``n_scored`` (rows that entered
        the scores) and ``coverage`` = ``n_scored / n_labelled`` (below 1 only with
        ``noise="exclude"``). Settings: ``noise``, ``average_method``.

    Examples
    --------
    >>> r = evaluate([0, 0, 1, 1, -1], [3, 3, 4, -1, 4], noise="exclude")
    >>> r["acc"], r["n_unknown"], r["n_noise"], r["coverage"]
    (1.0, 1, 1, 0.75)
    """
    t_all, p_all = _check_pair(y_true, y_pred)
    _check_noise(noise)
    _check_average(average_method)
    t, p = _apply_noise(t_all, p_all, noise)

    known = t_all != NOISE
    labelled_pred = p_all[known]
    n_labelled = int(known.sum())
    n_noise = int(np.count_nonzero(labelled_pred == NOISE))
    result: dict[str, Any] = {}
    if t.size:
        table = _contingency(t, p).table
        result.update(
            acc=_acc_from_table(table),
            many_to_one_acc=_purity_from_table(table),  # the same quantity; see purity()
            purity=_purity_from_table(table),
            nmi=float(skm.normalized_mutual_info_score(t, p, average_method=average_method)),
            ami=float(skm.adjusted_mutual_info_score(t, p, average_method=average_method)),
            ari=float(skm.adjusted_rand_score(t, p)),
            homogeneity=float(skm.homogeneity_score(t, p)),
            completeness=float(skm.completeness_score(t, p)),
        )
    else:
        result.update(dict.fromkeys(_SCORE_KEYS, math.nan))
    result.update(
        n_samples=int(t_all.size),
        n_unknown=int(t_all.size - n_labelled),
        n_labelled=n_labelled,
        n_noise=n_noise,
        noise_fraction=n_noise / n_labelled,
        n_clusters=int(np.unique(labelled_pred[labelled_pred != NOISE]).size),
        n_classes=int(np.unique(t_all[known]).size),
        n_scored=int(t.size),
        coverage=t.size / n_labelled,
        noise=noise,
        average_method=average_method,
    )
    return result


# --------------------------------------------------------------------------- label-free


def _check_X_labels(X: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    X = check_features(X, name="X")
    labels = check_labels(labels, n_samples=X.shape[0], name="labels")
    return X, _check_label_values(labels, "labels")


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
    return float(skm.silhouette_score(X, labels, metric=metric)), None


def _umap_embedding(
    X: np.ndarray, n_components: int, n_neighbors: int, random_state: Any
) -> np.ndarray:
    # Imported here so that `import deepclust.metrics` does not pay for umap and numba.
    from deepclust.reduce import umap_embedding

    seed = None if random_state is None else seed_from(random_state)
    return umap_embedding(X, n_components, n_neighbors=n_neighbors, random_state=seed)


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
    n_components: int = UMAP_N_COMPONENTS,
    n_neighbors: int = UMAP_N_NEIGHBORS,
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
        UMAP settings when ``embedding`` is None; the defaults (50 and 30, with
        ``min_dist=0``) are the study's recommended reduction for clustering. UMAP is then
        fit on every row of ``X`` by :func:`deepclust.reduce.umap_embedding`, which costs
        minutes for hundreds of thousands of rows.
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
        labels = _check_label_values(check_labels(labels, name="labels"), "labels")
        space = _check_embedding(embedding, labels.size)
    elif X is None:
        raise InputError("umap_silhouette needs X or a precomputed embedding")
    else:
        X, labels = _check_X_labels(X, labels)
    keep = labels != NOISE
    if _undefined_reason(labels[keep]) is not None:
        return math.nan
    if embedding is None:
        space = _umap_embedding(X, n_components, n_neighbors, random_state)
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
    n_components: int = UMAP_N_COMPONENTS,
    n_neighbors: int = UMAP_N_NEIGHBORS,
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
        UMAP settings when the embedding is computed here.

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
        space = _umap_embedding(X, n_components, n_neighbors, random_state)
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
