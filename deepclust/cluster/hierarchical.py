"""Hierarchical k-means with resampling, and hierarchical balanced sampling.

The curation method of Vo et al. 2024, "Automatic data curation for self-supervised
learning: a clustering-based approach" (arXiv 2405.15613; reference code
github.com/facebookresearch/ssl-data-curation):

- **Levels.** Level 1 clusters the rows into ``k_1`` clusters; level ``t`` clusters the
  ``k_{t-1}`` centroids of level ``t - 1`` into ``k_t`` clusters. Every cluster of one level
  therefore has one parent at the next, and the levels form a tree over the rows.
- **Resampling.** After the k-means of a level, each resampling step takes from every cluster
  the ``m`` points closest to its centroid (all of a smaller cluster), runs k-means again on
  that union, and assigns every point of the level to the new centroids. k-means on the raw
  points puts its centroids where the points are dense; the union gives each current cluster
  about the same weight, so repeated steps move the centroids towards a uniform spread over
  the support of the data -- over its *concepts* rather than its *points*.
- **Balanced sampling.** A target size is split evenly over the top-level clusters; a cluster
  smaller than its share gives all its points and what it cannot give is spread over the
  others. Each cluster's share is split the same way over its children, down to level 1,
  where the points are taken at random or closest to the centroid first.

Building blocks (small functions over plain arrays):

- :func:`distances_to_centroids` -- each point's distance to its own centroid,
- :func:`per_cluster_indices` -- the first ``m`` points of every cluster in a given order,
- :func:`share_target` -- one target split as evenly as the cluster sizes allow,
- :func:`hierarchical_balanced_sample` -- that split applied from the top of a tree down.

:class:`HierarchicalKMeans` puts them together behind the scikit-learn estimator API; every
k-means is deepclust's :class:`~deepclust.cluster.kmeans.KMeans`.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from deepclust.cluster.base import BaseClusterer, register
from deepclust.cluster.kmeans import KMeans
from deepclust.cluster.lloyd import nearest_centroids
from deepclust.data.rows import BLOCK_ROWS, as_row_source, unit_rows
from deepclust.errors import InputError
from deepclust.validation import (
    NON_NEGATIVE,
    POSITIVE_INT,
    RANDOM_STATE,
    Boolean,
    Each,
    Interval,
    Options,
    check_n_clusters,
    check_random_state,
)

__all__ = [
    "HierarchicalKMeans",
    "default_level_sizes",
    "distances_to_centroids",
    "hierarchical_balanced_sample",
    "per_cluster_indices",
    "share_target",
]

#: Most levels that ``n_clusters=K`` builds when ``n_levels`` is not given.
DEFAULT_MAX_LEVELS = 3
_STRATEGIES = {"closest": "closest", "c": "closest", "random": "random", "r": "random"}


# ----------------------------------------------------------------------------- arrays


def distances_to_centroids(
    X: np.ndarray, centroids: np.ndarray, labels: np.ndarray, *, spherical: bool = False
) -> np.ndarray:
    """Distance of each row to its own centroid, block by block.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32
        Unit rows when ``spherical``.
    centroids : ndarray of shape (k, d)
    labels : ndarray of shape (n,), int
        The centroid of each row.
    spherical : bool
        ``1 - cos`` instead of the squared Euclidean distance.

    Returns
    -------
    distances : ndarray of shape (n,), float32
    """
    C = np.asarray(centroids, dtype=np.float32)
    out = np.empty(X.shape[0], dtype=np.float32)
    for start in range(0, X.shape[0], BLOCK_ROWS):
        sl = slice(start, start + BLOCK_ROWS)
        own = C[labels[sl]]
        if spherical:
            out[sl] = 1.0 - np.einsum("ij,ij->i", X[sl], own)
        else:
            own -= X[sl]
            out[sl] = np.einsum("ij,ij->i", own, own)
    return out


def per_cluster_indices(
    labels: np.ndarray, key: np.ndarray, n_clusters: int, take
) -> np.ndarray:
    """The first ``take[c]`` rows of every cluster ``c``, in increasing order of ``key``.

    A cluster asked for more rows than it has gives them all again from its first, as many
    times as needed (``take[c] = 2.5 * size`` gives every row twice and the first half a
    third time): the rule of the reference sampler's ``multiplier``.

    Parameters
    ----------
    labels : ndarray of shape (n,), int
        Cluster of each row, in ``[0, n_clusters)``.
    key : ndarray of shape (n,)
        Order within a cluster (a distance to the centroid, or random numbers).
    n_clusters : int
    take : int or ndarray of shape (n_clusters,), int
        Rows wanted from each cluster; an int is capped at each cluster's size.

    Returns
    -------
    indices : ndarray of int64, sorted
    """
    order = np.lexsort((key, labels))
    sizes = np.bincount(labels, minlength=n_clusters).astype(np.int64)
    starts = np.cumsum(sizes) - sizes
    if np.ndim(take) == 0:
        take = np.minimum(sizes, int(take))
    take = np.asarray(take, dtype=np.int64)
    if np.any(take[sizes == 0] > 0):
        raise InputError("rows were asked from an empty cluster")
    cluster = np.repeat(np.arange(n_clusters), take)
    within = np.arange(cluster.size) - np.repeat(np.cumsum(take) - take, take)
    within %= np.maximum(sizes[cluster], 1)
    return np.sort(order[starts[cluster] + within])


def _largest_cap(sizes: np.ndarray, target: int) -> int:
    """Largest integer x with ``sum(min(x, sizes)) <= target``; needs ``sum(sizes) > target``.

    With the sizes sorted, ``sum(min(x, sizes))`` is linear in x between two of them, so the
    answer is read off the prefix sums instead of searched for.
    """
    s = np.sort(sizes)
    m = s.size
    below = np.concatenate(([0], np.cumsum(s)[:-1]))  # sum of the i smallest
    at = below + s * (m - np.arange(m))  # sum(min(s[i], sizes))
    i = int(np.searchsorted(at, target, side="right"))  # first i with at[i] > target
    return int((target - below[i]) // (m - i))


def share_target(sizes, target: int, random_state=None) -> np.ndarray:
    """Split ``target`` over clusters of the given ``sizes`` as evenly as they allow.

    Every cluster gets ``min(size, x)`` for the largest ``x`` that keeps the total within
    ``target``: clusters smaller than the even share give everything, and what they cannot
    give goes to the larger ones. The few rows still missing go, one each, to clusters
    chosen at random among those with rows left. If ``target`` is at least the total size,
    every cluster gives everything.

    Parameters
    ----------
    sizes : array-like of shape (k,), non-negative int
    target : int
    random_state : None, int or numpy Generator

    Returns
    -------
    shares : ndarray of shape (k,), int64
        ``shares <= sizes`` and ``shares.sum() == min(target, sizes.sum())``.

    Examples
    --------
    >>> share_target([2, 50, 50], 62, random_state=0).tolist()
    [2, 30, 30]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    target = int(target)
    if target >= sizes.sum():
        return sizes.copy()
    x = _largest_cap(sizes, target)
    shares = np.minimum(sizes, x)
    rest = target - int(shares.sum())
    if rest:
        rng = check_random_state(random_state)
        shares[rng.choice(np.flatnonzero(sizes > x), rest, replace=False)] += 1
    return shares


