"""Tests of deepclust.reduce: z-score, PCA, whitening, L2, UMAP and reducer chains."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from deepclust.errors import InputError
from deepclust.reduce import (
    SPECTRAL_INIT_MAX_COMPONENTS,
    PCAReducer,
    UMAPReducer,
    build_reducer,
    describe_reducer,
    exact_neighbours,
    parse_reducer_spec,
    reduce,
)


@pytest.fixture(scope="module")
def X():
    """200 x 20 with decaying variances and correlated columns (so PCA has work to do)."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(200, 20)) * np.geomspace(5.0, 0.05, 20)
    mix = np.linalg.qr(rng.normal(size=(20, 20)))[0]
    return (latent @ mix + 3.0).astype(np.float32)


@pytest.fixture(scope="module")
def blobs():
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=240, centers=4, n_features=12, cluster_std=0.6, random_state=3)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def umap_twice(blobs):
    """The same UMAP run twice with one seed (shared: UMAP is the slow part of this file)."""
    X, _ = blobs
    return [reduce(X, "umap:5", random_state=7) for _ in range(2)]


# ----------------------------------------------------------------------------- simple steps


def test_zscore_gives_zero_mean_unit_variance(X):
    Z = reduce(X, "zscore")
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, atol=1e-4)


def test_l2_gives_unit_rows(X):
    Z = reduce(X, "l2")
    assert Z.shape == X.shape
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)


def test_pca_by_dimensions_keeps_the_top_variance_directions(X):
    Z = reduce(X, "pca:5")
    assert Z.shape == (200, 5) and Z.dtype == np.float32
    var = Z.var(axis=0, ddof=1)
    eig = np.sort(np.linalg.eigvalsh(np.cov(X.astype(np.float64), rowvar=False)))[::-1]
    np.testing.assert_allclose(var, eig[:5], rtol=1e-3)
    # components are uncorrelated
    corr = np.corrcoef(Z, rowvar=False)
    np.testing.assert_allclose(corr - np.diag(np.diag(corr)), 0.0, atol=1e-3)


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_pca_by_variance_fraction_keeps_the_fewest_components_that_reach_it(X, fraction):
    pca = PCAReducer(fraction).fit(X)
    m = pca.n_components_
    eig = np.sort(np.linalg.eigvalsh(np.cov(X.astype(np.float64), rowvar=False)))[::-1]
    kept = np.cumsum(eig) / eig.sum()
    assert kept[m - 1] >= fraction
    assert m == 1 or kept[m - 2] < fraction  # one component fewer would fall short
    assert pca.transform(X).shape == (200, m)
    assert reduce(X, f"pca:{fraction}").shape == (200, m)


def test_pca_whiten_gives_unit_variance_outputs(X):
    Z = reduce(X, "pca:6:whiten")
    assert Z.shape == (200, 6)
    np.testing.assert_allclose(Z.var(axis=0, ddof=1), 1.0, rtol=1e-3)
    Zf = reduce(X, "pca:0.9:whiten")
    np.testing.assert_allclose(Zf.var(axis=0, ddof=1), 1.0, rtol=1e-3)


def test_pca_transforms_new_rows_with_the_fitted_axes(X):
    pca = PCAReducer(4, random_state=0).fit(X[:150])
    np.testing.assert_allclose(pca.transform(X[150:]), pca.fit(X[:150]).transform(X[150:]))
    assert pca.transform(X[150:].astype(np.float64)).dtype == np.float64


def test_no_reduction_returns_the_features(X):
    for spec in (None, "", "raw", "none", []):
        assert build_reducer(spec) is None
        np.testing.assert_array_equal(reduce(X, spec), X)


# ----------------------------------------------------------------------------- UMAP


def test_umap_shape_and_reproducible_with_a_seed(umap_twice, blobs):
    a, b = umap_twice
    assert a.shape == (240, 5) and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


