"""``deepclust evaluate``: score predicted labels against true labels."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from deepclust.cli.common import METRIC_COLUMNS, print_json
from deepclust.errors import InputError
from deepclust.tables import format_table


def _read_labels(path: Path, what: str) -> np.ndarray:
    """Labels from a run folder, a feature file with labels, a .npy or a text file."""
    from deepclust.data.features import load_features, read_labels_file

    if path.is_dir():
        path = path / "labels.npy"
    if path.suffix in (".npz", ".parquet", ".csv") and path.is_file():
        try:
            fs = load_features(path)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path} could not be read as {what}: {exc}") from None
        if fs.y is None:
            raise InputError(f"{path} holds no labels")
        return fs.y
    return read_labels_file(path, what)


def cmd_evaluate(args) -> int:
    from deepclust import metrics as M
    from deepclust.validation import check_labels

    pred = check_labels(_read_labels(Path(args.pred), "predicted labels"), name="predicted labels")
    if args.truth is None:
        raise InputError("give the true labels with --truth FILE (.npy, .txt, or a feature file "
                         "with labels)")
    if Path(args.truth).exists():
        truth = _read_labels(Path(args.truth), "true labels")
    else:
        from deepclust.data import load_features  # a built-in dataset name

        truth = load_features(args.truth).y
    truth = check_labels(truth, len(pred), name="true labels")
    result = M.evaluate(truth, pred, noise=args.noise, average_method=args.average)
    out = {"metrics": result}
    if args.per_class:
        out["per_class"] = M.per_class_table(truth, pred)
    if args.per_cluster:
        out["per_cluster"] = M.per_cluster_table(truth, pred)
    if args.json:
        print_json(out)
        return 0
    print(format_table([{"score": k, "value": result[k]} for k in
                        ("acc", "many_to_one_acc", *METRIC_COLUMNS[1:]) if k in result]))
    print(f"\n{result['n_samples']} samples, {result['n_classes']} classes, "
          f"{result['n_clusters']} clusters, {result['n_noise']} noise "
          f"(noise rule: {args.noise}), NMI average: {args.average}")
    if args.per_class:
        print("\nper class\n" + format_table(out["per_class"]))
    if args.per_cluster:
        print("\nper cluster\n" + format_table(out["per_cluster"]))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score predicted labels against true labels")
    p.add_argument("pred", help="predicted labels (.npy, text) or a run directory")
    p.add_argument("--truth", help="true labels (.npy, text, feature file, or dataset name)")
    p.add_argument("--noise", default="cluster", choices=["cluster", "singletons", "exclude"])
    p.add_argument("--average", default="arithmetic",
                   choices=["arithmetic", "geometric", "min", "max"],
                   help="NMI normalisation (geometric for older papers)")
    p.add_argument("--per-class", action="store_true", help="print the per-class table")
    p.add_argument("--per-cluster", action="store_true", help="print the per-cluster table")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)