def hierarchical_balanced_sample(
    tree: Sequence[np.ndarray],
    n_clusters: Sequence[int],
    n_samples: int,
    *,
    key: np.ndarray | None = None,
    multiplier: int = 1,
    random_state=None,
) -> np.ndarray:
    """Hierarchical balanced sampling from a tree of clusters (Vo et al. 2024).

    ``n_samples`` is split over the top-level clusters with :func:`share_target` (their size
    being the number of rows under them, times ``multiplier``), each cluster's share over its
    children the same way, down to level 1, where each cluster gives its share of rows in
    increasing order of ``key``.

    Parameters
    ----------
    tree : list of ndarray
        ``tree[0]``: level-1 cluster of each row; ``tree[t]``: level-(t+1) cluster of each
        level-t cluster (as :attr:`HierarchicalKMeans.level_labels_`).
    n_clusters : list of int
        Clusters per level, finest first (``len(tree)`` entries).
    n_samples : int
        Rows wanted, at most ``multiplier * n_rows``.
    key : ndarray of shape (n_rows,), optional
        Which rows of a level-1 cluster come first (e.g. the distance to the centroid);
        default random.
    multiplier : int
        Most times one row may be taken: a cluster smaller than its share repeats its rows
        up to this many times.
    random_state : None, int or numpy Generator

    Returns
    -------
    indices : ndarray of shape (n_samples,), int64, sorted
        Rows of the data (repeated only when ``multiplier > 1``).
    """
    rng = check_random_state(random_state)
    rows = np.asarray(tree[0])
    sizes = [np.bincount(rows, minlength=n_clusters[0]).astype(np.int64)]
    for t in range(1, len(tree)):
        sizes.append(
            np.bincount(tree[t], weights=sizes[-1], minlength=n_clusters[t]).astype(np.int64)
        )
    share = share_target(sizes[-1] * multiplier, n_samples, rng)
    for t in range(len(tree) - 1, 0, -1):
        parent = np.asarray(tree[t])
        capacity = sizes[t - 1] * multiplier
        # children of a parent that gives everything give everything too
        child_share = np.where(share[parent] >= sizes[t][parent] * multiplier, capacity, 0)
        order = np.argsort(parent, kind="stable")
        bounds = np.searchsorted(parent[order], np.arange(n_clusters[t] + 1))
        for c in np.flatnonzero((share > 0) & (share < sizes[t] * multiplier)):
            kids = order[bounds[c] : bounds[c + 1]]
            child_share[kids] = share_target(capacity[kids], share[c], rng)
        share = child_share
    if key is None:
        key = rng.random(rows.shape[0])
    return per_cluster_indices(rows, key, n_clusters[0], share)


