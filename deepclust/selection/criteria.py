"""Label-free criteria: how good a partition of a sample looks, without labels.

Every criterion scores a partition of the same :class:`ScoringSample` (its rows, their kNN
graph, their proxy UMAP space, each built once and shared), so scores of different methods,
reducers and k are comparable. Noise (``-1``) is handled explicitly by each, so that a method
that leaves points out is not favoured for it:

==================  ======  =========================================================  ==================================================
criterion           better  what it measures (source)                                  noise points
==================  ======  =========================================================  ==================================================
``modularity``      higher  Newman-Girvan modularity of the partition on the           each its own community: its edges are cut edges
                            symmetrised cosine kNN graph of the rows (Newman & Girvan
                            2004; the objective of Louvain/Leiden graph clustering)
``umap_silhouette`` higher  silhouette in the proxy UMAP space (Lowe et al. 2024)      score 0, a singleton's silhouette
``silhouette``      higher  silhouette in the original space (Rousseeuw 1987)          score 0
``density``         higher  DBCV, density-based validity, in the proxy space           DBCV's own: clusters weighted by size over all
                            (Moulavi et al. 2014; ``hdbscan.validity``)                points, so left-out points lower the score
``stability``       higher  ARI of the method refitted on two random 80 % subsamples   a label like any other
                            with other seeds, on their overlap (Ben-Hur et al. 2002;
                            Lange et al. 2004)
``learnability``    higher  leave-one-out kNN classifier on the graph predicting the   a class to be predicted like any other
                            labels, balanced accuracy adjusted for chance (cluster
                            learnability; in the spirit of TURTLE, Gadetsky et al. 2024)
``calinski_harabasz`` higher  between/within dispersion, original space               left out
``davies_bouldin``  lower   mean worst-case cluster similarity, original space         left out
``head_loss``       lower   the deep clustering head's own training loss (the chosen   only defined for heads; compares heads of one
                            head's); NaN for other methods                             method and k, not methods
``oracle_ami``      higher  AMI with the true labels: an oracle, never label-free      noise as its own cluster
==================  ======  =========================================================  ==================================================

``combined`` is not a per-partition score: :func:`combine` ranks a table of candidates by a
weighted sum of their within-table percentile ranks under several criteria
(:data:`COMBINED_WEIGHTS`, chosen by ``benchmarks/selection.py`` on one part of its suite).
Which criterion is the default, and how well each tracks AMI, is measured by
``benchmarks/selection.py`` (figures in ``docs/selection.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from deepclust.errors import InputError
from deepclust.validation import seed_from

#: Neighbours per row in the kNN graph of ``modularity`` and ``learnability``.
GRAPH_NEIGHBORS = 15
#: Most rows the silhouettes and DBCV are computed on (both cost O(n^2)); a seeded subsample
#: of the scoring sample beyond.
PAIRWISE_ROWS = 3_000
#: Subsample fraction and number of refit pairs of ``stability``.
STABILITY_FRACTION = 0.8
STABILITY_PAIRS = 2


@dataclass(frozen=True)
class Criterion:
    """One criterion: its direction, what it needs, and its one-line definition."""

    name: str
    higher_is_better: bool
    needs_labels: bool = False
    needs_refit: bool = False
    needs_estimator: bool = False
    about: str = ""


CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    Criterion("modularity", True, about="modularity on the cosine kNN graph (Newman & Girvan 2004)"),
    Criterion("umap_silhouette", True, about="silhouette in the proxy UMAP space (Lowe et al. 2024)"),
    Criterion("silhouette", True, about="silhouette in the original space"),
    Criterion("density", True, about="DBCV density-based validity in the proxy space "
                                      "(Moulavi et al. 2014)"),
    Criterion("stability", True, needs_refit=True,
              about="ARI of refits on two 80% subsamples (Ben-Hur et al. 2002)"),
    Criterion("learnability", True, about="chance-adjusted leave-one-out kNN accuracy of "
                                           "predicting the clusters"),
    Criterion("calinski_harabasz", True, about="Calinski-Harabasz index, original space"),
    Criterion("davies_bouldin", False, about="Davies-Bouldin index, original space"),
    Criterion("head_loss", False, needs_estimator=True,
              about="the head's own training loss (heads only)"),
    Criterion("oracle_ami", True, needs_labels=True, about="AMI with the true labels (ORACLE)"),
)}

#: Weights of :func:`combine` (criterion -> weight on its within-table percentile rank).
#: Chosen on part A of ``benchmarks/selection.py``'s suite (each weight in {0, 0.5, 1}, lowest
#: median regret): modularity and the UMAP-silhouette, equally (see docs/selection.md).
COMBINED_WEIGHTS = {"modularity": 0.5, "umap_silhouette": 0.5}

#: The criterion ``--k auto`` and ``--method auto`` use unless told otherwise: the lowest
#: median regret on part A of ``benchmarks/selection.py``'s suite, reported on part B.
DEFAULT_CRITERION = "combined"


def check_criterion(name: str) -> Criterion:
    """The :class:`Criterion` called ``name`` (``combined`` included), or a clear error."""
    if name == "combined":
        return Criterion("combined", True, about="weighted percentile ranks of "
                                                 + ", ".join(COMBINED_WEIGHTS))
    try:
        return CRITERIA[name]
    except KeyError:
        raise InputError(f"unknown criterion {name!r}; choose from "
                         f"{', '.join([*CRITERIA, 'combined'])}") from None


@dataclass
class ScoringSample:
    """The rows every candidate partition is scored on, and what is built from them once.

    ``X`` holds the rows in the original feature space (``rows`` their input row numbers,
    None for every row); the kNN graph and the proxy UMAP space are computed on first use
    (``proxy`` may be given, e.g. a pipeline's own UMAP output of the same rows).
    """

    X: np.ndarray
    rows: np.ndarray | None = None
    random_state: int = 0
    proxy: np.ndarray | None = None
    y: np.ndarray | None = None
    _graph: sparse.csr_matrix | None = field(default=None, repr=False)
    _neighbors: np.ndarray | None = field(default=None, repr=False)
    _pairwise: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.X)

    def neighbors(self) -> np.ndarray:
        """(n, GRAPH_NEIGHBORS) row numbers of each row's nearest rows by cosine (self
        excluded)."""
        if self._neighbors is None:
            from deepclust.neighbors import search

            n = len(self.X)
            kk = min(GRAPH_NEIGHBORS + 1, n)
            _, ids = search(self.X, self.X, kk)
            own = ids == np.arange(n)[:, None]
            # drop self (or the last hit when an exact duplicate displaced it)
            drop = np.where(own.any(axis=1), own.argmax(axis=1), kk - 1)
            keep = np.ones_like(ids, dtype=bool)
            keep[np.arange(n), drop] = False
            self._neighbors = ids[keep].reshape(n, kk - 1)
        return self._neighbors

    def graph(self) -> sparse.csr_matrix:
        """The symmetrised, unweighted kNN graph (no self loops)."""
        if self._graph is None:
            nb = self.neighbors()
            n = len(self.X)
            a = sparse.csr_matrix((np.ones(nb.size), (np.repeat(np.arange(n), nb.shape[1]),
                                                      nb.ravel())), shape=(n, n))
            self._graph = ((a + a.T) > 0).astype(np.float64).tocsr()
        return self._graph

    def proxy_space(self) -> np.ndarray:
        """The proxy UMAP space of the rows (:func:`deepclust.metrics.proxy_space`)."""
        if self.proxy is None:
            from deepclust.metrics.proxy import proxy_space

            self.proxy = proxy_space(self.X, random_state=self.random_state)
        return self.proxy

    def pairwise_rows(self) -> np.ndarray:
        """The seeded subsample (sorted positions) the O(n^2) scores use."""
        if self._pairwise is None:
            n = len(self.X)
            if n <= PAIRWISE_ROWS:
                self._pairwise = np.arange(n)
            else:
                rng = np.random.default_rng(seed_from(self.random_state))
                self._pairwise = np.sort(rng.choice(n, PAIRWISE_ROWS, replace=False))
        return self._pairwise


def _singletons(labels: np.ndarray) -> np.ndarray:
    """Labels where every noise point is a community of its own."""
    out = np.asarray(labels, dtype=np.int64).copy()
    noise = out < 0
    if noise.any():
        out[noise] = out.max(initial=-1) + 1 + np.arange(np.count_nonzero(noise))
    return out


def modularity(labels: np.ndarray, sample: ScoringSample) -> float:
    """Newman-Girvan modularity ``sum_c (e_cc - a_c^2)`` of ``labels`` on the kNN graph.

    ``e_cc`` is the fraction of edge ends inside community ``c``, ``a_c`` the fraction of
    edge ends attached to it. One community scores 0; a noise point is a community of its
    own, so every edge it has is cut.
    """
    graph = sample.graph()
    g = graph.tocoo()
    lab = _singletons(labels)
    deg = np.asarray(graph.sum(axis=1)).ravel()
    m2 = deg.sum()
    if m2 == 0:
        return math.nan
    inside = g.data[lab[g.row] == lab[g.col]].sum() / m2
    a = np.bincount(lab, weights=deg) / m2
    return float(inside - np.dot(a, a))


def _silhouette_with_noise(space: np.ndarray, labels: np.ndarray, metric: str,
                           sample: ScoringSample) -> float:
    from sklearn.metrics import silhouette_samples

    rows = sample.pairwise_rows()
    lab = np.asarray(labels)[rows]
    keep = lab >= 0
    k = np.unique(lab[keep]).size
    if k < 2 or k >= keep.sum():
        return math.nan
    s = silhouette_samples(space[rows][keep], lab[keep], metric=metric)
    return float(s.sum() / len(rows))  # noise points count 0


def umap_silhouette(labels: np.ndarray, sample: ScoringSample) -> float:
    """Silhouette in the proxy UMAP space; noise points count 0."""
    return _silhouette_with_noise(sample.proxy_space(), labels, "euclidean", sample)


def silhouette(labels: np.ndarray, sample: ScoringSample) -> float:
    """Silhouette in the original space; noise points count 0."""
    return _silhouette_with_noise(sample.X, labels, "euclidean", sample)


def density(labels: np.ndarray, sample: ScoringSample) -> float:
    """DBCV (Moulavi et al. 2014) in the proxy UMAP space, via ``hdbscan.validity``."""
    from hdbscan.validity import validity_index

    rows = sample.pairwise_rows()
    lab = np.asarray(labels, dtype=np.int64)[rows]
    found = np.unique(lab[lab >= 0])
    if found.size < 2 or np.min(np.bincount(lab[lab >= 0])[found]) < 2:
        return math.nan
    space = np.asarray(sample.proxy_space()[rows], dtype=np.float64)
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(validity_index(space, lab))
    return value if np.isfinite(value) else math.nan


def learnability(labels: np.ndarray, sample: ScoringSample) -> float:
    """Leave-one-out kNN vote on the graph's neighbours: balanced accuracy of predicting
    each row's label from its neighbours', adjusted for chance (0 = chance, 1 = perfect)."""
    _, lab = np.unique(np.asarray(labels, dtype=np.int64), return_inverse=True)  # noise (-1) becomes a class
    k = int(lab.max()) + 1
    if k < 2:
        return math.nan
    nb = sample.neighbors()
    votes = np.zeros((len(lab), k))
    np.add.at(votes, (np.repeat(np.arange(len(lab)), nb.shape[1]), lab[nb].ravel()), 1.0)
    pred = votes.argmax(axis=1)
    recall = np.bincount(lab, weights=(pred == lab)) / np.bincount(lab)
    return float((recall.mean() - 1.0 / k) / (1.0 - 1.0 / k))


def stability(refit: Callable[[np.ndarray, int], np.ndarray], n: int,
              random_state: int = 0) -> float:
    """Mean ARI between pairs of refits on random subsamples of ``STABILITY_FRACTION`` of the
    ``n`` rows (other seeds), on the rows both saw. ``refit(positions, seed)`` returns the
    labels of the rows at ``positions``."""
    from sklearn.metrics import adjusted_rand_score

    base = seed_from(random_state)
    values = []
    for p in range(STABILITY_PAIRS):
        rng = np.random.default_rng(base + 7919 * (p + 1))
        size = max(2, int(round(STABILITY_FRACTION * n)))
        a, b = (np.sort(rng.choice(n, size, replace=False)) for _ in range(2))
        la = np.full(n, -2)
        lb = np.full(n, -2)
        la[a] = refit(a, base + 2 * p + 1)
        lb[b] = refit(b, base + 2 * p + 2)
        both = (la > -2) & (lb > -2)
        values.append(adjusted_rand_score(la[both], lb[both]))
    return float(np.mean(values))


def head_loss(estimator) -> float:
    """The chosen head's training loss (lowest of ``head_losses_``), NaN for other methods."""
    losses = getattr(estimator, "head_losses_", None)
    if losses is None:
        return math.nan
    losses = np.asarray(losses, dtype=np.float64)
    return float(np.nanmin(losses)) if np.isfinite(losses).any() else math.nan


