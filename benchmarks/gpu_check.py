"""The measurements of ``benchmarks/gpu.sh``, one subcommand each; every one prints one
markdown row and exits non-zero on failure.

- ``kmeans``: deepclust ``KMeans`` on the device against a peer from the same initial
  centroids and the same number of Lloyd iterations: faiss-gpu when faiss sees a GPU, else a
  plain torch Lloyd loop on the same device (one matrix product, argmin and ``index_add_``
  per iteration: the floor any GPU k-means must beat). Objective ratio = deepclust / peer,
  both scored by the same exact float64 pass.
- ``temi``: TEMI training steps/s on ``--n`` rows (a random neighbour table is passed in, so
  the steps, not the mining, are timed).
- ``embed``: `deepclust.embed.embed` images/s with EfficientNet-Lite0 on crops of the two
  photos scikit-learn ships (decoding and preprocessing included).
- ``kmeans-dist``: k-means with ``distributed=True``; run it under ``torchrun`` (nccl on a
  GPU, gloo on the CPU) and it checks that the backend is up and that the labels match a
  single-process fit from the same centroids.

Sizes come from the command line (``--rows --dim --clusters``: no option may be a prefix
of one of ``torchrun``'s, which would take it); ``gpu.sh`` passes the full ones or, with ``--dry-run``,
small ones that run on a CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch


def blobs(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """``n`` float32 rows around ``k`` random centres (unit spread, centres at scale 4)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d), dtype=np.float32) * 4.0
    X = np.empty((n, d), np.float32)
    step = 1 << 16
    for i in range(0, n, step):
        j = min(n, i + step)
        X[i:j] = centres[rng.integers(0, k, j - i)] + rng.standard_normal((j - i, d), dtype=np.float32)
    return X


def objective(X: np.ndarray, C: np.ndarray, device: torch.device) -> float:
    """Exact sum of squared distances of every row to its nearest centroid (float64)."""
    Ct = torch.from_numpy(C).to(device, torch.float64)
    total = 0.0
    for i in range(0, len(X), 1 << 14):
        x = torch.from_numpy(X[i:i + (1 << 14)]).to(device, torch.float64)
        total += torch.cdist(x, Ct).min(1).values.square().sum().item()
    return total


def torch_lloyd(X: np.ndarray, C0: np.ndarray, iters: int, device: torch.device) -> np.ndarray:
    """Plain Lloyd in torch: float32 products, argmin, sums by ``index_add_``."""
    Xt = torch.from_numpy(X).to(device)
    C = torch.from_numpy(C0).to(device).clone()
    k, d = C.shape
    block = 1 << 16
    for _ in range(iters):
        sums = torch.zeros(k, d, device=device, dtype=torch.float64)
        counts = torch.zeros(k, device=device, dtype=torch.float64)
        c2 = (C * C).sum(1)
        for i in range(0, len(Xt), block):
            x = Xt[i:i + block]
            lab = torch.argmin(c2[None, :] - 2.0 * (x @ C.T), dim=1)
            sums.index_add_(0, lab, x.double())
            counts.index_add_(0, lab, torch.ones_like(lab, dtype=torch.float64))
        nonempty = counts > 0
        C[nonempty] = (sums[nonempty] / counts[nonempty, None]).float()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return C.cpu().numpy()


def cmd_kmeans(args) -> None:
    from deepclust.cluster.kmeans import KMeans

    device = torch.device(args.device)
    X = blobs(args.n, args.d, args.k, 0)
    C0 = X[np.random.default_rng(1).choice(args.n, args.k, replace=False)].copy()
    model = KMeans(args.k, init=C0, max_iter=args.iters, tol=0, device=args.device,
                   random_state=0)
    t = time.perf_counter()
    model.fit(X)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ours = time.perf_counter() - t
    peer_name, peer = "torch Lloyd", None
    try:
        import faiss

        if device.type == "cuda" and faiss.get_num_gpus() > 0:
            peer_name = "faiss-gpu"
            km = faiss.Kmeans(args.d, args.k, niter=args.iters, gpu=True, seed=1,
                              max_points_per_centroid=args.n)
            t = time.perf_counter()
            km.train(X, init_centroids=C0)
            peer, peer_s = km.centroids, time.perf_counter() - t
    except ImportError:
        pass
    if peer is None:
        torch_lloyd(X[: min(len(X), 1 << 16)], C0, 1, device)  # warm-up (kernels, allocator)
        t = time.perf_counter()
        peer = torch_lloyd(X, C0, args.iters, device)
        peer_s = time.perf_counter() - t
    ratio = objective(X, model.cluster_centers_, device) / objective(X, peer, device)
    print(f"| k-means {args.n} x {args.d}, k={args.k}, {args.iters} iterations, {device} | "
          f"deepclust {ours:.2f} s | {peer_name} {peer_s:.2f} s | speed-up {peer_s / ours:.2f} | "
          f"objective ratio {ratio:.5f} |", flush=True)
    if not np.isfinite(ratio) or ratio > 1.01:
        sys.exit(f"k-means objective ratio {ratio} is off")


