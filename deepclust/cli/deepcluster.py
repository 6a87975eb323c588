"""``deepclust deepcluster``: train an encoder on unlabelled images with DeepCluster."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from deepclust import runtime
from deepclust.errors import InputError

ARCH_NAMES = ("alexnet", "vgg16", "resnet18", "resnet50", "small")


def _pair(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    return lo, hi


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "deepcluster",
        help="train an image encoder by clustering (DeepCluster, DeepCluster-v2)",
        description=(
            "Train a convnet from scratch on the images of SOURCE with no labels: each epoch, "
            "k-means on its features gives pseudo-labels that it then learns to predict "
            "(Caron et al., ECCV 2018; --v2: DeepCluster-v2). SOURCE is a built-in dataset "
            "(fashion-mnist:train, digits), an image folder, a .csv/.parquet manifest, tar "
            "shards or a saved Hugging Face dataset. DIR receives a checkpoint every epoch "
            "(an interrupted run resumes), log.jsonl (one line per epoch), nmi.png, run.json "
            "and encoder/, usable as `deepclust embed --encoder checkpoint:DIR/encoder`. "
            "Labels, when the source has them, are only used to log NMI. Under torchrun the "
            "processes share every batch and the feature pass."
        ),
    )
    p.add_argument("source", help="built-in dataset name, image folder, manifest or tar shards")
    p.add_argument("--arch", default="small", choices=ARCH_NAMES,
                   help="network (default small: 28-32 px images; alexnet/vgg16/resnet*: 224 px)")
    p.add_argument("--k", type=int, required=True,
                   help="clusters of each k-means (over-clustering helps: the paper uses 10x "
                        "the class count)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--limit", type=int, help="train on the first N images only")
    p.add_argument("--out", "-o", required=True, help="run folder (created or resumed)")
    p.add_argument("--v2", action="store_true",
                   help="DeepCluster-v2: memory bank, spherical k-means, frozen prototypes")
    p.add_argument("--heads", type=int, default=3, help="v2: clusterings at once (default 3)")
    p.add_argument("--temperature", type=float, default=0.1, help="v2: softmax temperature")
    p.add_argument("--batch-size", type=int, default=256, help="global batch (default 256)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=None,
                   help="default 1e-5 (1e-6 with --v2)")
    p.add_argument("--pca-dim", type=int, default=256, help="PCA-whitening dimensions (v1)")
    sobel = p.add_mutually_exclusive_group()
    sobel.add_argument("--sobel", dest="sobel", action="store_true", default=None,
                       help="fixed Sobel input layer (default: on for alexnet/vgg16)")
    sobel.add_argument("--no-sobel", dest="sobel", action="store_false")
    p.add_argument("--input-size", type=int, help="crop side the network sees")
    p.add_argument("--crop-scale", type=_pair, metavar="LOW,HIGH",
                   help="area range of the random-resized crop")
    p.add_argument("--samples-per-epoch", type=int, help="v1: images drawn per epoch (default: all)")
    p.add_argument("--export-layer", choices=["trunk", "embed"], default="trunk",
                   help="features of the exported encoder: conv trunk (default) or the "
                        "clustered FC features")
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--precision", choices=list(runtime.PRECISIONS), default="auto",
                   help=runtime.PRECISION_HELP)
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: GPU if available)")
    p.add_argument("--threads", type=int,
                   help="torch and BLAS threads (1 is fastest on a machine busy with other work)")
    p.add_argument("--workers", type=int, default=0, help="image-decoding processes")
    p.add_argument("--kind", choices=["folder", "manifest", "tar", "hf", "builtin"],
                   help="force the source type instead of guessing it")
    p.add_argument("--split", help="split of a saved HF dataset or a built-in dataset")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep every epoch's checkpoint, not only the last")
    p.add_argument("--overwrite", action="store_true", help="discard a run already in --out")
    p.add_argument("--no-resume", action="store_true",
                   help="refuse to continue a run already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_deepcluster)


def _estimator(args):
    from deepclust.deepcluster import DeepCluster, DeepClusterV2

    common = dict(arch=args.arch, n_clusters=args.k, epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                  sobel=args.sobel, input_size=args.input_size, crop_scale=args.crop_scale,
                  precision=args.precision, device=args.device, threads=args.threads,
                  seed=args.seed, keep_checkpoints=args.keep_checkpoints,
                  export_layer=args.export_layer, progress=not args.no_progress, verbose=True)
    if args.v2:
        return DeepClusterV2(n_heads=args.heads, temperature=args.temperature,
                             weight_decay=1e-6 if args.weight_decay is None else args.weight_decay,
                             **common)
    return DeepCluster(pca_dim=args.pca_dim, samples_per_epoch=args.samples_per_epoch,
                       weight_decay=1e-5 if args.weight_decay is None else args.weight_decay,
                       **common)


def cmd_deepcluster(args: argparse.Namespace) -> int:
    from deepclust import runtime
    from deepclust.record import RunRecord, json_safe
    from deepclust.runinfo import now_iso

    started = now_iso()
    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    source_options = {}
    if args.kind:
        source_options["kind"] = args.kind
    if args.split:
        source_options["split"] = args.split
    di = runtime.init_from_env()
    try:
        est = _estimator(args)
        est.fit(args.source, out=out, limit=args.limit, resume=not args.no_resume,
                overwrite=args.overwrite, num_workers=args.workers, source_options=source_options)
        if di.is_main:
            last = est.history_[-1] if est.history_ else {}
            params = est.get_params()
            record = RunRecord(
                command="deepcluster", argv=getattr(args, "argv", []),
                seed=params.get("random_state"),
                input={"path": args.source, "source": args.source, "n_samples": est.n_images_,
                       "limit": args.limit},
                method="deepcluster-v2" if est._variant == "v2" else "deepcluster",
                params=params, k=params.get("n_clusters"),
                k_requested=params.get("n_clusters"),
                timings={"train_s": est.fit_seconds_, "total_s": time.perf_counter() - t0},
                started=started, finished=now_iso(),
                extra={
                    "variant": est._variant,
                    "parameters": json_safe(params),
                    "source": args.source,
                    "limit": args.limit,
                    "n_images": est.n_images_,
                    "world_size": di.world_size,
                    "input_size": est.input_size_,
                    "resize_size": est.resize_size_,
                    "precision": est.precision_,
                    "normalisation": {"mean": est.mean_, "std": est.std_},
                    "epochs_done": est.epochs_done_,
                    "last_epoch": last,
                    "encoder": str(est.encoder_path_) if est.encoder_path_ else None,
                })
            record.write(out)
            print(f"{out}: {est.epochs_done_} epoch(s) on {est.n_images_} images; encoder "
                  f"checkpoint:{est.encoder_path_}")
            scores = [f"NMI with the {what} {last[key]:.4f}" for key, what in
                      (("nmi_labels", "labels"), ("nmi_prev", "previous pseudo-labels"))
                      if last.get(key) is not None]
            if scores:
                print(f"  last epoch: {', '.join(scores)}")
    finally:
        runtime.shutdown()
    return 0
