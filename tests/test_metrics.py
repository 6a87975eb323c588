"""Tests of deepclust.metrics: agreement with scikit-learn, ACC against brute force, the
noise and unknown-label rules, and the label-free NaN rules."""

from __future__ import annotations

import math
import subprocess
import sys
from itertools import permutations

import numpy as np
import pytest
from sklearn import metrics as skm

from deepclust import metrics as M
from deepclust.errors import InputError

TOL = 1e-9


def random_labels(seed: int, n: int = 300, k_true: int = 5, k_pred: int = 7):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k_true, n)
    # partly informative predictions, so scores are neither ~0 nor 1
    y_pred = np.where(rng.random(n) < 0.6, y_true % k_pred, rng.integers(0, k_pred, n))
    return y_true, y_pred


def brute_force_acc(y_true, y_pred) -> float:
    """Best accuracy over every one-to-one cluster -> class map (injective, not a table)."""
    classes, clusters = np.unique(y_true).tolist(), np.unique(y_pred).tolist()
    best = 0
    if len(clusters) <= len(classes):
        maps = (
            dict(zip(clusters, img, strict=True)) for img in permutations(classes, len(clusters))
        )
    else:
        maps = (
            {c: t for c, t in zip(chosen, classes, strict=True)}
            for chosen in permutations(clusters, len(classes))
        )
    for mapping in maps:
        hits = sum(
            mapping.get(p) == t for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True)
        )
        best = max(best, hits)
    return best / len(y_true)


# ------------------------------------------------------------------ agreement with sklearn


@pytest.mark.parametrize("seed", range(4))
def test_label_scores_agree_with_sklearn(seed):
    y_true, y_pred = random_labels(seed, k_true=3 + seed, k_pred=2 + 2 * seed)
    for method in ("arithmetic", "geometric", "min", "max"):
        assert M.nmi(y_true, y_pred, method) == pytest.approx(
            skm.normalized_mutual_info_score(y_true, y_pred, average_method=method), abs=TOL
        )
        assert M.ami(y_true, y_pred, method) == pytest.approx(
            skm.adjusted_mutual_info_score(y_true, y_pred, average_method=method), abs=TOL
        )
    assert M.ari(y_true, y_pred) == pytest.approx(skm.adjusted_rand_score(y_true, y_pred), abs=TOL)
    assert M.homogeneity(y_true, y_pred) == pytest.approx(
        skm.homogeneity_score(y_true, y_pred), abs=TOL
    )
    assert M.completeness(y_true, y_pred) == pytest.approx(
        skm.completeness_score(y_true, y_pred), abs=TOL
    )


def test_average_method_is_passed_through():
    y_true, y_pred = random_labels(7, k_true=3, k_pred=9)
    arith, geo = M.nmi(y_true, y_pred), M.nmi(y_true, y_pred, "geometric")
    assert abs(arith - geo) > 1e-4  # entropies differ, so the averages must too
    r = M.evaluate(y_true, y_pred, average_method="geometric")
    assert r["nmi"] == pytest.approx(geo, abs=TOL)
    assert r["ami"] == pytest.approx(
        skm.adjusted_mutual_info_score(y_true, y_pred, average_method="geometric"), abs=TOL
    )
    assert r["average_method"] == "geometric"


def test_evaluate_agrees_with_single_scores_and_sklearn():
    y_true, y_pred = random_labels(11)
    r = M.evaluate(y_true, y_pred)
    assert r["nmi"] == pytest.approx(skm.normalized_mutual_info_score(y_true, y_pred), abs=TOL)
    assert r["ami"] == pytest.approx(skm.adjusted_mutual_info_score(y_true, y_pred), abs=TOL)
    assert r["ari"] == pytest.approx(skm.adjusted_rand_score(y_true, y_pred), abs=TOL)
    assert r["homogeneity"] == pytest.approx(skm.homogeneity_score(y_true, y_pred), abs=TOL)
    assert r["completeness"] == pytest.approx(skm.completeness_score(y_true, y_pred), abs=TOL)
    assert r["acc"] == pytest.approx(M.cluster_acc(y_true, y_pred), abs=TOL)
    assert r["purity"] == pytest.approx(M.purity(y_true, y_pred), abs=TOL)
    assert r["many_to_one_acc"] == pytest.approx(M.many_to_one_acc(y_true, y_pred), abs=TOL)
    assert (r["n_samples"], r["n_classes"], r["n_clusters"]) == (300, 5, 7)
    assert (r["n_noise"], r["noise_fraction"], r["coverage"]) == (0, 0.0, 1.0)


