"""Tests of deepclust.pipeline.run_clustering: reduce -> cluster -> score."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

import deepclust.pipeline as pipeline
from deepclust.cluster import available_methods, get_clusterer_class
from deepclust.errors import InputError
from deepclust.metrics import proxy_space, silhouette
from deepclust.pipeline import ClusteringResult, run_clustering
from deepclust.runinfo import to_json

METRIC_KEYS = {"acc", "nmi", "ami", "ari", "purity", "homogeneity", "completeness"}
LABEL_FREE_KEYS = {"silhouette", "umap_silhouette", "davies_bouldin", "calinski_harabasz"}


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=200, centers=4, n_features=8, cluster_std=0.8,
                      center_box=(-12, 12), random_state=2)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def proxy(blobs):
    """A stand-in for the UMAP proxy space (UMAP itself is tested once, below)."""
    X, _ = blobs
    return X[:, :3].copy()


@pytest.fixture(scope="module")
def result(blobs, proxy):
    X, y = blobs
    return run_clustering(X, y, method="kmeans", k=4, proxy_embedding=proxy, random_state=0)


def test_metrics_when_labels_are_given(result, blobs):
    _, y = blobs
    assert isinstance(result, ClusteringResult)
    assert METRIC_KEYS <= set(result.metrics)
    assert result.metrics["ari"] > 0.95 and result.metrics["acc"] > 0.95
    assert result.metrics["n_samples"] == 200 and result.metrics["noise"] == "cluster"
    assert result.labels.shape == y.shape and result.labels.dtype == np.int64
    assert result.n_clusters == 4 and result.n_noise == 0


def test_label_free_scores(result, blobs, proxy):
    X, _ = blobs
    assert LABEL_FREE_KEYS <= set(result.label_free)
    lf = result.label_free
    assert all(np.isfinite(lf[k]) for k in LABEL_FREE_KEYS)
    assert lf["silhouette"] == pytest.approx(silhouette(X, result.labels, random_state=0))
    # the UMAP silhouette is measured in the proxy space that was passed in
    assert lf["umap_silhouette"] == pytest.approx(silhouette(proxy, result.labels, random_state=0))


def test_timings_and_record(result):
    assert {"reduce_s", "cluster_s", "evaluate_s", "label_free_s"} <= set(result.timings)
    assert all(v >= 0 for v in result.timings.values())
    d = result.as_dict()
    assert d["method"] == "kmeans" and d["reducer"] == "raw" and d["reduced_shape"] == [200, 8]
    assert d["params"]["n_clusters"] == 4 and d["params"]["random_state"] == 0
    assert d["k_selection"] is None
    assert json.loads(to_json(d))["metrics"]["ari"] == pytest.approx(result.metrics["ari"])


def test_no_labels_no_metrics(blobs, proxy):
    X, y = blobs
    assert run_clustering(X, method="kmeans", k=4, proxy_embedding=proxy).metrics is None
    res = run_clustering(X, np.full_like(y, -1), method="kmeans", k=4, label_free=False)
    assert res.metrics is None and res.label_free is None
    assert "label_free_s" not in res.timings


def test_labels_of_the_wrong_length(blobs):
    X, y = blobs
    with pytest.raises(InputError, match="199 entries but there are 200 samples"):
        run_clustering(X, y[:-1], method="kmeans", k=4, label_free=False)


@pytest.mark.parametrize(
    "name", [m for m in sorted(available_methods()) if get_clusterer_class(m).takes_n_clusters]
)
def test_k_is_never_taken_from_the_labels(blobs, name):
    X, y = blobs
    with pytest.raises(InputError, match=f"{name} needs a number of clusters.*k='auto'"):
        run_clustering(X, y, method=name, label_free=False)


@pytest.mark.parametrize(
    "name, params", [("hdbscan", {}), ("affinity-propagation", {"damping": 0.9})]
)
def test_methods_that_find_k_refuse_one(blobs, name, params):
    X, y = blobs
    with pytest.raises(InputError, match="finds the number of clusters itself; do not give k"):
        run_clustering(X, y, method=name, k=4, label_free=False)
    res = run_clustering(X, y, method=name, params=params, label_free=False)
    assert res.n_clusters == 4 and res.metrics["ari"] > 0.9


def test_bad_k_and_method(blobs):
    X, _ = blobs
    with pytest.raises(InputError, match="k must be an integer or 'auto', got 'four'"):
        run_clustering(X, method="kmeans", k="four", label_free=False)
    with pytest.raises(InputError, match="n_clusters=500 is larger than the number of samples"):
        run_clustering(X, method="kmeans", k=500, label_free=False)
    with pytest.raises(InputError, match="unknown clustering method 'kmodes'"):
        run_clustering(X, method="kmodes", k=4, label_free=False)


@pytest.mark.parametrize("param", ["n_clusters", "random_state"])
def test_params_may_not_set_k_or_the_seed(blobs, param):
    X, _ = blobs
    with pytest.raises(InputError, match=f"do not pass {param}.*k \\(--k\\).*--seed"):
        run_clustering(X, method="kmeans", k=4, params={param: 3}, label_free=False)


def test_k_auto_selects_without_labels(blobs, proxy):
    X, y = blobs
    res = run_clustering(X, y, method="agglomerative", k="auto", k_values=range(2, 7),
                         criterion="silhouette", proxy_embedding=proxy, random_state=0)
    sel = res.k_selection
    assert sel is not None and sel.best_k == 4 and not sel.oracle
    assert [c["k"] for c in sel.curve] == [2, 3, 4, 5, 6]
    assert res.n_clusters == 4 and res.params["n_clusters"] == 4
    assert "select_k_s" in res.timings
    assert res.as_dict()["k_selection"]["best_k"] == 4


def test_reducer_chain_and_params(blobs, proxy):
    X, y = blobs
    res = run_clustering(X, y, method="gmm", k=4, reducer="zscore,pca:3",
                         params={"covariance_type": "full"}, proxy_embedding=proxy)
    assert res.reducer == "zscore,pca:3" and res.reduced_shape == (200, 3)
    assert res.params["covariance_type"] == "full"
    assert res.metrics["ari"] > 0.9
    assert res.estimator.cluster_centers_.shape == (4, 3)


def test_reduced_features_are_reused(blobs, proxy):
    X, y = blobs
    Z = np.c_[y, np.zeros(len(y))].astype(np.float32)  # a "reduction" that is the classes
    res = run_clustering(X, y, method="kmeans", k=4, reducer="pca:2", reduced=Z,
                         proxy_embedding=proxy)
    assert res.metrics["ari"] == 1.0 and res.reduced_shape == (200, 2)
    with pytest.raises(InputError, match="differ in length"):
        run_clustering(X, y, method="kmeans", k=4, reduced=Z[:-1], label_free=False)


def test_noise_rule_reaches_the_metrics(blobs):
    X, y = blobs
    far = np.full((3, 8), 200.0, dtype=np.float32) + np.arange(3)[:, None] * 50
    Xn, yn = np.r_[X, far], np.r_[y, [0, 1, 2]]
    res = run_clustering(Xn, yn, method="hdbscan", params={"min_cluster_size": 10},
                         noise="exclude", label_free=False)
    assert res.n_noise >= 3 and (res.labels[-3:] == -1).all()
    assert res.metrics["noise"] == "exclude" and res.metrics["coverage"] < 1.0


def test_umap_pipeline_uses_its_own_output_as_the_proxy(blobs, monkeypatch):
    X, y = blobs

    def no_proxy(*args, **kwargs):
        raise AssertionError("the pipeline's UMAP output is the proxy space")

    monkeypatch.setattr(pipeline, "proxy_space", no_proxy)
    res = run_clustering(X, y, method="kmeans", k="auto", k_values=[3, 4, 5],
                         reducer="pca:5,umap:5:n_epochs=100", random_state=0)
    assert res.reduced_shape == (200, 5) and res.reducer.endswith("umap:5:n_epochs=100")
    assert res.k_selection.best_k == 4
    assert res.metrics["ari"] > 0.9
    assert res.label_free["umap_silhouette"] > 0.5


def test_proxy_space_shape():
    X = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    Z = proxy_space(X, random_state=0)
    assert Z.shape == (20, 17)  # at most n - 3 dimensions on tiny inputs
    assert np.isfinite(Z).all()


def test_agglomerative_without_k_by_distance_threshold():
    X, y = make_blobs(n_samples=120, centers=3, cluster_std=0.3, random_state=0)
    res = run_clustering(X, y, method="agglomerative", params={"distance_threshold": 5.0},
                         label_free=False)
    assert res.n_clusters == 3
    assert res.metrics["ari"] > 0.95
    with pytest.raises(InputError, match="not both"):
        run_clustering(X, y, method="agglomerative", k=3,
                       params={"distance_threshold": 5.0}, label_free=False)


# --------------------------------------------------------------------------- one road


@pytest.fixture()
def store(blobs, tmp_path):
    from deepclust.store import write_array_store

    X, y = blobs
    return write_array_store(tmp_path / "store", X, n=len(X), dim=X.shape[1], shard_size=64,
                             dtype="float32", labels=y)


def _no_loading(monkeypatch):
    from deepclust.store import EmbeddingStore

    def loaded(self):
        raise AssertionError("the store was loaded whole")

    monkeypatch.setattr(EmbeddingStore, "X", property(loaded))
    monkeypatch.setattr(EmbeddingStore, "as_feature_set", loaded)


def test_streaming_methods_say_so():
    streaming = {name for name in available_methods() if get_clusterer_class(name).streams_rows}
    assert streaming == {"kmeans", "minibatch-kmeans"}


def test_a_store_streams_and_scores_a_sample_read_with_take(store, blobs, monkeypatch):
    from deepclust.data.rows import StoreRows

    X, y = blobs
    _no_loading(monkeypatch)
    taken = []
    real_take = StoreRows.take

    def take(self, rows):
        taken.append(np.asarray(rows).copy())
        return real_take(self, rows)

    monkeypatch.setattr(StoreRows, "take", take)
    res = run_clustering(store.path, method="kmeans", k=4, random_state=1, label_free_rows=120,
                         params={"precision": "fp32"})
    assert res.streamed and res.input.X is None
    ref = run_clustering(X, y, method="kmeans", k=4, random_state=1, label_free=False,
                         params={"precision": "fp32"})
    assert np.array_equal(res.labels, ref.labels)  # same rows, same blocks, same result
    assert res.metrics["ari"] == pytest.approx(ref.metrics["ari"])  # the store's labels
    assert res.label_free_rows == 120 and res.sample.rows.size == 120
    assert np.array_equal(taken[-1], res.sample.rows)
    assert np.all(np.diff(res.sample.rows) > 0)
    np.testing.assert_array_equal(res.sample.X, X[res.sample.rows])
    assert res.as_dict()["label_free_rows"] == 120


def test_a_store_is_loaded_for_a_reducer_or_a_method_that_does_not_stream(store, blobs):
    X, y = blobs
    res = run_clustering(store.path, method="agglomerative", k=4, label_free=False)
    assert not res.streamed and res.input.X is not None and res.metrics["ari"] > 0.95
    res = run_clustering(store, method="kmeans", k=4, reducer="pca:3", label_free=False)
    assert not res.streamed and res.reduced_shape == (200, 3)


def test_in_memory_label_free_is_sampled_beyond_the_threshold(blobs, proxy):
    X, y = blobs
    res = run_clustering(X, y, method="kmeans", k=4, proxy_embedding=proxy,
                         label_free_rows=150)
    assert res.label_free_rows == 150 and res.label_free["n_samples"] == 150
    full = run_clustering(X, y, method="kmeans", k=4, proxy_embedding=proxy)
    assert full.label_free_rows == 200 and full.sample is None


def test_labels_file_and_row_source_inputs(blobs, tmp_path):
    from deepclust.data.rows import ArrayRows

    X, y = blobs
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "x.npy", X)
    rows = ArrayRows(np.load(tmp_path / "x.npy", mmap_mode="r"))
    res = run_clustering(rows, tmp_path / "y.npy", method="kmeans", k=4, label_free=False)
    assert res.streamed and res.input.labels_path == str(tmp_path / "y.npy")
    assert res.metrics["ari"] > 0.95
