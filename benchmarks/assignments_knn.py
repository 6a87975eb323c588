"""The assignments' neighbour table (10 nearest rows by cosine, for ``outlier_score`` and
near-duplicate groups): the exact search over every pair, the exact search pruned by the
run's clusters, and (``--hnsw``) a faiss HNSW graph, in one run.

For each data set the exact table over every pair (``mine_neighbors(method="exact",
precision="fp32")``, what ``deepclust cluster`` computed before) is timed; then
``exact_by_groups`` with the labels of k-means (k = 10, seed 0; what ``deepclust cluster``
passes is its own labels), timed without the k-means, and compared: the share of pairs it
searched, the exact/pruned time ratio, whether every similarity and outlier score and every
near-duplicate group is the same. With ``--hnsw`` an ``IndexHNSWFlat`` (inner product on unit rows,
``M`` links, ``efConstruction`` 40) is built and searched at several ``efSearch``; for each:
build and search seconds, the exact/HNSW time ratio, recall@10 against the exact table, the
near-duplicate pairs (cosine >= ``NEAR_DUPLICATE_COSINE``) found of those the exact table
holds, whether the near-duplicate groups are identical, and the largest change of an outlier
score.

Data: the cached EfficientNet-Lite0 embeddings of Fashion-MNIST test (10 000 x 1280) and a
seeded mixture of 10 Gaussians, 200 000 x 64 float32 (``mixture``: centres N(0, 4^2),
unit noise; the set `deepclust cluster` was timed on). Not a test.

    nice python benchmarks/assignments_knn.py [--n 200000] [--hnsw --ef 64,128,256 --m 32]
"""

from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np

from deepclust.cluster import make_clusterer
from deepclust.neighbors import _unit_rows, exact_by_groups, mine_neighbors
from deepclust.results.duplicates import NEAR_DUPLICATE_COSINE, near_duplicate_groups
from deepclust.results.outliers import OUTLIER_NEIGHBORS, outlier_scores


class Table:  # the shape of deepclust.neighbors.Neighbors that the results read
    def __init__(self, indices, similarities):
        self.indices, self.similarities = indices, similarities


def mixture(n: int, d: int = 64, k: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, d))
    return (centres[rng.integers(0, k, n)] + rng.normal(0, 1, (n, d))).astype(np.float32)


def near_pairs(table, threshold: float) -> set:
    rows, cols = np.nonzero(table.similarities >= threshold)
    other = table.indices[rows, cols]
    return {(min(a, b), max(a, b)) for a, b in zip(rows.tolist(), other.tolist(), strict=True)}


def hnsw_table(U: np.ndarray, index, k: int, ef: int):
    index.hnsw.efSearch = ef
    sims, ids = index.search(U, k + 1)
    own = np.arange(len(U))[:, None]
    is_self = ids == own
    missing = ~is_self.any(axis=1)
    is_self[missing, -1] = True  # a row not among its own results drops its last one
    keep = ~is_self
    return Table(ids[keep].reshape(len(U), k), sims[keep].reshape(len(U), k))


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = (np.sort(found, 1)[:, :, None] == truth[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / truth.shape[1])


def compare(name: str, X: np.ndarray, efs: list[int], m: int, k: int = OUTLIER_NEIGHBORS,
            hnsw: bool = False):
    print(f"\n{name}: {X.shape[0]} x {X.shape[1]}", flush=True)
    t = time.perf_counter()
    exact = mine_neighbors(X, k, method="exact", precision="fp32", device="cpu")
    t_exact = time.perf_counter() - t
    truth = np.sort(exact.indices, 1)
    pairs = near_pairs(exact, NEAR_DUPLICATE_COSINE)
    groups = near_duplicate_groups(exact)
    score = outlier_scores(exact)
    print(f"exact: {t_exact:.1f} s; {len(pairs)} near-duplicate pairs (cos >= "
          f"{NEAR_DUPLICATE_COSINE}) in the table, {int(groups.max()) + 1} groups", flush=True)
    labels = make_clusterer("kmeans", n_clusters=10, random_state=0).fit_predict(X)
    t = time.perf_counter()
    pruned = exact_by_groups(X, k, labels)
    t_pruned = time.perf_counter() - t
    share = pruned.info.get("pairs_searched")
    searched = f"{share:.3f}" if share is not None else \
        f"all (estimated share {pruned.info['pairs_estimate']:.2f})"
    print(f"pruned by the k-means clusters: {t_pruned:.1f} s, exact / pruned time "
          f"{t_exact / t_pruned:.2f}, pairs searched {searched}; "
          f"largest similarity difference "
          f"{float(np.abs(pruned.similarities - exact.similarities).max()):.2g}, "
          f"rows whose neighbour set differs "
          f"{int((np.sort(pruned.indices, 1) != truth).any(axis=1).sum())} (ties), "
          f"largest outlier-score change "
          f"{float(np.abs(outlier_scores(pruned) - score).max()):.2g}, "
          f"near-duplicate groups identical "
          f"{'yes' if np.array_equal(near_duplicate_groups(pruned), groups) else 'NO'}",
          flush=True)
    if not hnsw:
        return
    U = _unit_rows(X)
    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(X.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    index.add(U)
    t_build = time.perf_counter() - t
    print("| efSearch | build s | search s | exact / hnsw time | recall@10 | near-dup pairs "
          "found | groups identical | max outlier-score change |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for ef in efs:
        t = time.perf_counter()
        approx = hnsw_table(U, index, k, ef)
        t_search = time.perf_counter() - t
        found = near_pairs(approx, NEAR_DUPLICATE_COSINE)
        same = np.array_equal(near_duplicate_groups(approx), groups)
        change = float(np.abs(outlier_scores(approx) - score).max())
        print(f"| {ef} | {t_build:.1f} | {t_search:.1f} | {t_exact / (t_build + t_search):.2f} | "
              f"{recall(approx.indices, truth):.4f} | {len(pairs & found)} of {len(pairs)} | "
              f"{'yes' if same else 'NO'} | {change:.4f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="rows of the mixture")
    ap.add_argument("--ef", default="64,128,256", help="efSearch values")
    ap.add_argument("--m", type=int, default=32, help="HNSW links per node")
    ap.add_argument("--skip-fmnist", action="store_true")
    ap.add_argument("--hnsw", action="store_true", help="also an HNSW graph at each --ef")
    args = ap.parse_args()
    efs = [int(v) for v in args.ef.split(",")]
    print(f"load average {os.getloadavg()[0]:.1f}, faiss threads {faiss.omp_get_max_threads()}")
    if not args.skip_fmnist:
        from deepclust.embed import builtin_embeddings

        fs = builtin_embeddings("fashion-mnist", "test", "effnet-lite0")
        compare("Fashion-MNIST test, EfficientNet-Lite0", np.asarray(fs.X, np.float32), efs,
                args.m, hnsw=args.hnsw)
    compare("mixture of 10 Gaussians", mixture(args.n), efs, args.m, hnsw=args.hnsw)


if __name__ == "__main__":
    main()
