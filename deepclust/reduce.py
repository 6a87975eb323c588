"""Dimension reduction before clustering: z-score, PCA (optionally whitened), L2, UMAP.

Reducers chain into a scikit-learn :class:`~sklearn.pipeline.Pipeline`, written either as a
string or as a list::

    build_reducer("zscore,pca:0.9,umap:50")
    build_reducer(["zscore", "pca:64:whiten", "l2"])
    build_reducer([("pca", {"n_components": 0.95, "whiten": True}), "umap:50:n_neighbors=15"])

Step grammar: ``NAME[:VALUE][:FLAG][:KEY=VALUE...]``

==========  =======================================================================
``zscore``  standardise each feature (zero mean, unit variance)
``pca:N``   PCA to N dimensions (int) or to the fewest keeping a fraction N of the
            variance (0 < N < 1); ``:whiten`` divides by the singular values
``l2``      scale each row to unit Euclidean norm
``umap:N``  UMAP to N dimensions; defaults follow the zero-shot study (Lowe et al. 2024)
            and UMAP's clustering guide: ``n_neighbors=30``, ``min_dist=0.0``
==========  =======================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from deepclust.errors import InputError
from deepclust.validation import (
    METRICS,
    NON_NEGATIVE,
    POSITIVE_INT,
    Boolean,
    Interval,
    Options,
    check_features,
    check_params,
    seed_from,
)

#: UMAP settings of the zero-shot study; also UMAP's own advice for clustering.
UMAP_DEFAULTS = {"n_neighbors": 30, "min_dist": 0.0, "metric": "euclidean"}
#: Below this many rows umap-learn computes every pairwise distance itself, calling a numba
#: metric from Python once per pair (12.5 of 15.7 s of a 2 000-row fit); :class:`UMAPReducer`
#: gives it the exact neighbours from one BLAS distance computation instead (``exact_knn``).
UMAP_SMALL_DATA_ROWS = 4096
#: Above this many output dimensions ``init="auto"`` starts UMAP from PCA, not from the
#: spectral layout: the eigensolver for many eigenvectors dominates UMAP's cost, and the
#: clusters found afterwards are as good (measurement: docs/architecture.md).
SPECTRAL_INIT_MAX_COMPONENTS = 10


class PCAReducer(TransformerMixin, BaseEstimator):
    """PCA to ``n_components`` dimensions, or to a kept-variance fraction when it is in (0, 1).

    Parameters
    ----------
    n_components : int or float
        Output dimensions, or the fraction of variance to keep.
    whiten : bool
        Divide each component by its singular value (unit variance outputs).
    random_state : int, optional
        Seed of the randomised SVD used on large inputs.
    """

    def __init__(self, n_components: int | float = 50, whiten: bool = False, random_state=None):
        self.n_components = n_components
        self.whiten = whiten
        self.random_state = random_state

    def fit(self, X, y=None):
        from sklearn.decomposition import PCA

        X = check_features(X, min_samples=2)
        n, d = X.shape
        nc = self.n_components
        if isinstance(nc, bool) or not isinstance(nc, Real):
            raise InputError(
                f"pca: n_components must be a number of dimensions or a variance fraction, "
                f"got {nc!r}"
            )
        if isinstance(nc, float) and not nc.is_integer():
            if not 0.0 < nc < 1.0:
                raise InputError(
                    f"pca: a variance fraction must lie in (0, 1), got {nc}; "
                    "give an integer for a number of dimensions"
                )
            solver = "full"
        else:
            nc = int(nc)
            if nc < 1:
                raise InputError(f"pca: n_components must be at least 1, got {nc}")
            if nc > min(n, d):
                raise InputError(
                    f"pca:{nc} asks for more components than the data has "
                    f"(min(n_samples, n_features) = {min(n, d)}); choose at most {min(n, d)}"
                )
            solver = "auto"
        rs = None if self.random_state is None else seed_from(self.random_state)
        self.pca_ = PCA(n_components=nc, whiten=self.whiten, svd_solver=solver, random_state=rs)
        self.pca_.fit(X)
        self.n_components_ = int(self.pca_.n_components_)
        self.explained_variance_ratio_ = self.pca_.explained_variance_ratio_
        return self

    def transform(self, X):
        X = check_features(X)
        return self.pca_.transform(X).astype(X.dtype, copy=False)


class UMAPReducer(TransformerMixin, BaseEstimator):
    """UMAP (McInnes et al.) with the clustering-friendly defaults of the zero-shot study.

    Parameters
    ----------
    n_components : int
        Output dimensions (the study uses 5 to 100; 50 by default in its recipe).
    n_neighbors : int
        Size of the local neighbourhood; reduced to ``n_samples - 1`` on tiny inputs.
    min_dist : float
        0.0 packs clusters tightly, which is what clustering wants.
    metric : str
        Distance in the input space.
    n_epochs : int, optional
        Optimisation epochs; None is UMAP's rule (500 up to 10 000 points, else 200).
        200 is much faster and barely changes clustering scores (docs/architecture.md).
    init : {"auto", "spectral", "pca", "random"}
        Starting layout. ``"auto"``: spectral up to
        :data:`SPECTRAL_INIT_MAX_COMPONENTS` output dimensions, PCA above (the spectral
        layout costs more than the optimisation there), random where the input is too
        small for either.
    random_state : int, optional
        Fixing it makes UMAP reproducible (and single-threaded).
    exact_knn : bool
        Below :data:`UMAP_SMALL_DATA_ROWS` rows (where umap-learn computes exact neighbours
        anyway, slowly) find the exact neighbours with scikit-learn's brute-force search and
        hand them to umap-learn: the same graph, many times faster. Such a fit keeps no search
        index, so :meth:`transform` refuses new rows; ``exact_knn=False`` keeps umap-learn's
        own path and ``transform``. Ignored for ``metric="correlation"`` and larger inputs.
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(Integral, 2, None)],
        "min_dist": [NON_NEGATIVE],
        "metric": [Options(*METRICS, "correlation")],
        "n_epochs": [POSITIVE_INT, None],
        "init": [Options("auto", "spectral", "pca", "random")],
        "exact_knn": [Boolean()],
    }

    def __init__(
        self,
        n_components: int = 50,
        n_neighbors: int = UMAP_DEFAULTS["n_neighbors"],
        min_dist: float = UMAP_DEFAULTS["min_dist"],
        metric: str = UMAP_DEFAULTS["metric"],
        n_epochs: int | None = None,
        init: str = "auto",
        random_state=None,
        exact_knn: bool = True,
    ):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.n_epochs = n_epochs
        self.init = init
        self.random_state = random_state
        self.exact_knn = exact_knn

    def _init_for(self, n_samples: int, n_features: int) -> str:
        nc = int(self.n_components)
        if self.init not in ("auto", "spectral", "pca", "random"):
            raise InputError(
                f"umap: init must be auto, spectral, pca or random, got {self.init!r}"
            )
        # Spectral needs n_components < n_samples - 1; PCA needs n_components <= n_features.
        fits = {"spectral": nc < n_samples - 2, "pca": nc <= min(n_samples, n_features),
                "random": True}
        if self.init != "auto":
            return self.init if fits[self.init] else "random"
        if nc <= SPECTRAL_INIT_MAX_COMPONENTS and fits["spectral"]:
            return "spectral"
        return "pca" if fits["pca"] else "random"

    def _uses_exact_knn(self, n_samples: int) -> bool:
        return (bool(self.exact_knn) and self.metric in METRICS
                and n_samples < UMAP_SMALL_DATA_ROWS)

    def _make(self, n_samples: int, n_features: int, knn: tuple | None = None):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba/tqdm chatter on import
            import umap
        prepare_numba()

        check_params("umap", self.get_params(), self._parameter_constraints)
        if isinstance(self.n_components, bool) or not isinstance(self.n_components, Integral):
            raise InputError(f"umap: n_components must be an integer, got {self.n_components!r}")
        nc = int(self.n_components)
        if nc < 1:
            raise InputError(f"umap: n_components must be at least 1, got {nc}")
        if n_samples < 4:
            raise InputError(
                f"umap needs at least 4 samples to build a neighbour graph, got {n_samples}"
            )
        n_neighbors = max(2, min(int(self.n_neighbors), n_samples - 1))
        return umap.UMAP(
            precomputed_knn=knn if knn is not None else (None, None, None),
            n_components=nc,
            n_neighbors=n_neighbors,
            min_dist=self.min_dist,
            metric=self.metric,
            init=self._init_for(n_samples, n_features),
            n_epochs=None if self.n_epochs is None else int(self.n_epochs),
            random_state=None if self.random_state is None else seed_from(self.random_state),
            n_jobs=1 if self.random_state is not None else -1,
        )

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        import warnings

        X = check_features(X)
        self.umap_ = self._make(*X.shape)  # checks the parameters first
        self.exact_knn_ = self._uses_exact_knn(len(X))
        if self.exact_knn_:
            knn = exact_neighbours(X, self.umap_.n_neighbors, self.metric)
            self.umap_ = self._make(*X.shape, knn=knn)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*")
            warnings.filterwarnings("ignore", message=".*random_state.*")
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            warnings.filterwarnings("ignore", message="Cannot cache compiled function")
            emb = self.umap_.fit_transform(X)
        self.embedding_ = np.asarray(emb, dtype=np.float32)
        return self.embedding_

    def transform(self, X):
        X = check_features(X)
        if getattr(self, "exact_knn_", False):
            raise InputError(
                "umap: this UMAP was fitted with exact neighbours (fewer than "
                f"{UMAP_SMALL_DATA_ROWS} rows) and keeps no search index to place new rows; "
                "fit it with exact_knn=False (umap:N:exact_knn=false) to transform new data"
            )
        return np.asarray(self.umap_.transform(X), dtype=np.float32)


