"""Throughput of `deepclust embed` on Fashion-MNIST, against the bare model forward.

Three measurements (each optional):

``--sweep``     the bare forward of the encoder on pre-decoded, pre-processed tensors, for
                fp32 / bf16 x batch 16 / 32 / 64 x channels-last off / on x torch threads;
``--pipeline``  the full `embed()` (decode, preprocess 28x28 grey -> the encoder's input size,
                DataLoader, forward, store writing) at the default precision, batch and layout,
                with 0 / 1 decoding workers, as a ratio of the bare forward with the same
                settings (target: >= 0.8);
``--nmi``       k-means (k=10) NMI of the whole test split embedded in fp32 and in bf16, beside
                raw pixels, to show that bf16 costs no quality (``--store-fp32`` /
                ``--store-bf16`` reuse stores made earlier instead of embedding again).

On a shared machine every number is the best of ``--repeats`` rounds, run round-robin so that
changes in load hit every configuration alike.

Prints markdown tables. Not part of the test suite.

    python benchmarks/embed.py --sweep --pipeline --n 512
    python benchmarks/embed.py --nmi
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from deepclust.data import load_dataset
from deepclust.data.sources import ArraySource
from deepclust.embed import CPU_BATCH_SIZE, default_workers, embed
from deepclust.encoders import get_encoder
from deepclust.runtime import resolve_precision
from deepclust.store import open_store


def bare_rate(enc, X: torch.Tensor, precision: str, batch: int, channels_last: bool) -> float:
    """Images/s of the encoder alone on tensors already in memory."""
    enc.set_channels_last(channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with autocast:
        enc(X[:batch])  # warm-up: oneDNN picks its kernels on the first call
    start = time.perf_counter()
    for i in range(0, len(X), batch):
        with autocast:
            enc(X[i:i + batch])
    return len(X) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--encoder", default="effnet-lite0")
    ap.add_argument("--n", type=int, default=512, help="images used by --sweep and --pipeline")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--pipeline", action="store_true")
    ap.add_argument("--nmi", action="store_true")
    ap.add_argument("--store-fp32", help="--nmi: an existing fp32 store of the test split to reuse")
    ap.add_argument("--store-bf16", help="--nmi: an existing bf16 store of the test split to reuse")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the best of each is reported")
    ap.add_argument("--threads", default=f"1,{torch.get_num_threads()}",
                    help="comma-separated torch thread counts to compare")
    args = ap.parse_args()
    if not (args.sweep or args.pipeline or args.nmi):
        args.sweep = args.pipeline = True
    torch.set_flush_denormal(True)
    print(
        f"# {args.encoder} on Fashion-MNIST test, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} cores, "
        f"load average at start {os.getloadavg()[0]:.2f}\n"
    )
    ds = load_dataset("fashion-mnist", "test")
    enc = get_encoder(args.encoder)
    src = ArraySource(ds.images[: args.n], ds.labels[: args.n], name="fashion-mnist:test")
    X = torch.stack([enc.transform(src[i][0]) for i in range(len(src))])
    cpu = torch.device("cpu")

    thread_counts = [int(t) for t in args.threads.split(",")]
    default_threads = torch.get_num_threads()
    rates: dict = {}
    if args.sweep:
        configs = [(p, b, cl, t) for p in ("fp32", "bf16") for b in (16, 32, 64)
                   for cl in (False, True) for t in thread_counts]
        # Round-robin repeats, best of each: on a shared machine, load changes hit every
        # configuration alike and the best round approaches the unloaded rate.
        for _ in range(args.repeats):
            for p, b, cl, t in configs:
                torch.set_num_threads(t)
                rates[(p, b, cl, t)] = max(rates.get((p, b, cl, t), 0.0), bare_rate(enc, X, p, b, cl))
        torch.set_num_threads(default_threads)
        print(f"## bare forward on {len(X)} pre-decoded {tuple(X.shape[1:])} tensors "
              f"(images/s, best of {args.repeats})\n")
        print("| precision | batch | threads | channels-last off | channels-last on |")
        print("|---|---|---|---|---|")
        for precision in ("fp32", "bf16"):
            for batch in (16, 32, 64):
                for t in thread_counts:
                    off, on = rates[(precision, batch, False, t)], rates[(precision, batch, True, t)]
                    print(f"| {precision} | {batch} | {t} | {off:.1f} | {on:.1f} |")
        print(flush=True)

    if args.pipeline:
        precision = resolve_precision("embed", "auto", cpu)
        batch, cl = CPU_BATCH_SIZE, enc.prefers_channels_last
        print(f"## embed() end to end on the same {len(src)} images: precision {precision}, "
              f"batch {batch}, channels-last {cl}\n")
        print(f"| threads | workers | embed images/s | bare images/s | ratio (best of {args.repeats}) |")
        print("|---|---|---|---|---|")
        best: dict = {}
        for _ in range(args.repeats):
            for t in thread_counts:
                torch.set_num_threads(t)
                best[(t, "bare")] = max(best.get((t, "bare"), 0.0), bare_rate(enc, X, precision, batch, cl))
                for workers in sorted({0, 1, default_workers(cpu)}):
                    with tempfile.TemporaryDirectory() as tmp:
                        start = time.perf_counter()
                        store = embed(src, enc, os.path.join(tmp, "s"), batch_size=batch, threads=t,
                                      num_workers=workers, precision=precision, progress=False)
                        rate = len(store) / (time.perf_counter() - start)
                    best[(t, workers)] = max(best.get((t, workers), 0.0), rate)
        torch.set_num_threads(default_threads)
        for (t, workers), rate in sorted((k, v) for k, v in best.items() if k[1] != "bare"):
            bare = best[(t, "bare")]
            print(f"| {t} | {workers} | {rate:.1f} | {bare:.1f} | {rate / bare:.2f} |")
        print(flush=True)

    if args.nmi:
        from sklearn.cluster import KMeans
        from sklearn.metrics import normalized_mutual_info_score as nmi

        def kmeans_nmi(F):
            pred = KMeans(10, n_init=10, random_state=0).fit_predict(F)
            return nmi(ds.labels, pred)

        full = ArraySource.from_dataset(ds)
        print("## k-means (k=10, 10 restarts) NMI on the full test split\n")
        print("| features | NMI | embed time (s) |")
        print("|---|---|---|")
        print(f"| raw pixels (784) | {kmeans_nmi(ds.features()):.4f} | - |", flush=True)
        for precision in ("fp32", "bf16"):
            given = getattr(args, f"store_{precision}")
            if given:  # a store made earlier (e.g. the demo's cache) at this precision
                store = open_store(given)
                if store.meta["precision"] != precision or store.meta["n_items"] != len(full):
                    raise SystemExit(f"{given} is not a {precision} store of the full test split")
                seconds = store.meta.get("last_run", {}).get("seconds", float("nan"))
                F = np.asarray(store.X, dtype=np.float32)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    store = embed(full, enc, os.path.join(tmp, "s"), precision=precision,
                                  progress=False)
                    seconds = time.perf_counter() - start
                    F = np.asarray(store.X, dtype=np.float32)
            print(f"| {args.encoder} {precision} | {kmeans_nmi(F):.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
