"""k-means on a store larger than memory: throughput and peak resident memory.

Step 1 writes a synthetic float16 store (a Gaussian mixture with a decaying spectrum, as in
``benchmarks/kmeans.py``), generated block by block so the writer never holds it either::

    python benchmarks/kmeans_store.py make /data/synthetic --n 20000000 --d 384

Step 2 clusters it, streamed block by block, and prints the time of every pass, rows per
second, and this process's peak resident memory (``ru_maxrss``); run it under
``/usr/bin/time -v`` for the kernel's own account::

    /usr/bin/time -v python benchmarks/kmeans_store.py fit /data/synthetic --k 1000 --iters 5

Pass ``--precision fp32`` to time the float32 path, ``--device cuda`` on a GPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from deepclust.cluster import KMeans
from deepclust.store import open_store, write_array_store


def synthetic_blocks(n: int, d: int, n_comp: int, seed: int, block: int = 1 << 18):
    """float16 rows of a ``n_comp``-component Gaussian mixture, ``block`` rows at a time."""
    rng = np.random.default_rng(seed)
    spectrum = (1.0 / np.sqrt(1.0 + np.arange(d))).astype(np.float32)
    centres = rng.standard_normal((n_comp, d), dtype=np.float32) * (4.0 * spectrum)
    weights = rng.dirichlet(np.full(n_comp, 2.0))
    spread = rng.uniform(0.5, 1.5, size=n_comp).astype(np.float32)
    for a in range(0, n, block):
        m = min(block, n - a)
        comp = rng.choice(n_comp, size=m, p=weights)
        X = rng.standard_normal((m, d), dtype=np.float32)
        X *= spread[comp, None] * spectrum
        X += centres[comp]
        yield X.astype(np.float16)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def make(args) -> None:
    t0 = time.perf_counter()
    store = write_array_store(args.path, synthetic_blocks(args.n, args.d, 2 * args.k, args.seed),
                              n=args.n, dim=args.d, dtype="float16", shard_size=args.shard_size,
                              name="synthetic-mixture")
    size = sum(f.stat().st_size for f in (store.path / "shards").glob("*.npy"))
    print(f"wrote {store.path}: {len(store)} x {store.dim} float16, {store.n_shards} shards, "
          f"{size / 2**30:.1f} GiB, in {time.perf_counter() - t0:.0f} s; peak RSS "
          f"{peak_rss_gib():.2f} GiB")


def fit(args) -> None:
    store = open_store(args.path)
    size = sum(f.stat().st_size for f in (store.path / "shards").glob("*.npy"))
    print(f"store {store.path}: {len(store)} x {store.dim} {store.dtype}, {size / 2**30:.1f} GiB "
          f"on disk; k={args.k}, {args.iters} iterations, precision {args.precision}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    t0 = time.perf_counter()
    km = KMeans(args.k, max_iter=args.iters, tol=0, precision=args.precision,
                device=args.device, random_state=args.seed, verbose=True).fit(store)
    total = time.perf_counter() - t0
    st = km.stats_
    passes = len(st["objective_history"])
    loop = total - st["init_seconds"]
    print(f"\nprecision {st['precision']} on {st['device']}: init (k-means++ on a sample) "
          f"{st['init_seconds']:.1f} s, {passes} passes in {loop:.1f} s = "
          f"{loop / passes:.1f} s per pass, {len(store) * passes / loop / 1e6:.2f} M rows/s "
          f"({size * passes / loop / 2**30:.2f} GiB/s read); rows searched per pass "
          + " ".join(f"{s / len(store):.2f}" for s in st["rows_searched"]))
    print(f"objective {km.inertia_:.6e}; peak RSS {peak_rss_gib():.2f} GiB; load average "
          f"{os.getloadavg()[0]:.1f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["make", "fit"])
    parser.add_argument("path")
    parser.add_argument("--n", type=int, default=20_000_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--shard-size", type=int, default=1 << 20)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    (make if args.step == "make" else fit)(args)


if __name__ == "__main__":
    main()
