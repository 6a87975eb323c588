"""One clustering run: rows -> reduce -> cluster -> scores -> run record.

:func:`run_clustering` is what the CLI's ``cluster`` command, the demo and the benchmark
runner call; each stage is also usable alone (:mod:`deepclust.reduce`,
:mod:`deepclust.cluster`, :mod:`deepclust.metrics`).

One road for every size of input: :func:`open_input` turns an array, a feature file, a
FeatureSet, an embedding store (or its folder) or a RowSource into a :class:`RunInput`. A store
(or a memory map) is streamed to a clusterer whose ``streams_rows`` is True when there is no
reducer and k is given; anything else is loaded first. Label-free scores are computed on all
rows when they are in memory and at most :data:`LABEL_FREE_ROWS`; otherwise on a seeded
sample of that many rows (:func:`sample_rows`), read with ``RowSource.take``. ``k="auto"``
sweeps k on a seeded sample of at most :data:`SELECTION_ROWS` rows, then fits the chosen k
on every row; the label-free scores are then computed on that sample (its proxy UMAP is
built once).
"""

from __future__ import annotations

import os
import time
import warnings as warnings_module
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepclust.cluster import get_clusterer_class, make_clusterer
from deepclust.cluster.cost import CostWarning, check_cost
from deepclust.data.rows import RowSource, as_row_source
from deepclust.errors import InputError
from deepclust.metrics.proxy import PROXY_UMAP, proxy_space
from deepclust.progress import spinner
from deepclust.reduce import build_reducer, describe_reducer, parse_reducer_spec
from deepclust.selection import (
    AUTO_METHODS,
    AUTO_ROWS,
    DEFAULT_CRITERION,
    UMAP_REDUCER,
    KSelection,
    ScoringSample,
    Selection,
    check_clusterer_params,
    default_candidates,
    select,
    select_k,
)
from deepclust.store import is_store
from deepclust.validation import (
    check_features,
    check_labels,
    check_n_clusters,
    check_positive_int,
)

#: Most rows the label-free scores (and their UMAP space) are computed on; a larger input is
#: scored on a seeded sample of this many rows (see docs/architecture.md).
LABEL_FREE_ROWS = 20_000

#: ``method="auto"`` on a store or memory map larger than this (as float32) tries only
#: candidates that stream it (no reducer; k-means), so that the whole input is never loaded.
AUTO_LOAD_BYTES = 2 * 2**30

#: Most rows a ``k="auto"`` sweep (and its proxy UMAP) runs on; beyond this the sweep runs on
#: a seeded sample of this many rows, only the chosen k is fitted on every row, and the
#: label-free scores reuse the sweep's sample and proxy space (one UMAP, not two). See
#: docs/architecture.md, "Cost guards".
SELECTION_ROWS = 10_000


@dataclass
class RowSample:
    """Rows of a run's input read into memory: ``X[i]`` is input row ``rows[i]``.

    ``rows`` is sorted; None means every row, in order.
    """

    rows: np.ndarray | None
    X: np.ndarray

    def __len__(self) -> int:
        return len(self.X)


@dataclass
class RunInput:
    """What a run clusters: rows in memory (``X``) or a :class:`RowSource` that is read block
    by block (``rows``), with true labels (-1 = unknown) when known.

    Exactly one of ``X`` and ``rows`` is set until :meth:`load` reads the rows in.
    """

    X: np.ndarray | None
    rows: RowSource | None
    y: np.ndarray | None
    source: str
    class_names: list[str] | None = None
    labels_path: str | None = None
    ids: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.X) if self.X is not None else self.rows.n

    @property
    def d(self) -> int:
        return int(self.X.shape[1]) if self.X is not None else self.rows.d

    @property
    def has_labels(self) -> bool:
        return self.y is not None and bool(np.any(self.y >= 0))

    def load(self) -> RunInput:
        """The rows in memory (float32), read from the source block by block."""
        if self.X is None:
            self.X = self.rows.to_array(np.float32)
        return self

    def feature_set(self):
        """The input as a :class:`~deepclust.data.features.FeatureSet` (rows in memory)."""
        from deepclust.data.features import FeatureSet

        if self.X is None:
            raise InputError("the rows of a streamed input are not in memory")
        return FeatureSet(self.X, self.y, self.ids, self.class_names, self.source)


