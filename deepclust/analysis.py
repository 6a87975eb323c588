"""What non-primary clusters capture: do an image's 2nd, 3rd... clusters name its coarser classes?

Adaloglou et al. (2024, "Scaling Up Deep Clustering Methods Beyond ImageNet-1K") observe that
the clusters an image is *not* assigned to, but is next closest to, often name a meaningful
coarser class of it. This module measures that, against the level it would reach by chance:

1. :func:`rank_clusters` orders the clusters of every image: the assigned (primary) cluster
   first, then the others by the method's own soft assignment -- head or GMM probabilities
   (:func:`soft_scores`), distance to the k-means centroid, or, for methods without either,
   distance to the cluster's mean.
2. :func:`name_clusters` names every cluster by the majority class of its (primary) members,
   at any level of a :class:`~deepclust.data.hierarchy.Hierarchy` (fine classes, a depth or a
   level up).
3. :func:`non_primary_analysis` classifies the name of each image's rank-``r`` cluster as

   ``ancestor``   a strict ancestor of the image's class (a true coarser class);
   ``same``       the image's own class;
   ``descendant`` a class below the image's class (possible where the dataset labels inner
                  nodes of the tree, as ImageNet-21K does);
   ``unrelated``  anything else, and clusters with no members (no name).

   Chance is the same rate for a cluster drawn uniformly from the image's other clusters
   (all but its primary one): what rank ``r`` would score if the ordering beyond the primary
   cluster carried no information. For "any of ranks 2..R" the chance is hypergeometric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb
from typing import Any

import numpy as np

from deepclust.data.hierarchy import Hierarchy
from deepclust.errors import InputError

__all__ = [
    "CATEGORIES",
    "NonPrimaryResult",
    "name_clusters",
    "non_primary_analysis",
    "rank_clusters",
    "soft_scores",
]

#: How the name of a non-primary cluster relates to an image's class.
CATEGORIES = ("ancestor", "same", "descendant", "unrelated")


# ----------------------------------------------------------------------------- rankings


def soft_scores(estimator: Any, X: np.ndarray) -> tuple[np.ndarray, bool]:
    """Per-cluster scores of each row from a fitted clusterer, and whether higher is better.

    - a Gaussian mixture: the weighted log-likelihood of each component (log posterior up to
      a per-row constant; posteriors themselves underflow to exact zeros and would tie);
    - ``predict_proba`` (clustering heads): the probabilities;
    - ``transform`` with ``cluster_centers_`` (k-means): distances to the centroids;
    - otherwise: None (use cluster means, see :func:`rank_clusters`).

    Returns
    -------
    scores : ndarray of shape (n_samples, n_clusters) or None
    higher_is_better : bool
    """
    model = getattr(estimator, "model_", None)
    if model is not None and hasattr(model, "_estimate_weighted_log_prob"):
        # sklearn's GaussianMixture: predict_proba = softmax of these; they do not underflow
        return np.asarray(model._estimate_weighted_log_prob(np.asarray(X, np.float64))), True
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(X), dtype=np.float64), True
    if hasattr(estimator, "transform") and hasattr(estimator, "cluster_centers_"):
        return np.asarray(estimator.transform(X), dtype=np.float64), False
    return None, True


def _mean_distances(X: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    means = np.zeros((n_clusters, X.shape[1]))
    counts = np.bincount(labels[labels >= 0], minlength=n_clusters)
    np.add.at(means, labels[labels >= 0], X[labels >= 0])
    nonempty = counts > 0
    means[nonempty] /= counts[nonempty, None]
    d2 = (X * X).sum(1)[:, None] + (means * means).sum(1)[None, :] - 2.0 * X @ means.T
    d2[:, ~nonempty] = np.inf
    return d2


def rank_clusters(labels: np.ndarray, scores: np.ndarray | None = None, *,
                  higher_is_better: bool = True, X: np.ndarray | None = None,
                  n_clusters: int | None = None, n_ranks: int = 3) -> np.ndarray:
    """The ``n_ranks`` clusters of every row: its assigned cluster, then the next best.

    Parameters
    ----------
    labels : array of shape (n_samples,)
        Assigned clusters (rank 1); -1 (noise) rows get -1 everywhere.
    scores : array of shape (n_samples, n_clusters), optional
        Soft assignment (probabilities, log-likelihoods) or distances.
    higher_is_better : bool
        False for distances.
    X : array, optional
        Features, when ``scores`` is None: clusters are ranked by distance to their mean.
    n_clusters : int, optional
        Number of clusters (default: ``scores.shape[1]`` or ``labels.max() + 1``).
    n_ranks : int
        Columns returned; clipped to the number of clusters.

    Returns
    -------
    ndarray of shape (n_samples, min(n_ranks, n_clusters)), int64
        Column 0 is ``labels``; column r the cluster ranked r+1 among the others.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if scores is None:
        if X is None:
            raise InputError("rank_clusters needs soft scores or the features X")
        k = int(n_clusters if n_clusters is not None else labels.max() + 1)
        scores, higher_is_better = _mean_distances(X, labels, k), False
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise InputError(f"scores must have shape (n_samples, n_clusters), got {scores.shape}")
    k = scores.shape[1]
    if labels.max(initial=-1) >= k:
        raise InputError(f"labels hold cluster {labels.max()} but scores have {k} columns")
    order_key = -scores if higher_is_better else scores.copy()
    order_key = np.where(np.isnan(order_key), np.inf, order_key)
    rows = np.flatnonzero(labels >= 0)
    order_key[rows, labels[rows]] = -np.inf  # the assigned cluster always comes first
    r = max(1, min(int(n_ranks), k))
    # stable sort: ties broken by cluster index, so the ranking is deterministic
    ranked = np.argsort(order_key, axis=1, kind="stable")[:, :r].astype(np.int64)
    ranked[labels < 0] = -1
    return ranked


