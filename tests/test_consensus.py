"""The consensus head: alignment, vote, classifier on the confident rows, unseen rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from deepclust.cluster import Consensus, make_clusterer
from deepclust.cluster.consensus import align_partitions, member_seed, member_specs, vote
from deepclust.errors import InputError


def test_alignment_undoes_a_relabelling_and_vote_counts():
    ref = np.array([0, 0, 1, 1, 2, 2])
    renamed = np.array([2, 2, 0, 0, 1, 1])  # the same partition, other names
    noisy = np.array([1, 1, 2, 0, 0, 0])  # one row disagrees after alignment
    aligned = align_partitions(np.stack([ref, renamed, noisy]), 0, 3)
    np.testing.assert_array_equal(aligned[1], ref)
    np.testing.assert_array_equal(aligned[2], [0, 0, 1, 2, 2, 2])
    labels, share = vote(aligned, 3)
    np.testing.assert_array_equal(labels, ref)
    np.testing.assert_allclose(share, [1, 1, 1, 2 / 3, 1, 1])


def test_consensus_of_precomputed_partitions_trains_on_the_agreed_rows():
    X, y = make_blobs(n_samples=300, centers=3, n_features=5, random_state=0)
    rng = np.random.default_rng(0)
    a = y.copy()
    b = (y + 1) % 3  # a relabelled copy
    c = y.copy()
    flip = rng.choice(300, 30, replace=False)
    c[flip] = (c[flip] + 1) % 3  # 10 % of rows wrong in one member
    model = Consensus(n_clusters=3, members="kmeans,kmeans,kmeans", random_state=0)
    model.fit(X, partitions=np.stack([a, b, c]))
    assert model.confident_fraction_ == pytest.approx(0.9)
    assert model.n_iter_ >= 1
    assert adjusted_rand_score(y, model.consensus_) == 1.0
    # the classifier, trained on the agreed rows only, puts the flipped rows back
    assert adjusted_rand_score(y, model.labels_) == 1.0
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_consensus_fits_its_members_and_predicts_unseen_rows():
    X, y = make_blobs(n_samples=400, centers=4, n_features=6, random_state=1)
    X = X.astype(np.float32)
    members = [("kmeans", {}), ("gmm", {}), ("agglomerative", {})]
    model = make_clusterer("consensus", n_clusters=4, members=members, random_state=0)
    labels = model.fit_predict(X[:300])
    assert adjusted_rand_score(y[:300], labels) > 0.95
    assert adjusted_rand_score(y[300:], model.predict(X[300:])) > 0.95
    assert model.member_partitions_.shape == (3, 300)
    assert model.predict_proba(X[300:]).shape == (100, 4)


@pytest.mark.parametrize("members, msg", [
    ("kmeans", "at least 2 members"),
    ("kmeans,hdbscan", "finds k itself"),
    ("kmeans,nope", "unknown clustering method"),
])
def test_bad_members_are_named(members, msg):
    X, _ = make_blobs(n_samples=50, centers=2, n_features=3, random_state=0)
    with pytest.raises(InputError, match=msg):
        Consensus(n_clusters=2, members=members).fit(X)


def test_partitions_of_the_wrong_shape_are_named():
    X, _ = make_blobs(n_samples=50, centers=2, n_features=3, random_state=0)
    with pytest.raises(InputError, match="partitions must have shape"):
        Consensus(n_clusters=2, members="kmeans,kmeans").fit(X, partitions=np.zeros((3, 50), int))


def test_member_seeds_repeat_per_method_and_differ_within_one():
    specs = member_specs("temi,scanv2,temi,turtle,temi")
    assert [member_seed(specs, i, 7) for i in range(5)] == [7, 7, 8, 7, 9]


def test_repeated_members_are_fitted_with_different_seeds():
    # structureless rows: k-means with one init lands elsewhere for each seed
    X = np.random.default_rng(0).random((200, 4), dtype=np.float32)
    model = Consensus(n_clusters=3, members=[("kmeans", {"n_init": 1})] * 2, random_state=0)
    model.fit(X)
    seeds = [make_clusterer("kmeans", n_clusters=3, n_init=1, random_state=s).fit(X).labels_
             for s in (0, 1)]
    aligned = align_partitions(np.stack(seeds), model.reference_, 3)
    np.testing.assert_array_equal(model.member_partitions_, aligned)
    assert not np.array_equal(aligned[0], aligned[1])
