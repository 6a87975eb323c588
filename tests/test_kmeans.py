"""Tests of deepclust.cluster.kmeans: the estimator and its block functions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score as nmi

from deepclust.cluster import get_clusterer_class, make_clusterer
from deepclust.cluster.kmeans import KMeans
from deepclust.cluster.lloyd import RESEED_EPS, accumulate_cluster_sums, reseed_empty_clusters
from deepclust.cluster.seeding import default_plus_plus_samples, kmeans_plus_plus_init
from deepclust.errors import InputError


def _sq_dists(X, C):
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    return ((X[:, None, :] - C[None, :, :]) ** 2).sum(-1)


def _inertia(X, centers, labels):
    X = np.asarray(X, dtype=np.float64)
    return float(((X - centers[labels].astype(np.float64)) ** 2).sum())


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=2000, centers=6, n_features=8, cluster_std=0.5, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def hard():
    # overlapping clusters: many local optima, so restarts and init matter
    X, _ = make_blobs(n_samples=4000, centers=40, n_features=10, cluster_std=3.0, random_state=1)
    return X.astype(np.float32)


# --------------------------------------------------------------------- agreement with sklearn


def test_well_separated_blobs_match_truth_and_sklearn(blobs):
    X, y = blobs
    ours = KMeans(n_clusters=6, random_state=0).fit(X)
    theirs = SklearnKMeans(n_clusters=6, n_init=1, random_state=0).fit(X)
    assert nmi(y, ours.labels_) > 0.999
    assert nmi(theirs.labels_, ours.labels_) > 0.999
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-4)
    assert ours.cluster_centers_.shape == (6, 8)
    assert ours.labels_.dtype == np.int64


def test_inertia_within_one_percent_of_sklearn_from_same_init(hard):
    C = kmeans_plus_plus_init(hard, 40, random_state=3)
    ours = KMeans(n_clusters=40, init=C, tol=0, max_iter=300).fit(hard)
    theirs = SklearnKMeans(n_clusters=40, init=C, n_init=1, tol=0, max_iter=300).fit(hard)
    assert abs(ours.inertia_ - theirs.inertia_) <= 0.01 * theirs.inertia_
    # inertia_ is the objective of the returned centroids and labels
    assert ours.inertia_ == pytest.approx(
        _inertia(hard, ours.cluster_centers_, ours.labels_), rel=1e-4
    )


def test_objective_never_increases_and_tol_stops_earlier(hard):
    strict = KMeans(n_clusters=40, init="random", tol=0, max_iter=300, random_state=0).fit(hard)
    history = np.asarray(strict.stats_["objective_history"])
    assert len(history) == strict.n_iter_ + 1
    assert np.all(np.diff(history) <= 1e-6 * history[:-1])
    assert strict.stats_["converged"]
    loose = KMeans(n_clusters=40, init="random", tol=1e-2, max_iter=300, random_state=0).fit(hard)
    assert loose.n_iter_ < strict.n_iter_
    assert loose.inertia_ >= strict.inertia_


def test_max_iter_bounds_updates(hard):
    km = KMeans(n_clusters=40, init="random", tol=0, max_iter=2, random_state=0).fit(hard)
    assert km.n_iter_ == 2
    assert not km.stats_["converged"]
    # the labels still belong to the returned centroids
    np.testing.assert_array_equal(km.labels_, _sq_dists(hard, km.cluster_centers_).argmin(1))


# --------------------------------------------------------------------- restarts, determinism


def test_n_init_keeps_lowest_objective(hard):
    one = KMeans(n_clusters=40, init="random", n_init=1, random_state=7).fit(hard)
    many = KMeans(n_clusters=40, init="random", n_init=6, random_state=7).fit(hard)
    per_init = many.stats_["inertia_per_init"]
    assert len(per_init) == 6
    assert max(per_init) > min(per_init)  # restarts really differ
    assert many.inertia_ == min(per_init)
    # the first restart is the single run, so restarts can only help
    assert per_init[0] == pytest.approx(one.inertia_)
    assert many.inertia_ <= one.inertia_
    # centroids and labels are those of the kept run
    assert _inertia(hard, many.cluster_centers_, many.labels_) == pytest.approx(
        many.inertia_, rel=1e-4
    )


def test_fixed_random_state_is_deterministic(hard):
    a = KMeans(n_clusters=40, n_init=2, random_state=11).fit(hard)
    b = KMeans(n_clusters=40, n_init=2, random_state=11).fit(hard)
    c = KMeans(n_clusters=40, n_init=2, random_state=np.random.default_rng(11)).fit(hard)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, c.labels_)
    assert a.inertia_ == b.inertia_


def test_explicit_init_runs_once_with_warning(blobs):
    X, _ = blobs
    C = X[:6]
    with pytest.warns(RuntimeWarning, match="running once"):
        km = KMeans(n_clusters=6, init=C, n_init=3).fit(X)
    assert len(km.stats_["inertia_per_init"]) == 1


# --------------------------------------------------------------------- predict and friends


def test_predict_equals_labels_and_nearest_centroid(hard):
    km = KMeans(n_clusters=40, random_state=0).fit(hard)
    np.testing.assert_array_equal(km.predict(hard), km.labels_)
    np.testing.assert_array_equal(km.fit_predict(hard), km.labels_)
    new = np.random.default_rng(1).normal(0, 10, size=(300, 10))
    np.testing.assert_array_equal(km.predict(new), _sq_dists(new, km.cluster_centers_).argmin(1))
    dist = km.transform(new)
    assert dist.shape == (300, 40)
    np.testing.assert_allclose(dist, np.sqrt(_sq_dists(new, km.cluster_centers_)), rtol=1e-3)
    assert km.score(hard) == pytest.approx(-km.inertia_, rel=1e-5)


def test_verbose_prints_each_iteration(blobs, capsys):
    X, _ = blobs
    km = KMeans(n_clusters=6, random_state=0, verbose=True).fit(X)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "objective" in ln]
    assert len(lines) == len(km.stats_["objective_history"])


def test_registry_and_clone():
    assert get_clusterer_class("kmeans") is KMeans
    km = make_clusterer("kmeans", n_clusters=3, spherical=True, random_state=0)
    assert isinstance(km, KMeans) and km.spherical
    assert clone(km).get_params() == km.get_params()


def test_predict_before_fit_and_wrong_width_raise(blobs):
    X, _ = blobs
    with pytest.raises(InputError, match="not fitted"):
        KMeans(n_clusters=2).predict(X)
    km = KMeans(n_clusters=2, random_state=0).fit(X)
    with pytest.raises(InputError, match="8"):
        km.predict(X[:, :5])


# --------------------------------------------------------------------- spherical


def test_spherical_clusters_directions_not_norms():
    rng = np.random.default_rng(0)
    directions = np.linalg.qr(rng.normal(size=(8, 8)))[0][:4]  # 4 orthonormal directions
    y = np.repeat(np.arange(4), 150)
    X = directions[y] + rng.normal(scale=0.15, size=(600, 8))
    X *= np.exp(rng.uniform(np.log(0.1), np.log(10), size=(600, 1)))  # norms over 2 decades
    sph = KMeans(n_clusters=4, spherical=True, n_init=3, random_state=0).fit(X)
    euc = KMeans(n_clusters=4, n_init=3, random_state=0).fit(X)
    assert nmi(y, sph.labels_) > 0.97
    assert nmi(y, euc.labels_) < 0.8  # Euclidean k-means is misled by the norms
    np.testing.assert_allclose(np.linalg.norm(sph.cluster_centers_, axis=1), 1, atol=1e-5)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    cos = U @ sph.cluster_centers_.T
    np.testing.assert_array_equal(sph.labels_, cos.argmax(1))
    assert sph.inertia_ == pytest.approx(float((1 - cos.max(1)).sum()), rel=1e-4)
    np.testing.assert_array_equal(sph.predict(X * 3.0), sph.labels_)  # scale-free
    np.testing.assert_allclose(sph.transform(X[:5]), 1 - cos[:5], atol=1e-5)


def test_spherical_rejects_zero_rows():
    X = np.eye(4)
    X[2] = 0
    with pytest.raises(InputError, match="all-zero row"):
        KMeans(n_clusters=2, spherical=True).fit(X)


# --------------------------------------------------------------------- empty clusters


def test_reseed_splits_a_donor_symmetrically():
    rng = np.random.default_rng(0)
    C = rng.normal(size=(3, 6))
    original = C.copy()
    counts = np.array([0, 1, 10])  # a one-point cluster is never split: the donor is 2
    assert reseed_empty_clusters(C, counts, random_state=0) == 1
    np.testing.assert_allclose((C[0] + C[2]) / 2, original[2])  # symmetric around the donor
    sign = np.array([1, -1, 1, -1, 1, -1])
    np.testing.assert_allclose(C[0], original[2] * (1 + RESEED_EPS * sign))
    np.testing.assert_allclose(C[2], original[2] * (1 - RESEED_EPS * sign))
    np.testing.assert_array_equal(C[1], original[1])
    assert counts.tolist() == [5, 1, 5]


def test_reseed_is_a_no_op_without_empty_clusters():
    C = np.ones((2, 3))
    counts = np.array([4, 2])
    assert reseed_empty_clusters(C, counts, random_state=0) == 0
    assert counts.tolist() == [4, 2] and np.all(C == 1)


def test_reseed_donor_probability_follows_size_minus_one():
    def donor(counts, seed):
        C = np.arange(2.0 * len(counts)).reshape(-1, 2) + 1
        counts = np.array(counts)
        before = counts.copy()
        reseed_empty_clusters(C, counts, random_state=seed)
        return int(np.flatnonzero(counts < before)[0])

    # a one-point cluster has weight 1 - 1 = 0: never split while a bigger one exists
    assert {donor([0, 1, 2], seed) for seed in range(50)} == {2}
    # weights 1 : 3 for sizes 2 and 4 (proportional to size would give 1 : 2)
    share = np.mean([donor([0, 2, 4], seed) == 2 for seed in range(2000)])
    assert 0.71 < share < 0.79


def test_far_away_initial_centroid_is_reseeded_and_filled():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (200, 2)), rng.normal(10, 1, (200, 2))]
    init = np.array([[0.0, 0.0], [10.0, 10.0], [1e4, 1e4]])  # the third attracts nothing
    km = KMeans(n_clusters=3, init=init, random_state=0).fit(X)
    assert km.n_reseeded_ >= 1
    assert np.all(np.bincount(km.labels_, minlength=3) > 0)
    assert np.all(np.abs(km.cluster_centers_) < 20)
    # the objective barely moves on the pass right after a re-seed; tol must not stop there
    loose = KMeans(n_clusters=3, init=init, tol=0.5, random_state=0).fit(X)
    assert loose.n_iter_ >= 2
    assert loose.inertia_ < 0.9 * loose.stats_["objective_history"][1]


# --------------------------------------------------------------------- k-means++


def test_plus_plus_puts_one_seed_in_each_separated_blob():
    X, y = make_blobs(n_samples=1000, centers=10, n_features=5, cluster_std=0.1, random_state=2)
    for seed in range(3):
        C = kmeans_plus_plus_init(X, 10, random_state=seed)
        hit = y[_sq_dists(C, X).argmin(1)]
        assert sorted(hit.tolist()) == list(range(10))
        assert _sq_dists(C, X).min(1).max() < 1e-8  # seeds are rows of X


def test_plus_plus_on_a_subsample_still_returns_rows():
    X = np.random.default_rng(0).normal(size=(3000, 4)).astype(np.float32)
    C = kmeans_plus_plus_init(X, 20, random_state=0, max_samples=100)
    assert C.shape == (20, 4) and C.dtype == np.float32
    assert _sq_dists(C, X).min(1).max() == 0
    assert len(np.unique(C, axis=0)) == 20
    with pytest.raises(InputError, match="max_samples"):
        kmeans_plus_plus_init(X, 20, max_samples=10)


def test_default_plus_plus_sample_rule():
    assert default_plus_plus_samples(5000, 10) == 5000  # small data: every row
    assert default_plus_plus_samples(200_000, 1000) == 32_000
    assert default_plus_plus_samples(10**7, 10) == 10_000


# --------------------------------------------------------------------- update step


def test_accumulated_sums_are_float64_exact():
    rng = np.random.default_rng(0)
    # a large offset: float32 running sums would lose the small part
    X = (1e4 + rng.normal(size=(20_000, 3))).astype(np.float32)
    labels = rng.integers(0, 7, size=20_000)
    sums = np.zeros((7, 3))
    counts = np.zeros(7, dtype=np.int64)
    accumulate_cluster_sums(X[:9000], labels[:9000], sums, counts)
    accumulate_cluster_sums(X[9000:], labels[9000:], sums, counts)
    expected = np.zeros((7, 3))
    np.add.at(expected, labels, X.astype(np.float64))
    np.testing.assert_allclose(sums, expected, rtol=1e-13)
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=7))


def test_accumulated_sums_with_more_clusters_than_rows_per_chunk():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(9000, 4)).astype(np.float32)
    labels = rng.integers(0, 6000, size=9000)  # k > rows per chunk: the compact product
    sums = np.zeros((6000, 4))
    counts = np.zeros(6000, dtype=np.int64)
    accumulate_cluster_sums(X, labels, sums, counts)
    expected = np.zeros((6000, 4))
    np.add.at(expected, labels, X.astype(np.float64))
    np.testing.assert_allclose(sums, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=6000))


# --------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("X", "k", "match"),
    [
        (np.zeros((5, 2)) + np.arange(5)[:, None], 6, "larger than the number of samples"),
        (np.arange(10.0).reshape(5, 2), 0, "at least 1"),
        (np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]]), 2, "NaN"),
        (np.arange(5.0), 2, "1-D"),
    ],
)
def test_bad_inputs_raise_input_error(X, k, match):
    with pytest.raises(InputError, match=match):
        KMeans(n_clusters=k).fit(X)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_init": 0}, "n_init"),
        ({"max_iter": 1.5}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"init": "kmeans++"}, "init must be"),
        ({"init": np.zeros((3, 5))}, "shape"),
        ({"random_state": "seed"}, "random_state"),
    ],
)
def test_bad_parameters_raise_input_error(blobs, params, match):
    X, _ = blobs
    with pytest.raises(InputError, match=match):
        KMeans(n_clusters=2, **params).fit(X)


def test_identical_points_give_one_cluster_with_a_warning():
    X = np.tile([[1.0, -2.0, 3.0]], (50, 1))
    with pytest.warns(ConvergenceWarning, match="only 1 distinct"):
        km = KMeans(n_clusters=3, random_state=0).fit(X)
    assert np.all(km.labels_ == 0)
    assert km.inertia_ == 0.0
    np.testing.assert_array_equal(km.cluster_centers_, np.tile(X[:1], (3, 1)))
    np.testing.assert_array_equal(km.predict(X), km.labels_)


def test_fewer_distinct_points_than_clusters():
    X = np.r_[np.zeros((6, 2)), np.ones((4, 2))]
    with pytest.warns(ConvergenceWarning, match="only 2 distinct"):
        km = KMeans(n_clusters=4, random_state=0).fit(X)
    assert km.inertia_ == 0.0
    assert nmi(np.r_[np.zeros(6), np.ones(4)], km.labels_) == pytest.approx(1.0)
    assert set(km.labels_.tolist()) == {0, 1}
    np.testing.assert_array_equal(km.predict([[0.9, 0.9], [0.1, 0.0]]), [1, 0])


def test_one_point_one_cluster():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        km = KMeans(n_clusters=1).fit([[1.0, 2.0]])
    assert km.labels_.tolist() == [0]
    np.testing.assert_array_equal(km.cluster_centers_, [[1.0, 2.0]])
    assert km.inertia_ == 0.0
