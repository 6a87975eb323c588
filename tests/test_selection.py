"""Tests of deepclust.selection: k ranges and the label-free choice of k."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

import deepclust.reduce
from deepclust.errors import InputError
from deepclust.selection import CRITERIA, KSelection, parse_k_range, select_k

K_VALUES = range(2, 8)


@pytest.fixture(scope="module")
def blobs():
    """4 clear clusters in 10-D, 240 points."""
    X, y = make_blobs(n_samples=240, centers=4, n_features=10, cluster_std=1.0,
                      center_box=(-15, 15), random_state=4)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def umap_selection(blobs):
    X, _ = blobs
    return select_k(X, "kmeans", K_VALUES, criterion="umap_silhouette", random_state=0)


# ----------------------------------------------------------------------------- parse_k_range


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2:6", [2, 3, 4, 5, 6]),
        ("2:10:4", [2, 6, 10]),
        (" 3 : 5 ", [3, 4, 5]),
        ("5,10,20", [5, 10, 20]),
        ("20, 5,5,", [5, 20]),
        ("7", [7]),
        ("1:1", [1]),
        ([9, 3, 3], [3, 9]),
        (range(2, 5), [2, 3, 4]),
        ((np.int64(4), 2), [2, 4]),
    ],
)
def test_parse_k_range_forms(text, expected):
    assert parse_k_range(text) == expected


@pytest.mark.parametrize(
    "text, match",
    [
        ("6:2", "is empty"),
        ("2:10:0", "is empty"),
        ("a:b", "cannot read k range"),
        ("2:", "cannot read k range"),
        ("x,y", "cannot read k values"),
        ("", "positive integers"),
        ("0:3", "positive integers"),
        ("-1,2", "positive integers"),
        ([0, 2], "positive integers"),
        (["a"], "positive integers"),
        ([], "positive integers"),
    ],
)
def test_parse_k_range_errors(text, match):
    with pytest.raises(InputError, match=match):
        parse_k_range(text)


# ----------------------------------------------------------------------------- select_k


def test_umap_silhouette_picks_the_four_blobs(umap_selection):
    sel = umap_selection
    assert isinstance(sel, KSelection)
    assert sel.criterion == "umap_silhouette" and not sel.oracle
    assert sel.best_k == 4
    assert [c["k"] for c in sel.curve] == list(K_VALUES)
    assert all(np.isfinite(c["score"]) for c in sel.curve)
    assert max(sel.curve, key=lambda c: c["score"])["k"] == 4
    assert [c["n_clusters"] for c in sel.curve] == list(K_VALUES)
    d = sel.as_dict()
    assert d["best_k"] == 4 and d["oracle"] is False and len(d["curve"]) == len(K_VALUES)


@pytest.mark.parametrize("criterion", ["silhouette", "calinski_harabasz", "davies_bouldin"])
def test_feature_space_criteria_pick_the_four_blobs(blobs, criterion):
    X, _ = blobs
    sel = select_k(X, "kmeans", K_VALUES, criterion=criterion, random_state=0)
    assert sel.best_k == 4 and not sel.oracle
    scores = [c["score"] for c in sel.curve]
    best = (min if criterion == "davies_bouldin" else max)(scores)
    assert sel.curve[scores.index(best)]["k"] == 4


def test_other_methods_and_params_are_swept(blobs):
    X, _ = blobs
    sel = select_k(X, "agglomerative", [3, 4, 5], criterion="silhouette",
                   params={"linkage": "average"})
    assert sel.best_k == 4


def test_a_given_proxy_embedding_is_used_without_refitting_umap(blobs, monkeypatch):
    X, y = blobs

    def no_umap(*args, **kwargs):
        raise AssertionError("UMAP must not be recomputed")

    monkeypatch.setattr(deepclust.reduce, "umap_embedding", no_umap)
    # a proxy space in which the true classes are points: the proxy must agree with it
    proxy = np.eye(4, dtype=np.float32)[y] + 0.01 * np.random.default_rng(0).normal(size=(240, 4))
    sel = select_k(X, "kmeans", [2, 3, 4, 5], proxy_embedding=proxy, random_state=0)
    assert sel.best_k == 4


@pytest.mark.parametrize("method", ["hdbscan", "affinity-propagation"])
def test_methods_that_find_k_themselves_refuse(blobs, method):
    X, _ = blobs
    with pytest.raises(InputError, match=f"{method} finds the number of clusters itself"):
        select_k(X, method, K_VALUES, criterion="silhouette")


def test_oracle_ami_needs_labels_and_is_flagged(blobs):
    X, y = blobs
    assert CRITERIA["oracle_ami"].higher_is_better and CRITERIA["oracle_ami"].needs_labels
    with pytest.raises(InputError, match="oracle and needs true labels"):
        select_k(X, "kmeans", K_VALUES, criterion="oracle_ami")
    with pytest.raises(InputError, match="oracle and needs true labels"):
        select_k(X, "kmeans", K_VALUES, criterion="oracle_ami", y_true=np.full(len(X), -1))
    sel = select_k(X, "kmeans", K_VALUES, criterion="oracle_ami", y_true=y, random_state=0)
    assert sel.oracle and sel.as_dict()["oracle"] is True
    assert sel.best_k == 4
    assert max(c["score"] for c in sel.curve) > 0.95


def test_label_free_criteria_never_read_labels(blobs):
    X, y = blobs
    a = select_k(X, "kmeans", K_VALUES, criterion="silhouette", random_state=0)
    b = select_k(X, "kmeans", K_VALUES, criterion="silhouette", random_state=0,
                 y_true=np.roll(y, 7))
    assert a.curve == b.curve


def test_unknown_criterion_and_method(blobs):
    X, _ = blobs
    with pytest.raises(InputError, match="unknown criterion 'gap'.*umap_silhouette"):
        select_k(X, "kmeans", K_VALUES, criterion="gap")
    with pytest.raises(InputError, match="unknown clustering method 'kmedians'"):
        select_k(X, "kmedians", K_VALUES, criterion="silhouette")


def test_k_values_above_n_are_dropped(blobs):
    X, _ = blobs
    small = X[:6]
    sel = select_k(small, "kmeans", [2, 3, 50], criterion="silhouette", random_state=0)
    assert [c["k"] for c in sel.curve] == [2, 3]
    with pytest.raises(InputError, match="no k in the range is at most the number of samples"):
        select_k(small, "kmeans", [7, 8], criterion="silhouette")


def test_all_scores_undefined(blobs):
    X, _ = blobs
    with pytest.raises(InputError, match="undefined for every k"):
        select_k(X, "kmeans", [1], criterion="silhouette")


@pytest.mark.parametrize("param", ["n_clusters", "random_state"])
def test_params_may_not_set_k_or_the_seed(blobs, param):
    X, _ = blobs
    with pytest.raises(InputError, match=f"do not pass {param}"):
        select_k(X, "kmeans", K_VALUES, criterion="silhouette", params={param: 3})
