"""Approximate (IVF) against exact neighbour mining: recall@k and time.

Synthetic: ``make_data`` of ``benchmarks/kmeans.py`` (a Gaussian mixture of 2 x 500
components of unequal weight and spread on a decaying spectrum), ``--n`` x ``--d``. The
exact cost is measured on ``--queries`` random queries against all rows (it is linear in
the number of queries, so it is scaled to n); recall@k of the IVF table is measured on the
same queries against their exact fp32 neighbours. ``--fmnist`` adds the cached
EfficientNet-Lite0 embeddings of Fashion-MNIST train (60 000 x 1280), mined in full both
ways.

Run: ``nice -n 10 python benchmarks/neighbors.py [--n 200000 --d 128 --k 50 --queries
10000] [--fmnist | --only-fmnist]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from kmeans import make_data  # the same synthetic mixture as benchmarks/kmeans.py

from deepclust.data.rows import as_row_source
from deepclust.neighbors import _exact_search, _recall, _unit_rows, mine_neighbors


def exact_sample(X, k, qidx, precision):
    """Exact neighbours of rows ``qidx`` (self dropped) and the seconds it took."""
    rows = as_row_source(X)
    t0 = time.perf_counter()
    q = _unit_rows(X[qidx])
    sims, ids = _exact_search(q, rows, k + 1, precision=precision, device=torch.device("cpu"),
                              block_rows=1 << 16)
    seconds = time.perf_counter() - t0
    keep = ids != qidx[:, None]
    keep[~(~keep).any(axis=1), -1] = False
    return ids[keep].reshape(len(qidx), k), seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--fmnist", action="store_true")
    p.add_argument("--only-fmnist", action="store_true")
    a = p.parse_args()

    if a.only_fmnist:
        a.fmnist = True
    else:
        synthetic(a)
    if a.fmnist:
        fashion_mnist(a)


def synthetic(a) -> None:
    X = make_data(a.n, a.d, 500, 0)
    qidx = np.sort(np.random.default_rng(5).choice(a.n, a.queries, replace=False))
    truth, t32 = exact_sample(X, a.k, qidx, "fp32")
    _, t16 = exact_sample(X, a.k, qidx, "bf16")
    scale = a.n / a.queries
    print(f"synthetic {a.n} x {a.d}, k={a.k}: exact fp32 {t32 * scale:.0f} s "
          f"({a.n ** 2 * a.d / (t32 * scale) / 1e9:.0f} G multiply-adds/s), "
          f"exact bf16 {t16 * scale:.0f} s (scaled from {a.queries} queries)")
    ivf = mine_neighbors(X, a.k, method="ivf")
    rec = _recall(ivf.indices[qidx], truth)
    info = ivf.info
    print(f"  ivf: {info['seconds']:.1f} s (nlist {info['nlist']}, nprobe {info['nprobe']}, "
          f"train rows {info['train_rows']}), recall@{a.k} {rec:.3f} on {a.queries} queries "
          f"(calibration estimate {info['recall_estimate']:.3f}), "
          f"speed-up {t32 * scale / info['seconds']:.1f}x over fp32, "
          f"{t16 * scale / info['seconds']:.1f}x over bf16")


def fashion_mnist(a) -> None:
    from deepclust.embed import builtin_embeddings

    F = np.ascontiguousarray(builtin_embeddings("fashion-mnist", "train", "effnet-lite0").X,
                             dtype=np.float32)
    ex32 = mine_neighbors(F, a.k, method="exact", precision="fp32")
    fq = np.sort(np.random.default_rng(5).choice(len(F), len(F) // 10, replace=False))
    _, t16 = exact_sample(F, a.k, fq, "bf16")  # bf16: a tenth of the queries, scaled
    t16 *= 10
    ivf = mine_neighbors(F, a.k, method="ivf")
    info = ivf.info
    print(f"fashion-mnist train {F.shape[0]} x {F.shape[1]}, k={a.k}: exact fp32 "
          f"{ex32.info['seconds']:.0f} s, exact bf16 {t16:.0f} s (scaled from a tenth)")
    print(f"  ivf: {info['seconds']:.1f} s (nlist {info['nlist']}, nprobe {info['nprobe']}), "
          f"recall@{a.k} {_recall(ivf.indices, ex32.indices):.3f} on all rows "
          f"(estimate {info['recall_estimate']:.3f}), speed-up "
          f"{ex32.info['seconds'] / info['seconds']:.1f}x over fp32, "
          f"{t16 / info['seconds']:.1f}x over bf16")


if __name__ == "__main__":
    main()
