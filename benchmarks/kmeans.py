"""deepclust KMeans against faiss.Kmeans and scikit-learn KMeans on the same problem.

All three start from the same k-means++ centroids (deepclust's ``kmeans_plus_plus_init``),
run the same number of Lloyd iterations on every row (faiss with ``max_points_per_centroid``
large enough not to subsample), and are scored the same way: the exact float64 sum of
squared distances of every row to its nearest final centroid.

What each timed call does:

- deepclust ``KMeans(max_iter=iters, tol=0).fit``: ``iters`` updates, ``iters + 1``
  assignments (the last gives ``labels_`` for the final centroids);
- faiss ``Kmeans.train``: ``iters`` assignments and updates, no labels for the final
  centroids; "faiss+labels" adds the ``index.search`` that gives them, which makes it the
  same work as the two others;
- scikit-learn ``KMeans(init=C, n_init=1, tol=0, max_iter=iters).fit``: as deepclust.

Run: ``python benchmarks/kmeans.py [--n 200000 --d 256 --k 1000 --iters 20 --seed 0]``
(``--repeat R`` times deepclust and faiss R times each, alternating, and keeps the best;
``--data fmnist-lite0-train`` uses real embeddings; ``--cases fmnist-lite0-train:100
fmnist-lite0-train:1000 synthetic:1000`` runs several and ends with a summary).
"""

from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np
from sklearn.cluster import KMeans as SklearnKMeans

from deepclust.cluster.kmeans import KMeans
from deepclust.cluster.seeding import kmeans_plus_plus_init


def make_data(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """A Gaussian mixture with structure: 2k components of unequal weight and spread,
    centres on a decaying spectrum (a few directions matter more), float32."""
    rng = np.random.default_rng(seed)
    n_comp = 2 * k
    spectrum = (1.0 / np.sqrt(1.0 + np.arange(d))).astype(np.float32)
    centres = rng.standard_normal((n_comp, d), dtype=np.float32) * (4.0 * spectrum)
    weights = rng.dirichlet(np.full(n_comp, 2.0))
    comp = rng.choice(n_comp, size=n, p=weights)
    spread = rng.uniform(0.5, 1.5, size=n_comp).astype(np.float32)
    X = rng.standard_normal((n, d), dtype=np.float32)
    X *= spread[comp, None] * spectrum
    X += centres[comp]
    return X


#: Real embeddings offline: the cached Fashion-MNIST stores (``deepclust embed`` makes them).
REAL_DATA = {
    "fmnist-lite0-train": ("fashion-mnist", "train", "effnet-lite0"),
    "fmnist-lite0-test": ("fashion-mnist", "test", "effnet-lite0"),
}


def load_data(name: str, n: int, d: int, k: int, seed: int) -> np.ndarray:
    """``synthetic`` (:func:`make_data`) or one of :data:`REAL_DATA` (every row, float32)."""
    if name == "synthetic":
        return make_data(n, d, k, seed)
    from deepclust.embed import builtin_embeddings

    dataset, split, encoder = REAL_DATA[name]
    return np.ascontiguousarray(builtin_embeddings(dataset, split, encoder).X, dtype=np.float32)


def objective(X: np.ndarray, centroids: np.ndarray, block: int = 1 << 15) -> float:
    """Exact float64 sum of squared distances to the nearest centroid (found by faiss)."""
    C = np.ascontiguousarray(centroids, dtype=np.float32)
    C64 = C.astype(np.float64)
    total = 0.0
    for start in range(0, X.shape[0], block):
        xb = X[start : start + block]
        _, idx = faiss.knn(xb, C, 1)
        diff = xb.astype(np.float64) - C64[idx[:, 0]]
        total += float(np.einsum("ij,ij->", diff, diff))
    return total


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic", choices=["synthetic", *REAL_DATA],
                        help="synthetic mixture (--n, --d) or real embeddings (all rows)")
    parser.add_argument("--n", type=int, default=200_000, help="rows")
    parser.add_argument("--d", type=int, default=256, help="features")
    parser.add_argument("--k", type=int, default=1000, help="clusters")
    parser.add_argument("--iters", type=int, default=20, help="Lloyd iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of deepclust and faiss")
    parser.add_argument("--skip-sklearn", action="store_true", help="leave scikit-learn out")
    parser.add_argument("--precision", nargs="+", default=["auto"],
                        choices=["auto", "bf16", "fp32"],
                        help="deepclust assignment precisions to time (auto: what this "
                             "machine gets by default; bf16 on a CPU without native "
                             "bfloat16 is emulated and very slow)")
    parser.add_argument("--cases", nargs="+", metavar="DATA:K",
                        help="several problems in one run, e.g. fmnist-lite0-train:100 "
                             "fmnist-lite0-train:1000 synthetic:1000 (--n/--d for synthetic); "
                             "a summary of every case's ratios ends the output")
    args = parser.parse_args(argv)
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases or []]
    if not cases:
        run_case(args, args.data, args.k)
        return
    summary = [run_case(args, data, k) for data, k in cases]
    print("\n## Summary: speed-up over faiss Kmeans.train (wall, best of --repeat) and "
          "objective / faiss's")
    print(f"{'case':<26}" + "".join(f"{name:>22}" for name in summary[0]))
    for (data, k), row in zip(cases, summary, strict=True):
        print(f"{data + ' k=' + str(k):<26}"
              + "".join(f"{f'{x:.2f}x  obj {o:.5f}':>22}" for x, o in row.values()))


