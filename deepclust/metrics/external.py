"""Label-based (external) scores: how well the clusters match known classes.

:func:`evaluate` returns every score at once as a plain dict; the single-score functions
(:func:`cluster_acc`, :func:`many_to_one_acc`, :func:`nmi`, :func:`ami`, :func:`ari`,
:func:`purity`, :func:`homogeneity`, :func:`completeness`) apply the same rules. NMI, AMI, ARI,
homogeneity and completeness are scikit-learn's own functions; this module only decides which
rows and labels they see: unknown labels (``y_true == -1``) are dropped and noise
(``y_pred == -1``) is scored as the ``noise`` argument says (:mod:`deepclust.metrics.noise`).

Counts in :func:`evaluate` (``n_noise``, ``n_clusters``, ``n_classes``, ``noise_fraction``)
refer to the labelled rows, the population that is scored; ``n_samples`` counts every row
given and ``n_unknown`` the rows dropped for an unknown label. ``n_clusters`` never counts
the noise as a cluster.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as skm

from deepclust.errors import InputError
from deepclust.metrics.noise import NOISE, NoiseMode, apply_noise, check_noise, check_pair, scored
from deepclust.metrics.tables import best_matching, contingency_of

AverageMethod = Literal["arithmetic", "geometric", "min", "max"]

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


def _check_average(average_method: str) -> str:
    if average_method not in _AVERAGE_METHODS:
        raise InputError(
            f"average_method must be one of {', '.join(map(repr, _AVERAGE_METHODS))}, "
            f"got {average_method!r}"
        )
    return average_method


def _acc_from_table(table: np.ndarray) -> float:
    n = table.sum()
    if n == 0:
        return math.nan
    rows, cols = best_matching(table)
    return float(table[rows, cols].sum() / n)


def _purity_from_table(table: np.ndarray) -> float:
    n = table.sum()
    if n == 0:
        return math.nan
    return float(table.max(axis=0).sum() / n)


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
        How noise is scored; see :mod:`deepclust.metrics.noise`.

    Returns
    -------
    float
        In [0, 1]; NaN if nothing is left to score (``noise="exclude"``, all noise).

    Examples
    --------
    >>> cluster_acc([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    return _acc_from_table(contingency_of(*scored(y_true, y_pred, noise)).table)


def many_to_one_acc(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Accuracy when each cluster predicts its majority class (several may share one).

    The fair accuracy for an over-clustering (more clusters than classes). It equals
    :func:`purity` by definition; deep clustering papers use this name.

    Examples
    --------
    >>> many_to_one_acc([0, 0, 1, 1], [0, 1, 2, 2])
    1.0
    """
    t, p = scored(y_true, y_pred, noise)
    if t.size == 0:
        return math.nan
    table, classes, clusters = contingency_of(t, p)
    predicted = classes[table.argmax(axis=0)][np.searchsorted(clusters, p)]
    return float(np.mean(predicted == t))


def purity(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Fraction of points that belong to the majority class of their cluster.

    Examples
    --------
    >>> purity([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 1])  # (2 + 2) / 6
    0.6666666666666666
    """
    return _purity_from_table(contingency_of(*scored(y_true, y_pred, noise)).table)


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
        How noise is scored; see :mod:`deepclust.metrics.noise`.
    """
    t, p = scored(y_true, y_pred, noise)
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
    t, p = scored(y_true, y_pred, noise)
    if t.size == 0:
        return math.nan
    return float(
        skm.adjusted_mutual_info_score(t, p, average_method=_check_average(average_method))
    )


def ari(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Adjusted Rand index (scikit-learn's); ``noise`` as in :func:`nmi`."""
    t, p = scored(y_true, y_pred, noise)
    return math.nan if t.size == 0 else float(skm.adjusted_rand_score(t, p))


def homogeneity(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Homogeneity (scikit-learn's): each cluster holds one class; ``noise`` as in :func:`nmi`."""
    t, p = scored(y_true, y_pred, noise)
    return math.nan if t.size == 0 else float(skm.homogeneity_score(t, p))


def completeness(y_true: ArrayLike, y_pred: ArrayLike, *, noise: NoiseMode = "cluster") -> float:
    """Completeness (scikit-learn's): each class sits in one cluster; ``noise`` as in :func:`nmi`."""
    t, p = scored(y_true, y_pred, noise)
    return math.nan if t.size == 0 else float(skm.completeness_score(t, p))


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
        How noise is scored (see :mod:`deepclust.metrics.noise`). The default, one extra cluster,
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
    t_all, p_all = check_pair(y_true, y_pred)
    check_noise(noise)
    _check_average(average_method)
    t, p = apply_noise(t_all, p_all, noise)

    known = t_all != NOISE
    labelled_pred = p_all[known]
    n_labelled = int(known.sum())
    n_noise = int(np.count_nonzero(labelled_pred == NOISE))
    result: dict[str, Any] = {}
    if t.size:
        table = contingency_of(t, p).table
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
