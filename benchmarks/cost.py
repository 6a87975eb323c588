"""Measure how the classic methods' fit time grows with the number of rows, and compare with
the estimates that ``deepclust.cluster.cost`` gives before a run.

Seeded Gaussian mixture (10 centres, 64 dims by default). For each method and size it prints
the measured fit time, the estimate of ``deepclust.cluster.cost.estimate`` and the fitted
exponent of n between the two largest sizes. Not a test: times depend on the machine and
its load; run it on an idle machine to refit the coefficients in ``cost.py``.

    python benchmarks/cost.py --sizes 1000,2000,4000 --d 64
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from deepclust.cluster import get_clusterer_class, make_clusterer
from deepclust.cluster.cost import estimate

METHODS = {
    "spectral": {"k": 10},
    "agglomerative": {"k": 10},
    "hdbscan": {},
    "affinity-propagation": {},
    "gmm": {"k": 10, "params": {"covariance_type": "full"}},
}


def mixture(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (10, d))
    return (centres[rng.integers(0, 10, n)] + rng.normal(0, 1, (n, d))).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,2000,4000")
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'method':22s} {'n':>7s} {'fit s':>8s} {'estimate s':>11s}")
    for method in args.methods.split(","):
        spec = METHODS[method]
        params = dict(spec.get("params", {}))
        if "k" in spec:
            params["n_clusters"] = spec["k"]
        times = []
        for n in sizes:
            X = mixture(n, args.d)
            model = make_clusterer(method, random_state=0, **params)
            t = time.perf_counter()
            model.fit(X)
            times.append(time.perf_counter() - t)
            est = estimate(get_clusterer_class(method), params, n, args.d)
            print(f"{method:22s} {n:7d} {times[-1]:8.2f} "
                  f"{est.seconds if est else float('nan'):11.2f}")
        if len(sizes) > 1 and times[-2] > 0:
            slope = math.log(times[-1] / times[-2]) / math.log(sizes[-1] / sizes[-2])
            print(f"{method:22s} time grows as n^{slope:.2f} between n={sizes[-2]} and {sizes[-1]}")


if __name__ == "__main__":
    main()