# ----------------------------------------------------------------------------- parameters


def default_level_sizes(
    n_clusters: int, n_samples: int, *, n_levels: int | None = None, branching: int = 10
) -> tuple[int, ...]:
    """Clusters per level (finest first) for a tree with ``n_clusters`` at the top.

    Each level below has ``branching`` times as many clusters as the one above. Without
    ``n_levels``, levels are added (up to :data:`DEFAULT_MAX_LEVELS`) while the finest keeps
    at least ``branching`` rows per cluster on average.

    Examples
    --------
    >>> default_level_sizes(10, 10_000)
    (1000, 100, 10)
    >>> default_level_sizes(100, 10_000)
    (1000, 100)
    """
    sizes = [int(n_clusters)]
    if n_levels is None:
        while len(sizes) < DEFAULT_MAX_LEVELS and sizes[-1] * branching <= n_samples // branching:
            sizes.append(sizes[-1] * branching)
    else:
        sizes += [int(n_clusters) * branching**j for j in range(1, n_levels)]
    return tuple(reversed(sizes))


def _per_level(value, n_levels: int, name: str, *, minimum: int, allow_none: bool = False):
    """``value`` (one for all levels, or a sequence of one per level) as a list."""
    values = list(value) if isinstance(value, (Sequence, np.ndarray)) and not isinstance(
        value, str) else [value] * n_levels
    if len(values) != n_levels:
        raise InputError(
            f"{name} has {len(values)} entries but there are {n_levels} levels; give one value "
            "for all levels or one per level"
        )
    for v in values:
        if v is None and allow_none:
            continue
        if isinstance(v, bool) or not isinstance(v, Integral) or v < minimum:
            what = "None or an integer" if allow_none else "an integer"
            raise InputError(f"{name} must be {what} >= {minimum} (per level), got {value!r}")
    return [None if v is None else int(v) for v in values]


def _record(info: dict, km: KMeans) -> None:
    """Keep the seeding time and iterations of one k-means in a level's statistics."""
    info["init_seconds"].append(float(getattr(km, "stats_", {}).get("init_seconds", 0.0)))
    info["n_iter"].append(int(km.n_iter_))


# ----------------------------------------------------------------------------- estimator