def score(name: str, labels: np.ndarray, sample: ScoringSample, *, refit=None,
          estimator=None, features: np.ndarray | None = None) -> float:
    """The score of ``labels`` (one per row of ``sample``) under criterion ``name``.

    ``refit`` is needed by ``stability``, ``estimator`` by ``head_loss``, the true labels
    (``sample.y``) by ``oracle_ami``; ``features`` (the rows the method saw, default the
    original ones) by ``calinski_harabasz`` and ``davies_bouldin``. NaN when the criterion is
    undefined for this partition (e.g. fewer than two clusters).
    """
    from deepclust import metrics

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(sample):
        raise InputError(f"{len(labels)} labels for a scoring sample of {len(sample)} rows")
    if name == "modularity":
        return modularity(labels, sample)
    if name == "umap_silhouette":
        return umap_silhouette(labels, sample)
    if name == "silhouette":
        return silhouette(labels, sample)
    if name == "density":
        return density(labels, sample)
    if name == "learnability":
        return learnability(labels, sample)
    if name == "stability":
        if refit is None:
            return math.nan
        return stability(refit, len(labels), sample.random_state)
    if name == "head_loss":
        return head_loss(estimator)
    if name == "oracle_ami":
        if sample.y is None or not np.any(sample.y >= 0):
            raise InputError("criterion oracle_ami is an oracle and needs true labels")
        return metrics.ami(sample.y, labels)
    X = sample.X if features is None else features
    if name == "calinski_harabasz":
        return metrics.calinski_harabasz(X, labels)
    if name == "davies_bouldin":
        return metrics.davies_bouldin(X, labels)
    check_criterion(name)
    raise InputError(f"criterion {name} scores a table of candidates, not one partition; "
                     "use deepclust.selection.combine")


