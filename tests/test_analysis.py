"""Non-primary cluster analysis: rankings, naming, rates and chance on hand-built cases."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from deepclust.analysis import name_clusters, non_primary_analysis, rank_clusters, soft_scores
from deepclust.cluster import make_clusterer
from deepclust.data.hierarchy import Hierarchy
from deepclust.errors import InputError

# fine classes a1, a2 under A; b1, b2 under B; c1 is a root of its own
H = Hierarchy({"a1": "A", "a2": "A", "b1": "B", "b2": "B", "c1": None})
NAMES = ["a1", "a2", "b1", "b2", "c1"]


def test_hand_built_case_rates_and_chance():
    # 4 clusters; by majority at depth 0: 0 -> A, 1 -> A, 2 -> B, 3 -> c1
    y = np.array([0, 0, 1, 2, 3, 4, 4])
    ranked = np.array([
        [0, 1, 2],  # a1: rank 2 names A (ancestor), rank 3 names B (unrelated)
        [0, 2, 1],  # a1: rank 2 B (unrelated), rank 3 A (ancestor)
        [1, 0, 3],  # a2: rank 2 A (ancestor)
        [2, 3, 0],  # b1: rank 2 c1 (unrelated)
        [2, 0, 1],  # b2: rank 2 A (unrelated)
        [3, 2, 0],  # c1: rank 2 B (unrelated)
        [3, 1, 2],  # c1: rank 2 A (unrelated)
    ])
    r = non_primary_analysis(ranked, y, NAMES, H, depth=0, n_clusters=4)
    assert r.cluster_names == ["A", "A", "B", "c1"]
    rank2, rank3 = r.per_rank[1], r.per_rank[2]
    assert rank2["ancestor"] == pytest.approx(2 / 7)
    assert rank2["unrelated"] == pytest.approx(5 / 7)
    assert rank3["ancestor"] == pytest.approx(1 / 7)
    # chance: among the 3 other clusters, images of A-classes with primary named A have one
    # more A (1/3); the others (B, B, c1, c1 primaries) have none (for B: no other B)
    assert rank2["chance_ancestor"] == pytest.approx((1 / 3) * 3 / 7)
    # rank 1 of c1 images names c1 itself: "same"; of a/b images, their ancestor
    assert r.per_rank[0]["same"] == pytest.approx(2 / 7)
    assert r.per_rank[0]["ancestor"] == pytest.approx(5 / 7)
    # any of ranks 2-3: images 0, 1, 2 have an ancestor among them
    assert r.any_rank["ancestor"] == pytest.approx(3 / 7)
    # hypergeometric chance: 2 draws of 3 others, one good for images 0-2: 2/3
    assert r.any_rank["chance_ancestor"] == pytest.approx((2 / 3) * 3 / 7)
    assert r.any_rank["possible_ancestor"] == pytest.approx(3 / 7)  # a1, a1, a2 images
    flat = r.flat()
    assert flat["np_r2_ancestor"] == rank2["ancestor"] and flat["np_naming"] == "depth=0"


def test_same_and_descendant_categories_when_inner_nodes_are_classes():
    # ImageNet-21K labels inner nodes too: "dog" images and "retriever" images
    h = Hierarchy({"retriever": "dog", "dog": "animal", "cat": "animal"})
    names = ["retriever", "dog", "cat"]
    y = np.array([0, 0, 1, 1, 2])
    # clusters 0, 1, 2 hold the retriever, dog and cat images: named so (fine naming)
    ranked = np.array([[0, 1], [0, 2], [1, 0], [1, 2], [2, 1]])
    r = non_primary_analysis(ranked, y, names, h, n_clusters=3)
    rank2 = r.per_rank[1]
    # image 0 (retriever): cluster 1 "dog" is its ancestor; image 1: "cat" unrelated;
    # image 2 (dog): "retriever" is a descendant; image 3: "cat" unrelated; image 4 (cat):
    # "dog" unrelated
    assert rank2["ancestor"] == pytest.approx(1 / 5)
    assert rank2["descendant"] == pytest.approx(1 / 5)
    assert rank2["unrelated"] == pytest.approx(3 / 5)
    assert r.naming == "fine"


def test_any_rank_chance_matches_enumeration():
    rng = np.random.default_rng(3)
    h = Hierarchy({f"f{i}": f"g{i % 3}" for i in range(9)})
    names = [f"f{i}" for i in range(9)]
    y = rng.integers(0, 9, 300)
    k = 7
    labels = rng.integers(0, k, 300)
    scores = rng.random((300, k))
    ranked = rank_clusters(labels, scores, n_ranks=4)
    r = non_primary_analysis(ranked, y, names, h, depth=0, n_clusters=k)
    cname = r.cluster_names
    expected = []
    for yi, p in zip(y, labels, strict=True):
        others = [c for c in range(k) if c != p]
        good = {c for c in others if cname[c] == f"g{yi % 3}"}
        draws = list(combinations(others, 3))
        expected.append(np.mean([bool(good & set(d)) for d in draws]))
    assert r.any_rank["chance_ancestor"] == pytest.approx(np.mean(expected))


def test_rank_clusters_puts_the_assigned_cluster_first():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    labels = np.array([0, 0])  # row 0 was assigned 0 although 1 scores higher
    ranked = rank_clusters(labels, scores, n_ranks=3)
    assert ranked.tolist() == [[0, 1, 2], [0, 2, 1]]
    dist = np.array([[3.0, 1.0, 2.0]])
    assert rank_clusters(np.array([1]), dist, higher_is_better=False).tolist() == [[1, 2, 0]]
    # ties go to the smaller cluster index; noise rows are -1
    ties = rank_clusters(np.array([2, -1]), np.zeros((2, 4)), n_ranks=3)
    assert ties.tolist() == [[2, 0, 1], [-1, -1, -1]]
    # without scores: distance to the cluster means
    X = np.array([[0.0], [0.2], [5.0], [5.2], [10.0]])
    by_means = rank_clusters(np.array([0, 0, 1, 1, 2]), X=X, n_ranks=3)
    assert by_means[0].tolist() == [0, 1, 2] and by_means[4].tolist() == [2, 1, 0]
    with pytest.raises(InputError):
        rank_clusters(np.array([0]), None)


def test_soft_scores_of_kmeans_and_gmm():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.3, (40, 2)) for c in (0.0, 4.0, 8.0)])
    km = make_clusterer("kmeans", n_clusters=3, random_state=0).fit(X)
    s, higher = soft_scores(km, X)
    assert not higher and s.shape == (120, 3)
    assert np.array_equal(s.argmin(1), km.labels_)
    gmm = make_clusterer("gmm", n_clusters=3, random_state=0).fit(X)
    s, higher = soft_scores(gmm, X)
    assert higher and np.array_equal(s.argmax(1), gmm.labels_)
    # log-likelihoods do not tie where probabilities underflow to 0
    assert len(np.unique(s[0])) == 3
    ranked = rank_clusters(gmm.labels_, s, n_ranks=3)
    # the middle blob is everyone's runner-up: rank 2 of outer blobs is the middle cluster
    middle = gmm.labels_[40]
    assert np.all(ranked[:40, 1] == middle) and np.all(ranked[80:, 1] == middle)
    agg = make_clusterer("agglomerative", n_clusters=3).fit(X)
    assert soft_scores(agg, X)[0] is None


def test_name_clusters_majority_and_empty():
    labels = np.array([0, 0, 0, 2, 2])
    y = np.array([1, 1, 0, 3, -1])
    assert name_clusters(labels, y, 4).tolist() == [1, -1, 3, -1]


def test_blobs_non_primary_clusters_name_the_coarse_class():
    # 3 coarse groups of 3 fine blobs each: the runner-up centroid is a sibling blob
    rng = np.random.default_rng(1)
    h = Hierarchy({f"f{i}": f"g{i // 3}" for i in range(9)})
    names = [f"f{i}" for i in range(9)]
    centres = np.concatenate([rng.normal(0, 30, (3, 8))[g] + rng.normal(0, 4, (3, 8))
                              for g in range(3)])
    y = np.repeat(np.arange(9), 50)
    X = centres[y] + rng.normal(0, 1, (len(y), 8))
    km = make_clusterer("kmeans", n_clusters=9, random_state=0).fit(X)
    s, higher = soft_scores(km, X)
    r = non_primary_analysis(rank_clusters(km.labels_, s, higher_is_better=higher), y, names,
                             h, depth=0, n_clusters=9)
    assert r.per_rank[1]["ancestor"] > 0.95
    assert r.per_rank[1]["chance_ancestor"] == pytest.approx(2 / 8)


def test_soft_scores_prefer_probabilities_of_heads():
    class Head:  # what TEMI and SCAN expose: predict_proba, no centroids
        def predict_proba(self, X):
            return np.array([[0.2, 0.5, 0.3]])

    s, higher = soft_scores(Head(), np.zeros((1, 2)))
    assert higher and rank_clusters(np.array([1]), s).tolist() == [[1, 2, 0]]