@register("hkmeans", "hierarchical k-means with resampling (Vo et al. 2024); k = top level")
class HierarchicalKMeans(BaseClusterer):
    """Hierarchical k-means with resampling (Vo et al. 2024), and balanced sampling.

    Level 1 clusters the rows; level ``t`` clusters the centroids of level ``t - 1``. At each
    level, after a first k-means, every resampling step keeps the ``sample_size`` points
    closest to each centroid, runs k-means on them, and assigns all the level's points to
    the new centroids; this moves the centroids from the dense parts of the data towards an
    even spread over its concepts. :meth:`balanced_sample` then draws a subset that is
    balanced over the tree (see :func:`hierarchical_balanced_sample`).

    Parameters
    ----------
    n_clusters : int or sequence of int, default=(1000, 100, 10)
        Clusters per level, finest (level 1) first, strictly decreasing. An int K builds a
        tree with K clusters at the top and ``branching`` times more at each level below
        (see :func:`default_level_sizes`), so that ``--method hkmeans --k K`` gives K
        clusters.
    n_levels : int, optional
        Levels built from an int ``n_clusters``; default: up to 3, while level 1 keeps at
        least ``branching`` rows per cluster on average.
    branching : int, default=10
        Ratio between the sizes of consecutive levels built from an int ``n_clusters``.
    n_resampling_steps : int or sequence of int, default=10
        Resampling steps after the first k-means of each level (0: plain hierarchical
        k-means). The paper's value is 10.
    sample_size : int, sequence of int or None, default=None
        Points taken from each cluster in a resampling step; None: half the mean cluster
        size of the level, rounded up (the reference configurations' rule). A level where
        it is 1 is not resampled. Raised for a step where the union would hold fewer points
        than clusters.
    resampling_strategy : {"closest", "random"}, default="closest"
        Which points of a cluster a resampling step keeps.
    n_splits : int or sequence of int, default=1
        If more than 1 at a level, that level runs k-means once and then splits each of its
        clusters by k-means into up to ``n_splits`` clusters (empty ones are dropped), which
        become the level's clusters: a cheap way to very many clusters (the reference's
        first level: 100 000 clusters split in 100). Not combined with resampling.
    init : {"k-means++", "random"}, default="k-means++"
        Seeding of each k-means, those of the resampling steps included (see
        :class:`~deepclust.cluster.kmeans.KMeans`). Resampling moves the centroids through
        this seeding: with ``"random"``, or started from the current centroids, a step
        leaves them about where they were (measured in ``docs/hierarchical.md``).
    max_iter : int, default=50
        Most Lloyd iterations of each k-means (the reference runs 50).
    tol : float, default=1e-4
        Relative objective decrease that stops a k-means.
    spherical : bool, default=False
        Cosine k-means at every level (rows and centroids are unit vectors).
    level : int, default=-1
        The level whose clusters ``fit_predict`` and ``predict`` return: 1 is the finest,
        negative values count from the top (-1, the default, is the top level).
    precision, device : str, default="auto"
        Passed to :class:`~deepclust.cluster.kmeans.KMeans` when it takes them; any other
        value than ``"auto"`` is refused by a KMeans without them.
    random_state : None, int or numpy Generator
        Seeds every k-means and every random choice.
    verbose : bool, default=False
        Print one line per level and resampling step.

    Attributes
    ----------
    centroids_ : list of ndarray
        ``centroids_[t - 1]``: the centroids of level t, shape (k_t, n_features), float32.
    labels_ : ndarray of shape (n_samples,), int64
        Cluster of each row of X at ``level`` (default the top): what ``fit_predict``
        returns, ``assignments(level)``.
    level_labels_ : list of ndarray
        ``level_labels_[0]``: level-1 cluster of each row of X; ``level_labels_[t]``:
        level-(t+1) cluster of each level-t centroid. :meth:`assignments` composes them.
    distances_ : ndarray of shape (n_samples,), float32
        Distance of each row to its level-1 centroid (squared Euclidean, or ``1 - cos``).
    n_clusters_per_level_ : tuple of int
        Clusters at each level, finest first (level 1 may differ from ``n_clusters`` with
        ``n_splits``). Clusters can be empty (see ``stats_``).
    sample_size_per_level_ : tuple of int
        The resampling sample size used at each level (0 where not resampled).
    stats_ : dict
        ``levels``: one dict per level (``seconds``, ``n_points``, ``n_clusters``,
        ``n_empty``, ``objective``; per k-means run ``kmeans_seconds``, ``init_seconds``,
        ``n_iter``; per resampling step ``resample_rows``); ``seconds_per_level``;
        ``total_seconds``.
    n_iter_ : int
        Lloyd iterations summed over the k-means runs of every level (first k-means and
        resampling steps; the ``n_iter`` lists of ``stats_``).
    n_features_in_ : int

    Notes
    -----
    Differences from the reference code: every k-means stops early at ``tol`` instead of
    running exactly 50 iterations; ``n_resampling_steps`` counts steps *after* the first
    k-means (the reference configurations count the first too: their 10 is our 9); empty
    clusters are re-seeded by :class:`~deepclust.cluster.kmeans.KMeans`.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)
    >>> hk = HierarchicalKMeans((50, 5), n_resampling_steps=2, random_state=0).fit(X)
    >>> [c.shape for c in hk.centroids_]
    [(50, 8), (5, 8)]
    >>> sorted(set(hk.assignments(2).tolist())) == list(range(5))
    True
    >>> hk.balanced_sample(100, random_state=0).shape
    (100,)
    """

    #: Types, ranges and choices; what depends on the number of levels (lengths of per-level
    #: lists, sizes decreasing, ``level`` in range) is checked in ``_check_params``.
    _parameter_constraints = {
        "n_clusters": [POSITIVE_INT, Each(POSITIVE_INT)],
        "n_levels": [None, POSITIVE_INT],
        "branching": [Interval(Integral, 2, None)],
        "n_resampling_steps": [Interval(Integral, 0, None), Each(Interval(Integral, 0, None))],
        "sample_size": [None, POSITIVE_INT, Each(None, POSITIVE_INT)],
        "resampling_strategy": [Options("closest", "random")],
        "n_splits": [POSITIVE_INT, Each(POSITIVE_INT)],
        "init": [Options("k-means++", "random")],
        "max_iter": [POSITIVE_INT],
        "tol": [NON_NEGATIVE],
        "spherical": [Boolean()],
        "level": [Interval(Integral, None, -1), Interval(Integral, 1, None)],
        "precision": [Options("auto", "bf16", "fp32")],
        "random_state": RANDOM_STATE,
        "verbose": [Boolean(), Interval(Integral, 0, None)],
    }

    def __init__(
        self,
        n_clusters=(1000, 100, 10),
        *,
        n_levels: int | None = None,
        branching: int = 10,
        n_resampling_steps=10,
        sample_size=None,
        resampling_strategy: str = "closest",
        n_splits=1,
        init: str = "k-means++",
        max_iter: int = 50,
        tol: float = 1e-4,
        spherical: bool = False,
        level: int = -1,
        precision: str = "auto",
        device: str = "auto",
        random_state=None,
        verbose: bool = False,
    ):
        self.n_clusters = n_clusters
        self.n_levels = n_levels
        self.branching = branching
        self.n_resampling_steps = n_resampling_steps
        self.sample_size = sample_size
        self.resampling_strategy = resampling_strategy
        self.n_splits = n_splits
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.spherical = spherical
        self.level = level
        self.precision = precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- validation

    def _level_sizes(self, n: int) -> list[int]:
        if self.n_levels is not None and (
            isinstance(self.n_levels, bool) or not isinstance(self.n_levels, Integral)
            or self.n_levels < 1
        ):
            raise InputError(f"n_levels must be a positive integer or None, got {self.n_levels!r}")
        k = self.n_clusters
        if isinstance(k, (Sequence, np.ndarray)) and not isinstance(k, str):
            sizes = list(k)
            if not sizes:
                raise InputError(
                    "n_clusters is empty; give an int (clusters at the top level) or one int "
                    "per level, finest first"
                )
            for v in sizes:
                if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
                    raise InputError(
                        f"n_clusters must hold positive integers (one per level), got {k!r}"
                    )
            sizes = [int(v) for v in sizes]
            if self.n_levels is not None and self.n_levels != len(sizes):
                raise InputError(
                    f"n_levels={self.n_levels} but n_clusters lists {len(sizes)} levels; "
                    "drop n_levels or make them agree"
                )
        else:
            top = check_n_clusters(k, n)
            b = self.branching
            if isinstance(b, bool) or not isinstance(b, Integral) or b < 2:
                raise InputError(f"branching must be an integer >= 2, got {b!r}")
            sizes = list(default_level_sizes(top, n, n_levels=self.n_levels, branching=b))
        if sizes[0] > n:
            raise InputError(
                f"level 1 asks for {sizes[0]} clusters but X has only {n} rows; choose at most "
                f"{n} clusters at level 1" + (" (or a smaller n_levels or branching)"
                                               if isinstance(k, Integral) else "")
            )
        return sizes

    def _check_params(self, n: int) -> dict:
        sizes = self._level_sizes(n)
        L = len(sizes)
        steps = _per_level(self.n_resampling_steps, L, "n_resampling_steps", minimum=0)
        sample = _per_level(self.sample_size, L, "sample_size", minimum=1, allow_none=True)
        splits = _per_level(self.n_splits, L, "n_splits", minimum=1)
        for t in range(L - 1):
            if sizes[t + 1] >= sizes[t] * splits[t]:
                raise InputError(
                    f"n_clusters lists clusters per level from the finest (level 1) to the "
                    f"coarsest, so it must decrease: level {t + 2} asks for {sizes[t + 1]} "
                    f"clusters of the {sizes[t] * splits[t]} of level {t + 1} "
                    f"(n_clusters={tuple(sizes)}); did you mean {tuple(sorted(sizes, reverse=True))}?"
                )
        for t in range(L):
            if splits[t] > 1 and steps[t] > 0:
                raise InputError(
                    f"level {t + 1} has n_splits={splits[t]} and n_resampling_steps={steps[t]}; "
                    "a level either splits its clusters or resamples: set one of them to "
                    "1 / 0 at that level"
                )
        strategy = _STRATEGIES.get(self.resampling_strategy)
        if strategy is None:
            raise InputError(
                "resampling_strategy must be 'closest' or 'random', got "
                f"{self.resampling_strategy!r}"
            )
        if self.init not in ("k-means++", "random"):
            raise InputError(f"init must be 'k-means++' or 'random', got {self.init!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, Integral) \
                or self.max_iter < 1:
            raise InputError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if isinstance(self.tol, bool) or not isinstance(self.tol, Real) or not self.tol >= 0:
            raise InputError(f"tol must be a non-negative number, got {self.tol!r}")
        self._level_number(self.level, L)
        return {"sizes": sizes, "steps": steps, "sample": sample, "splits": splits,
                "strategy": strategy, "kmeans": self._kmeans_options()}

    def _kmeans_options(self) -> dict:
        accepted = inspect.signature(KMeans).parameters
        options = {}
        for name in ("precision", "device"):
            value = getattr(self, name)
            if name in accepted:
                options[name] = value
            elif value != "auto":
                raise InputError(
                    f"{name}={value!r} needs a KMeans with a {name} option, and this "
                    f"deepclust's KMeans has none: leave {name}='auto'"
                )
        return options

    @staticmethod
    def _level_number(level, n_levels: int) -> int:
        """``level`` as 1..n_levels (1 = finest; negative values count from the top)."""
        if isinstance(level, bool) or not isinstance(level, Integral) or level == 0 \
                or not -n_levels <= level <= n_levels:
            raise InputError(
                f"level must be 1..{n_levels} (1 = finest) or -1..-{n_levels} (-1 = top), "
                f"got {level!r}"
            )
        return int(level) if level > 0 else n_levels + 1 + int(level)

    # -- fitting

    def _kmeans(self, k: int, init, rng, options: dict) -> KMeans:
        return KMeans(n_clusters=k, init=init, n_init=1, max_iter=int(self.max_iter),
                      tol=float(self.tol), spherical=bool(self.spherical), random_state=rng,
                      **options)

    def _say(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    def fit(self, X, y=None) -> HierarchicalKMeans:
        """Build the tree of clusters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet or EmbeddingStore
            Rows to cluster (converted to float32; L2-normalised when ``spherical``).
        y : ignored

        Returns
        -------
        self
        """
        t_start = time.perf_counter()
        self._validate_params()
        X = as_row_source(X).to_array()
        n, d = X.shape
        p = self._check_params(n)
        rng = check_random_state(self.random_state)
        if self.spherical:
            X = unit_rows(X)
        points = X
        centroids, labels, levels, used_m = [], [], [], []
        for t, k in enumerate(p["sizes"]):
            t0 = time.perf_counter()
            if k > points.shape[0]:  # only after a split level left fewer clusters
                raise InputError(
                    f"level {t + 1} asks for {k} clusters but level {t} has only "
                    f"{points.shape[0]} non-empty clusters; lower n_clusters[{t}]"
                )
            m = p["sample"][t]
            if m is None:
                m = math.ceil(points.shape[0] / (2 * k))
            if p["steps"][t] == 0 or m < 2:
                m = 0
            C, lab, info = self._fit_level(points, k, p["steps"][t] if m else 0, m,
                                           p["splits"][t], p["strategy"], rng, p["kmeans"])
            dist = distances_to_centroids(points, C, lab, spherical=bool(self.spherical))
            if t == 0:
                self.distances_ = dist
            sizes = np.bincount(lab, minlength=C.shape[0])
            info.update(level=t + 1, n_points=int(points.shape[0]), n_clusters=int(C.shape[0]),
                        n_empty=int(np.count_nonzero(sizes == 0)),
                        objective=float(dist.sum(dtype=np.float64)),
                        seconds=time.perf_counter() - t0)
            self._say(f"level {t + 1}: {points.shape[0]} points -> {C.shape[0]} clusters "
                      f"({info['n_empty']} empty), {info['seconds']:.2f} s")
            centroids.append(C)
            labels.append(lab)
            levels.append(info)
            used_m.append(m)
            points = C
        self.centroids_ = centroids
        self.level_labels_ = labels
        self.labels_ = self._lift(labels[0], self.level)
        self.n_iter_ = sum(sum(info["n_iter"]) for info in levels)
        self.n_clusters_per_level_ = tuple(int(c.shape[0]) for c in centroids)
        self.sample_size_per_level_ = tuple(used_m)
        self.n_features_in_ = d
        self.stats_ = {
            "levels": levels,
            "seconds_per_level": [info["seconds"] for info in levels],
            "total_seconds": time.perf_counter() - t_start,
        }
        return self

    def _fit_level(self, points, k, n_steps, m, n_splits, strategy, rng, options):
        """Centroids and labels of one level, with its resampling steps or splits."""
        spherical = bool(self.spherical)
        t0 = time.perf_counter()
        km = self._kmeans(k, self.init, rng, options).fit(points)
        C, lab = km.cluster_centers_, km.labels_
        info = {"kmeans_seconds": [time.perf_counter() - t0], "n_resampling_steps": n_steps,
                "sample_size": m, "resample_rows": [], "init_seconds": [], "n_iter": []}
        _record(info, km)
        for step in range(n_steps):
            t0 = time.perf_counter()
            if strategy == "closest":
                key = distances_to_centroids(points, C, lab, spherical=spherical)
            else:
                key = rng.random(points.shape[0])
            sizes = np.bincount(lab, minlength=k)
            m_step = m
            if np.minimum(sizes, m).sum() < k:  # empty clusters: k-means needs k points
                m_step = _largest_cap(sizes, k - 1) + 1
            idx = per_cluster_indices(lab, key, k, m_step)
            km = self._kmeans(k, self.init, rng, options).fit(points[idx])
            C = km.cluster_centers_
            lab = km.predict(points)
            info["resample_rows"].append(int(idx.size))
            info["kmeans_seconds"].append(time.perf_counter() - t0)
            _record(info, km)
            self._say(f"  resampling step {step + 1}/{n_steps}: {idx.size} points, "
                      f"{info['kmeans_seconds'][-1]:.2f} s")
        if n_splits > 1:
            t0 = time.perf_counter()
            C, lab = self._split(points, C, lab, n_splits, rng, options)
            info["n_splits"] = n_splits
            info["split_seconds"] = time.perf_counter() - t0
        return np.ascontiguousarray(C, dtype=np.float32), lab.astype(np.int64), info

    def _split(self, points, C, lab, n_splits, rng, options):
        """Each cluster split by k-means into up to ``n_splits``; empty parts dropped."""
        order = np.argsort(lab, kind="stable")
        bounds = np.searchsorted(lab[order], np.arange(C.shape[0] + 1))
        new_lab = np.empty_like(lab)
        parts = []
        offset = 0
        with warnings.catch_warnings():  # tiny clusters with repeated rows are expected
            warnings.simplefilter("ignore", ConvergenceWarning)
            for c in range(C.shape[0]):
                rows = order[bounds[c] : bounds[c + 1]]
                if rows.size == 0:
                    continue
                km = self._kmeans(min(n_splits, rows.size), self.init, rng, options)
                km.fit(points[rows])
                used, local = np.unique(km.labels_, return_inverse=True)
                new_lab[rows] = offset + local.reshape(-1)
                parts.append(km.cluster_centers_[used])
                offset += used.size
        return np.concatenate(parts), new_lab

    # -- using the fit

    def assignments(self, level: int) -> np.ndarray:
        """The cluster of every row of the fitted X at ``level``.

        Parameters
        ----------
        level : int
            1 (finest) .. n_levels, or negative to count from the top (-1 = top).

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        """
        self._check_fitted()
        return self._lift(self.level_labels_[0], level)

    def _lift(self, labels: np.ndarray, level) -> np.ndarray:
        """Level-1 ``labels`` mapped to their ancestors at ``level``."""
        top = self._level_number(level, len(self.level_labels_))
        for t in range(1, top):
            labels = self.level_labels_[t][labels]
        return labels

    def predict(self, X, level: int | None = None) -> np.ndarray:
        """Cluster of new rows at ``level``: their nearest level-1 centroid, and its ancestors.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet or EmbeddingStore
        level : int, optional
            As in :meth:`assignments`; default ``self.level``.

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        """
        self._check_fitted()
        level = self.level if level is None else level
        self._level_number(level, len(self.level_labels_))
        X = as_row_source(X).to_array()
        self._check_n_features(X.shape[1])
        if self.spherical:
            X = unit_rows(X)
        C = self.centroids_[0]
        labels = np.empty(X.shape[0], dtype=np.int64)
        for start in range(0, X.shape[0], BLOCK_ROWS):
            sl = slice(start, start + BLOCK_ROWS)
            labels[sl] = nearest_centroids(X[sl], C, spherical=bool(self.spherical))[0]
        return self._lift(labels, level)

    def balanced_sample(
        self, n_samples: int, *, strategy: str = "random", multiplier: int = 1,
        random_state=None,
    ) -> np.ndarray:
        """Rows of the fitted X, balanced over the tree (Vo et al. 2024).

        ``n_samples`` is split evenly over the top-level clusters, each share evenly over
        the cluster's children, and so on down to level 1; a cluster with fewer rows than
        its share gives all of them and the rest goes to its siblings. See
        :func:`hierarchical_balanced_sample`.

        Parameters
        ----------
        n_samples : int
            Size of the sample, at most ``multiplier`` times the number of rows.
        strategy : {"random", "closest"}, default="random"
            Which rows of a level-1 cluster are taken: at random (the paper's choice) or
            closest to the centroid first. ``"r"`` and ``"c"`` are accepted too.
        multiplier : int, default=1
            Most times a row may be taken (small clusters repeat their rows).
        random_state : None, int or numpy Generator

        Returns
        -------
        indices : ndarray of shape (n_samples,), int64, sorted
        """
        self._check_fitted()
        kind = _STRATEGIES.get(strategy)
        if kind is None:
            raise InputError(f"strategy must be 'random' or 'closest', got {strategy!r}")
        if isinstance(multiplier, bool) or not isinstance(multiplier, Integral) or multiplier < 1:
            raise InputError(f"multiplier must be a positive integer, got {multiplier!r}")
        n = self.level_labels_[0].shape[0]
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
            raise InputError(f"n_samples must be a positive integer, got {n_samples!r}")
        if n_samples > n * multiplier:
            raise InputError(
                f"n_samples={n_samples} is more than the {n} fitted rows"
                + (f" times multiplier={multiplier}" if multiplier > 1 else "")
                + "; ask for fewer, or allow repeats with a larger multiplier"
            )
        return hierarchical_balanced_sample(
            self.level_labels_, self.n_clusters_per_level_, int(n_samples),
            key=self.distances_ if kind == "closest" else None,
            multiplier=int(multiplier), random_state=random_state,
        )