def test_umap_keeps_easy_blobs_apart(umap_twice, blobs):
    from deepclust.cluster import KMeans
    from deepclust.metrics import ari

    _, y = blobs
    labels = KMeans(4, n_init=3, random_state=0).fit_predict(umap_twice[0])
    assert ari(y, labels) > 0.9


def test_umap_init_choice():
    def init(nc, n=1000, d=64, choice="auto"):
        return UMAPReducer(nc, init=choice)._init_for(n, d)

    assert init(2) == "spectral"
    assert init(SPECTRAL_INIT_MAX_COMPONENTS) == "spectral"
    assert init(50) == "pca"  # spectral layout of 51 eigenvectors is the slow part
    assert init(50, d=20) == "random"  # PCA cannot give more dimensions than the input has
    assert init(8, n=10) == "pca"  # spectral needs n_components < n_samples - 1
    assert init(8, n=10, d=3) == "random"
    assert init(50, choice="spectral") == "spectral"
    assert init(50, d=20, choice="pca") == "random"
    with pytest.raises(InputError, match="init must be"):
        init(5, choice="tsne")


def test_umap_works_on_tiny_inputs():
    X = np.random.default_rng(0).normal(size=(8, 3))
    Z = reduce(X, "umap:6", random_state=0)  # n_neighbors and init are adapted
    assert Z.shape == (8, 6) and np.isfinite(Z).all()
    with pytest.raises(InputError, match="at least 4 samples"):
        reduce(X[:3], "umap:2", random_state=0)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan"])
def test_exact_neighbours_match_a_full_sort(blobs, metric):
    from sklearn.metrics import pairwise_distances

    X, _ = blobs
    idx, dist = exact_neighbours(X, 10, metric)
    assert idx.shape == dist.shape == (240, 10) and idx.dtype == np.int32
    np.testing.assert_array_equal(idx[:, 0], np.arange(240))  # itself first, as umap expects
    assert (dist[:, 0] == 0).all() and (np.diff(dist, axis=1) >= 0).all()
    D = pairwise_distances(X.astype(np.float64), metric=metric)
    np.fill_diagonal(D, -1.0)
    np.testing.assert_allclose(dist[:, 1:], np.sort(D, axis=1)[:, 1:10], rtol=1e-4, atol=1e-5)


def test_umap_exact_knn_builds_umaps_own_graph(blobs):
    # below 4 096 rows umap-learn computes exact neighbours itself: the graph must not change
    X, _ = blobs
    fast = UMAPReducer(5, n_neighbors=15, n_epochs=10, random_state=0).fit(X)
    own = UMAPReducer(5, n_neighbors=15, n_epochs=10, random_state=0, exact_knn=False).fit(X)
    assert fast.exact_knn_ and not own.exact_knn_
    g, h = fast.umap_.graph_, own.umap_.graph_
    assert g.shape == h.shape == (240, 240) and g.nnz == h.nnz > 240 * 15
    np.testing.assert_array_equal(g.indices, h.indices)
    np.testing.assert_allclose(g.toarray(), h.toarray(), atol=1e-5)


def test_umap_transform_after_an_exact_knn_fit_is_refused_clearly(blobs):
    X, _ = blobs
    fitted = UMAPReducer(2, n_epochs=10, random_state=0).fit(X[:200])
    with pytest.raises(InputError, match="exact_knn=False"):
        fitted.transform(X[200:])
    kept = build_reducer("umap:2:n_epochs=10:exact_knn=false", random_state=0).fit(X[:200])
    assert kept.transform(X[200:]).shape == (40, 2)


