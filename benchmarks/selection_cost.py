"""What ``--method auto --k auto`` costs against one k-means run (issue 14).

Two inputs, each clustered both ways through ``pipeline.run_clustering`` in the same process,
alternated A/B (``--repeats``), best time kept:

- Fashion-MNIST test, EfficientNet-Lite0 embeddings (10 000 x 1 280): one k-means with k = 10
  (the true k, which a user without labels does not have) against ``--method auto --k auto``
  (k in 2..20, on a seeded sample of ``selection.AUTO_ROWS`` rows);
- a seeded mixture of 10 Gaussians, ``--rows`` rows (default 1 000 000) x 64: the same two.

Printed: seconds of each, the ratio, the pick, AMI of both (labels only to score, never to
choose). Label-free scores are off in both (``label_free=False``) so that the ratio is the
choice itself. Run: ``python benchmarks/selection_cost.py [--rows 1000000] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def mixture(n: int, d: int = 64, k: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4.0, (k, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    X = centers[y] + rng.normal(0, 1.0, (n, d)).astype(np.float32)
    return X, y


def timed(X, y, **kw):
    from deepclust.pipeline import run_clustering

    t = time.perf_counter()
    res = run_clustering(X, y, label_free=False, random_state=0, **kw)
    return time.perf_counter() - t, res


def compare(name: str, X, y, k_true: int, repeats: int) -> None:
    best = {"kmeans": (np.inf, None), "auto": (np.inf, None)}
    for _ in range(repeats):
        for what, kw in (("kmeans", {"method": "kmeans", "k": k_true}),
                         ("auto", {"method": "auto", "k": "auto"})):
            s, res = timed(X, y, **kw)
            if s < best[what][0]:
                best[what] = (s, res)
    (sk, rk), (sa, ra) = best["kmeans"], best["auto"]
    sel = ra.selection
    print(f"{name}: {len(X)} x {X.shape[1]}")
    print(f"  k-means (k={k_true}, the true k): {sk:7.1f} s   AMI {rk.metrics['ami']:.3f}")
    print(f"  --method auto --k auto:         {sa:7.1f} s   AMI {ra.metrics['ami']:.3f}   "
          f"pick {sel.best['name']} ({ra.n_clusters} clusters), {len(sel.candidates)} "
          f"candidates on {sel.rows} of {sel.of_rows} rows, choice {sel.seconds:.1f} s")
    print(f"  ratio auto / k-means: {sa / sk:.1f}x", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    from deepclust.embed import builtin_embeddings

    fs = builtin_embeddings("fashion-mnist", "test", "effnet-lite0", progress=False)
    compare("Fashion-MNIST test, Lite0", np.asarray(fs.X, np.float32), fs.y, 10, args.repeats)
    X, y = mixture(args.rows)
    compare("mixture of 10 Gaussians", X, y, 10, args.repeats)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