def warm_umap() -> None:
    """Import umap-learn and compile its numba kernels on a tiny input (a second or two
    once compiled). In a fresh environment the import compiles pynndescent's kernels (kept
    on disk by numba) and the first fit umap-learn's (kept on disk too since
    :func:`prepare_numba`); later processes read them. Used by the demo, to overlap this
    with the embedding, and by :mod:`deepclust.prepare` at install time."""
    import warnings

    X = np.random.default_rng(0).normal(size=(120, 60)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reduce(X, "umap:50:n_neighbors=30:min_dist=0:n_epochs=5", random_state=0)


_UMAP_KERNEL_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral",
                        "umap.distances", "umap.sparse")
_numba_prepared = False


def prepare_numba() -> None:
    """Set numba up for umap-learn, once per process, before its first kernel runs.

    - Threading layer: OpenMP (then workqueue) before TBB. OpenVINO (the embedding engine)
      loads its own TBB, which numba then picks; when numba's first parallel kernel ran in
      a thread other than the main one (the demo's warm-up), the interpreter hung at exit in
      numba's TBB unload. Left alone when ``NUMBA_THREADING_LAYER`` or
      ``NUMBA_THREADING_LAYER_PRIORITY`` is set.
    - umap-learn compiles its numba functions without ``cache=True``, so every new process
      compiled them again before its first fit (docs/architecture.md has the cost). Numba's
      ``Dispatcher.enable_caching`` gives them the cache that ``cache=True`` would: written
      beside umap-learn's sources (or in numba's user cache folder where those are
      read-only) on the first compile, read by every later process. Best effort: where this
      numba or umap-learn does not allow it, they compile as before.
    """
    global _numba_prepared
    if _numba_prepared:
        return
    import importlib
    import os

    import numba

    if not (os.environ.get("NUMBA_THREADING_LAYER")
            or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY")):
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
    try:
        from numba.core.registry import CPUDispatcher

        for name in _UMAP_KERNEL_MODULES:
            module = importlib.import_module(name)
            for obj in vars(module).values():
                if (isinstance(obj, CPUDispatcher)
                        and getattr(obj.py_func, "__module__", None) == name):
                    obj.enable_caching()
    except Exception:  # a numba or umap-learn without these internals: no disk cache
        pass
    _numba_prepared = True


def exact_neighbours(X: np.ndarray, n_neighbors: int, metric: str = "euclidean"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The exact ``n_neighbors`` nearest rows of each row of ``X``, itself first at distance 0,
    as umap-learn's ``precomputed_knn`` takes them: ``(indices int32, distances float32)``.

    Brute force with scikit-learn (BLAS for the Euclidean distance, in blocks), which is
    what umap-learn computes itself below :data:`UMAP_SMALL_DATA_ROWS` rows, one Python call
    per pair.
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(X)
    nn = NearestNeighbors(n_neighbors=n_neighbors - 1, algorithm="brute", metric=metric)
    dists, idx = nn.fit(X).kneighbors()  # without X: each row's neighbours exclude itself
    indices = np.empty((n, n_neighbors), dtype=np.int32)
    distances = np.zeros((n, n_neighbors), dtype=np.float32)
    indices[:, 0] = np.arange(n)
    indices[:, 1:] = idx
    distances[:, 1:] = dists
    return indices, distances


def umap_embedding(
    X,
    n_components: int = 2,
    *,
    n_neighbors: int = UMAP_DEFAULTS["n_neighbors"],
    min_dist: float = UMAP_DEFAULTS["min_dist"],
    metric: str = UMAP_DEFAULTS["metric"],
    n_epochs: int | None = None,
    random_state=None,
) -> np.ndarray:
    """UMAP embedding of ``X`` (float32, shape ``(n_samples, n_components)``)."""
    reducer = UMAPReducer(
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        n_epochs=n_epochs,
        random_state=random_state,
    )
    return reducer.fit_transform(X)


def parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


_STEP_NAMES = ("zscore", "pca", "l2", "umap")


def _parse_step(step: str) -> tuple[str, dict]:
    parts = [p.strip() for p in step.strip().split(":")]
    name, rest = parts[0].lower(), parts[1:]
    if name not in _STEP_NAMES:
        raise InputError(
            f"unknown reducer {parts[0]!r} in {step!r}; known reducers: {', '.join(_STEP_NAMES)}"
        )
    params: dict[str, Any] = {}
    for i, part in enumerate(rest):
        if not part:
            continue
        if "=" in part:
            key, value = part.split("=", 1)
            params[key.strip()] = parse_value(value.strip())
        elif part.lower() == "whiten":
            params["whiten"] = True
        elif i == 0:
            params["n_components"] = parse_value(part)
        else:
            raise InputError(f"cannot read {part!r} in reducer step {step!r}")
    return name, params


def _make_step(name: str, params: dict, random_state) -> BaseEstimator:
    try:
        if name == "zscore":
            return StandardScaler(**params)
        if name == "l2":
            return Normalizer(norm="l2", **params)
        if name == "pca":
            params.setdefault("random_state", random_state)
            return PCAReducer(**params)
        params.setdefault("random_state", random_state)
        return UMAPReducer(**params)
    except TypeError as exc:
        raise InputError(f"bad parameter for reducer {name!r}: {exc}") from None


def parse_reducer_spec(spec: str | Sequence | None) -> list[tuple[str, dict]]:
    """Read a reducer chain into ``[(name, params), ...]`` (an empty list for none)."""
    if spec is None:
        return []
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower() in ("", "none", "raw"):
            return []
        items: Sequence = [s for s in text.split(",") if s.strip()]
    else:
        items = spec
    steps = []
    for item in items:
        if isinstance(item, str):
            steps.append(_parse_step(item))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
            name = str(item[0]).lower()
            if name not in _STEP_NAMES:
                raise InputError(f"unknown reducer {item[0]!r}; known: {', '.join(_STEP_NAMES)}")
            steps.append((name, dict(item[1])))
        else:
            raise InputError(
                f"a reducer step must be a string like 'pca:50' or a (name, params) pair, got {item!r}"
            )
    return steps


def build_reducer(spec: str | Sequence | None, *, random_state=None) -> Pipeline | None:
    """A Pipeline for the chain ``spec``, or None when no reduction is asked for.

    Parameters
    ----------
    spec : str or list
        ``"zscore,pca:0.9,umap:50"``, a list of such steps, or ``(name, params)`` pairs.
    random_state : int, optional
        Default seed for the steps that take one.
    """
    steps = parse_reducer_spec(spec)
    if not steps:
        return None
    named = []
    for i, (name, params) in enumerate(steps):
        named.append((f"{i}_{name}", _make_step(name, params, random_state)))
    return Pipeline(named)


def describe_reducer(spec: str | Sequence | None) -> str:
    """Canonical text of a chain, for tables and run.json (``"raw"`` when empty)."""
    steps = parse_reducer_spec(spec)
    if not steps:
        return "raw"
    out = []
    for name, params in steps:
        p = dict(params)
        text = name
        if "n_components" in p:
            text += f":{p.pop('n_components')}"
        if p.pop("whiten", False):
            text += ":whiten"
        for k, v in sorted(p.items()):
            if k != "random_state":
                text += f":{k}={v}"
        out.append(text)
    return ",".join(out)


def reduce(X, spec: str | Sequence | None, *, random_state=None) -> np.ndarray:
    """Apply the chain ``spec`` to ``X`` and return the reduced float32 array."""
    X = check_features(X)
    pipe = build_reducer(spec, random_state=random_state)
    if pipe is None:
        return X
    return np.ascontiguousarray(pipe.fit_transform(X), dtype=np.float32)
