"""How good the learned features are: linear probe, k-means scores, NMI curves.

- :func:`linear_probe`: multinomial logistic regression on frozen, standardised features,
  fitted on a train split and scored on a test split (scikit-learn's ``LogisticRegression``).
- :func:`kmeans_scores`: k-means on the features (as they are, or after DeepCluster's
  PCA-whitening + L2) scored against labels with :func:`deepclust.metrics.evaluate`.
- :func:`plot_nmi_curves`: NMI between successive assignments and NMI against labels, per
  epoch, from a run's history or its ``log.jsonl`` (PNG, matplotlib's Agg backend).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from deepclust.cluster.kmeans import KMeans
from deepclust.deepcluster.clustering import pca_whiten_l2
from deepclust.errors import InputError
from deepclust.metrics import evaluate

__all__ = ["kmeans_scores", "linear_probe", "plot_nmi_curves", "read_history"]


def linear_probe(train_X, train_y, test_X, test_y, *, C: float = 1.0, max_iter: int = 300,
                 random_state: int = 0) -> dict:
    """Accuracy of a linear classifier trained on frozen features.

    Features are standardised with the training split's statistics; the classifier is
    scikit-learn's multinomial ``LogisticRegression`` (L-BFGS, L2 penalty ``1 / C``).

    Parameters
    ----------
    train_X, test_X : array-like of shape (n, d)
    train_y, test_y : array-like of int
    C : float
        Inverse regularisation strength (the same for every feature set compared).
    max_iter : int
    random_state : int

    Returns
    -------
    dict
        ``train_acc``, ``test_acc``, ``n_iter``, ``seconds``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    scaler = StandardScaler().fit(np.asarray(train_X, dtype=np.float32))
    Xtr = scaler.transform(np.asarray(train_X, dtype=np.float32))
    Xte = scaler.transform(np.asarray(test_X, dtype=np.float32))
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: reported as n_iter
        clf.fit(Xtr, np.asarray(train_y))
    return {"train_acc": float(clf.score(Xtr, train_y)), "test_acc": float(clf.score(Xte, test_y)),
            "n_iter": int(np.max(clf.n_iter_)), "seconds": time.perf_counter() - t0}


def kmeans_scores(X, y, n_clusters: int, *, preprocess: str = "none", n_init: int = 3,
                  random_state: int = 0) -> dict:
    """k-means on ``X`` scored against ``y`` (ACC, NMI, AMI, ARI, ...).

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of int
    n_clusters : int
        Usually the number of classes.
    preprocess : {"none", "pca-whiten-l2"}
        ``"pca-whiten-l2"``: DeepCluster's PCA-whitening to ``min(256, d)`` and L2 first.
    n_init : int
        k-means++ restarts; the lowest objective is kept (label-free choice).
    random_state : int

    Returns
    -------
    dict
        :func:`deepclust.metrics.evaluate`'s scores plus ``seconds``.
    """
    t0 = time.perf_counter()
    X = np.ascontiguousarray(X, dtype=np.float32)
    if preprocess == "pca-whiten-l2":
        X = pca_whiten_l2(X, 256, random_state=random_state)
    elif preprocess != "none":
        raise InputError(f"preprocess must be 'none' or 'pca-whiten-l2', got {preprocess!r}")
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=random_state).fit(X)
    scores = evaluate(y, km.labels_)
    scores["seconds"] = time.perf_counter() - t0
    return scores


def read_history(path: str | os.PathLike) -> list[dict]:
    """The per-epoch records of a run folder's ``log.jsonl`` (or of that file)."""
    p = Path(path)
    if p.is_dir():
        p = p / "log.jsonl"
    if not p.is_file():
        raise InputError(f"{p} does not exist; is this a DeepCluster run folder?")
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def plot_nmi_curves(history, path: str | os.PathLike, *, title: str = "DeepCluster") -> Path:
    """Plot NMI(t, t-1) and NMI against labels per epoch; writes a PNG.

    Parameters
    ----------
    history : list of dict or path
        ``DeepCluster.history_``, or a run folder / ``log.jsonl``.
    path : path
        The PNG to write.
    title : str

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if isinstance(history, (str, os.PathLike)):
        history = read_history(history)
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for key, label, style in (("nmi_prev", "NMI(t, t-1)", "o-"),
                              ("nmi_labels", "NMI vs labels", "s-")):
        pts = [(e, r.get(key)) for e, r in zip(epochs, history, strict=True) if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=label, markersize=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("NMI")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
