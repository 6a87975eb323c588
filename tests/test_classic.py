"""Tests of deepclust.cluster.classic and the registry in deepclust.cluster.base.

Bad-input tests run over every registered method (k-means and the deep heads included) where
they only exercise validation; results on degenerate data are checked for the methods of
this module and k-means.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

import deepclust.cluster.classic as classic
from deepclust.cluster import (
    HDBSCAN,
    AffinityPropagation,
    Agglomerative,
    BaseClusterer,
    GaussianMixture,
    Spectral,
    available_methods,
    get_clusterer_class,
    make_clusterer,
    register,
)
from deepclust.errors import InputError
from deepclust.metrics import ari

CLASSIC = ["agglomerative", "spectral", "hdbscan", "affinity-propagation", "gmm"]
#: methods whose results on degenerate data this file checks
CHECKED = CLASSIC + ["kmeans"]
ALL = sorted(available_methods())
TAKES_K = [m for m in ALL if get_clusterer_class(m).takes_n_clusters]


def build(name: str, k: int | None = 4, **params) -> BaseClusterer:
    """The method ``name`` told k when it takes one, seeded when it is random."""
    cls = get_clusterer_class(name)
    if cls.takes_n_clusters:
        params.setdefault("n_clusters", k)
    if "random_state" in cls._get_param_names():
        params.setdefault("random_state", 0)
    return make_clusterer(name, **params)


@pytest.fixture(scope="module")
def blobs():
    centers = [[0, 0], [10, 0], [0, 10], [10, 10]]
    X, y = make_blobs(n_samples=200, centers=centers, cluster_std=0.6, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(blobs):
    """Each classic method fitted once on the blobs."""
    X, _ = blobs
    return {name: build(name).fit(X) for name in CLASSIC}


# ----------------------------------------------------------------------------- easy blobs


@pytest.mark.parametrize("name", CLASSIC)
def test_recovers_easy_blobs(fitted, blobs, name):
    _, y = blobs
    model = fitted[name]
    assert model.labels_.dtype == np.int64 and model.labels_.shape == y.shape
    assert ari(y, model.labels_) > 0.9
    assert model.n_clusters_ == 4


@pytest.mark.parametrize("name", CLASSIC)
def test_predict_on_training_points_gives_their_labels(fitted, blobs, name):
    X, _ = blobs
    model = fitted[name]
    pred = model.predict(X)
    clustered = model.labels_ >= 0
    np.testing.assert_array_equal(pred[clustered], model.labels_[clustered])
    assert pred.dtype == np.int64


@pytest.mark.parametrize("name", CLASSIC)
def test_estimator_contract(blobs, name):
    X, _ = blobs
    model = build(name)
    assert model.fit(X) is model
    again = clone(model)
    assert again.get_params() == model.get_params()
    assert not hasattr(again, "labels_")
    np.testing.assert_array_equal(again.fit_predict(X), model.labels_)


@pytest.mark.parametrize("linkage", ["ward", "average", "complete", "single"])
def test_agglomerative_with_k(blobs, linkage):
    X, y = blobs
    model = Agglomerative(4, linkage=linkage).fit(X)
    assert ari(y, model.labels_) > 0.9 and model.n_clusters_ == 4
    assert model.cluster_centers_.shape == (4, 2)


@pytest.mark.parametrize(
    "linkage, threshold", [("ward", 30.0), ("average", 5.0), ("complete", 7.0), ("single", 3.0)]
)
def test_agglomerative_with_distance_threshold_finds_k(blobs, linkage, threshold):
    X, y = blobs
    model = Agglomerative(None, linkage=linkage, distance_threshold=threshold).fit(X)
    assert model.n_clusters_ == 4
    assert ari(y, model.labels_) > 0.9
    # a threshold above every merge leaves one cluster
    assert Agglomerative(None, linkage=linkage, distance_threshold=1e6).fit(X).n_clusters_ == 1


def test_agglomerative_cosine_metric_with_average_linkage():
    X = np.r_[np.tile([1.0, 0.0], (10, 1)), np.tile([0.0, 1.0], (10, 1))]
    X *= np.linspace(1, 5, 20)[:, None]  # same directions, different lengths
    labels = Agglomerative(2, linkage="average", metric="cosine").fit(X).labels_
    assert ari([0] * 10 + [1] * 10, labels) == 1.0


def test_spectral_recovers_two_moons():
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=300, noise=0.05, random_state=0)
    assert ari(y, Spectral(2, n_neighbors=10, random_state=0).fit(X).labels_) > 0.9


def test_hdbscan_counts_noise(blobs):
    X, y = blobs
    far = np.array([[50, 50], [-50, 40], [40, -50], [-40, -40], [60, -10]], dtype=np.float32)
    model = HDBSCAN(min_cluster_size=10).fit(np.r_[X, far])
    assert model.n_clusters_ == 4
    assert (model.labels_[-5:] == -1).all()
    assert model.n_noise_ == int(np.count_nonzero(model.labels_ == -1)) >= 5
    assert ari(y, model.labels_[:-5]) > 0.9
    assert model.probabilities_.shape == (205,)
    # predict never answers noise
    assert (model.predict(far) >= 0).all()


def test_n_noise_is_zero_for_methods_without_noise(fitted):
    for name in ("agglomerative", "spectral", "affinity-propagation", "gmm"):
        assert fitted[name].n_noise_ == 0


def test_affinity_propagation_finds_k_and_reports_non_convergence(blobs):
    X, y = blobs
    model = AffinityPropagation(random_state=0).fit(X)
    assert model.converged_ and model.n_clusters_ == 4
    assert model.cluster_centers_.shape == (4, 2)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        bad = AffinityPropagation(max_iter=3, random_state=0).fit(X)
    assert not bad.converged_


def test_gmm_predict_proba_rows_sum_to_one(fitted, blobs):
    X, _ = blobs
    model = fitted["gmm"]
    proba = model.predict_proba(X)
    assert proba.shape == (200, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-10)
    assert (proba >= 0).all()
    np.testing.assert_array_equal(proba.argmax(axis=1), model.labels_)
    assert model.converged_


@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
def test_gmm_covariance_types(blobs, cov):
    X, y = blobs
    assert ari(y, GaussianMixture(4, covariance_type=cov, random_state=0).fit(X).labels_) > 0.9


def test_gmm_warns_when_em_does_not_converge(blobs):
    X, _ = blobs
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = GaussianMixture(4, max_iter=1, random_state=0).fit(X)
    assert not model.converged_


def test_random_methods_are_reproducible_with_a_seed(blobs):
    X, _ = blobs
    X = X + np.random.default_rng(0).normal(scale=3.0, size=X.shape).astype(np.float32)
    for name in ("spectral", "gmm"):
        a = build(name, random_state=5).fit(X).labels_
        b = build(name, random_state=5).fit(X).labels_
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- registry


def test_registry_lists_every_method_with_a_description():
    methods = available_methods()
    assert set(CHECKED) <= set(methods)
    assert list(methods) == sorted(methods)
    assert all(isinstance(d, str) and d for d in methods.values())
    assert get_clusterer_class("hdbscan") is HDBSCAN
    assert not HDBSCAN.takes_n_clusters and not AffinityPropagation.takes_n_clusters
    assert Agglomerative.takes_n_clusters and GaussianMixture.takes_n_clusters


def test_make_clusterer_builds_with_params():
    model = make_clusterer("agglomerative", n_clusters=3, linkage="single")
    assert isinstance(model, Agglomerative)
    assert (model.n_clusters, model.linkage) == (3, "single")


def test_unknown_method_names_the_known_ones():
    with pytest.raises(InputError, match="unknown clustering method 'kmedoids'") as info:
        make_clusterer("kmedoids")
    for name in ALL:
        assert name in str(info.value)


def test_unknown_parameter_names_the_accepted_ones():
    with pytest.raises(InputError, match="does not take parameter\\(s\\) n_cluster\\b") as info:
        make_clusterer("gmm", n_cluster=3)
    for param in ("n_clusters", "covariance_type", "reg_covar"):
        assert param in str(info.value)


def test_registering_a_second_class_under_a_taken_name_fails():
    with pytest.raises(RuntimeError, match="registered twice"):

        @register("gmm")
        class Other(BaseClusterer):
            """Another."""


@pytest.mark.parametrize("name", CLASSIC)
def test_predict_and_n_noise_before_fit_say_fit_first(name):
    model = build(name)
    with pytest.raises(InputError, match="not fitted yet"):
        model.predict(np.zeros((2, 2)))
    with pytest.raises(InputError, match="not fitted yet"):
        _ = model.n_noise_


@pytest.mark.parametrize("name", ["agglomerative", "spectral", "hdbscan"])
def test_predict_with_the_wrong_number_of_features(fitted, name):
    with pytest.raises(InputError, match="X has 3 features, but .* is expecting 2 features as input: it was fitted with 2"):
        fitted[name].predict(np.zeros((2, 3)))


# ----------------------------------------------------------------------------- bad input


def _rows(n=30, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_rows_are_named(name, bad):
    X = _rows()
    X[4, 2] = bad
    with pytest.raises(InputError, match=r"NaN or infinite values \(rows 4\)"):
        build(name, k=2).fit(X)


@pytest.mark.parametrize("name", ALL)
def test_one_dimensional_input_says_reshape(name):
    with pytest.raises(InputError, match="1-D.*reshape"):
        build(name, k=2).fit(np.arange(30.0))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "X, match",
    [(np.zeros((0, 3)), "no rows"), (np.array([["a", "b"], ["c", "d"]]), "must be numeric")],
)
def test_empty_and_non_numeric_input(name, X, match):
    with pytest.raises(InputError, match=match):
        build(name, k=1).fit(X)


@pytest.mark.parametrize("name", TAKES_K)
def test_k_larger_than_n(name):
    with pytest.raises(InputError, match="n_clusters=31 is larger than the number of samples"):
        build(name, k=31).fit(_rows(30))


@pytest.mark.parametrize("name", TAKES_K)
@pytest.mark.parametrize("k", [0, -2])
def test_k_below_one(name, k):
    # hierarchical k-means declares n_clusters (an int or one per level): its own words
    with pytest.raises(InputError, match="integer >= 1" if name == "hkmeans" else "at least 1"):
        build(name, k=k).fit(_rows())


@pytest.mark.parametrize("name", TAKES_K)
@pytest.mark.parametrize("k", [2.5, "3"])
def test_k_not_an_integer(name, k):
    with pytest.raises(InputError,
                       match="integer >= 1" if name == "hkmeans" else "positive integer"):
        build(name, k=k).fit(_rows())


@pytest.mark.parametrize(
    "name, expect",
    [
        ("kmeans", "one cluster"),
        ("agglomerative", "one cluster"),
        ("spectral", "one cluster"),
        ("affinity-propagation", "one cluster"),
        ("gmm", "at least 2 points"),
        ("hdbscan", "min_cluster_size=5 needs at least that many points, got 1"),
    ],
)
def test_one_point(name, expect):
    model = build(name, k=1)
    if expect == "one cluster":
        assert model.fit(np.array([[1.0, 2.0]])).labels_.tolist() == [0]
        assert model.predict(np.array([[5.0, 5.0]])).tolist() == [0]
    else:
        with pytest.raises(InputError, match=expect):
            model.fit(np.array([[1.0, 2.0]]))


@pytest.mark.parametrize("name", CHECKED)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_identical_points_stay_together(name, k):
    X = np.tile([3.0, -1.0, 0.5], (20, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = build(name, k=k).fit(X)
    assert model.labels_.tolist() == [0] * 20  # one cluster, never noise
    np.testing.assert_array_equal(model.predict(X), model.labels_)


@pytest.mark.parametrize("name", ["agglomerative", "spectral"])
def test_fewer_distinct_rows_than_k_warns_and_keeps_copies_together(name):
    X = np.r_[np.zeros((10, 2)), np.ones((10, 2))]
    with pytest.warns(ConvergenceWarning, match="only 2 distinct row"):
        model = build(name, k=3).fit(X)
    assert model.n_clusters_ == 2
    assert ari([0] * 10 + [1] * 10, model.labels_) == 1.0
    np.testing.assert_array_equal(model.predict(X), model.labels_)


@pytest.mark.parametrize("name", CHECKED)
def test_as_many_distinct_rows_as_k_gives_one_cluster_each(name):
    X = np.r_[np.zeros((10, 2)), np.ones((10, 2))]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # exactly k: nothing to warn about
        labels = build(name, k=2).fit(X).labels_
    assert ari([0] * 10 + [1] * 10, labels) == 1.0


def test_two_distinct_points_with_k_two_are_two_clusters():
    X = np.array([[0.0, 0.0], [1.0, 1.0]])
    for name in ("agglomerative", "spectral", "kmeans"):
        assert sorted(build(name, k=2).fit(X).labels_.tolist()) == [0, 1]


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "model, match",
    [
        (Agglomerative(2, linkage="median"), "linkage='median' is not allowed; linkage must be one of 'ward'"),
        (Agglomerative(2, metric="cosine"), "ward linkage works only with metric='euclidean'"),
        (Agglomerative(2, distance_threshold=1.0), "exactly one of n_clusters and distance_thr"),
        (Agglomerative(None), "exactly one of n_clusters and distance_threshold"),
        (HDBSCAN(min_cluster_size=1), "min_cluster_size=1 is not allowed; .* >= 2"),
        (AffinityPropagation(damping=1.0), "damping=1.0 is not allowed; damping must be a number in \\[0.5, 1\\)"),
        (AffinityPropagation(damping=0.2), "damping=0.2 is not allowed; damping must be a number in \\[0.5, 1\\)"),
        (GaussianMixture(2, covariance_type="banana"), "covariance_type='banana' is not allowed"),
    ],
)
def test_bad_parameters_fail_in_fit_with_clear_errors(model, match):
    with pytest.raises(InputError, match=match):
        model.fit(_rows())


@pytest.mark.parametrize("name", ["agglomerative", "affinity-propagation"])
def test_pairwise_methods_refuse_inputs_too_large_for_memory(monkeypatch, name):
    monkeypatch.setattr(classic, "PAIRWISE_MEMORY_LIMIT_BYTES", 1000)
    with pytest.raises(InputError, match="GiB for its pairwise matrix.*subsample"):
        build(name, k=2).fit(_rows(100))