# ----------------------------------------------------------------------------- naming


def name_clusters(labels: np.ndarray, y: np.ndarray, n_clusters: int | None = None) -> np.ndarray:
    """The majority class of every cluster (-1 for a cluster without labelled members).

    Ties go to the smaller class index. Rows with ``y == -1`` or ``labels == -1`` are ignored.
    """
    labels = np.asarray(labels, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    k = int(n_clusters if n_clusters is not None else labels.max(initial=-1) + 1)
    ok = (labels >= 0) & (y >= 0)
    if not ok.any():
        return np.full(k, -1, dtype=np.int64)
    c = int(y[ok].max()) + 1
    table = np.zeros((k, c), dtype=np.int64)
    np.add.at(table, (labels[ok], y[ok]), 1)
    names = table.argmax(axis=1)
    names[table.sum(axis=1) == 0] = -1
    return names


# ----------------------------------------------------------------------------- analysis


@dataclass
class NonPrimaryResult:
    """Outcome of :func:`non_primary_analysis`.

    Attributes
    ----------
    naming : str
        Where clusters were named (``"fine"``, ``"depth=0"``, ``"level=1"``).
    n_images : int
        Images analysed (labelled, not noise).
    n_clusters : int
    cluster_names : list of str
        Name (hierarchy node) of every cluster; ``""`` for an empty one.
    per_rank : list of dict
        One per rank (1 = primary): ``rank``, each category's rate, and ``chance_<category>``
        for ranks >= 2.
    any_rank : dict
        Ranks 2..R together: ``ancestor`` (rate of images with at least one non-primary
        cluster naming a true ancestor), ``chance_ancestor``, the same for
        ``ancestor_or_same``, and ``possible_ancestor``: the share of images for which some
        other cluster names an ancestor at all (the ceiling of every ancestor rate).
    """

    naming: str
    n_images: int
    n_clusters: int
    cluster_names: list[str]
    per_rank: list[dict] = field(default_factory=list)
    any_rank: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"naming": self.naming, "n_images": self.n_images, "n_clusters": self.n_clusters,
                "cluster_names": self.cluster_names, "per_rank": self.per_rank,
                "any_rank": self.any_rank}

    def flat(self, prefix: str = "np_") -> dict[str, Any]:
        """Flat columns for a results table: ``np_r2_ancestor``, ``np_r2_chance_ancestor``..."""
        out: dict[str, Any] = {f"{prefix}naming": self.naming}
        for row in self.per_rank:
            r = row["rank"]
            for key, value in row.items():
                if key != "rank":
                    out[f"{prefix}r{r}_{key}"] = value
        for key, value in self.any_rank.items():
            out[f"{prefix}any_{key}"] = value
        return out


def _relation_table(hierarchy: Hierarchy, fine_nodes: list[str], names: list[str]) -> np.ndarray:
    """``rel[c, j]``: category index of name ``j`` relative to fine class ``c``."""
    rel = np.full((len(fine_nodes), len(names)), CATEGORIES.index("unrelated"), dtype=np.int64)
    for c, node in enumerate(fine_nodes):
        anc = set(hierarchy.ancestors(node))
        for j, name in enumerate(names):
            if name == node:
                rel[c, j] = CATEGORIES.index("same")
            elif name in anc:
                rel[c, j] = CATEGORIES.index("ancestor")
            elif node in set(hierarchy.ancestors(name)):
                rel[c, j] = CATEGORIES.index("descendant")
    return rel