def _store_labels(store, label_column: str | None) -> np.ndarray:
    if label_column in (None, "label"):
        return store.labels  # the label column alone, never the rows
    name = label_column[6:] if label_column.startswith("label_") else label_column
    return store.extra_labels(name)


def _method_dims(d: int, steps: list, reduced=None) -> int:
    """The number of features the clusterer will see: ``reduced``'s, else the last
    reducer step that fixes a width (``pca:N``, ``umap:N``), else ``d``."""
    if reduced is not None:
        return int(np.shape(reduced)[1])
    for _, options in steps:
        width = options.get("n_components")
        if isinstance(width, int) and not isinstance(width, bool):
            d = min(d, width)
    return d


def open_input(X, y=None, *, label_column: str | None = None,
               id_column: str | None = None) -> RunInput:
    """The rows and labels of a run, without loading a store or a memory map.

    Parameters
    ----------
    X : array, memory map, path, FeatureSet, EmbeddingStore or RowSource
        A path is an embedding store folder, a feature file (``.npy/.npz/.parquet/.csv``) or
        a built-in dataset name. Arrays are validated (2-D, finite) and kept in memory;
        stores, memory maps and row sources are read only when needed.
    y : array or path, optional
        True labels (-1 = unknown), or a ``.npy``/text file of them; default: the labels
        the input carries (a store's label column, a feature file's labels).
    label_column : str, optional
        The label column of a ``.parquet``/``.csv`` table, or an extra label column of a
        store.
    id_column : str, optional
        The id column of a ``.parquet``/``.csv`` table (kept in ``RunInput.ids``).
    """
    from deepclust.data.features import FeatureSet, load_features, read_labels_file
    from deepclust.store import EmbeddingStore, open_store

    labels_path = str(y) if isinstance(y, (str, os.PathLike)) else None
    if isinstance(X, (str, os.PathLike)) and not is_store(X):
        fs = load_features(X, labels_path=labels_path, label_column=label_column,
                           id_column=id_column)
        X, y, labels_path = fs, (fs.y if labels_path else y), labels_path
    if isinstance(X, (str, os.PathLike)):
        X = open_store(X)
    if isinstance(X, EmbeddingStore):
        data = RunInput(None, as_row_source(X, name="store rows"), None,
                        f"{X.path} ({X.meta.get('encoder')})", X.class_names, labels_path)
        if y is None:
            y = _store_labels(X, label_column)
    elif isinstance(X, FeatureSet):
        data = RunInput(check_features(X.X, name=f"features in {X.source}"), None, None,
                        X.source, X.class_names, labels_path, X.ids)
        if y is None:
            y = X.y
    elif isinstance(X, RowSource) or isinstance(X, np.memmap):
        rows = as_row_source(X, name="rows")
        data = RunInput(None, rows, None, rows.description, None, labels_path)
    else:
        data = RunInput(check_features(X, name="features"), None, None, "array", None,
                        labels_path)
    if isinstance(y, (str, os.PathLike)):
        y = read_labels_file(y)
    if y is not None:
        data.y = check_labels(y, data.n, name=f"labels in {labels_path or data.source}")
        if labels_path is not None and not (data.y >= 0).any():
            raise InputError(f"labels in {labels_path}: every label is negative (unknown), so "
                             "there is nothing to score against; give class numbers >= 0 "
                             "(-1 marks an unknown label), or leave out --labels")
    return data


def sample_rows(n: int, size: int | None, random_state: int = 0) -> np.ndarray | None:
    """Sorted rows of a seeded sample of ``size`` of ``n`` rows; None when ``size`` is None
    or not smaller than ``n`` (every row)."""
    if size is None or n <= size:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=int(size), replace=False))


def read_sample(source: RowSource, size: int | None = LABEL_FREE_ROWS,
                random_state: int = 0) -> RowSample:
    """A seeded sample of at most ``size`` rows of ``source`` (:func:`sample_rows`), read
    with ``source.take``: the rest of the source is never read."""
    rows = sample_rows(source.n, size, random_state)
    return RowSample(rows, source.take(np.arange(source.n) if rows is None else rows))


