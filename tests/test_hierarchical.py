"""Tests of deepclust.cluster.hierarchical: hierarchical k-means with resampling and
hierarchical balanced sampling (Vo et al. 2024)."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs

from deepclust.cluster import make_clusterer
from deepclust.cluster.hierarchical import (
    HierarchicalKMeans,
    default_level_sizes,
    distances_to_centroids,
    per_cluster_indices,
    share_target,
)
from deepclust.cluster.kmeans import KMeans
from deepclust.errors import InputError

FAST = {"max_iter": 20, "n_resampling_steps": 1}


def imbalanced_cubes(n=5000, d=8, n_small=9, dense=0.9, seed=0):
    """One dense cube with ``dense`` of the points and ``n_small`` sparse cubes of the same
    volume, far apart: uniform over the concepts means each cube gets as many centroids."""
    rng = np.random.default_rng(seed)
    n_dense = int(n * dense)
    counts = [n_dense] + [(n - n_dense) // n_small] * n_small
    centres = rng.normal(size=(n_small + 1, d)) * 18.0 / np.sqrt(d)
    X = np.concatenate([c + rng.uniform(-1, 1, size=(m, d)) for c, m in zip(centres, counts, strict=True)])
    return X.astype(np.float32), np.repeat(np.arange(n_small + 1), counts), centres


def nearest_cube(C, centres):
    return np.argmin(((C[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)


def tv_to_uniform(y, n_classes):
    p = np.bincount(y, minlength=n_classes) / len(y)
    return 0.5 * np.abs(p - 1.0 / n_classes).sum()


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=2000, centers=6, n_features=8, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def cubes():
    return imbalanced_cubes()


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return HierarchicalKMeans((60, 15, 4), random_state=0, **FAST).fit(X)


# ----------------------------------------------------------------------------- building blocks


def test_share_target_splits_evenly_and_small_clusters_give_everything():
    rng = np.random.default_rng(0)
    sizes = np.array([3, 100, 0, 40, 7, 100])
    shares = share_target(sizes, 120, rng)
    assert shares.sum() == 120 and np.all(shares <= sizes)
    assert shares[[0, 2, 4]].tolist() == [3, 0, 7]  # below the even share: everything
    big = shares[[1, 3, 5]]
    assert big.max() - big.min() <= 1  # the rest as even as integers allow
    assert share_target(sizes, 1000, rng).tolist() == sizes.tolist()
    assert share_target([2, 50, 50], 62, random_state=0).tolist() == [2, 30, 30]


def test_per_cluster_indices_takes_closest_first_and_cycles():
    labels = np.array([0, 0, 0, 1, 1, 2])
    key = np.array([3.0, 1.0, 2.0, 5.0, 4.0, 0.0])
    assert per_cluster_indices(labels, key, 3, 2).tolist() == [1, 2, 3, 4, 5]
    # 5 rows from a cluster of 3: every row once, then the closest two again
    assert per_cluster_indices(labels, key, 3, np.array([5, 0, 0])).tolist() == [0, 1, 1, 2, 2]


def test_distances_to_centroids():
    X = np.array([[0, 0], [3, 4], [1, 0]], dtype=np.float32)
    C = np.array([[0, 0], [1, 0]], dtype=np.float32)
    assert distances_to_centroids(X, C, np.array([0, 0, 1])).tolist() == [0, 25, 0]


def test_default_level_sizes():
    assert default_level_sizes(10, 10_000) == (1000, 100, 10)
    assert default_level_sizes(100, 10_000) == (1000, 100)
    assert default_level_sizes(1000, 10_000) == (1000,)
    assert default_level_sizes(4, 50, n_levels=2, branching=5) == (20, 4)


# ----------------------------------------------------------------------------- the tree


def test_tree_is_consistent(blobs, fitted):
    X, _ = blobs
    hk = fitted
    assert [c.shape for c in hk.centroids_] == [(60, 8), (15, 8), (4, 8)]
    assert [lab.shape for lab in hk.level_labels_] == [(2000,), (60,), (15,)]
    assert hk.n_clusters_per_level_ == (60, 15, 4)
    for t in (2, 3):
        # every row's level-t cluster is the level-t cluster of its level-(t-1) cluster
        assert np.array_equal(hk.assignments(t), hk.level_labels_[t - 1][hk.assignments(t - 1)])
    # each level's labels are the nearest centroids of the points of that level
    points = [X, *hk.centroids_[:-1]]
    for t in range(3):
        d2 = ((points[t][:, None, :] - hk.centroids_[t][None]) ** 2).sum(-1)
        assert np.mean(np.argmin(d2, axis=1) == hk.level_labels_[t]) > 0.99
    assert np.allclose(hk.distances_, d2_own(X, hk.centroids_[0], hk.level_labels_[0]), rtol=1e-3,
                       atol=1e-3)
    assert np.array_equal(hk.assignments(-1), hk.assignments(3))
    assert np.array_equal(hk.labels_, hk.assignments(3))  # labels_: the top level
    assert np.array_equal(hk.predict(X), hk.assignments(3))
    assert np.array_equal(hk.predict(X, level=1), hk.assignments(1))
    levels = hk.stats_["levels"]
    assert len(hk.stats_["seconds_per_level"]) == 3 and hk.stats_["total_seconds"] > 0
    assert [info["n_resampling_steps"] for info in levels] == [1, 1, 1]
    # default sample size: half the mean cluster size, rounded up
    assert hk.sample_size_per_level_ == (17, 2, 2)


def d2_own(X, C, labels):
    return ((X - C[labels]) ** 2).sum(1)


def test_resampling_spreads_centroids_over_concepts(cubes):
    """90 % of the points in one cube: plain k-means puts most centroids there; resampling
    moves them towards the nine sparse cubes of the same volume."""
    X, _, centres = cubes
    plain = KMeans(50, random_state=0).fit(X)
    hk = HierarchicalKMeans((50, 10), n_resampling_steps=3, max_iter=30, random_state=0).fit(X)
    in_dense_plain = np.mean(nearest_cube(plain.cluster_centers_, centres) == 0)
    in_dense_hk = np.mean(nearest_cube(hk.centroids_[0], centres) == 0)
    # measured over seeds 0-3: plain 0.68-0.76, resampled 0.40-0.48; uniform would be 0.1
    assert in_dense_plain > 0.6
    assert in_dense_hk < min(0.55, in_dense_plain - 0.1)
    assert len(set(nearest_cube(hk.centroids_[1], centres))) >= 9  # the top level sees the cubes


def test_balanced_sample_is_close_to_uniform_over_concepts(cubes):
    X, y, _ = cubes
    hk = HierarchicalKMeans((50, 10), n_resampling_steps=0, random_state=0).fit(X)
    idx = hk.balanced_sample(500, random_state=0)
    assert idx.shape == (500,) and np.unique(idx).size == 500 and np.all(np.diff(idx) >= 0)
    random_idx = np.random.default_rng(0).choice(len(X), 500, replace=False)
    assert tv_to_uniform(y[random_idx], 10) > 0.7  # 90 % from one cube
    assert tv_to_uniform(y[idx], 10) < 0.1

    # "closest" takes rows near their level-1 centroid; "random" does not prefer them
    near = hk.balanced_sample(500, strategy="closest", random_state=0)
    assert hk.distances_[near].mean() < hk.distances_[idx].mean()
    # a multiplier repeats the rows of small clusters
    doubled = hk.balanced_sample(2 * len(X) - 10, multiplier=2, random_state=0)
    assert doubled.size == 2 * len(X) - 10 and np.bincount(doubled).max() == 2
    assert hk.balanced_sample(len(X)).tolist() == list(range(len(X)))


def test_reproducible_with_random_state(blobs, fitted):
    X, _ = blobs
    again = HierarchicalKMeans((60, 15, 4), random_state=0, **FAST).fit(X)
    for a, b in zip(fitted.centroids_, again.centroids_, strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(fitted.level_labels_, again.level_labels_, strict=True):
        assert np.array_equal(a, b)
    s1 = fitted.balanced_sample(300, random_state=1)
    assert np.array_equal(s1, again.balanced_sample(300, random_state=1))
    assert not np.array_equal(s1, fitted.balanced_sample(300, random_state=2))
    other = HierarchicalKMeans((60, 15, 4), random_state=1, **FAST).fit(X)
    assert not np.array_equal(other.centroids_[0], fitted.centroids_[0])


def test_spherical_and_splits(blobs):
    X, _ = blobs
    hk = HierarchicalKMeans((20, 5), spherical=True, random_state=0, **FAST).fit(X)
    for C in hk.centroids_:
        assert np.allclose(np.linalg.norm(C, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(hk.predict(X * 3.0, level=1), hk.predict(X, level=1))

    split = HierarchicalKMeans((10, 5), n_splits=(4, 1), n_resampling_steps=(0, 1),
                               max_iter=20, random_state=0).fit(X)
    k1 = split.n_clusters_per_level_[0]
    assert 10 < k1 <= 40 and split.centroids_[0].shape == (k1, 8)
    assert np.bincount(split.level_labels_[0], minlength=k1).min() > 0  # empty parts dropped
    assert np.array_equal(split.assignments(2), split.level_labels_[1][split.level_labels_[0]])


# ----------------------------------------------------------------------------- inputs


def test_featureset_and_store_inputs_match_the_array(blobs, tmp_path):
    from deepclust.data.features import FeatureSet
    from deepclust.store import StoreWriter, open_store

    X, y = blobs
    X = X[:600]
    params = {"n_clusters": (12, 3), "random_state": 0, **FAST}
    ref = HierarchicalKMeans(**params).fit(X)
    fs = HierarchicalKMeans(**params).fit(FeatureSet(X, y[:600]))
    assert np.array_equal(ref.level_labels_[0], fs.level_labels_[0])

    w = StoreWriter(tmp_path / "store")
    w.prepare({"format": "deepclust-store", "format_version": 1, "encoder": "toy",
               "encoder_config": {"name": "toy", "dim": 8}, "dim": 8, "dtype": "float32",
               "precision": "fp32", "source": {"kind": "toy"}, "source_fingerprint": "x",
               "n_items": 600, "shard_size": 600, "n_shards": 1, "class_names": None})
    n = len(X)
    w.write_shard(0, X, {"item": list(range(n)), "id": [f"i{i}" for i in range(n)],
                         "label": [int(v) for v in y[:600]], "path": [""] * n,
                         "row": list(range(n)), "error": [None] * n})
    w.finalize()
    w.release()
    st = HierarchicalKMeans(**params).fit(open_store(tmp_path / "store"))
    assert np.array_equal(ref.level_labels_[0], st.level_labels_[0])


def test_int_k_registry_and_cli(blobs, tmp_path):
    X, y = blobs
    model = make_clusterer("hkmeans", n_clusters=6, random_state=0, **FAST)
    labels = model.fit_predict(X)
    assert model.n_clusters_per_level_ == default_level_sizes(6, len(X)) == (60, 6)
    assert labels.max() < 6 and np.array_equal(labels, model.assignments(-1))
    assert clone(model).get_params()["n_clusters"] == 6

    from deepclust.cli import main

    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    argv = ["cluster", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy"),
            "--method", "hkmeans", "--k", "6", "--param", "n_resampling_steps=1",
            "--param", "max_iter=20", "--out", str(tmp_path / "out"), "--no-label-free",
            "--json"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    out = np.load(tmp_path / "out" / "labels.npy")
    assert out.shape == (2000,) and out.max() < 6


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_clusters": (10, 50)}, "must decrease.*did you mean \\(50, 10\\)"),
        ({"n_clusters": (5000, 10)}, "level 1 asks for 5000 clusters but X has only 2000 rows"),
        ({"n_clusters": ()}, "n_clusters=\\(\\) is not allowed"),
        ({"n_clusters": 2001}, "n_clusters=2001 is larger than the number of samples"),
        ({"n_clusters": 2.5}, "n_clusters=2.5 is not allowed; n_clusters must be an integer >= 1"),
        ({"n_clusters": 100, "n_levels": 3}, "level 1 asks for 10000 clusters but X has only"),
        ({"n_clusters": (10, 0)}, "n_clusters=\\(10, 0\\) is not allowed"),
        ({"n_clusters": (10, 2), "n_resampling_steps": (1, 2, 3)}, "3 entries but there are 2"),
        ({"n_clusters": (10, 2), "n_splits": 3}, "either splits its clusters or resamples"),
        ({"n_clusters": (10, 2), "resampling_strategy": "far"}, "one of 'closest', 'random'"),
        ({"n_clusters": (10, 2), "level": 3}, "level must be 1..2"),
        ({"n_clusters": (10, 2), "level": 0}, "level=0 is not allowed"),
        ({"n_clusters": 5, "branching": 1}, "branching must be an integer >= 2"),
        ({"n_clusters": (10, 2), "n_levels": 3}, "n_levels=3 but n_clusters lists 2"),
        ({"n_clusters": (10, 2), "sample_size": 0}, "sample_size must be None or an integer"),
    ],
)
def test_bad_parameters_raise_clear_errors(blobs, params, match):
    X, _ = blobs
    with pytest.raises(InputError, match=match):
        HierarchicalKMeans(**params).fit(X)


def test_bad_sampling_and_predict_requests(blobs, fitted):
    X, _ = blobs
    with pytest.raises(InputError, match="n_samples=2001 is more than the 2000 fitted rows"):
        fitted.balanced_sample(2001)
    with pytest.raises(InputError, match="strategy must be"):
        fitted.balanced_sample(10, strategy="uniform")
    with pytest.raises(InputError, match="n_samples must be a positive integer"):
        fitted.balanced_sample(0)
    with pytest.raises(InputError, match="fitted with 8"):
        fitted.predict(X[:, :5])
    with pytest.raises(InputError, match="not fitted"):
        HierarchicalKMeans().balanced_sample(10)
    with pytest.raises(InputError, match="NaN"):
        HierarchicalKMeans((5, 2)).fit(np.full((20, 3), np.nan))
    if "precision" not in inspect.signature(KMeans).parameters:
        with pytest.raises(InputError, match="leave precision='auto'"):
            HierarchicalKMeans((5, 2), precision="bf16").fit(X)