def test_umap_in_a_thread_after_openvino_lets_the_interpreter_exit():
    # OpenVINO's TBB made numba pick its TBB layer, and a first parallel kernel in a thread
    # then hung the interpreter at exit (the demo's warm-up thread did this).
    import os
    import subprocess
    import sys

    pytest.importorskip("openvino")
    script = (
        "import threading, numpy as np, numba, openvino\n"
        "openvino.Core()\n"
        "from deepclust.reduce import reduce\n"
        "X = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)\n"
        "t = threading.Thread(target=reduce, args=(X, 'umap:2:n_epochs=5'), "
        "kwargs={'random_state': 0})\n"
        "t.start(); t.join()\n"
        "print(numba.threading_layer())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=240, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("the interpreter did not exit after a UMAP fit in a thread beside OpenVINO")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] in ("omp", "workqueue")


# ----------------------------------------------------------------------------- chains


def test_chain_as_string_and_as_list_is_the_same(blobs):
    X, _ = blobs
    a = reduce(X, "zscore,pca:0.9,umap:50", random_state=1)
    b = reduce(X, ["zscore", "pca:0.9", ("umap", {"n_components": 50})], random_state=1)
    assert a.shape == (240, 50)
    np.testing.assert_array_equal(a, b)


def test_build_reducer_names_steps_and_passes_the_seed():
    pipe = build_reducer("zscore, pca:0.9 ,l2,umap:10:n_neighbors=5", random_state=3)
    assert isinstance(pipe, Pipeline)
    assert [name for name, _ in pipe.steps] == ["0_zscore", "1_pca", "2_l2", "3_umap"]
    assert pipe.steps[1][1].n_components == 0.9 and pipe.steps[1][1].random_state == 3
    umap_step = pipe.steps[3][1]
    assert (umap_step.n_components, umap_step.n_neighbors, umap_step.random_state) == (10, 5, 3)


def test_parse_and_describe_round_trip():
    steps = parse_reducer_spec("ZScore,pca:64:whiten,umap:50:n_epochs=200:min_dist=0.1")
    assert steps == [
        ("zscore", {}),
        ("pca", {"n_components": 64, "whiten": True}),
        ("umap", {"n_components": 50, "n_epochs": 200, "min_dist": 0.1}),
    ]
    text = describe_reducer(steps)
    assert text == "zscore,pca:64:whiten,umap:50:min_dist=0.1:n_epochs=200"
    assert parse_reducer_spec(text) == [
        ("zscore", {}),
        ("pca", {"n_components": 64, "whiten": True}),
        ("umap", {"n_components": 50, "min_dist": 0.1, "n_epochs": 200}),
    ]
    assert describe_reducer(None) == "raw"


@pytest.mark.parametrize(
    "spec, match",
    [
        ("zscore,tsne:2", "unknown reducer 'tsne'.*known reducers: zscore, pca, l2, umap"),
        ([("tsne", {})], "unknown reducer 'tsne'"),
        ("pca:0", "at least 1"),
        ("pca:1.5", "fraction must lie in \\(0, 1\\)"),
        ("pca:-0.2", "fraction must lie in \\(0, 1\\)"),
        ("pca:abc", "number of dimensions or a variance fraction"),
        ("pca:true", "number of dimensions or a variance fraction"),
        ("pca:21", "more components than the data has.*at most 20"),
        ("pca", "more components than the data has"),  # default 50 > 20 features
        ("pca:5:extra", "cannot read 'extra'"),
        ("pca:5:colour=red", "bad parameter for reducer 'pca'.*colour"),
        ("zscore:5", "bad parameter for reducer 'zscore'"),
        ("umap:0", "umap: n_components must be at least 1"),
        ("umap:abc", "umap: n_components must be an integer"),
        ("umap:2.5", "umap: n_components must be an integer"),
        ([("pca", 5)], "a reducer step must be a string"),
        ([3], "a reducer step must be a string"),
    ],
)
def test_bad_specs_raise_clear_input_errors(X, spec, match):
    with pytest.raises(InputError, match=match):
        reduce(X, spec, random_state=0)


def test_reduce_rejects_bad_features():
    with pytest.raises(InputError, match="NaN"):
        reduce(np.array([[1.0, np.nan], [0.0, 1.0]]), "zscore")
    with pytest.raises(InputError, match="1-D"):
        reduce(np.arange(4.0), "pca:1")
    with pytest.raises(InputError, match="at least 2"):
        reduce(np.ones((1, 3)), "pca:1")