@pytest.mark.parametrize("seed", range(3))
def test_label_free_scores_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 4))
    labels = rng.integers(0, 3 + seed, 200)
    X[labels == 0] += 2.0
    assert M.silhouette(X, labels) == pytest.approx(skm.silhouette_score(X, labels), abs=TOL)
    assert M.silhouette(X, labels, metric="cosine") == pytest.approx(
        skm.silhouette_score(X, labels, metric="cosine"), abs=TOL
    )
    assert M.davies_bouldin(X, labels) == pytest.approx(
        skm.davies_bouldin_score(X, labels), abs=TOL
    )
    assert M.calinski_harabasz(X, labels) == pytest.approx(
        skm.calinski_harabasz_score(X, labels), rel=TOL
    )
    r = M.label_free(X, labels, include_umap=False)
    assert r["silhouette"] == pytest.approx(skm.silhouette_score(X, labels), abs=TOL)
    assert r["davies_bouldin"] == pytest.approx(skm.davies_bouldin_score(X, labels), abs=TOL)
    assert r["calinski_harabasz"] == pytest.approx(skm.calinski_harabasz_score(X, labels), rel=TOL)
    assert r["umap_silhouette"] is None and r["nan_reason"] is None
    assert r["silhouette_sample_size"] == 200


def test_precomputed_silhouette_drops_noise_rows_and_columns():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    labels = rng.integers(-1, 3, 60)
    D = skm.pairwise_distances(X)
    keep = labels != -1
    expected = skm.silhouette_score(X[keep], labels[keep])
    assert M.silhouette(D, labels, metric="precomputed") == pytest.approx(expected, abs=TOL)


# ------------------------------------------------------------------ ACC


@pytest.mark.parametrize("seed", range(12))
def test_acc_equals_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    k_true, k_pred = rng.integers(1, 7, size=2)  # includes k_pred != k_true both ways
    n = int(rng.integers(5, 40))
    y_true = rng.integers(0, k_true, n) * 3 + 1  # labels need not be 0..k-1
    y_pred = rng.integers(0, k_pred, n) - (seed % 2)  # includes -1 as an ordinary cluster
    assert M.cluster_acc(y_true, y_pred) == pytest.approx(brute_force_acc(y_true, y_pred))


def test_acc_rectangular_cases_by_hand():
    # more clusters than classes: cluster 2 is left unmatched and its point counts as wrong
    assert M.cluster_acc([0, 0, 1, 1, 1], [1, 1, 0, 0, 2]) == pytest.approx(4 / 5)
    # fewer clusters than classes: class 2 gets no cluster
    assert M.cluster_acc([0, 0, 1, 1, 2], [5, 5, 7, 7, 7]) == pytest.approx(4 / 5)
    assert M.cluster_acc([0, 1, 2], [9, 9, 9]) == pytest.approx(1 / 3)


def test_hungarian_mapping_is_one_to_one_and_gives_acc():
    y_true, y_pred = random_labels(5, k_true=4, k_pred=6)
    mapping = M.hungarian_mapping(y_true, y_pred)
    assert len(mapping) == 4  # min(k_true, k_pred)
    assert len(set(mapping.values())) == len(mapping)
    hits = np.mean([mapping.get(p) == t for t, p in zip(y_true, y_pred, strict=True)])
    assert hits == pytest.approx(M.cluster_acc(y_true, y_pred))
    assert M.hungarian_mapping([0, 0, 1, 1, 1], [1, 1, 0, 0, 2]) == {0: 1, 1: 0}


def test_many_to_one_on_an_over_clustering():
    # each class split into two pure clusters: Hungarian can match only one per class
    y_true = np.repeat([0, 1, 2], 4)
    y_pred = np.repeat([0, 1, 2, 3, 4, 5], 2)
    assert M.many_to_one_acc(y_true, y_pred) == 1.0
    assert M.cluster_acc(y_true, y_pred) == pytest.approx(0.5)
    assert M.many_to_one_mapping(y_true, y_pred) == {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2}
    # an impure over-clustering: majorities 2 + 2 + 1 (tie -> smaller class) of 6
    y_true = [0, 0, 1, 0, 1, 1, 2, 1]
    y_pred = [0, 0, 0, 1, 1, 1, 2, 2]
    assert M.many_to_one_acc(y_true, y_pred) == pytest.approx(5 / 8)
    assert M.many_to_one_mapping(y_true, y_pred) == {0: 0, 1: 1, 2: 1}


