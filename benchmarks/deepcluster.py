"""DeepCluster on Fashion-MNIST with the small convnet, on the CPU: does it learn features?

Trains :class:`deepclust.deepcluster.DeepCluster` on the 60 000 training images (labels are
used only to log NMI), then compares three representations of the same images:

- **raw pixels** (784-d, in [0, 1]);
- **random init**: the same network at the initialisation the training started from;
- **DeepCluster**: the trained network's features (the exported encoder's).

Two scores each, with the same protocol for all three:

- k-means with k = 10 (the class count, as the papers do) on the 10 000 test images, the
  features as they are and after DeepCluster's PCA-whitening + L2; NMI and ACC against the
  labels (k-means++, 3 restarts, lowest objective kept: no label-based choice);
- linear probe: multinomial logistic regression on standardised frozen features, fitted on
  the training split, accuracy on the test split (same C and iterations for all).

Run: ``nice python benchmarks/deepcluster.py [--epochs 15 --k 100 --threads 1 --out DIR]``.
``--limit N`` trains on the first N training images (quick trials).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch
from threadpoolctl import threadpool_limits

from deepclust.data.builtin import load_dataset
from deepclust.deepcluster import (
    DeepCluster,
    features_of,
    kmeans_scores,
    linear_probe,
    load_training_images,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--k", type=int, default=100, help="clusters of DeepCluster's k-means")
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch/BLAS threads (1 is fastest on a shared 2-core machine)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--probe-iter", type=int, default=300)
    args = ap.parse_args()

    t_all = time.perf_counter()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"torch thread(s), torch {torch.__version__}")
    train = load_dataset("fashion-mnist:train")
    test = load_dataset("fashion-mnist:test")
    n_train = len(train) if args.limit is None else min(args.limit, len(train))
    print(f"Fashion-MNIST: train {n_train}, test {len(test)}; DeepCluster small convnet, "
          f"k={args.k}, {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}")

    out = args.out or tempfile.mkdtemp(prefix="deepcluster-bench-")
    dc = DeepCluster("small", n_clusters=args.k, epochs=args.epochs, batch_size=args.batch_size,
                     lr=args.lr, precision=args.precision, threads=args.threads, seed=args.seed,
                     progress=False, verbose=True)
    t0 = time.perf_counter()
    dc.fit(train, limit=args.limit, out=out)
    train_s = time.perf_counter() - t0
    print(f"\ntraining: {train_s / 60:.1f} min ({train_s / max(dc.epochs, 1):.0f} s/epoch), "
          f"precision {dc.precision_}, run folder {out}")

    print("\nper-epoch table (pseudo-labels of the clustering that starts each epoch)")
    print(f"{'epoch':>5} {'NMI(t,t-1)':>11} {'NMI labels':>11} {'loss':>7} {'empty':>6} "
          f"{'largest':>8} {'seconds':>8}")
    for r in dc.history_:
        prev = "-" if r["nmi_prev"] is None else f"{r['nmi_prev']:.4f}"
        print(f"{r['epoch']:>5} {prev:>11} {r['nmi_labels']:>11.4f} {r['loss']:>7.3f} "
              f"{r['clusters']['n_empty']:>6} {r['clusters']['largest_share']:>8.3f} "
              f"{r['seconds']['total']:>8.1f}")

    with threadpool_limits(limits=args.threads):
        t0 = time.perf_counter()
        tr_img = load_training_images(train, side=dc.resize_size_)
        te_img = load_training_images(test, side=dc.resize_size_)
        random_net = dc.make_network().to(dc.device_)
        reps = {"raw pixels": (train.features(), test.features())}
        for layer in ("trunk", "embed"):
            for name, net in (("random init", random_net), ("DeepCluster", dc.network_)):
                reps[f"{name} {layer}"] = tuple(features_of(net, im, dc, layer=layer).numpy()
                                               for im in (tr_img, te_img))
        results = {}
        for name, (Xtr, Xte) in reps.items():
            results[name] = (
                kmeans_scores(Xte, test.labels, 10, n_init=3, random_state=0),
                kmeans_scores(Xte, test.labels, 10, n_init=3, random_state=0,
                              preprocess="pca-whiten-l2"),
                linear_probe(Xtr, train.labels, Xte, test.labels, max_iter=args.probe_iter),
            )
        eval_s = time.perf_counter() - t0

    print(f"\nfeatures of the {len(train)} training / {len(test)} test images; k-means (k=10) "
          f"on test, linear probe train -> test ({eval_s:.0f} s)")
    print("trunk: conv trunk flattened (2048-d, the exported encoder's features); "
          "embed: the clustered 256-d FC features")
    print(f"{'features':<18} {'k-means NMI':>11} {'ACC':>7} {'NMI(PCA-w+L2)':>14} "
          f"{'probe test':>11} {'probe train':>11}")
    for name, (km, km_dc, probe) in results.items():
        print(f"{name:<18} {km['nmi']:>11.4f} {km['acc']:>7.4f} {km_dc['nmi']:>14.4f} "
              f"{probe['test_acc']:>11.4f} {probe['train_acc']:>11.4f}")

    raw = results["raw pixels"]
    for layer in ("trunk", "embed"):
        learned, rand = results[f"DeepCluster {layer}"], results[f"random init {layer}"]
        print(f"\nmargins of DeepCluster's {layer} features")
        print(f"  k-means NMI:            {learned[0]['nmi'] - raw[0]['nmi']:+.4f} vs raw pixels, "
              f"{learned[0]['nmi'] - rand[0]['nmi']:+.4f} vs random init")
        print(f"  k-means NMI (PCA-w+L2): {learned[1]['nmi'] - raw[1]['nmi']:+.4f} vs raw pixels, "
              f"{learned[1]['nmi'] - rand[1]['nmi']:+.4f} vs random init")
        print(f"  linear probe accuracy:  {learned[2]['test_acc'] - rand[2]['test_acc']:+.4f} vs "
              f"random init, {learned[2]['test_acc'] - raw[2]['test_acc']:+.4f} vs raw pixels")
    print(f"\ntotal {(time.perf_counter() - t_all) / 60:.1f} min")


if __name__ == "__main__":
    main()
