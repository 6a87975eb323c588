"""SCANv2: SCAN's loss with an EMA teacher predicting the pair partner."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from deepclust.cluster import make_clusterer
from deepclust.cluster.heads import SCANv2
from deepclust.cluster.heads.objectives import SCANv2Objective
from deepclust.metrics import cluster_acc

SMALL = dict(n_heads=3, hidden_dim=32, bottleneck_dim=16, n_neighbors=5, batch_size=64,
             n_steps=40, base_lr=2e-3, precision="fp32", device="cpu", cache_neighbors=False)


def _log(p):
    return torch.tensor([[list(map(math.log, p))]], dtype=torch.float64)


def test_scanv2_loss_matches_hand_computation():
    p = [[0.75, 0.25], [0.9, 0.1]]  # student on the anchors
    q = [[0.5, 0.5], [0.6, 0.4]]  # student on their neighbours
    tp = [[0.8, 0.2], [0.3, 0.7]]  # teacher on the anchors
    tq = [[0.4, 0.6], [0.5, 0.5]]  # teacher on the neighbours
    student = torch.cat([_log(p[0]), _log(p[1]), _log(q[0]), _log(q[1])], dim=1)
    teacher = torch.cat([_log(tp[0]), _log(tp[1]), _log(tq[0]), _log(tq[1])], dim=1)
    total, per_head = SCANv2Objective(entropy_weight=5.0, student_temp=1.0,
                                      teacher_temp=1.0)(student, teacher)

    def dot(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    # each student view against the teacher on the other view, mean over the pairs
    consistency = sum(-(math.log(dot(q[i], tp[i])) + math.log(dot(p[i], tq[i]))) / 2
                      for i in range(2)) / 2

    def entropy(rows):
        m = [sum(r[c] for r in rows) / len(rows) for c in range(2)]
        return -sum(v * math.log(v) for v in m)

    expected = consistency - 5.0 * (entropy(p) + entropy(q)) / 2
    assert per_head.item() == pytest.approx(expected, rel=1e-9)
    assert total.item() == pytest.approx(expected, rel=1e-9)


def test_scanv2_clusters_blobs_with_a_teacher_and_predicts_unseen_points():
    X, y = make_blobs(n_samples=900, centers=4, n_features=12, cluster_std=1.0, random_state=3)
    X = X.astype(np.float32)
    model = make_clusterer("scanv2", n_clusters=4, random_state=0, **SMALL)
    assert isinstance(model, SCANv2)
    model.fit(X[:600])
    assert cluster_acc(y[:600], model.labels_) > 0.95
    assert cluster_acc(y[600:], model.predict(X[600:])) > 0.95
    assert np.array_equal(model.labels_, model.predict(X[:600]))
    assert model.train_config_["teacher_momentum"] < 1.0  # a teacher was trained
