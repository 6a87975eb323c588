"""Hierarchical k-means with resampling on a large synthetic pool, and balanced sampling.

The pool imitates web-scale embeddings: many concepts of very unequal frequency (a Zipf law
over ``--concepts`` concepts), grouped under 100 broader themes, float32, generated in chunks
of 250 000 rows so that nothing but the pool itself is held at once. The benchmark fits
:class:`deepclust.cluster.hierarchical.HierarchicalKMeans` and prints, per level, the wall
time and what each k-means did; then the total, the peak resident memory
(``ru_maxrss``), and the time of one balanced sample (``--sample`` rows) with how evenly it
covers the concepts next to a uniform random sample of the same size.

Defaults (the full run): 5 000 000 x 128, levels 20 000 / 5 000 / 1 000 / 100, 3 resampling
steps per level, k-means capped at 20 iterations. Cost grows with rows x clusters (Lloyd)
and with clusters squared (k-means++, which every resampling step runs again), so level 1
dominates; ``--resampling-steps 0,3,3,3`` leaves level 1 unresampled, as the paper's own
large run does.

Run: ``python benchmarks/hierarchical.py [--n 5000000 --d 128 --levels 20000,5000,1000,100]``
or ``--quick`` (200 000 rows, levels 2 000 / 500 / 100 / 10, 1 000 concepts).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from deepclust.cluster.hierarchical import HierarchicalKMeans

CHUNK = 250_000
N_THEMES = 100


def make_pool(n: int, d: int, n_concepts: int, zipf: float, seed: int):
    """``(X, concept)``: n x d float32 rows from a heavy-tailed mixture of concepts.

    Concept i has weight proportional to ``(i + 1) ** -zipf``; its centre is its theme's
    centre plus a smaller offset, and its rows are its centre plus isotropic noise.
    """
    ss = np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss.spawn(1)[0])
    themes = rng.standard_normal((N_THEMES, d), dtype=np.float32) * 4.0
    theme_of = rng.integers(N_THEMES, size=n_concepts)
    centres = themes[theme_of] + rng.standard_normal((n_concepts, d), dtype=np.float32) * 1.5
    weights = (np.arange(n_concepts) + 1.0) ** -zipf
    cumulative = np.cumsum(weights / weights.sum())
    X = np.empty((n, d), dtype=np.float32)
    concept = np.empty(n, dtype=np.int32)
    for start, child in zip(range(0, n, CHUNK), ss.spawn(-(-n // CHUNK)), strict=True):
        crng = np.random.default_rng(child)
        m = min(CHUNK, n - start)
        c = np.minimum(np.searchsorted(cumulative, crng.random(m)), n_concepts - 1)
        block = crng.standard_normal((m, d), dtype=np.float32)
        block *= 0.5
        block += centres[c]
        X[start : start + m] = block
        concept[start : start + m] = c
    return X, concept


def concept_balance(concept: np.ndarray, idx: np.ndarray, n_concepts: int) -> dict:
    """How a sample covers the concepts: distinct ones, the effective number (exp of the
    entropy of the sample's concept distribution: n for n equally frequent concepts), and the
    share of the 1 % most frequent concepts of the pool."""
    pool_counts = np.bincount(concept, minlength=n_concepts)
    head = np.argsort(pool_counts)[::-1][: max(1, n_concepts // 100)]
    in_sample = concept[idx]
    p = np.bincount(in_sample, minlength=n_concepts) / in_sample.size
    p = p[p > 0]
    return {
        "concepts": int(p.size),
        "effective": float(np.exp(-(p * np.log(p)).sum())),
        "head_share": float(np.isin(in_sample, head).mean()),
    }


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def parse_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000_000, help="rows")
    parser.add_argument("--d", type=int, default=128, help="features")
    parser.add_argument("--levels", default="20000,5000,1000,100",
                        help="clusters per level, finest first")
    parser.add_argument("--resampling-steps", default="3",
                        help="one value, or one per level (e.g. 0,3,3,3)")
    parser.add_argument("--sample-size", default=None,
                        help="resampling points per cluster, one value or one per level "
                             "(default: half the mean cluster size)")
    parser.add_argument("--max-iter", type=int, default=20, help="Lloyd iterations per k-means")
    parser.add_argument("--init", default="k-means++", choices=("k-means++", "random"))
    parser.add_argument("--concepts", type=int, default=10_000, help="concepts in the pool")
    parser.add_argument("--zipf", type=float, default=1.1, help="exponent of concept frequency")
    parser.add_argument("--sample", type=int, default=None,
                        help="balanced sample size (default n / 10)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="200 000 rows, levels 2000,500,100,10, 1 000 concepts")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.levels, args.concepts = 200_000, "2000,500,100,10", 1_000
    levels = parse_ints(args.levels)
    steps = parse_ints(args.resampling_steps)
    sample_size = None if args.sample_size is None else parse_ints(args.sample_size)
    n_sample = args.sample or args.n // 10

    t0 = time.perf_counter()
    X, concept = make_pool(args.n, args.d, args.concepts, args.zipf, args.seed)
    gen_s = time.perf_counter() - t0
    print(f"pool: {args.n} x {args.d} float32 ({X.nbytes / 2**30:.2f} GiB), {args.concepts} "
          f"concepts (Zipf {args.zipf}), {np.unique(concept).size} present; "
          f"generated in {gen_s:.1f} s")

    model = HierarchicalKMeans(
        n_clusters=tuple(levels),
        n_resampling_steps=steps[0] if len(steps) == 1 else tuple(steps),
        sample_size=(None if sample_size is None
                     else sample_size[0] if len(sample_size) == 1 else tuple(sample_size)),
        init=args.init, max_iter=args.max_iter, precision=args.precision, device=args.device,
        random_state=args.seed, verbose=args.verbose,
    )
    model.fit(X)
    print(f"\nlevels {tuple(levels)}, max_iter {args.max_iter}, init {args.init}")
    print("per k-means run (the first, then each resampling step): seconds = seeding + the "
          "rest (Lloyd; for a step also the resampling and the reassignment) [iterations]")
    print(f"{'level':>5} {'points':>10} {'clusters':>8} {'empty':>6} {'m':>5} {'steps':>5} "
          f"{'level s':>9}  resampled rows / k-means runs")
    for info in model.stats_["levels"]:
        runs = ", ".join(
            f"{s:.1f}={i:.1f}+{s - i:.1f} [{it}]"
            for s, i, it in zip(info["kmeans_seconds"], info["init_seconds"], info["n_iter"],
                                strict=True))
        rows = "/".join(str(r) for r in info["resample_rows"]) or "-"
        print(f"{info['level']:>5} {info['n_points']:>10} {info['n_clusters']:>8} "
              f"{info['n_empty']:>6} {info['sample_size']:>5} {info['n_resampling_steps']:>5} "
              f"{info['seconds']:>9.1f}  {rows} / {runs}")
    print(f"fit total: {model.stats_['total_seconds']:.1f} s")

    t0 = time.perf_counter()
    idx = model.balanced_sample(n_sample, random_state=args.seed)
    sample_s = time.perf_counter() - t0
    uniform = np.sort(np.random.default_rng(args.seed).choice(args.n, n_sample, replace=False))
    bal = concept_balance(concept, idx, args.concepts)
    ref = concept_balance(concept, uniform, args.concepts)
    print(f"balanced sample of {n_sample}: {sample_s:.2f} s")
    print(f"{'sample':>9} {'concepts':>9} {'effective':>10} {'top-1% share':>13}")
    for name, c in (("balanced", bal), ("random", ref)):
        print(f"{name:>9} {c['concepts']:>9} {c['effective']:>10.0f} {c['head_share']:>13.3f}")
    print(f"peak RSS: {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