@dataclass
class ClusteringResult:
    """Everything one run produced; :meth:`record` makes its run record.

    ``input`` is what was clustered (``input.X`` None when the rows were streamed);
    ``sample`` the rows the label-free scores were computed on, when those were not all
    of the input's rows or were read from a stream; ``clustered`` the rows the clusterer
    saw (the reduced array, or the streamed RowSource); ``warnings`` what the user should
    know about the run (e.g. ``--k auto`` chose the edge of its range).
    """

    labels: np.ndarray
    method: str
    params: dict
    reducer: str
    n_clusters: int
    n_noise: int
    timings: dict = field(default_factory=dict)
    metrics: dict | None = None
    label_free: dict | None = None
    label_free_rows: int | None = None
    k_selection: KSelection | None = None
    selection: Selection | None = None
    estimator: Any = None
    reduced_shape: tuple | None = None
    streamed: bool = False
    input: RunInput | None = None
    sample: RowSample | None = None
    clustered: Any = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The run's results as the run record's fields."""
        from deepclust.record import estimator_stats, json_safe

        return {
            "method": self.method,
            "params": json_safe(self.params),
            "reducer": self.reducer,
            "reduced_shape": list(self.reduced_shape) if self.reduced_shape else None,
            "k": self.params.get("n_clusters"),
            "n_clusters": self.n_clusters,
            "n_noise": self.n_noise,
            "k_selection": self.k_selection.as_dict() if self.k_selection else None,
            "selection": self.selection.as_dict() if self.selection else None,
            "metrics": self.metrics,
            "label_free": self.label_free,
            "label_free_rows": self.label_free_rows,
            "stats": estimator_stats(self.estimator),
            "timings": self.timings,
            "warnings": list(self.warnings),
        }

    def record(self, command: str = "cluster", **fields):
        """A :class:`~deepclust.record.RunRecord` of this run; ``fields`` (argv, seed,
        input, k_requested, noise, started, finished, ...) are set on it as given."""
        from deepclust.record import RunRecord

        inp = None
        if self.input is not None:
            inp = {"source": self.input.source, "n_samples": self.input.n,
                   "n_features": self.input.d, "has_labels": self.input.has_labels,
                   "labels_path": self.input.labels_path, "streamed": self.streamed,
                   "out_of_core": self.streamed}
        given_input = fields.pop("input", None)
        if given_input is not None:
            inp = {**given_input, **(inp or {})}
        return RunRecord(command=command, input=inp, proxy_umap=PROXY_UMAP,
                         **self.as_dict(), **fields)


@dataclass
class AutoChoice:
    """What ``method="auto"`` chose and on which rows."""

    selection: Selection
    sample: ScoringSample
    sample_rows: RowSample


def _choose_pipeline(data: RunInput, k, reducer, k_values, criterion: str, random_state: int,
                     auto_rows: int | None, progress: bool) -> AutoChoice:
    """Fit the ``--method auto`` candidates on a seeded sample of ``data`` and pick one."""
    from deepclust.selection.criteria import check_criterion

    if isinstance(k, str) and k != "auto":
        raise InputError(f"k must be an integer or 'auto', got {k!r}")
    check_criterion(criterion)
    if auto_rows is not None:
        auto_rows = check_positive_int(auto_rows, "auto_rows")
    rows = sample_rows(data.n, auto_rows, random_state)
    with spinner(f"reading a sample of {len(rows)} of {data.n} rows for --method auto"
                 if rows is not None and data.X is None else None, enabled=progress):
        Xs = (data.X if rows is None else data.X[rows]) if data.X is not None else \
            data.rows.take(np.arange(data.n) if rows is None else rows)
    Xs = check_features(Xs, name="features", dtype=np.float32)  # names overflow, never inf
    ys = None if data.y is None else (data.y if rows is None else data.y[rows])
    if k is not None and k != "auto":
        k = check_n_clusters(k, data.n, name="k")
    ks = [int(k)] if isinstance(k, (int, np.integer)) else list(k_values)
    reducers = None if reducer is None else (describe_reducer(parse_reducer_spec(reducer)),)
    kw = {} if reducers is None else {"reducers": tuple("" if r == "raw" else r
                                                        for r in reducers)}
    big = data.X is None and data.n * data.d * 4 > AUTO_LOAD_BYTES
    if big:  # keep the input streamed: no reducer, only methods that read rows block by block
        kw = {"reducers": ("",), "methods": tuple(
            m for m in AUTO_METHODS if get_clusterer_class(m[0]).streams_rows)}
    cands, skipped = default_candidates(ks, data.n, data.d, fit_rows=len(Xs), **kw)
    if big:
        skipped.append({"reason": f"the input ({data.n * data.d * 4 / 2**30:.1f} GiB as "
                                  "float32) is streamed, not loaded: only methods that read "
                                  "it block by block, without a reducer, are tried"})
    sample = ScoringSample(Xs, random_state=random_state, y=ys)
    selection = select(sample, cands, criterion=criterion, of_rows=data.n,
                       random_state=random_state, progress=progress, skipped=skipped)
    return AutoChoice(selection, sample, RowSample(rows, Xs))


def edge_warning(selection: KSelection) -> str | None:
    """A warning when a k sweep chose the smallest or largest k it tried (the best k may lie
    outside the range), else None."""
    ks = [c["k"] for c in selection.curve]
    if len(ks) < 2 or selection.best_k not in (min(ks), max(ks)):
        return None
    side = "smallest" if selection.best_k == min(ks) else "largest"
    return (f"--k auto chose k={selection.best_k}, the {side} k of the range {min(ks)}:{max(ks)}; "
            f"the best k may lie outside it: widen --k-range")


def run_clustering(
    X,
    y=None,
    *,
    method: str = "kmeans",
    k: int | str | None = None,
    reducer=None,
    params: dict | None = None,
    random_state: int = 0,
    k_values=range(2, 21),
    criterion: str = DEFAULT_CRITERION,
    label_free: bool = True,
    proxy_embedding: np.ndarray | None = None,
    reduced: np.ndarray | None = None,
    noise: str = "cluster",
    progress: bool = False,
    label_column: str | None = None,
    label_free_rows: int | None = LABEL_FREE_ROWS,
    id_column: str | None = None,
    selection_rows: int | None = SELECTION_ROWS,
    auto_rows: int | None = AUTO_ROWS,
) -> ClusteringResult:
    """Reduce, cluster and score ``X``.

    Parameters
    ----------
    X : array, path, FeatureSet, EmbeddingStore or RowSource
        Features (embeddings or pixels): see :func:`open_input`. A store, memory map or
        row source is streamed, never loaded, when the method's ``streams_rows`` is True,
        ``reducer`` is empty and ``k`` is not ``"auto"``; otherwise it is read into memory.
    y : array or path, optional
        True labels (-1 = unknown), or a labels file; default: the input's own labels.
        When there are labels, ``metrics`` holds ACC/NMI/AMI/ARI/...
    method : str
        A registered clusterer (see :func:`deepclust.cluster.available_methods`), or
        ``"auto"``: reducer, method and k chosen without labels among
        :func:`deepclust.selection.default_candidates` (only ``reducer`` when given, only
        ``k`` when an integer), fitted on a seeded sample of at most ``auto_rows`` rows and
        scored by ``criterion``; every candidate and the pick are in ``selection``.
    k : int, "auto" or None
        Number of clusters; ``"auto"`` sweeps ``k_values`` and keeps the best by the label-free
        ``criterion``; None for methods that find k themselves. Never taken from ``y``.
    reducer : str or list, optional
        Reduction chain, e.g. ``"zscore,pca:0.9,umap:50"``.
    params : dict, optional
        Extra parameters of the clusterer.
    label_free : bool
        Compute the label-free scores (silhouette, UMAP-silhouette, DB, CH).
    proxy_embedding : array, optional
        The UMAP space for the proxy, shared across runs to make them comparable; default:
        the pipeline's own output when it ends in UMAP, else :func:`deepclust.metrics.proxy_space` of the rows
        scored.
    reduced : array, optional
        ``X`` already passed through ``reducer`` (reuse across methods); skips reduction.
    noise : {"cluster", "singletons", "exclude"}
        How noise points (-1) are scored; see :mod:`deepclust.metrics`.
    label_column, id_column : str, optional
        Where the labels (ids) are in a table or a store (see :func:`open_input`).
    label_free_rows : int or None
        Label-free scores on a seeded sample of this many rows when there are more (None:
        every row, only when the rows are in memory). A streamed input is always sampled.
        When ``k="auto"`` sampled its sweep (``selection_rows``), the scores are computed on
        the sweep's sample instead.
    selection_rows : int or None
        ``k="auto"`` sweeps k on a seeded sample of this many rows when there are more (the
        sample's size is ``k_selection.rows``), then fits the chosen k on every row; None:
        the sweep fits every row for every k.
    """
    from deepclust import metrics as M

    timings: dict[str, float] = {}
    warnings: list[str] = []

    def stage(text: str):
        return spinner(text, enabled=progress)

    t = time.perf_counter()
    data = open_input(X, y, label_column=label_column, id_column=id_column)
    params = check_clusterer_params(params)
    auto = None
    t_open = time.perf_counter() - t
    if method == "auto":
        if params:
            raise InputError("--method auto chooses the method and its parameters; give "
                             "--param only with a named --method")
        auto = _choose_pipeline(data, k, reducer, k_values, criterion, random_state,
                                auto_rows, progress)
        best = auto.selection.best
        method, k, reducer = best["method"], best["k"], best["reducer"]
        params = dict(best["params"])
        warnings.extend(auto.selection.warnings)
        timings["select_s"] = time.perf_counter() - t - t_open  # the sample read and the choice
        t = time.perf_counter() - t_open  # load_s counts the rest of the loading only
        if (reduced is None and auto.sample_rows.rows is None and reducer == UMAP_REDUCER
                and auto.sample.proxy is not None):
            reduced = auto.sample.proxy  # every row was in the sample: its UMAP is this one
    cls = get_clusterer_class(method)
    thresholded = params.get("distance_threshold") is not None  # agglomerative without k
    if thresholded and k is not None:
        raise InputError(f"give either k or distance_threshold to {method}, not both")
    if thresholded:
        params["n_clusters"] = None
    if cls.takes_n_clusters and k is None and not thresholded:
        raise InputError(
            f"{method} needs a number of clusters: give k (an integer) or k='auto' to choose it "
            "without labels"
        )
    if not cls.takes_n_clusters and k is not None:
        raise InputError(f"{method} finds the number of clusters itself; do not give k")
    if isinstance(k, str) and k != "auto":
        raise InputError(f"k must be an integer or 'auto', got {k!r}")
    steps = parse_reducer_spec(reducer)
    if selection_rows is not None:
        selection_rows = check_positive_int(selection_rows, "selection_rows")
    sel_rows = sample_rows(data.n, selection_rows, random_state) if k == "auto" else None
    with warnings_module.catch_warnings(record=True) as caught:  # before any row is read
        warnings_module.simplefilter("always", CostWarning)
        check_cost(cls, params, data.n, _method_dims(data.d, steps, reduced), k=k)
    for w in caught:  # said now (the CLI prints it at once) and kept in run.json
        warnings.append(str(w.message))
        warnings_module.warn(w.message, stacklevel=2)
    streamed = (data.X is None and cls.streams_rows and not steps and reduced is None
                and (k != "auto" or sel_rows is not None))
    if data.X is None and not streamed:
        with stage(f"reading {data.rows.description} into memory"):
            data.load()
    timings["load_s"] = time.perf_counter() - t
    X = data.X
    y = data.y

    t = time.perf_counter()
    if streamed:
        Z = data.rows
    elif reduced is None:
        pipe = build_reducer(steps, random_state=random_state)
        with stage(f"reducing {X.shape[0]} x {X.shape[1]} with {describe_reducer(steps)}"
                   if steps else None):
            Z = X if pipe is None else np.ascontiguousarray(pipe.fit_transform(X),
                                                            dtype=np.float32)
    else:
        Z = check_features(reduced, name="reduced features")
        if len(Z) != len(X):
            raise InputError("reduced features and features differ in length")
    timings["reduce_s"] = time.perf_counter() - t
    if proxy_embedding is None and steps and steps[-1][0] == "umap":
        proxy_embedding = Z

    selection = None
    sel_sample, sel_proxy = None, None  # the sweep's sample and its proxy space
    if k == "auto":
        t = time.perf_counter()
        if sel_rows is None:
            Xsel, Zsel, ysel, proxy_sel = X, Z, y, proxy_embedding
        else:
            with stage(f"reading a sample of {len(sel_rows)} of {data.n} rows for --k auto"
                       if streamed else None):
                Xsel = data.rows.take(sel_rows) if streamed else X[sel_rows]
            Zsel = Xsel if streamed else Z[sel_rows]
            ysel = None if y is None else y[sel_rows]
            proxy_sel = (None if proxy_embedding is None
                         else np.asarray(proxy_embedding)[sel_rows])
        if criterion == "umap_silhouette" and proxy_sel is None:
            with stage("computing the UMAP space of the label-free proxy"
                       + (f" on {len(sel_rows)} sampled rows" if sel_rows is not None else "")):
                proxy_sel = proxy_space(Xsel, random_state=random_state)
        scoring = ScoringSample(np.asarray(Xsel, dtype=np.float32), random_state=random_state,
                                proxy=proxy_sel, y=ysel)
        selection = select_k(Zsel, method, k_values, criterion=criterion, y_true=ysel,
                             params=params, random_state=random_state, progress=progress,
                             sample=scoring)
        proxy_sel = scoring.proxy
        selection.of_rows = data.n
        if sel_rows is None:
            proxy_embedding = proxy_sel
        else:
            sel_sample, sel_proxy = RowSample(sel_rows, Xsel), proxy_sel
        timings["select_k_s"] = time.perf_counter() - t
        k = selection.best_k
        warning = edge_warning(selection)
        if warning:
            warnings.append(warning)

    if auto is not None:  # score the rows the choice was made on, in its proxy space
        sel_sample = auto.sample_rows
        sel_proxy = auto.sample.proxy
        if sel_sample.rows is None and proxy_embedding is None:
            proxy_embedding = sel_proxy
    if k is not None:
        params["n_clusters"] = k
    model = make_clusterer(method, random_state=random_state, **params)
    t = time.perf_counter()
    with stage(f"clustering with {method}" + (f", k={k}" if k is not None else "")
               + (f", streaming {data.rows.description}" if streamed else "")):
        labels = np.asarray(model.fit_predict(Z), dtype=np.int64)
    timings["cluster_s"] = time.perf_counter() - t

    found = labels[labels >= 0]
    result = ClusteringResult(
        labels=labels, method=method,
        params={kk: v for kk, v in model.get_params().items()},
        reducer=describe_reducer(steps), n_clusters=int(len(np.unique(found))),
        n_noise=int(np.count_nonzero(labels < 0)), k_selection=selection,
        selection=None if auto is None else auto.selection, estimator=model,
        reduced_shape=(data.n, data.d) if streamed else tuple(Z.shape), streamed=streamed,
        input=data, clustered=Z, warnings=warnings,
    )
    t = time.perf_counter()
    if y is not None and np.any(y >= 0):
        result.metrics = M.evaluate(y, labels, noise=noise)
    timings["evaluate_s"] = time.perf_counter() - t
    if label_free:
        t = time.perf_counter()
        rows = sample_rows(data.n, label_free_rows if label_free_rows is not None or not streamed
                           else LABEL_FREE_ROWS, random_state)
        reuse = sel_sample is not None and (sel_sample.rows is not None or auto is not None)
        if reuse:  # k (or the pipeline) was chosen on a sample: score those rows
            rows = sel_sample.rows
        if reuse:  # the choice's sample: its rows are read (and maybe its proxy space built)
            result.sample = sel_sample if sel_sample.rows is not None else None
            Xs = sel_sample.X
            if proxy_embedding is None:
                proxy_embedding = sel_proxy
        elif streamed:
            with stage(f"reading {data.n if rows is None else len(rows)} rows for the "
                       "label-free scores"):
                result.sample = RowSample(rows, data.rows.take(np.arange(data.n) if rows is None
                                                               else rows))
            Xs = result.sample.X
        elif rows is not None:
            result.sample = RowSample(rows, X[rows])
            Xs = result.sample.X
        else:
            Xs = X
        if proxy_embedding is not None and rows is not None and not (
                reuse and proxy_embedding is sel_proxy):
            proxy_embedding = np.asarray(proxy_embedding)[rows]
        if proxy_embedding is None:
            with stage("computing the UMAP space of the label-free proxy"):
                proxy_embedding = proxy_space(Xs, random_state=random_state)
        # "silhouette" etc. in the original feature space; "umap_silhouette" in the proxy space.
        with stage("label-free scores"):
            result.label_free = M.label_free(Xs, labels if rows is None else labels[rows],
                                             umap_embedding=proxy_embedding,
                                             random_state=random_state)
        result.label_free_rows = len(Xs)
        timings["label_free_s"] = time.perf_counter() - t
    result.timings = timings
    return result
