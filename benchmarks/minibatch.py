"""deepclust MiniBatchKMeans against scikit-learn's MiniBatchKMeans.partial_fit.

Both start from the same k-means++ centres (deepclust's ``kmeans_plus_plus_init``), see the
same random batches (rows drawn uniformly, as scikit-learn's ``fit`` does) and the same
reassignment rule; each is timed in CPU seconds of the streaming loop alone and scored by the
objective of every row on its final centres (faiss assignment, float64 sum). ``--full`` adds
deepclust's full ``KMeans`` from the same centres.

Run single-threaded on a shared machine, where thread pools only fight each other:
``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 python benchmarks/minibatch.py
[--n 200000 --d 128 --k 256 --noise 1.5 --batch 8192 --epochs 3 --repeat 5 --full]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.cluster import MiniBatchKMeans as SklearnMiniBatchKMeans

from deepclust.cluster.kmeans import KMeans
from deepclust.cluster.lloyd import block_objective, nearest_centroids
from deepclust.cluster.minibatch import MiniBatchKMeans
from deepclust.cluster.seeding import kmeans_plus_plus_init


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--noise", type=float, default=1.5)
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--full", action="store_true")
    a = p.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((a.k, a.d)).astype(np.float32)
    X = centres[rng.integers(a.k, size=a.n)] + a.noise * rng.standard_normal((a.n, a.d)).astype(np.float32)
    X = np.ascontiguousarray(X, dtype=np.float32)

    def objective(C):
        C = np.ascontiguousarray(C, dtype=np.float32)
        return sum(block_objective(nearest_centroids(X[s : s + 65536], C)[1]) for s in range(0, a.n, 65536))

    C0 = kmeans_plus_plus_init(X, a.k, random_state=0)
    batch_rng = np.random.default_rng(a.seed)
    steps = a.epochs * -(-a.n // a.batch)
    batches = [np.sort(batch_rng.integers(a.n, size=a.batch)) for _ in range(steps)]
    print(f"n={a.n} d={a.d} k={a.k} noise={a.noise} batch={a.batch} epochs={a.epochs} "
          f"steps={steps}; objective of the seeds {objective(C0):.4g}")

    def sklearn_loop():
        m = SklearnMiniBatchKMeans(a.k, init=C0, n_init=1, batch_size=a.batch, compute_labels=False,
                                   random_state=a.seed)
        for idx in batches:
            m.partial_fit(X[idx])
        return m.cluster_centers_

    def deepclust_loop():
        m = MiniBatchKMeans(a.k, init=C0, batch_size=a.batch, random_state=a.seed)
        for idx in batches:
            m.partial_fit(X[idx])
        return m.cluster_centers_

    times: dict[str, list[float]] = {"scikit-learn partial_fit": [], "deepclust partial_fit": []}
    result = {}
    for _ in range(a.repeat):  # alternate, so a change of load hits both
        for name, loop in zip(times, (sklearn_loop, deepclust_loop), strict=True):
            t0 = time.process_time()
            result[name] = loop()
            times[name].append(time.process_time() - t0)
    for name, t in times.items():
        print(f"{name:26s} cpu median {np.median(t):5.2f} s (min {min(t):.2f})  "
              f"objective {objective(result[name]):.4g}")
    if a.full:
        t0 = time.process_time()
        km = KMeans(a.k, init=C0).fit(X)
        print(f"{'deepclust KMeans':26s} cpu {time.process_time() - t0:5.2f} s, {km.n_iter_} iterations, "
              f"objective {km.inertia_:.4g}")


if __name__ == "__main__":
    main()
