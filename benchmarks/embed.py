"""Throughput of `deepclust embed` on Fashion-MNIST, against the bare model forward.

Three measurements (each optional):

``--sweep``     the bare forward of the encoder on pre-decoded, pre-processed tensors, for
                fp32 / bf16 x batch 16 / 32 / 64 x channels-last off / on x torch threads;
``--pipeline``  the full `embed()` (decode, preprocess 28x28 grey -> the encoder's input size,
                DataLoader, forward, store writing) at the default precision, batch and layout,
                with 0 / 1 decoding workers, as a ratio of the bare forward with the same
                settings (target: >= 0.8);
``--engine``    torch eager as `embed` ran it before the engines (channels-last, batch 32, bf16
                autocast where the CPU has native bf16, else fp32) against ONNX Runtime (fp32,
                what ``auto`` picks) and OpenVINO (fp32, and bf16 where native)
                on the same pre-processed tensors, alternating A/B rounds in one process, best
                of each; then, on ``--engine-n`` test images embedded every way, the per-row
                cosine to the torch fp32 forward and the k-means (k=10) NMI;
``--nmi``       k-means (k=10) NMI of the whole test split embedded in fp32 and in bf16, beside
                raw pixels, to show that bf16 costs no quality (``--store-fp32`` /
                ``--store-bf16`` reuse stores made earlier instead of embedding again).

On a shared machine every number is the best of ``--repeats`` rounds, run round-robin so that
changes in load hit every configuration alike.

Prints markdown tables. Not part of the test suite.

    python benchmarks/embed.py --sweep --pipeline --n 512
    python benchmarks/embed.py --nmi
    python benchmarks/embed.py --engine --n 128 --engine-n 2000
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
from deepclust.embed import CPU_BATCH_SIZE, auto_threads, default_workers, embed
from deepclust.encoders import get_encoder
from deepclust.runtime import cpu_has_native_bf16, resolve_precision
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


def engine_table(args, ds, enc, X: torch.Tensor) -> None:
    """Images/s, cosine to the torch fp32 forward and k-means NMI: torch eager vs the engine."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from deepclust.encoders.engine import (
        ONNXRuntimeEncoder,
        OpenVINOEncoder,
        default_engine_threads,
        resolve_engine,
    )

    batch = CPU_BATCH_SIZE
    # "before": torch eager as embed() ran it before the engine on this CPU (bf16 autocast
    # where bf16 is native, fp32 elsewhere; channels-last)
    before_precision = resolve_precision("embed", "auto", torch.device("cpu"))
    before = f"torch eager {before_precision}, channels-last (before)"
    ways = {
        before: lambda x: _torch_forward(enc, x, before_precision, True),
        "torch eager fp32 (reference)": lambda x: _torch_forward(enc, x, "fp32", False),
    }
    auto = resolve_engine("auto", enc, torch.device("cpu"))
    ways["ONNX Runtime fp32" + (" (engine auto)" if auto == "onnxruntime" else "")] = \
        ONNXRuntimeEncoder(enc)
    # OpenVINO bf16 only where the CPU has it natively (elsewhere it is emulated)
    for precision in ("fp32", "bf16") if cpu_has_native_bf16() else ("fp32",):
        ov = OpenVINOEncoder(enc, precision=precision)
        ways[f"OpenVINO {precision}" + (" (engine auto)" if auto == "openvino" and
                                         precision == "fp32" else "")] = ov
    torch.set_num_threads(auto_threads())  # what embed() uses by default on the CPU
    start_load = os.getloadavg()
    best: dict = {}
    for _ in range(args.repeats):  # A/B/C/D rounds alternate, so load changes hit all alike
        for name, fn in ways.items():
            fn(X[:batch])  # warm-up
            t = time.perf_counter()
            for i in range(0, len(X), batch):
                fn(X[i:i + batch])
            best[name] = max(best.get(name, 0.0), len(X) / (time.perf_counter() - t))
    end_load = os.getloadavg()
    m = min(args.engine_n, len(ds.labels))
    rows = np.random.default_rng(0).choice(len(ds.labels), m, replace=False)
    rows.sort()
    sub = ArraySource(ds.images[rows], ds.labels[rows], name="fashion-mnist:test")
    feats = {}
    for name, fn in ways.items():
        out = []
        for i in range(0, m, batch):
            x = torch.stack([enc.transform(sub[j][0]) for j in range(i, min(i + batch, m))])
            out.append(fn(x).numpy())
        feats[name] = np.concatenate(out).astype(np.float64)
    ref = feats["torch eager fp32 (reference)"]
    y = ds.labels[rows]
    base = best[before]
    print(f"## torch eager vs the CPU engines, {enc.name} at {tuple(X.shape[2:])} px, batch "
          f"{batch}, {torch.get_num_threads()} torch threads, {default_engine_threads()} engine "
          f"threads\n\nimages/s: best of {args.repeats} alternating rounds on {len(X)} images; load "
          f"average (1, 5, 15 min) {start_load[0]:.2f} {start_load[1]:.2f} {start_load[2]:.2f} at "
          f"start, {end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f} at end. Cosine to the "
          f"torch fp32 forward per row and k-means (k=10, 10 restarts) NMI on {m} test images "
          f"(seeded sample).\n")
    print("| way | images/s | x before | min cosine | mean cosine | NMI |")
    print("|---|---|---|---|---|---|")
    for name, F in feats.items():
        cos = (F * ref).sum(1) / np.linalg.norm(F, axis=1) / np.linalg.norm(ref, axis=1)
        score = nmi(y, KMeans(10, n_init=10, random_state=0).fit_predict(F))
        print(f"| {name} | {best[name]:.1f} | {best[name] / base:.2f} | {cos.min():.5f} | "
              f"{cos.mean():.6f} | {score:.4f} |", flush=True)
    print()


def _torch_forward(enc, x: torch.Tensor, precision: str, channels_last: bool) -> torch.Tensor:
    enc.set_channels_last(channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        return enc(x)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--encoder", default="effnet-lite0")
    ap.add_argument("--n", type=int, default=512, help="images used by --sweep and --pipeline")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--pipeline", action="store_true")
    ap.add_argument("--nmi", action="store_true")
    ap.add_argument("--engine", action="store_true", help="torch eager against the OpenVINO engine")
    ap.add_argument("--engine-n", type=int, default=2000,
                    help="--engine: test images embedded every way for cosine and NMI")
    ap.add_argument("--store-fp32", help="--nmi: an existing fp32 store of the test split to reuse")
    ap.add_argument("--store-bf16", help="--nmi: an existing bf16 store of the test split to reuse")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the best of each is reported")
    ap.add_argument("--threads", default=f"1,{torch.get_num_threads()}",
                    help="comma-separated torch thread counts to compare")
    args = ap.parse_args()
    if not (args.sweep or args.pipeline or args.nmi or args.engine):
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

    if args.engine:
        engine_table(args, ds, enc, X)

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