def non_primary_analysis(
    ranked: np.ndarray,
    y: np.ndarray,
    class_names: list[str],
    hierarchy: Hierarchy,
    *,
    depth: int | None = None,
    level: int | None = None,
    n_clusters: int | None = None,
) -> NonPrimaryResult:
    """How often an image's non-primary clusters name a true ancestor of its class.

    Parameters
    ----------
    ranked : array of shape (n_samples, R)
        From :func:`rank_clusters`: column 0 the assigned cluster, then ranks 2..R.
    y : array of shape (n_samples,)
        Fine class of each image (index into ``class_names``); -1 = unknown (skipped).
    class_names : list of str
        Hierarchy node of each fine class.
    hierarchy : Hierarchy
    depth, level : int, optional
        Name clusters by the majority of their members' classes cut at this depth or level
        (neither: by fine class).
    n_clusters : int, optional
        Number of clusters of the clustering (default ``ranked.max() + 1``; pass it when
        ``R`` is small, or a cluster never ranked would be left out of the chance level).

    Returns
    -------
    NonPrimaryResult

    Examples
    --------
    >>> h = Hierarchy({"a1": "A", "a2": "A", "b1": "B"})
    >>> ranked = np.array([[0, 1], [1, 0], [2, 0]])     # image, its cluster, its runner-up
    >>> r = non_primary_analysis(ranked, np.array([0, 1, 2]), ["a1", "a2", "b1"], h, depth=0)
    >>> r.cluster_names, r.per_rank[1]["ancestor"], r.per_rank[1]["chance_ancestor"]
    (['A', 'A', 'B'], 0.6666666666666666, 0.3333333333333333)
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if ranked.ndim != 2 or ranked.shape[0] != y.shape[0]:
        raise InputError(f"ranked must have shape (n_samples, R) with n_samples = {len(y)}, "
                         f"got {ranked.shape}")
    fine = hierarchy.check_classes(class_names)
    if y.max(initial=-1) >= len(fine):
        raise InputError(f"y holds class {y.max()} but only {len(fine)} class names are given")
    keep = (y >= 0) & (ranked[:, 0] >= 0)
    ranked, y = ranked[keep], y[keep]
    if len(y) == 0:
        raise InputError("no labelled, assigned images to analyse")
    k = int(max(ranked.max() + 1, 1) if n_clusters is None else n_clusters)
    if ranked.max() >= k:
        raise InputError(f"ranked holds cluster {ranked.max()} but n_clusters is {k}")
    mapping, level_nodes = hierarchy.coarsen(fine, depth=depth, level=level)
    cluster_level = name_clusters(ranked[:, 0], mapping[y], k)
    names = ["" if j < 0 else level_nodes[j] for j in cluster_level]
    naming = "fine" if depth is None and level is None else (
        f"depth={depth}" if depth is not None else f"level={level}")

    # rel[i, c]: category of cluster c's name for image i (empty clusters: unrelated)
    named = [n for n in names if n]
    uniq = list(dict.fromkeys(named))
    by_class = _relation_table(hierarchy, fine, uniq)  # (C, U)
    cols = np.array([uniq.index(n) if n else -1 for n in names])
    unrelated = CATEGORIES.index("unrelated")
    rel_cluster = np.where(cols[None, :] >= 0, by_class[:, np.maximum(cols, 0)], unrelated)  # (C, k)
    rel = rel_cluster[y]  # (n, k)

    n = len(y)
    rows = np.arange(n)
    primary = ranked[:, 0]
    per_rank = []
    n_ranks = ranked.shape[1]
    # chance: a uniform draw among the image's k-1 other clusters
    counts = np.stack([(rel == i).sum(axis=1) for i in range(len(CATEGORIES))], axis=1)  # (n, 4)
    own = rel[rows, primary]
    others = counts.copy()
    others[rows, own] -= 1
    for r in range(n_ranks):
        cat = rel[rows, ranked[:, r]]
        row: dict[str, Any] = {"rank": r + 1}
        for i, name in enumerate(CATEGORIES):
            row[name] = float(np.mean(cat == i))
        if r >= 1:
            for i, name in enumerate(CATEGORIES):
                row[f"chance_{name}"] = float(np.mean(others[:, i] / max(k - 1, 1)))
        per_rank.append(row)

    any_rank: dict[str, Any] = {}
    m = n_ranks - 1
    if m >= 1:
        non_primary = rel[rows[:, None], ranked[:, 1:]]  # (n, m)
        anc_i, same_i = CATEGORIES.index("ancestor"), CATEGORIES.index("same")
        good_anc = others[:, anc_i]
        good_both = others[:, anc_i] + others[:, same_i]
        total = comb(k - 1, m) if k - 1 >= m else 1

        def p_none(g: np.ndarray) -> np.ndarray:
            return np.array([comb(k - 1 - int(gi), m) / total for gi in g])

        any_rank = {
            "ranks": f"2-{n_ranks}",
            # the ceiling: images with at least one other cluster named after an ancestor
            "possible_ancestor": float(np.mean(good_anc > 0)),
            "ancestor": float(np.mean((non_primary == anc_i).any(axis=1))),
            "chance_ancestor": float(np.mean(1.0 - p_none(good_anc))),
            "ancestor_or_same": float(np.mean(((non_primary == anc_i)
                                               | (non_primary == same_i)).any(axis=1))),
            "chance_ancestor_or_same": float(np.mean(1.0 - p_none(good_both))),
        }
    return NonPrimaryResult(naming=naming, n_images=int(n), n_clusters=k, cluster_names=names,
                            per_rank=per_rank, any_rank=any_rank)
