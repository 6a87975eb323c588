"""k-means (Lloyd) behind the scikit-learn estimator API.

:class:`KMeans` validates, seeds (:mod:`deepclust.cluster.seeding`), runs the loop
(:func:`deepclust.cluster.lloyd.lloyd`) over a :class:`~deepclust.data.rows.RowSource`
(arrays and stores alike, one process's share under ``torchrun``), restarts ``n_init``
times and keeps the lowest objective.
"""

from __future__ import annotations

import copy
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import TransformerMixin
from sklearn.exceptions import ConvergenceWarning

from deepclust import runtime
from deepclust.cluster.base import BaseClusterer, register
from deepclust.cluster.lloyd import block_objective, lloyd
from deepclust.cluster.seeding import default_plus_plus_samples, plus_plus
from deepclust.data.rows import (
    ArrayRows,
    StoreRows,
    as_row_source,
    fewer_distinct_rows,
    unit_rows,
)
from deepclust.errors import InputError
from deepclust.validation import Boolean, Interval, check_features, check_random_state

__all__ = ["KMeans"]


# ----------------------------------------------------------------------------- estimator


@register("kmeans", "k-means (Lloyd) on faiss: k-means++ seeding, restarts, optional cosine")
class KMeans(TransformerMixin, BaseClusterer):
    """k-means clustering, with faiss for the nearest-centroid search.

    Lloyd iterations: assign each row to its nearest centroid (faiss, float32), then move
    each centroid to the mean of its rows (sums accumulated in float64). Empty clusters
    are re-seeded by splitting a populated one (:func:`reseed_empty_clusters`, the faiss /
    DeepCluster rule). Unlike ``faiss.Kmeans`` it always uses every row.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters k, ``1 <= k <= n_samples``.
    init : {"k-means++", "random"} or array-like of shape (n_clusters, n_features)
        ``"k-means++"``: greedy k-means++ (:func:`kmeans_plus_plus_init`), on a random
        subsample of ``max(32 k, 10 000)`` rows when X is larger. ``"random"``: k distinct
        rows chosen uniformly. An array gives the initial centroids (then ``n_init`` is 1).
    n_init : int, default=1
        Independent runs from different seeds; the one with the lowest objective is kept.
    max_iter : int, default=100
        Most centroid updates per run.
    tol : float, default=1e-4
        Stop when the objective falls by no more than ``tol`` times its previous value
        between two consecutive assignments, ``J_prev - J <= tol * J_prev`` (not tested
        right after a re-seed, which may raise J slightly). A run also stops as soon as no
        label changes. ``tol=0`` runs until the labels are stable or ``max_iter`` is
        reached.
    spherical : bool, default=False
        Cosine k-means: rows are L2-normalised, centroids are unit vectors (the normalised
        sum of their rows), the objective is ``sum(1 - cos)``, and ``predict`` uses cosine.
        All-zero rows are rejected.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        Nearest-centroid search: faiss float32, or a bf16 product whose rankings are
        certified against float32 (uncertain rows re-checked in float32), so the labels
        are the same, float32 ties aside. "auto": bf16 on CPUs with native bfloat16
        (AVX-512 BF16 or AMX) and on GPUs with bfloat16 when k >= 64, else fp32 (the
        ``kmeans`` row of :mod:`deepclust.runtime`'s table).
    device : "auto", "cpu", "cuda" or "cuda:N", default="auto"
        Where the products run ("auto": this process's GPU when there is one).
    distributed : "auto", bool, default="auto"
        Under ``torchrun``, split the rows between the processes and all-reduce the
        per-cluster sums. "auto" does so when ``X`` is a store (every process reads its
        own share); True also for arrays, which must then be the same on every process.
    random_state : None, int or numpy Generator
        Seeds initialisation and re-seeding.
    verbose : bool, default=False
        Print the objective of every iteration.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features), float32
        Unit vectors when ``spherical``.
    labels_ : ndarray of shape (n_samples,), int64
        Nearest centroid of each training row (what ``predict`` gives for them).
    inertia_ : float
        Objective of the kept run: sum of squared distances to the nearest centroid, or
        of ``1 - cos`` when ``spherical``.
    n_iter_ : int
        Centroid updates of the kept run.
    n_reseeded_ : int
        Empty clusters re-seeded during the kept run.
    stats_ : dict
        ``inertia_per_init`` (list, one per run), ``objective_history`` (objective at each
        assignment of the kept run), ``converged`` (bool), ``init_seconds`` and
        ``fit_seconds``.
    n_features_in_ : int

    Notes
    -----
    If ``X`` has fewer distinct rows m than ``n_clusters`` (e.g. all rows equal), no
    iteration is run: a :class:`~sklearn.exceptions.ConvergenceWarning` is raised and the
    exact solution is returned. The m distinct rows (in lexicographic order) are the
    centroids of clusters ``0 .. m-1``, each row is labelled with its copy's cluster,
    ``inertia_`` is 0, and clusters ``m .. k-1`` stay empty with centroids that repeat
    centroid 0. Clusters that are empty after fitting are never returned by ``predict``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.r_[np.zeros((20, 2)), np.full((20, 2), 5.0)]
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(np.bincount(km.labels_).tolist())
    [20, 20]
    """

    streams_rows = True

    # the rest is checked by _check_params, where it depends on the data
    _parameter_constraints = {"spherical": [Boolean()], "verbose": [Boolean(), Interval(Integral, 0, None)]}

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init="k-means++",
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-4,
        spherical: bool = False,
        precision: str = "auto",
        device="auto",
        distributed="auto",
        random_state=None,
        verbose: bool = False,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.spherical = spherical
        self.precision = precision
        self.device = device
        self.distributed = distributed
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # rows are searched and distances computed in float32 (faiss), whatever came in
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- validation

    def _check_params(self, n_features: int) -> tuple[np.ndarray | None, int]:
        for name in ("n_init", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if (
            isinstance(self.tol, bool)
            or not isinstance(self.tol, Real)
            or not (np.isfinite(self.tol) and self.tol >= 0)
        ):
            raise InputError(f"tol must be a non-negative number, got {self.tol!r}")
        n_init = int(self.n_init)
        if isinstance(self.init, str):
            if self.init not in ("k-means++", "random"):
                raise InputError(
                    f"init must be 'k-means++', 'random' or an array of centroids, got {self.init!r}"
                )
            return None, n_init
        init = check_features(self.init, name="init", dtype=np.float32)
        if init.shape != (self.n_clusters, n_features):
            raise InputError(
                f"init has shape {init.shape}; it must be (n_clusters, n_features) = "
                f"({self.n_clusters}, {n_features})"
            )
        if n_init != 1:
            warnings.warn(
                f"explicit initial centroids given: running once instead of n_init={n_init}",
                RuntimeWarning,
                stacklevel=3,
            )
        return init, 1

    def _prepare(self, X, *, name: str = "X") -> np.ndarray:
        """X as float32 C-contiguous rows (unit rows when spherical)."""
        X = check_features(X, name=name, dtype=np.float32)
        return unit_rows(X, name=name) if self.spherical else X

    # -- fitting

    def fit(self, X, y=None) -> KMeans:
        """Compute the clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet, EmbeddingStore or path
            Rows to cluster. Arrays are converted to float32; a store (or its directory)
            is streamed block by block and never loaded whole, so it may be larger than
            memory. Under ``torchrun`` each process reads its own share of the rows.
        y : ignored

        Returns
        -------
        self
        """
        # numpy's BLAS on one thread: its idle threads would spin against faiss's
        with runtime.numpy_blas_single_thread():
            return self._fit(X)

    def _fit(self, X) -> KMeans:
        t_start = time.perf_counter()
        self._validate_params()
        source = as_row_source(X)
        in_memory = (isinstance(source, ArrayRows) and source.X.dtype == np.float32
                     and not isinstance(source.X, np.memmap))
        if in_memory:
            source = ArrayRows(self._prepare(source.X))  # unit rows once, for spherical
        elif self.spherical:
            source = copy.copy(source)  # rows made unit block by block; the caller's stays
            source.unit = True
        n, d = source.n_total, source.d
        k = self._validate_k(n)
        init, n_init = self._check_params(d)
        rng = check_random_state(self.random_state)
        device = runtime.resolve_device(self.device)
        precision = runtime.resolve_precision("kmeans", self.precision, device, n_clusters=k)
        self.n_features_in_ = d
        self.precision_ = precision
        self.device_ = device

        # a store is read whole only if a sample already shows too few distinct rows
        degenerate = fewer_distinct_rows(
            source, k, max_load=None if in_memory else 1 << 28)
        if degenerate is not None:
            self._fit_degenerate(*degenerate, k, time.perf_counter() - t_start)
            return self

        di = runtime.info()
        if self.distributed not in ("auto", True, False):
            raise InputError(f"distributed must be 'auto', True or False, got {self.distributed!r}")
        # "auto": share the work only over data every process reads the same way (a store);
        # arrays in memory may differ between processes, so each fits its own
        shared = self.distributed is True or (self.distributed == "auto"
                                              and isinstance(source, StoreRows))
        if not shared:
            di = runtime.DistInfo()
        local = source.part(di.rank, di.world_size) if di.distributed else source
        best = None
        inertias = []
        init_seconds = 0.0
        for run in range(n_init):
            t0 = time.perf_counter()
            C, center = self._initial_centroids(source, init, k, rng, di)
            if di.distributed:  # every process computed them; take rank 0's bits
                C = runtime.broadcast_object(C)
            init_seconds += time.perf_counter() - t0
            if self.verbose:
                print(f"KMeans run {run + 1}/{n_init}: init {time.perf_counter() - t0:.2f} s, "
                      f"{precision} assignment on {device}")
            result = lloyd(
                local,
                C,
                max_iter=int(self.max_iter),
                tol=float(self.tol),
                spherical=bool(self.spherical),
                rng=rng,
                verbose=bool(self.verbose) and di.is_main,
                precision=precision,
                device=device,
                center=center,
                ranks=di,
            )
            inertias.append(result["inertia"])
            if best is None or result["inertia"] < best["inertia"]:
                best = result

        labels = best["labels"]
        if di.distributed:  # every process gets every row's label
            full = np.zeros(n, dtype=np.int64)
            full[local.start: local.start + local.n] = labels
            labels = runtime.sum_over_ranks(full, di)
        self.cluster_centers_ = best["centroids"]
        self.labels_ = labels
        self.inertia_ = float(best["inertia"])
        self.n_iter_ = int(best["n_iter"])
        self.n_reseeded_ = int(best["n_reseeded"])
        self.stats_ = {
            "inertia_per_init": inertias,
            "objective_history": best["objective_history"],
            "rows_searched": best["rows_searched"],
            "pairs_computed": best["pairs_computed"],
            "converged": best["converged"],
            "init_seconds": init_seconds,
            "fit_seconds": time.perf_counter() - t_start,
            "precision": precision,
            "device": str(device),
            "world_size": di.world_size,
        }
        sizes = np.bincount(self.labels_, minlength=k)
        self._nonempty = None if sizes.all() else np.flatnonzero(sizes)
        if self._nonempty is not None:
            warnings.warn(
                f"{k - self._nonempty.size} of {k} clusters ended empty even after "
                "re-seeding; they are never predicted",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _initial_centroids(self, source, init, k: int, rng, ranks):
        """Initial centroids and the centre for the bf16 product, from a sample of rows.

        The sample is drawn exactly as :func:`kmeans_plus_plus_init` draws it, so an
        array and a store holding the same rows give the same centroids.
        """
        n = source.n_total
        if init is not None:
            C = unit_rows(init, name="init") if self.spherical else init
            m = min(n, 10_000)
            rows = np.sort(check_random_state(0).choice(n, m, replace=False))
            return C, self._take(source, rows, ranks).mean(axis=0, dtype=np.float64)
        if self.init == "k-means++":
            m = default_plus_plus_samples(n, k)
            rows = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
            S = self._take(source, rows, ranks)
            C = plus_plus(S, k, rng, max_samples=S.shape[0])
        else:
            rows = np.sort(rng.choice(n, k, replace=False))
            S = self._take(source, rows, ranks)
            C = S.copy()
        return C, S.mean(axis=0, dtype=np.float64)

    @staticmethod
    def _take(source, rows: np.ndarray, ranks) -> np.ndarray:
        """Rows ``rows`` of the whole data on every process (each reads its own range)."""
        if not ranks.distributed:
            return source.take(rows)
        part = source.part(ranks.rank, ranks.world_size)
        mine = (rows >= part.start) & (rows < part.start + part.n)
        out = np.zeros((rows.shape[0], source.d), dtype=np.float32)
        out[mine] = source.take(rows[mine])
        return runtime.sum_over_ranks(out, ranks)

    def _fit_degenerate(self, uniq: np.ndarray, inverse: np.ndarray, k: int, seconds: float):
        m = uniq.shape[0]
        warnings.warn(
            f"X has only {m} distinct row(s), fewer than n_clusters={k}: returning the exact "
            f"solution with {m} cluster(s) and {k - m} empty one(s)",
            ConvergenceWarning,
            stacklevel=3,
        )
        centers = np.concatenate([uniq, np.repeat(uniq[:1], k - m, axis=0)])
        self.cluster_centers_ = np.ascontiguousarray(centers, dtype=np.float32)
        self.labels_ = inverse.astype(np.int64)
        self.inertia_ = 0.0
        self.n_iter_ = 0
        self.n_reseeded_ = 0
        self.stats_ = {
            "inertia_per_init": [0.0],
            "objective_history": [0.0],
            "converged": True,
            "init_seconds": 0.0,
            "fit_seconds": seconds,
        }
        self._nonempty = np.arange(m)

    # -- using the fit

    def _assign(self, X) -> tuple[np.ndarray, np.ndarray]:
        from deepclust.cluster.assign import CentroidSearch

        self._check_fitted()
        source = as_row_source(X)
        self._check_n_features(source.d)
        if self.spherical:
            source = copy.copy(source)
            source.unit = True
        C = self.cluster_centers_
        keep = getattr(self, "_nonempty", None)
        if keep is not None:
            C = np.ascontiguousarray(C[keep])
        search = CentroidSearch(C, spherical=self.spherical,
                                precision=getattr(self, "precision_", "fp32"),
                                device=getattr(self, "device_", torch.device("cpu")))
        labels = np.empty(source.n, dtype=np.int64)
        scores = np.empty(source.n, dtype=np.float32)
        for start, block in source.blocks():
            sl = slice(start, start + block.shape[0])
            labels[sl], scores[sl] = search(block)
        if keep is not None:
            labels = keep[labels]
        return labels, scores

    def predict(self, X) -> np.ndarray:
        """Nearest centroid of each row (cosine when ``spherical``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        """
        return self._assign(X)[0]

    def score(self, X, y=None) -> float:
        """Opposite of the objective of ``X`` on the fitted centroids (higher is better)."""
        _, scores = self._assign(X)
        return -block_objective(scores, spherical=self.spherical)

    def transform(self, X) -> np.ndarray:
        """Distance of each row to every centroid: Euclidean, or ``1 - cos`` when spherical.

        KMeans is a scikit-learn transformer: ``fit_transform(X)`` fits and returns these.
        The output is float32 whatever the input's float type (the tag ``preserves_dtype``
        says so).

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters), float32
        """
        self._check_fitted()
        X = self._prepare(X)
        self._check_n_features(X.shape[1])
        C = self.cluster_centers_
        dots = X @ C.T
        if self.spherical:
            return 1.0 - dots
        d2 = np.einsum("ij,ij->i", X, X)[:, None] + np.einsum("ij,ij->i", C, C)[None, :]
        d2 -= 2.0 * dots
        return np.sqrt(np.maximum(d2, 0.0, out=d2))
