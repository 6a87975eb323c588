"""Fitting the ``--method auto`` candidates one thread each vs the default threads (A/B).

On a seeded 3 000-row sample of Fashion-MNIST test (Lite0), the 58 candidates of
``default_candidates(range(2, 21), ..., reducers=("pca",))`` are fitted and scored twice per
round, once with the default threads and once inside ``runtime.single_threaded()``, alternated;
the proxy UMAP is built once beforehand so that numba's compilation is not timed. Run:
``python benchmarks/selection_threads.py [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import numpy as np


def main(argv=None) -> int:
    from deepclust.embed import builtin_embeddings
    from deepclust.runtime import single_threaded
    from deepclust.selection import ScoringSample, default_candidates, select
    from deepclust.selection import auto as auto_module

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    fs = builtin_embeddings("fashion-mnist", "test", "effnet-lite0", progress=False)
    rng = np.random.default_rng(0)
    X = np.asarray(fs.X[np.sort(rng.choice(len(fs.X), 3000, replace=False))], np.float32)
    cands, _ = default_candidates(range(2, 21), len(X), X.shape[1], reducers=("pca",))
    proxy = ScoringSample(X, random_state=0).proxy_space()
    print(f"load average {os.getloadavg()[0]:.1f}; {len(cands)} candidates on {len(X)} rows")
    limit = auto_module.SINGLE_THREAD_ROWS
    for _ in range(args.rounds):
        for mode in ("default threads", "one thread"):
            auto_module.SINGLE_THREAD_ROWS = 0  # select() itself must not limit
            ctx = single_threaded() if mode == "one thread" else contextlib.nullcontext()
            t = time.perf_counter()
            with ctx:
                sel = select(ScoringSample(X, random_state=0, proxy=proxy), cands)
            print(f"{mode:>16}: {time.perf_counter() - t:6.1f} s   pick {sel.best['name']}",
                  flush=True)
    auto_module.SINGLE_THREAD_ROWS = limit
    return 0


if __name__ == "__main__":
    sys.exit(main())
