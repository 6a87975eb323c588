"""Mini-batch k-means (Sculley 2010) for data streams and stores larger than memory.

Each step assigns one batch of rows to the nearest centre (faiss) and moves every centre
that received rows towards their mean with a per-centre learning rate of one over the rows
it has seen so far: a centre ``c`` with ``n_c`` earlier rows that receives ``m`` rows of
sum ``s`` becomes ``(n_c c + s) / (n_c + m)``, the running mean of everything ever
assigned to it. Centres whose count falls below ``reassignment_ratio`` times the largest
are moved to random rows of the current batch, checked every ``10 k`` rows (and at once
while a centre has none) -- scikit-learn's rule.

Why our own step rather than scikit-learn's ``MiniBatchKMeans`` (the same rule, and the
reference): cosine rows, the batch objective returned by ``partial_fit``, and the block
functions of :mod:`deepclust.cluster.lloyd` (faiss assignment, float64 sums) reused. The
default ``batch_size = max(4096, 32 k)`` (at most 65 536) keeps 32 or more rows per centre
per step, below which centres freeze early. Measurements behind both: docs/scale.md,
"Mini-batch k-means".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from numbers import Integral, Real

import numpy as np

from deepclust import runtime
from deepclust.cluster.base import BaseClusterer, register
from deepclust.cluster.lloyd import accumulate_cluster_sums, block_objective, nearest_centroids
from deepclust.cluster.seeding import default_plus_plus_samples, kmeans_plus_plus_init, random_init
from deepclust.data.rows import BLOCK_ROWS, RowSource, as_row_source
from deepclust.errors import InputError, NotFittedError
from deepclust.validation import (
    Boolean,
    Interval,
    check_features,
    check_n_clusters,
    check_random_state,
)

__all__ = ["MiniBatchKMeans", "default_batch_size", "minibatch_step"]

#: Rows seen between two checks for low-count centres, per centre (scikit-learn's value).
_REASSIGN_EVERY_PER_CENTRE = 10
#: Steps with fewer multiply-adds (rows x k x d) than this assign with one BLAS thread:
#: faiss's threaded OpenBLAS waits for its threads on every call, which costs more than
#: small products gain (measurements: docs/scale.md, "Mini-batch k-means").
SMALL_STEP_MACS = 1 << 26


def _step_threads(rows: int, k: int, d: int):
    """One BLAS thread for steps too small to gain from more (see ``SMALL_STEP_MACS``)."""
    if rows * k * d < SMALL_STEP_MACS:
        return runtime.thread_pools().limit(limits=1, user_api="blas")
    return nullcontext()


def default_batch_size(n_clusters: int) -> int:
    """``min(65536, max(4096, 32 * n_clusters))`` rows: about 32 rows per centre per step."""
    return int(min(1 << 16, max(4096, 32 * n_clusters)))


def minibatch_step(
    batch: np.ndarray,
    centers: np.ndarray,
    counts: np.ndarray,
    *,
    spherical: bool = False,
) -> tuple[np.ndarray, float]:
    """One mini-batch update, in place: assign ``batch``, move the centres that got rows.

    Parameters
    ----------
    batch : ndarray of shape (n, d), float32, C-contiguous
        Unit rows when ``spherical``.
    centers : ndarray of shape (k, d), float32
        Updated in place (re-normalised when ``spherical``).
    counts : ndarray of shape (k,), float64
        Rows each centre has received so far; updated in place.
    spherical : bool
        Cosine assignment and unit centres.

    Returns
    -------
    labels : ndarray of shape (n,), int64
        Each row's centre before the update.
    objective : float
        The batch's objective against the centres before the update.
    """
    k, d = centers.shape
    labels, scores = nearest_centroids(batch, centers, spherical=spherical)
    sums = np.zeros((k, d), dtype=np.float64)
    got = np.zeros(k, dtype=np.int64)
    accumulate_cluster_sums(batch, labels, sums, got)
    counts += got
    moved = got > 0
    old = centers[moved].astype(np.float64)
    new = old + (sums[moved] - got[moved, None] * old) / counts[moved, None]
    if spherical:
        norms = np.linalg.norm(new, axis=1, keepdims=True)
        new = np.divide(new, norms, out=old, where=norms > 0)  # a vanished sum keeps its centre
    centers[moved] = new
    return labels, block_objective(scores, spherical=spherical)


# ----------------------------------------------------------------------------- inputs


def _row_source(X, *, spherical: bool, what: str = "X") -> RowSource:
    """The shared :class:`~deepclust.data.rows.RowSource` of ``X`` (unit rows when
    ``spherical``); iterators are refused with a pointer to ``partial_fit``."""
    if isinstance(X, Iterator):
        raise InputError(
            f"{what} is an iterator; fit needs a finite input (an array, FeatureSet or "
            "embedding store). For a stream call partial_fit on each batch"
        )
    return as_row_source(X, name=what, unit=spherical)


# ----------------------------------------------------------------------------- estimator


@register("minibatch-kmeans", "mini-batch k-means (Sculley 2010) on faiss: streams and stores")
class MiniBatchKMeans(BaseClusterer):
    """Mini-batch k-means: one pass over small random batches per step, for big inputs.

    See the module docstring for the update and the measurements behind the defaults.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters k.
    batch_size : int, optional
        Rows per step; default :func:`default_batch_size` (``max(4096, 32 k)``, at most
        65 536). ``partial_fit`` cuts larger calls into steps of this size.
    n_epochs : int, default=3
        ``fit`` runs ``n_epochs * ceil(n_samples / batch_size)`` steps, each on rows drawn
        uniformly at random (as scikit-learn does), so the order of the input never matters.
    max_steps : int, optional
        Most steps of ``fit``, whatever ``n_epochs`` says.
    init : {"k-means++", "random"} or array-like of shape (n_clusters, n_features)
        ``"k-means++"``: :func:`~deepclust.cluster.kmeans.kmeans_plus_plus_init` on
        ``init_size`` rows (a uniform sample in ``fit``, the first call's rows in
        ``partial_fit``); ``"random"``: k distinct rows of them; an array: the centres.
    init_size : int, optional
        Rows to seed from; default
        :func:`~deepclust.cluster.kmeans.default_plus_plus_samples` (``max(32 k, 10 000)``).
    reassignment_ratio : float, default=0.01
        Centres that have received fewer rows than this fraction of the busiest centre's
        are moved to random rows of the current batch (0 turns this off).
    spherical : bool, default=False
        Cosine k-means: rows are L2-normalised, centres stay unit vectors, the objective is
        ``sum(1 - cos)``. All-zero rows are rejected.
    random_state : None, int or numpy Generator
        Seeds the initialisation, the batches and the reassignments.
    verbose : bool, default=False
        Print the mean batch objective of every epoch.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features), float32
    counts_ : ndarray of shape (n_clusters,), float64
        Rows each centre has received (reset to the smallest other count on reassignment).
    labels_ : ndarray of shape (n_samples,), int64
        Nearest centre of each row after ``fit`` (one extra pass); not set by ``partial_fit``.
    inertia_ : float
        After ``fit``: the objective of all rows on the final centres (squared distances,
        or ``1 - cos`` when spherical). After ``partial_fit``: the objective of that call's
        rows, each measured as its batch was assigned (before the update).
    n_steps_ : int
    n_rows_seen_ : int
    n_reassigned_ : int
        Centres moved by the low-count rule.
    n_features_in_ : int
    stats_ : dict
        ``epoch_objective`` (mean batch objective per row, per epoch of ``fit``),
        ``init_seconds``, ``fit_seconds``, ``label_seconds``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (500, 2)), rng.normal(20, 1, (500, 2))]
    >>> mbk = MiniBatchKMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(np.bincount(mbk.labels_).tolist())
    [500, 500]
    >>> stream = MiniBatchKMeans(n_clusters=2, random_state=0)
    >>> for block in np.array_split(rng.permutation(X), 4):  # batches arriving one by one
    ...     _ = stream.partial_fit(block)
    >>> sorted(np.bincount(stream.predict(X)).tolist())
    [500, 500]
    """

    streams_rows = True

    # the rest is checked by _check_params, where it depends on the data
    _parameter_constraints = {"spherical": [Boolean()], "verbose": [Boolean(), Interval(Integral, 0, None)]}

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        batch_size: int | None = None,
        n_epochs: int = 3,
        max_steps: int | None = None,
        init="k-means++",
        init_size: int | None = None,
        reassignment_ratio: float = 0.01,
        spherical: bool = False,
        random_state=None,
        verbose: bool = False,
    ):
        self.n_clusters = n_clusters
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.max_steps = max_steps
        self.init = init
        self.init_size = init_size
        self.reassignment_ratio = reassignment_ratio
        self.spherical = spherical
        self.random_state = random_state
        self.verbose = verbose

    # -- validation

    def _check_params(self) -> int:
        """Validate the parameters; return the batch size."""
        k = check_n_clusters(self.n_clusters, sys.maxsize)  # type and >= 1; rows come later
        for name in ("batch_size", "n_epochs", "max_steps", "init_size"):
            value = getattr(self, name)
            if value is None and name != "n_epochs":
                continue
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        ratio = self.reassignment_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, Real) or not 0 <= ratio < 1:
            raise InputError(f"reassignment_ratio must be a number in [0, 1), got {ratio!r}")
        if isinstance(self.init, str) and self.init not in ("k-means++", "random"):
            raise InputError(
                f"init must be 'k-means++', 'random' or an array of centres, got {self.init!r}"
            )
        if self.batch_size is None:
            return default_batch_size(k)
        return int(self.batch_size)

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X) or partial_fit(batch) "
                "before predict"
            )

    # -- the shared path

    def _seed_rows(self, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
        """Sorted indices of the rows that the initial centres are drawn from."""
        m = default_plus_plus_samples(n, k) if self.init_size is None else min(n, self.init_size)
        if m < k:
            raise InputError(f"init_size={m} is smaller than n_clusters={k}; raise init_size")
        return np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)

    def _start(self, seed_rows: np.ndarray, d: int, rng: np.random.Generator) -> None:
        """Initial centres from ``seed_rows`` (float32, prepared) and fresh state."""
        k = int(self.n_clusters)
        t0 = time.perf_counter()
        if not isinstance(self.init, str):
            C = check_features(self.init, name="init", dtype=np.float32)
            if C.shape != (k, d):
                raise InputError(
                    f"init has shape {C.shape}; it must be (n_clusters, n_features) = ({k}, {d})"
                )
            if self.spherical:
                norms = np.linalg.norm(C, axis=1, keepdims=True)
                if not norms.all():
                    raise InputError("init has all-zero rows; spherical centres need a direction")
                C = C / norms
        elif self.init == "k-means++":
            C = kmeans_plus_plus_init(seed_rows, k, rng)
        else:
            C = random_init(seed_rows, k, rng)
        self.cluster_centers_ = np.array(C, dtype=np.float32, order="C")
        self.counts_ = np.zeros(k, dtype=np.float64)
        self.n_features_in_ = d
        self.n_steps_ = self.n_rows_seen_ = self.n_reassigned_ = 0
        self._since_reassign = 0
        self._rng = rng
        self.stats_ = {"epoch_objective": [], "init_seconds": time.perf_counter() - t0,
                       "fit_seconds": 0.0, "label_seconds": 0.0}

    def _step(self, batch: np.ndarray) -> float:
        """One update on prepared rows, then the low-count rule; returns the batch objective."""
        _, objective = minibatch_step(batch, self.cluster_centers_, self.counts_,
                                      spherical=bool(self.spherical))
        self.n_steps_ += 1
        self.n_rows_seen_ += batch.shape[0]
        self._since_reassign += batch.shape[0]
        k = self.counts_.shape[0]
        if self.reassignment_ratio > 0 and (
            self._since_reassign >= _REASSIGN_EVERY_PER_CENTRE * k or not self.counts_.all()
        ):
            self._since_reassign = 0
            self._reassign(batch)
        return objective

    def _reassign(self, batch: np.ndarray) -> None:
        counts = self.counts_
        low = counts < self.reassignment_ratio * counts.max()
        most = batch.shape[0] // 2  # never more centres than half the batch's rows
        if low.sum() > most:
            low[np.argsort(counts, kind="stable")[most:]] = False
        n_low = int(low.sum())
        if n_low == 0:
            return
        self.cluster_centers_[low] = batch[np.sort(self._rng.choice(batch.shape[0], n_low,
                                                                    replace=False))]
        counts[low] = counts[~low].min()
        self.n_reassigned_ += n_low

    # -- fitting

    def fit(self, X, y=None) -> MiniBatchKMeans:
        """Cluster a finite input with mini-batches of random rows, then label every row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet, EmbeddingStore or
            path of a store
            Memory maps and stores are read a batch or a block at a time, float16 rows are
            widened per block.
        y : ignored

        Returns
        -------
        self
        """
        t_start = time.perf_counter()
        self._validate_params()
        batch_size = self._check_params()
        rows = _row_source(X, spherical=bool(self.spherical))
        n, d = rows.n, rows.d
        k = check_n_clusters(self.n_clusters, n)
        rng = check_random_state(self.random_state)
        self._start(rows.take(self._seed_rows(n, k, rng)), d, rng)

        steps_per_epoch = -(-n // batch_size)
        n_steps = steps_per_epoch * int(self.n_epochs)
        if self.max_steps is not None:
            n_steps = min(n_steps, int(self.max_steps))
        epoch_sum = 0.0
        epoch_rows = 0
        with _step_threads(min(batch_size, n), k, d):
            for step in range(n_steps):
                batch = rows.take(np.sort(rng.integers(n, size=min(batch_size, n))))
                epoch_sum += self._step(batch)
                epoch_rows += batch.shape[0]
                if (step + 1) % steps_per_epoch == 0 or step + 1 == n_steps:
                    self.stats_["epoch_objective"].append(epoch_sum / epoch_rows)
                    if self.verbose:
                        print(f"  epoch {len(self.stats_['epoch_objective'])}: mean batch "
                              f"objective {epoch_sum / epoch_rows:.6g}, {self.n_reassigned_} "
                              f"reassigned, {time.perf_counter() - t_start:.1f} s", flush=True)
                    epoch_sum, epoch_rows = 0.0, 0

        t_label = time.perf_counter()
        self.labels_, self.inertia_ = self._assign(rows)
        self.stats_["label_seconds"] = time.perf_counter() - t_label
        self.stats_["fit_seconds"] = time.perf_counter() - t_start
        return self

    def partial_fit(self, X, y=None) -> MiniBatchKMeans:
        """Update the centres with one batch of a stream.

        The first call seeds the centres from its rows (so it needs at least
        ``n_clusters`` of them). A call with more than ``batch_size`` rows makes several
        steps, visiting its rows in a random order; the stream's batches themselves are
        taken in the order given, so feed batches that each mix the clusters (a stream
        sorted by class drifts).

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features), FeatureSet or EmbeddingStore
        y : ignored

        Returns
        -------
        self
        """
        t_start = time.perf_counter()
        self._validate_params()
        batch_size = self._check_params()
        rows = _row_source(X, spherical=bool(self.spherical), what="batch")
        if not hasattr(self, "cluster_centers_"):
            k = int(self.n_clusters)
            if rows.n < k:
                raise InputError(
                    f"the first batch has {rows.n} rows, fewer than n_clusters={k}: the "
                    f"centres are seeded from it, so pass at least {k} rows first (buffer the "
                    "stream's first batches, or give init an array of centres)"
                )
            rng = check_random_state(self.random_state)
            self._start(rows.take(self._seed_rows(rows.n, k, rng)), rows.d, rng)
        else:
            self._check_n_features(rows.d, hint="every batch must have the same number of features")
        order = self._rng.permutation(rows.n) if rows.n > batch_size else np.arange(rows.n)
        total = 0.0
        k, d = self.cluster_centers_.shape
        with _step_threads(min(batch_size, rows.n), k, d):
            for s in range(0, rows.n, batch_size):
                total += self._step(rows.take(np.sort(order[s : s + batch_size])))
        self.inertia_ = total
        self.stats_["fit_seconds"] += time.perf_counter() - t_start
        return self

    # -- using the fit

    def _assign(self, rows: RowSource) -> tuple[np.ndarray, float]:
        labels = np.empty(rows.n, dtype=np.int64)
        objective = 0.0
        for start, block in rows.blocks(BLOCK_ROWS):
            lab, scores = nearest_centroids(block, self.cluster_centers_,
                                            spherical=bool(self.spherical))
            labels[start : start + block.shape[0]] = lab
            objective += block_objective(scores, spherical=bool(self.spherical))
        return labels, objective

    def predict(self, X) -> np.ndarray:
        """Nearest centre of each row (cosine when ``spherical``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet or EmbeddingStore

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        """
        self._check_fitted()
        rows = _row_source(X, spherical=bool(self.spherical))
        self._check_n_features(rows.d)
        return self._assign(rows)[0]

    def score(self, X, y=None) -> float:
        """Opposite of the objective of ``X`` on the centres (higher is better)."""
        self._check_fitted()
        rows = _row_source(X, spherical=bool(self.spherical))
        self._check_n_features(rows.d)
        return -self._assign(rows)[1]