def run_case(args, data: str, k: int) -> dict[str, tuple[float, float]]:
    """Time one problem; print its table; return, per deepclust precision, (faiss time /
    its time, its objective / faiss's)."""
    X = load_data(data, args.n, args.d, k, args.seed)
    (n, d), iters = X.shape, args.iters

    print(
        f"\n# data={data} n={n} d={d} k={k} iters={iters} seed={args.seed}  "
        f"faiss {faiss.__version__} threads={faiss.omp_get_max_threads()}  "
        f"cpus={os.cpu_count()}  load avg={os.getloadavg()[0]:.2f}"
    )
    t_init, C = timed(lambda: kmeans_plus_plus_init(X, k, random_state=args.seed))
    print(f"k-means++ init (deepclust, shared by all three): {t_init:.2f} s")

    times: dict[str, float] = {}
    objectives: dict[str, float] = {}
    iterations: dict[str, int] = {}

    # deepclust and faiss alternate, best of --repeat each: the machine may be shared
    names = [f"deepclust-{p}" for p in args.precision]
    for name in [*names, "faiss", "faiss+labels"]:
        times[name] = float("inf")
    fits = {}
    for _ in range(args.repeat):
        for name, precision in zip(names, args.precision, strict=True):
            km = KMeans(n_clusters=k, init=C, n_init=1, max_iter=iters, tol=0,
                        precision=precision)
            t, _ = timed(lambda km=km: km.fit(X))
            times[name] = min(times[name], t)
            fits[name] = km
        fk = faiss.Kmeans(
            d, k, niter=iters, seed=args.seed, max_points_per_centroid=n, min_points_per_centroid=1
        )
        t_train, _ = timed(lambda fk=fk: fk.train(X, init_centroids=C))
        t_search, _ = timed(lambda fk=fk: fk.index.search(X, 1))
        times["faiss"] = min(times["faiss"], t_train)
        times["faiss+labels"] = min(times["faiss+labels"], t_train + t_search)
    for name, km in fits.items():
        objectives[name] = objective(X, km.cluster_centers_)
        iterations[name] = km.n_iter_
    objectives["faiss"] = objectives["faiss+labels"] = objective(X, fk.centroids)
    iterations["faiss"] = iterations["faiss+labels"] = iters

    if not args.skip_sklearn:
        sk = SklearnKMeans(n_clusters=k, init=C, n_init=1, max_iter=iters, tol=0, algorithm="lloyd")
        times["scikit-learn"], _ = timed(lambda: sk.fit(X))
        objectives["scikit-learn"] = objective(X, sk.cluster_centers_)
        iterations["scikit-learn"] = sk.n_iter_

    ref_t, ref_o = times["faiss"], objectives["faiss"]
    print(
        f"{'method':<14}{'iters':>6}{'wall s':>9}{'/faiss':>9}{'/faiss+lab':>11}"
        f"{'objective':>16}{'/faiss':>10}"
    )
    for name, t in times.items():
        print(
            f"{name:<14}{iterations[name]:>6}{t:>9.2f}{t / ref_t:>9.3f}"
            f"{t / times['faiss+labels']:>11.3f}{objectives[name]:>16.6e}"
            f"{objectives[name] / ref_o:>10.5f}"
        )
    for name, km in fits.items():
        searched = km.stats_["rows_searched"]
        pairs = km.stats_["pairs_computed"]
        print(f"{name} ({km.precision_}): rows searched per pass (pruned by bounds): "
              + " ".join(f"{s / n:.2f}" for s in searched))
        print(f"{name}: (row, centroid) distances computed per pass, share of n k: "
              + " ".join(f"{p / (n * k):.3f}" for p in pairs)
              + f"  (all passes: {sum(pairs) / (n * k):.2f} n k; faiss: {iters + 1} n k)")
    if len(fits) > 1:
        a, b = (fits[name] for name in names[:2])
        same = np.mean(a.labels_ == b.labels_)
        print(f"{names[0]} vs {names[1]}: {100 * same:.4f} % of final labels equal, "
              f"max |centroid difference| {np.abs(a.cluster_centers_ - b.cluster_centers_).max():.2e}")
    print(f"load avg at the end: {os.getloadavg()[0]:.2f}")
    return {name: (ref_t / times[name], objectives[name] / ref_o) for name in names}


if __name__ == "__main__":
    main()
