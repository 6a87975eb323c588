"""TURTLE: its objective by hand, prediction on unseen rows, several spaces, restarts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from deepclust.cluster import TURTLE, make_clusterer
from deepclust.cluster.heads.turtle import parse_spaces, turtle_objective
from deepclust.errors import InputError

FAST = dict(n_steps=150, inner_steps=3, n_init=2, outer_lr=1e-2, inner_lr=1e-2, device="cpu",
            precision="fp32")


def _blobs(n_per: int, seed: int, d: int = 6, k: int = 3, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(k, d)) * 3
    y = np.repeat(np.arange(k), n_per)
    X = centres[y] + spread * rng.normal(size=(len(y), d))
    return X.astype(np.float32), y


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_objective_by_hand_tiny_case():
    # 3 rows, 2 spaces, 1 restart, 2 clusters
    p1 = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    p2 = np.array([[0.7, 0.3], [0.4, 0.6], [0.1, 0.9]])
    l1 = np.array([[2.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    l2 = np.array([[1.0, -1.0], [0.0, 0.0], [-2.0, 1.0]])
    tau = (p1 + p2) / 2
    error = 0.0
    for lg in (l1, l2):
        logq = np.log(_softmax(lg))
        error += np.mean([-(tau[i] * logq[i]).sum() for i in range(3)])
    entropy = 0.0
    for p in (p1, p2):
        m = p.mean(0)
        entropy += -(m * np.log(m)).sum()
    expected = error - 10.0 * entropy

    t = lambda a: torch.tensor(a, dtype=torch.float64)[:, None, :]  # noqa: E731  (n, R=1, C)
    got = turtle_objective([t(p1), t(p2)], [t(l1), t(l2)], gamma=10.0)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_fitted_objective_matches_hand_computation():
    X, _ = _blobs(30, 0, d=5)
    m = TURTLE(n_clusters=3, spaces=[2, 3], normalize=False, pca_dim=None, gamma=3.0,
               random_state=0, **FAST).fit(X)
    spaces = [X[:, :2].astype(np.float64), X[:, 2:].astype(np.float64)]
    probs = [_softmax(z @ w + b) for z, w, b in zip(spaces, m.coef_, m.intercept_, strict=True)]
    tau = sum(probs) / 2
    error = sum(-(tau * np.log(_softmax(z @ w + b))).sum(1).mean()
                for z, w, b in zip(spaces, m.inner_coef_, m.inner_intercept_, strict=True))
    entropy = sum(-(p.mean(0) * np.log(p.mean(0))).sum() for p in probs)
    assert m.objective_ == pytest.approx(error - 3.0 * entropy, rel=1e-5, abs=1e-5)
    # the kept restart is the one with the lowest objective, and labels are the argmax of tau
    assert m.objective_ == pytest.approx(m.objectives_.min())
    assert m.restart_ == int(np.argmin(m.objectives_))
    np.testing.assert_array_equal(m.labels_, tau.argmax(1))


def test_predict_unseen_rows_agrees_with_fit_predict():
    X, y = _blobs(60, 0)
    X_new, y_new = _blobs(40, 1)
    m = TURTLE(n_clusters=3, random_state=0, **FAST)
    labels = m.fit_predict(X)
    np.testing.assert_array_equal(m.predict(X), labels)
    assert adjusted_rand_score(y, labels) > 0.95
    pred_new = m.predict(X_new)
    assert adjusted_rand_score(y_new, pred_new) > 0.95
    proba = m.predict_proba(X_new)
    assert proba.shape == (len(X_new), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


def test_two_spaces_side_by_side():
    # two views of the same clusters, of different widths and scales (e.g. embeddings and
    # pixels): one labelling, a task encoder per space
    X1, y = _blobs(60, 0, d=4)
    X2 = 50.0 * (X1 @ np.random.default_rng(5).normal(size=(4, 7))).astype(np.float32)
    m = TURTLE(n_clusters=3, spaces="4,7", random_state=0, **FAST).fit(np.hstack([X1, X2]))
    assert m.spaces_ == [4, 7]
    assert [w.shape for w in m.coef_] == [(4, 3), (7, 3)]
    assert adjusted_rand_score(y, m.labels_) > 0.9
    with pytest.raises(InputError, match="features"):
        m.predict(X1)


def test_pca_dim_and_cold_start():
    X, y = _blobs(50, 2, d=20)
    m = TURTLE(n_clusters=3, pca_dim=5, warm_start=False, random_state=1, **FAST).fit(X)
    assert m.widths_ == [5]
    assert m.coef_[0].shape == (5, 3)
    assert adjusted_rand_score(y, m.labels_) > 0.9


def test_seeds_repeat():
    X, _ = _blobs(30, 0)
    a = TURTLE(n_clusters=3, random_state=7, **FAST).fit(X)
    b = TURTLE(n_clusters=3, random_state=7, **FAST).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.objective_ == b.objective_


@pytest.mark.parametrize("spaces, msg", [
    ([2, 2], "sum to 4 columns but X has 6"),
    ("a,b", "not a list of column counts"),
    ([6, 0], "at least one column"),
])
def test_bad_spaces_are_named(spaces, msg):
    X, _ = _blobs(10, 0)
    with pytest.raises(InputError, match=msg):
        TURTLE(n_clusters=3, spaces=spaces, **FAST).fit(X)


def test_parse_spaces_forms():
    assert parse_spaces(None, 9) == [9]
    assert parse_spaces("4,5", 9) == [4, 5]
    assert parse_spaces((4, 5), 9) == [4, 5]
    assert parse_spaces(9, 9) == [9]


def test_registered_with_the_selection_contract():
    m = make_clusterer("turtle", n_clusters=4, random_state=0)
    params = m.get_params()
    assert params["n_clusters"] == 4 and params["random_state"] == 0
    with pytest.raises(InputError, match="gamma"):
        make_clusterer("turtle", gamma=-1.0)