def parts(criterion: str) -> list[str]:
    """The per-partition criteria that ``criterion`` is computed from (itself, or the
    weighted ones of ``combined``)."""
    check_criterion(criterion)
    return list(COMBINED_WEIGHTS) if criterion == "combined" else [criterion]


def values(table: list[dict], criterion: str) -> np.ndarray:
    """``criterion``'s value for each row of ``table`` (dicts holding a ``scores`` dict with
    its :func:`parts`): the score itself, or :func:`combine` over the table."""
    if criterion == "combined":
        return combine(table)
    return np.array([t["scores"].get(criterion, math.nan) for t in table], dtype=np.float64)


def percentile_ranks(values) -> np.ndarray:
    """Each value's rank among the finite ones, scaled to [0, 1] (ties share their mean
    rank); NaN stays NaN."""
    from scipy.stats import rankdata

    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v)
    if ok.sum() == 1:
        out[ok] = 1.0
    elif ok.any():
        out[ok] = (rankdata(v[ok]) - 1) / (ok.sum() - 1)
    return out


def combine(table: list[dict], weights: dict[str, float] | None = None) -> np.ndarray:
    """The ``combined`` score of each candidate in ``table`` (dicts holding a ``scores``
    dict): the weighted mean of its percentile ranks under each weighted criterion (ranks
    oriented so that 1 is best); a criterion that is NaN for a candidate adds nothing."""
    weights = COMBINED_WEIGHTS if weights is None else weights
    total = np.zeros(len(table))
    mass = np.zeros(len(table))
    for name, w in weights.items():
        sign = 1.0 if check_criterion(name).higher_is_better else -1.0
        r = percentile_ranks([sign * t["scores"].get(name, math.nan) for t in table])
        ok = np.isfinite(r)
        total[ok] += w * r[ok]
        mass[ok] += w
    with np.errstate(invalid="ignore"):
        return np.where(mass > 0, total / np.where(mass > 0, mass, 1), np.nan)