def test_purity_by_hand():
    # cluster 0 = {0, 0}: 2; cluster 1 = {0, 1, 1, 2}: 2
    assert M.purity([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 1]) == pytest.approx(4 / 6)
    assert M.purity([0, 1, 2, 3], [0, 0, 0, 0]) == pytest.approx(1 / 4)
    assert M.purity([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0


# ------------------------------------------------------------------ noise and unknown labels

# classes 0, 0, 0 | 1, 1, 1 | 2, 2; clusters 0 and 1 each catch two points of their class,
# the other four points (one of class 0, one of class 1, both of class 2) are noise.
NOISY_TRUE = np.array([0, 0, 0, 1, 1, 1, 2, 2])
NOISY_PRED = np.array([0, 0, -1, 1, 1, -1, -1, -1])


def test_noise_as_one_cluster():
    r = M.evaluate(NOISY_TRUE, NOISY_PRED, noise="cluster")
    # contingency: class0 -> c0:2, N:1; class1 -> c1:2, N:1; class2 -> N:2; N matched to 2
    assert r["acc"] == pytest.approx(6 / 8)
    assert r["purity"] == pytest.approx(6 / 8)  # 2 + 2 + majority 2 of the noise cluster
    as_cluster = [0, 0, 9, 1, 1, 9, 9, 9]
    assert r["nmi"] == pytest.approx(skm.normalized_mutual_info_score(NOISY_TRUE, as_cluster))
    assert r["ami"] == pytest.approx(skm.adjusted_mutual_info_score(NOISY_TRUE, as_cluster))
    assert (r["n_noise"], r["noise_fraction"], r["n_scored"], r["coverage"]) == (4, 0.5, 8, 1.0)
    assert (r["n_clusters"], r["n_classes"], r["noise"]) == (2, 3, "cluster")
    assert M.cluster_acc(NOISY_TRUE, NOISY_PRED) == r["acc"]  # the default everywhere


def test_noise_as_singletons():
    r = M.evaluate(NOISY_TRUE, NOISY_PRED, noise="singletons")
    # c0 -> 0 (2), c1 -> 1 (2), one class-2 singleton -> 2 (1)
    assert r["acc"] == pytest.approx(5 / 8)
    assert r["purity"] == 1.0  # every singleton is pure: the documented inflation
    assert r["many_to_one_acc"] == 1.0
    singletons = [0, 0, 2, 1, 1, 3, 4, 5]
    assert r["nmi"] == pytest.approx(skm.normalized_mutual_info_score(NOISY_TRUE, singletons))
    assert r["ari"] == pytest.approx(skm.adjusted_rand_score(NOISY_TRUE, singletons))
    assert (r["n_noise"], r["n_scored"], r["coverage"], r["n_clusters"]) == (4, 8, 1.0, 2)
    assert M.cluster_acc(NOISY_TRUE, NOISY_PRED, noise="singletons") == r["acc"]


def test_noise_excluded_reports_coverage():
    r = M.evaluate(NOISY_TRUE, NOISY_PRED, noise="exclude")
    assert r["acc"] == 1.0 and r["nmi"] == pytest.approx(1.0) and r["purity"] == 1.0
    assert (r["n_scored"], r["coverage"], r["noise_fraction"]) == (4, 0.5, 0.5)
    assert r["n_classes"] == 3  # class 2 exists even though none of it was scored
    assert M.nmi(NOISY_TRUE, NOISY_PRED, noise="exclude") == pytest.approx(1.0)


def test_all_noise_excluded_gives_nan_not_error():
    r = M.evaluate([0, 1, 1], [-1, -1, -1], noise="exclude")
    assert all(math.isnan(r[k]) for k in ("acc", "nmi", "ami", "ari", "purity"))
    assert (r["n_scored"], r["coverage"], r["noise_fraction"]) == (0, 0.0, 1.0)
    assert math.isnan(M.cluster_acc([0, 1], [-1, -1], noise="exclude"))


def test_unknown_true_labels_are_dropped_and_counted():
    y_true, y_pred = random_labels(21, n=120)
    unknown = np.random.default_rng(0).random(120) < 0.25
    masked = np.where(unknown, -1, y_true)
    r = M.evaluate(masked, y_pred)
    ref = M.evaluate(y_true[~unknown], y_pred[~unknown])
    for key in ("acc", "nmi", "ami", "ari", "purity", "n_classes", "n_clusters"):
        assert r[key] == pytest.approx(ref[key], abs=TOL), key
    assert r["n_samples"] == 120
    assert r["n_unknown"] == int(unknown.sum()) > 0
    assert r["n_labelled"] == r["n_scored"] == 120 - r["n_unknown"]
    assert M.ami(masked, y_pred) == pytest.approx(ref["ami"], abs=TOL)
    assert M.contingency(masked, y_pred).table.sum() == 120 - r["n_unknown"]


def test_unknown_and_noise_together():
    r = M.evaluate([0, 0, 1, 1, -1, -1], [3, 3, 4, -1, -1, 4], noise="exclude")
    # row 4 is unknown (not noise, not scored); row 3 is noise among the labelled rows
    assert (r["n_unknown"], r["n_labelled"], r["n_noise"], r["n_scored"]) == (2, 4, 1, 3)
    assert r["coverage"] == pytest.approx(0.75) and r["acc"] == 1.0


def test_every_label_unknown_is_an_error():
    with pytest.raises(InputError, match="unknown"):
        M.evaluate([-1, -1], [0, 1])


# ------------------------------------------------------------------ tables


def test_per_class_and_per_cluster_tables():
    y_true = [0, 0, 0, 1, 1, 2, 2, 2]
    y_pred = [5, 5, 6, 6, 6, 7, 7, -1]
    classes = M.per_class_table(y_true, y_pred)
    assert [row["class"] for row in classes] == [0, 1, 2]
    c0 = classes[0]
    assert (c0["size"], c0["matched_cluster"], c0["top_cluster"], c0["n_clusters"]) == (3, 5, 5, 2)
    assert c0["recall"] == pytest.approx(2 / 3) and c0["precision"] == 1.0
    assert classes[1]["matched_cluster"] == 6 and classes[1]["precision"] == pytest.approx(2 / 3)

    clusters = {row["cluster"]: row for row in M.per_cluster_table(y_true, y_pred)}
    assert sorted(clusters) == [-1, 5, 6, 7]
    assert clusters[-1]["is_noise"] and not clusters[6]["is_noise"]
    c6 = clusters[6]
    assert (c6["size"], c6["majority_class"], c6["n_classes"], c6["matched_class"]) == (3, 1, 2, 1)
    assert clusters[6]["purity"] == pytest.approx(2 / 3)
    assert clusters[-1]["matched_class"] is None and clusters[-1]["matched_fraction"] is None
    excluded = M.per_cluster_table(y_true, y_pred, noise="exclude")
    assert [row["cluster"] for row in excluded] == [5, 6, 7]


def test_unmatched_class_in_table():
    rows = M.per_class_table([0, 0, 1, 2], [4, 4, 4, 4])
    unmatched = [r for r in rows if r["matched_cluster"] is None]
    assert len(unmatched) == 2 and all(r["recall"] == 0.0 for r in unmatched)


def test_contingency_matches_counts():
    table, classes, clusters = M.contingency([1, 1, 3, 3, 3], [0, 2, 2, 2, -1])
    assert classes.tolist() == [1, 3] and clusters.tolist() == [-1, 0, 2]
    assert table.tolist() == [[0, 1, 1], [1, 0, 2]]


# ------------------------------------------------------------------ input errors


def test_wrong_length_is_a_clear_error():
    with pytest.raises(InputError, match="one entry per row"):
        M.evaluate([0, 1, 2], [0, 1])
    with pytest.raises(InputError, match="one entry per row"):
        M.cluster_acc([0, 1, 2], [0, 1, 1, 1])
    with pytest.raises(InputError, match="one entry per row"):
        M.silhouette(np.zeros((4, 2)), [0, 1, 0])


def test_two_dimensional_labels_are_an_error():
    with pytest.raises(InputError, match="1-D"):
        M.evaluate(np.zeros((4, 2), dtype=int), np.zeros(4, dtype=int))
    with pytest.raises(InputError, match="1-D"):
        M.nmi([0, 1, 0, 1], np.zeros((2, 2), dtype=int))


def test_bad_options_and_labels_are_errors():
    with pytest.raises(InputError, match="noise must be"):
        M.evaluate([0, 1], [0, 1], noise="drop")
    with pytest.raises(InputError, match="average_method"):
        M.nmi([0, 1], [0, 1], "harmonic")
    with pytest.raises(InputError, match="other than -1"):
        M.evaluate([0, 1, 1], [0, -2, 1])
    with pytest.raises(InputError, match="noise must be"):
        M.per_cluster_table([0, 1], [0, -1], noise="singletons")
    with pytest.raises(InputError, match="empty"):
        M.evaluate([], [])
    with pytest.raises(InputError, match="sample_size"):
        M.silhouette(np.zeros((4, 2)), [0, 0, 1, 1], sample_size=1)


# ------------------------------------------------------------------ label-free rules


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    labels = np.repeat([0, 1, 2], 30)
    X = centers[labels] + rng.normal(scale=0.5, size=(90, 2))
    return X, labels


def test_label_free_nan_when_one_cluster(blobs):
    X, _ = blobs
    r = M.label_free(X, np.zeros(90, dtype=int))  # one cluster: UMAP must not even run
    assert all(math.isnan(r[k]) for k in ("silhouette", "umap_silhouette", "davies_bouldin"))
    assert math.isnan(r["calinski_harabasz"])
    assert "fewer than 2 clusters" in r["nan_reason"] and r["silhouette_sample_size"] == 0
    assert math.isnan(M.silhouette(X, np.zeros(90, dtype=int)))
    assert math.isnan(M.davies_bouldin(X, np.zeros(90, dtype=int)))
    assert math.isnan(M.umap_silhouette(X, np.zeros(90, dtype=int)))


def test_label_free_nan_when_every_point_is_its_own_cluster(blobs):
    X, _ = blobs
    r = M.label_free(X, np.arange(90), include_umap=False)
    assert math.isnan(r["silhouette"]) and math.isnan(r["calinski_harabasz"])
    assert "own cluster" in r["nan_reason"]


def test_label_free_nan_when_noise_leaves_one_cluster(blobs):
    X, labels = blobs
    only_one = np.where(labels == 0, 0, -1)
    r = M.label_free(X, only_one, include_umap=False)
    assert math.isnan(r["silhouette"]) and "fewer than 2 clusters" in r["nan_reason"]
    assert (r["n_noise"], r["n_scored"], r["n_clusters"]) == (60, 30, 1)


def test_label_free_excludes_noise(blobs):
    X, labels = blobs
    noisy = labels.copy()
    noisy[::7] = -1
    keep = noisy != -1
    r = M.label_free(X, noisy, include_umap=False)
    assert r["silhouette"] == pytest.approx(skm.silhouette_score(X[keep], labels[keep]), abs=TOL)
    assert r["davies_bouldin"] == pytest.approx(
        skm.davies_bouldin_score(X[keep], labels[keep]), abs=TOL
    )
    assert M.calinski_harabasz(X, noisy) == pytest.approx(
        skm.calinski_harabasz_score(X[keep], labels[keep]), rel=TOL
    )
    assert (r["n_noise"], r["n_scored"], r["n_clusters"]) == (13, 77, 3)


def test_silhouette_subsample_is_deterministic(blobs):
    X, labels = blobs
    a = M.silhouette(X, labels, sample_size=40, random_state=3)
    b = M.silhouette(X, labels, sample_size=40, random_state=3)
    c = M.silhouette(X, labels, sample_size=40, random_state=4)
    full = M.silhouette(X, labels, sample_size=None)
    assert a == b and a != c and a != full
    r = M.label_free(X, labels, sample_size=40, random_state=3, include_umap=False)
    assert r["silhouette"] == a and r["silhouette_sample_size"] == 40


def test_umap_silhouette_uses_a_given_embedding(blobs):
    X, labels = blobs
    emb = X[:, ::-1] * 2.0
    expected = skm.silhouette_score(emb, labels)
    assert M.umap_silhouette(None, labels, embedding=emb) == pytest.approx(expected, abs=TOL)
    r = M.label_free(X, labels, umap_embedding=emb)
    assert r["umap_silhouette"] == pytest.approx(expected, abs=TOL)
    with pytest.raises(InputError, match="embedding has"):
        M.umap_silhouette(X, labels, embedding=emb[:10])


def test_importing_metrics_does_not_import_umap():
    code = "import sys, deepclust.metrics; print('umap' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_umap_silhouette_ranks_true_clusters_above_random(blobs):
    pytest.importorskip("umap")
    X, labels = blobs
    X = np.hstack([X, np.random.default_rng(1).normal(scale=0.1, size=(90, 3))])
    good = M.umap_silhouette(X, labels, n_components=2, n_neighbors=10, random_state=0)
    shuffled = np.random.default_rng(2).permutation(labels)
    shuffled_score = M.umap_silhouette(X, shuffled, n_components=2, n_neighbors=10, random_state=0)
    assert good > 0.5
    assert shuffled_score < 0.1
    again = M.umap_silhouette(X, labels, n_components=2, n_neighbors=10, random_state=0)
    assert again == pytest.approx(good)  # seeded UMAP is reproducible