def cmd_temi(args) -> None:
    from deepclust.cluster.heads import TEMI

    rng = np.random.default_rng(0)
    X = blobs(args.n, args.d, args.k, 0)
    nb = rng.integers(0, args.n, (args.n, 10), dtype=np.int64)
    model = TEMI(n_clusters=args.k, n_steps=args.steps, n_heads=args.heads, n_neighbors=10,
                 batch_size=args.batch, device=args.device, random_state=0, progress=False)
    model.fit(X, neighbors=nb)
    train_s = model.stats_["timings"]["train_s"]
    print(f"| TEMI {args.n} x {args.d}, k={args.k}, {args.heads} heads, batch {args.batch}, "
          f"{args.device} | {args.steps / train_s:.1f} steps/s | {args.steps} steps in "
          f"{train_s:.1f} s | fit {model.stats_['timings']['fit_s']:.1f} s |", flush=True)
    if len(np.unique(model.labels_)) < 2:
        sys.exit("TEMI put every row in one cluster")


def cmd_embed(args) -> None:
    import tempfile

    from PIL import Image
    from sklearn.datasets import load_sample_images

    from deepclust.data.sources import ArraySource
    from deepclust.embed import embed

    photos = [Image.fromarray(p) for p in load_sample_images().images]
    rng = np.random.default_rng(0)
    images = np.empty((args.n, 256, 256, 3), np.uint8)
    for i in range(args.n):
        p = photos[i % 2]
        x, y = rng.integers(0, p.width - 300), rng.integers(0, p.height - 300)
        images[i] = np.asarray(p.crop((x, y, x + 300, y + 300)).resize((256, 256)))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store = embed(ArraySource(images), "effnet-lite0", f"{tmp}/s", device=args.device,
                      progress=False)
        seconds = time.perf_counter() - t
        run = store.meta["last_run"]
    print(f"| embed effnet-lite0, {args.n} images 256 px -> 224, {args.device} | "
          f"{args.n / seconds:.1f} images/s end to end | engine {run['parameters']['engine']}, "
          f"precision {run['parameters']['precision']}, batch {run['parameters']['batch_size']} |",
          flush=True)
    if len(store) != args.n:
        sys.exit(f"embedded {len(store)} of {args.n} images")


def cmd_kmeans_dist(args) -> None:
    import torch.distributed as dist

    from deepclust import runtime
    from deepclust.cluster.kmeans import KMeans

    if "RANK" in os.environ and not dist.is_initialized():
        # runtime.init_from_env joins only groups of 2+ processes; a group of one is made
        # here so that the collectives really run through nccl (gloo on a CPU)
        backend = "nccl" if torch.device(args.device).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    di = runtime.init_from_env()
    backend = dist.get_backend() if dist.is_initialized() else "none"
    X = blobs(args.n, args.d, args.k, 0)
    C0 = X[np.random.default_rng(1).choice(args.n, args.k, replace=False)].copy()
    t = time.perf_counter()
    dist = KMeans(args.k, init=C0, max_iter=args.iters, tol=0, device=args.device,
                  distributed=True).fit(X)
    seconds = time.perf_counter() - t
    alone = KMeans(args.k, init=C0, max_iter=args.iters, tol=0, device=args.device,
                   distributed=False).fit(X)
    same = float(np.mean(dist.labels_ == alone.labels_))
    if di.is_main:
        print(f"| torchrun k-means, world {di.world_size}, backend {backend}, {args.n} x {args.d}, "
              f"k={args.k}, {args.device} | {seconds:.2f} s | labels equal to one process: "
              f"{same:.4f} |", flush=True)
    runtime.shutdown()
    if backend == "none" or same < 0.999:
        sys.exit(f"distributed k-means: backend {backend}, label agreement {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["kmeans", "temi", "embed", "kmeans-dist"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rows", dest="n", type=int, default=1_000_000)
    ap.add_argument("--dim", dest="d", type=int, default=768)
    ap.add_argument("--clusters", dest="k", type=int, default=10_000)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1024)
    args = ap.parse_args()
    {"kmeans": cmd_kmeans, "temi": cmd_temi, "embed": cmd_embed,
     "kmeans-dist": cmd_kmeans_dist}[args.what](args)


if __name__ == "__main__":
    main()
