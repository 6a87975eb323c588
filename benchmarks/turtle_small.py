"""TURTLE beside TEMI and k-means on digits and on a long-tailed Fashion-MNIST subset.

- digits (scikit-learn, 1 797 images): EfficientNet-Lite0 embeddings (cached store), and
  TURTLE on two spaces, the embeddings and the 64 raw pixels;
- a long tail of the Fashion-MNIST test embeddings (``deepclust.bench.builders.long_tail``,
  imbalance ratio 10 by default, classes in a random order from the seed 0).

Each method is fitted on the rows and scores its own labels (no held-out split: these are
small sets), with its defaults and ``n_clusters`` = the number of classes; seeds 0 1 2 by
default; ACC (Hungarian), NMI, ARI as mean ± std, and the mean fit time.

Run: ``python benchmarks/turtle_small.py [--seeds 0 1 2] [--ratio 10] [--sets digits lt]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from deepclust.cluster import TURTLE, KMeans
from deepclust.cluster.heads import TEMI
from deepclust.metrics import evaluate

METRICS = ("acc", "nmi", "ari")


def digits():
    from deepclust.data import load_dataset
    from deepclust.embed import builtin_embeddings

    emb = builtin_embeddings("digits", "all", "effnet-lite0")
    px = load_dataset("digits").features()
    X = np.asarray(emb.X, np.float32)
    return {"X": X, "X2": np.hstack([X, px]), "spaces": [X.shape[1], px.shape[1]], "y": emb.y}


def long_tailed(ratio: float):
    from deepclust.bench.builders import long_tail
    from deepclust.embed import builtin_embeddings

    emb = builtin_embeddings("fashion-mnist", "test", "effnet-lite0")
    sub = long_tail(emb.y, ratio, seed=0)
    X = np.asarray(emb.X, np.float32)[sub.indices]
    return {"X": X, "y": sub.labels, "sizes": np.bincount(sub.labels)}


def fit(method: str, data: dict, k: int, seed: int) -> dict:
    t = time.perf_counter()
    if method == "kmeans":
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(data["X"]).labels_
    elif method == "temi":
        labels = TEMI(n_clusters=k, random_state=seed, progress=False).fit(data["X"]).labels_
    elif method == "turtle":
        labels = TURTLE(n_clusters=k, random_state=seed).fit(data["X"]).labels_
    else:  # turtle2
        labels = TURTLE(n_clusters=k, random_state=seed, spaces=data["spaces"]).fit(data["X2"]).labels_
    scores = evaluate(data["y"], labels)
    return {**{m: scores[m] for m in METRICS}, "fit_s": time.perf_counter() - t}


def _ms(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ratio", type=float, default=10.0)
    parser.add_argument("--sets", nargs="+", default=["digits", "lt"], choices=["digits", "lt"])
    parser.add_argument("--methods", nargs="+", default=["kmeans", "temi", "turtle", "turtle2"])
    args = parser.parse_args(argv)
    for name in args.sets:
        data = digits() if name == "digits" else long_tailed(args.ratio)
        k = len(np.unique(data["y"]))
        extra = f", class sizes {data['sizes'].tolist()}" if "sizes" in data else ""
        print(f"\n{name}: {data['X'].shape[0]} rows, {k} classes{extra}; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        print(f"{'method':8s} {'ACC':>15s} {'NMI':>15s} {'ARI':>15s} {'fit s':>7s}")
        for method in args.methods:
            if method == "turtle2" and "X2" not in data:
                continue
            rs = [fit(method, data, k, seed) for seed in args.seeds]
            row = [_ms([r[m] for r in rs]) for m in METRICS]
            print(f"{method:8s} {row[0]:>15s} {row[1]:>15s} {row[2]:>15s} "
                  f"{np.mean([r['fit_s'] for r in rs]):7.1f}", flush=True)


if __name__ == "__main__":
    main()
