"""Which classes went into which clusters: the contingency table, the two cluster -> class
mappings (Hungarian one-to-one, majority many-to-one) and the per-class / per-cluster tables
that the report shows.

Rows with an unknown label (``y_true == -1``) are dropped; noise points (``y_pred == -1``) are
one cluster, ``-1``, with ``noise="cluster"`` and dropped with ``"exclude"`` (see
:mod:`deepclust.metrics.noise`).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from sklearn.metrics.cluster import contingency_matrix

from deepclust.metrics.noise import NOISE, check_noise, scored


class Contingency(NamedTuple):
    """Counts of (class, cluster) pairs.

    ``table[i, j]`` is the number of points of class ``classes[i]`` in cluster
    ``clusters[j]``; both label arrays are sorted.
    """

    table: np.ndarray
    classes: np.ndarray
    clusters: np.ndarray


def contingency_of(t: np.ndarray, p: np.ndarray) -> Contingency:
    """The contingency table of label arrays the noise rules have already been applied to."""
    return Contingency(
        contingency_matrix(t, p).astype(np.int64, copy=False), np.unique(t), np.unique(p)
    )


def best_matching(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row (class) and column (cluster) indices of the one-to-one matching of most points."""
    return linear_sum_assignment(table, maximize=True)


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
        How noise points (``y_pred == -1``) are treated; see :mod:`deepclust.metrics.noise`.

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
    return contingency_of(*scored(y_true, y_pred, check_noise(noise, ("cluster", "exclude"))))


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
    rows, cols = best_matching(table)
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
    rows, cols = best_matching(table)
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
    rows, cols = best_matching(table)
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
