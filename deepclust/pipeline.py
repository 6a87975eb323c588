"""One clustering run: features -> reduce -> cluster -> score.

:func:`run_clustering` is what the CLI's ``cluster`` command and the demo call; each stage is
also usable alone (:mod:`deepclust.reduce`, :mod:`deepclust.cluster`, :mod:`deepclust.metrics`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepclust.cluster import get_clusterer_class, make_clusterer
from deepclust.errors import InputError
from deepclust.metrics.proxy import proxy_space
from deepclust.reduce import build_reducer, describe_reducer, parse_reducer_spec
from deepclust.selection import KSelection, check_clusterer_params, select_k
from deepclust.validation import check_features, check_labels


@dataclass
class ClusteringResult:
    """Everything one run produced; ``as_dict`` is what goes into run.json."""

    labels: np.ndarray
    method: str
    params: dict
    reducer: str
    n_clusters: int
    n_noise: int
    timings: dict = field(default_factory=dict)
    metrics: dict | None = None
    label_free: dict | None = None
    k_selection: KSelection | None = None
    estimator: Any = None
    reduced_shape: tuple | None = None

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "params": self.params,
            "reducer": self.reducer,
            "reduced_shape": list(self.reduced_shape) if self.reduced_shape else None,
            "n_clusters": self.n_clusters,
            "n_noise": self.n_noise,
            "k_selection": self.k_selection.as_dict() if self.k_selection else None,
            "metrics": self.metrics,
            "label_free": self.label_free,
            "timings": self.timings,
        }


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
    criterion: str = "umap_silhouette",
    label_free: bool = True,
    proxy_embedding: np.ndarray | None = None,
    reduced: np.ndarray | None = None,
    noise: str = "cluster",
    progress: bool = False,
) -> ClusteringResult:
    """Reduce, cluster and score ``X``.

    Parameters
    ----------
    X : array (n_samples, n_features)
        Features (embeddings or pixels).
    y : array (n_samples,), optional
        True labels (-1 = unknown); when given, ``metrics`` holds ACC/NMI/AMI/ARI/...
    method : str
        A registered clusterer (see :func:`deepclust.cluster.available_methods`).
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
        the pipeline's own output when it ends in UMAP, else
        :func:`deepclust.metrics.proxy_space` of ``X``.
    reduced : array, optional
        ``X`` already passed through ``reducer`` (reuse across methods); skips reduction.
    noise : {"cluster", "singletons", "exclude"}
        How noise points (-1) are scored; see :mod:`deepclust.metrics`.
    """
    from deepclust import metrics as M

    timings: dict[str, float] = {}

    def stage(text: str) -> None:
        if progress:
            import sys

            print(f"  {text} ...", file=sys.stderr, flush=True)

    X = check_features(X, name="features")
    y = None if y is None else check_labels(y, len(X))
    params = check_clusterer_params(params)
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
    steps = parse_reducer_spec(reducer)

    t = time.perf_counter()
    if reduced is None:
        if steps:
            stage(f"reducing {X.shape[0]} x {X.shape[1]} with {describe_reducer(steps)}")
        pipe = build_reducer(steps, random_state=random_state)
        Z = X if pipe is None else np.ascontiguousarray(pipe.fit_transform(X), dtype=np.float32)
    else:
        Z = check_features(reduced, name="reduced features")
        if len(Z) != len(X):
            raise InputError("reduced features and features differ in length")
    timings["reduce_s"] = time.perf_counter() - t
    if proxy_embedding is None and steps and steps[-1][0] == "umap":
        proxy_embedding = Z

    selection = None
    if isinstance(k, str):
        if k != "auto":
            raise InputError(f"k must be an integer or 'auto', got {k!r}")
        t = time.perf_counter()
        if criterion == "umap_silhouette" and proxy_embedding is None:
            stage("computing the UMAP space of the label-free proxy")
            proxy_embedding = proxy_space(X, random_state=random_state)
        selection = select_k(Z, method, k_values, criterion=criterion,
                             proxy_embedding=proxy_embedding, y_true=y, params=params,
                             random_state=random_state, progress=progress)
        timings["select_k_s"] = time.perf_counter() - t
        k = selection.best_k

    if k is not None:
        params["n_clusters"] = k
    model = make_clusterer(method, random_state=random_state, **params)
    stage(f"clustering with {method}" + (f", k={k}" if k is not None else ""))
    t = time.perf_counter()
    labels = np.asarray(model.fit_predict(Z), dtype=np.int64)
    timings["cluster_s"] = time.perf_counter() - t

    found = labels[labels >= 0]
    result = ClusteringResult(
        labels=labels, method=method,
        params={kk: v for kk, v in model.get_params().items()},
        reducer=describe_reducer(steps), n_clusters=int(len(np.unique(found))),
        n_noise=int(np.count_nonzero(labels < 0)), k_selection=selection, estimator=model,
        reduced_shape=tuple(Z.shape),
    )
    t = time.perf_counter()
    if y is not None and np.any(y >= 0):
        result.metrics = M.evaluate(y, labels, noise=noise)
    timings["evaluate_s"] = time.perf_counter() - t
    if label_free:
        t = time.perf_counter()
        if proxy_embedding is None:
            stage("computing the UMAP space of the label-free proxy")
            proxy_embedding = proxy_space(X, random_state=random_state)
        stage("label-free scores")
        # "silhouette" etc. in the original feature space; "umap_silhouette" in the proxy space.
        result.label_free = M.label_free(X, labels, umap_embedding=proxy_embedding,
                                         random_state=random_state)
        timings["label_free_s"] = time.perf_counter() - t
    result.timings = timings
    return result
