"""Sub-commands of the core pipeline: cluster, evaluate, demo, datasets, methods."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from deepclust.errors import DataNotFoundError, InputError
from deepclust.tables import format_table

METRIC_COLUMNS = ("acc", "nmi", "ami", "ari", "purity", "homogeneity", "completeness")
LABEL_FREE_COLUMNS = ("umap_silhouette", "silhouette", "davies_bouldin", "calinski_harabasz")


def _parse_params(items: list[str] | None) -> dict:
    from deepclust.reduce import _parse_value

    params = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--param takes KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        params[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return params


def _parse_k(text: str | None):
    if text is None or text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--k takes an integer or 'auto', got {text!r}") from None


def _print_json(obj) -> None:
    from deepclust.runinfo import to_json

    print(to_json(obj, indent=2))


def _scores_rows(metrics: dict | None, label_free: dict | None) -> list[dict]:
    rows = []
    for name in METRIC_COLUMNS:
        if metrics and name in metrics:
            rows.append({"score": name, "value": metrics[name], "uses labels": "yes"})
    for name in LABEL_FREE_COLUMNS:
        if label_free and name in label_free:
            rows.append({"score": name, "value": label_free[name], "uses labels": "no"})
    return rows


# ---------------------------------------------------------------- cluster
def cmd_cluster(args) -> int:
    from deepclust.data import load_features
    from deepclust.metrics import PROXY_UMAP
    from deepclust.pipeline import run_clustering
    from deepclust.runinfo import environment, now_iso, write_json, write_npy
    from deepclust.selection import parse_k_range

    started = now_iso()
    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    k = _parse_k(args.k)
    if _streams_store(args, k):
        return _cluster_store_out_of_core(args, k, started, t0)
    fs = load_features(args.input, labels_path=args.labels, label_column=args.label_column)
    load_s = time.perf_counter() - t0
    params = _parse_params(args.param)
    for name in ("precision", "device"):
        value = getattr(args, name, None)
        if value is not None:
            from deepclust.cluster import get_clusterer_class

            if name not in get_clusterer_class(args.method)._get_param_names():
                raise InputError(f"--{name} is not a setting of method {args.method!r}")
            params[name] = value
    result = run_clustering(
        fs.X, fs.y, method=args.method, k=k, reducer=args.reduce, params=params,
        random_state=args.seed, k_values=parse_k_range(args.k_range), criterion=args.criterion,
        label_free=not args.no_label_free, noise=args.noise, progress=not args.json,
    )
    result.timings = {"load_s": load_s, **result.timings,
                      "total_s": time.perf_counter() - t0}
    write_npy(out / "labels.npy", result.labels)
    run = {
        "command": "cluster",
        "argv": getattr(args, "argv", sys.argv[1:]),
        "input": {"path": str(args.input), "source": fs.source, "n_samples": len(fs.X),
                  "n_features": int(fs.X.shape[1]), "has_labels": fs.has_labels,
                  "labels_path": args.labels},
        "seed": args.seed,
        "k": args.k,
        "noise": args.noise,
        "proxy_umap": PROXY_UMAP,
        **result.as_dict(),
        "environment": environment(),
        "started": started,
        "finished": now_iso(),
    }
    write_json(out / "run.json", run)
    page = None
    if args.report:
        from deepclust.report import write_report

        page = write_report(out, features=fs)
    if args.json:
        _print_json(run)
        return 0
    print(f"{fs.source}: {len(fs.X)} x {fs.X.shape[1]}; reducer {result.reducer} -> "
          f"{result.reduced_shape[1]} dims; method {args.method}")
    if result.k_selection is not None:
        sel = result.k_selection
        tag = "ORACLE (uses true labels)" if sel.oracle else "label-free"
        print(f"\nk chosen by {sel.criterion} ({tag}): {sel.best_k}")
        print(format_table([{**c, "best": "<-" if c["k"] == sel.best_k else ""}
                            for c in sel.curve], ["k", "score", "n_clusters", "best"]))
    noise = f", {result.n_noise} noise points" if result.n_noise else ""
    print(f"\n{result.n_clusters} clusters{noise}")
    rows = _scores_rows(result.metrics, result.label_free)
    if rows:
        print(format_table(rows))
    print(f"\nwrote {out / 'labels.npy'} and {out / 'run.json'} "
          f"({result.timings['total_s']:.1f} s)")
    if page is not None:
        from deepclust.cli_report import print_written

        return print_written(page)
    return 0


#: Methods that fit a store block by block, never loading it (deepclust cluster STORE).
OUT_OF_CORE_METHODS = ("kmeans", "minibatch-kmeans")


def _streams_store(args, k) -> bool:
    """True when ``deepclust cluster`` should fit the store without loading it: an embedding
    store, a method that streams, a given k, no reduction and no outside labels."""
    path = Path(args.input)
    return (path.is_dir() and (path / "meta.json").is_file() and args.method in OUT_OF_CORE_METHODS
            and isinstance(k, int) and not args.reduce and not args.labels
            and not args.label_column and not getattr(args, "report", False))


def _cluster_store_out_of_core(args, k: int, started: str, t0: float) -> int:
    """``deepclust cluster STORE --method kmeans --k K``: streamed, any size of store.

    Scores that use labels are computed when the store has them; the label-free proxy
    (a UMAP space of all rows) is not, since it would need the rows in memory.
    """
    from deepclust.cluster import make_clusterer
    from deepclust.metrics import evaluate
    from deepclust.runinfo import environment, now_iso, write_json, write_npy
    from deepclust.store import open_store

    store = open_store(args.input)
    out = Path(args.out)
    params = _parse_params(args.param)
    for name in ("precision", "device"):
        if getattr(args, name, None) is not None:
            params[name] = getattr(args, name)
    est = make_clusterer(args.method, n_clusters=k, random_state=args.seed, **params)
    t_fit = time.perf_counter()
    est.fit(store)
    fit_s = time.perf_counter() - t_fit
    labels = est.labels_
    y = store.labels
    has_labels = bool((y >= 0).any())
    metrics = evaluate(y, labels, noise=args.noise) if has_labels else None
    write_npy(out / "labels.npy", labels)
    run = {
        "command": "cluster",
        "argv": getattr(args, "argv", sys.argv[1:]),
        "input": {"path": str(args.input), "source": f"store ({store.meta.get('encoder')})",
                  "n_samples": len(store), "n_features": int(store.dim),
                  "has_labels": has_labels, "out_of_core": True},
        "seed": args.seed, "k": k, "noise": args.noise, "method": args.method,
        "params": {key: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
                   for key, v in est.get_params().items()},
        "n_clusters": int(len(np.unique(labels))),
        "metrics": metrics,
        "label_free": None,
        "stats": {key: v for key, v in getattr(est, "stats_", {}).items()
                  if isinstance(v, (int, float, str, bool, list))},
        "timings": {"fit_s": fit_s, "total_s": time.perf_counter() - t0},
        "environment": environment(),
        "started": started,
        "finished": now_iso(),
    }
    write_json(out / "run.json", run)
    if args.json:
        _print_json(run)
        return 0
    print(f"{args.input}: {len(store)} x {store.dim} {store.dtype} store, clustered block by "
          f"block (not loaded); method {args.method}, k={k}")
    print(f"\n{run['n_clusters']} clusters")
    rows = _scores_rows(metrics, None)
    if rows:
        print(format_table(rows))
    print("(no label-free proxy: it needs the rows in memory; load a sample to score it)")
    print(f"\nwrote {out / 'labels.npy'} and {out / 'run.json'} ({run['timings']['total_s']:.1f} s)")
    return 0


# ---------------------------------------------------------------- evaluate
def _read_labels(path: Path, what: str) -> np.ndarray:
    if path.is_dir():
        path = path / "labels.npy"
    if not path.is_file():
        raise DataNotFoundError(f"{what} file {path} does not exist")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix in (".npz", ".parquet", ".csv"):
            from deepclust.data import load_features

            fs = load_features(path)
            if fs.y is None:
                raise InputError(f"{path} holds no labels")
            return fs.y
        return np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path} could not be read as {what}: {exc}") from None


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
        _print_json(out)
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


# ---------------------------------------------------------------- demo / datasets / methods
def cmd_demo(args) -> int:
    from deepclust.demo import run_demo

    if args.report and not args.out:
        raise InputError("--report needs --out DIR: the report is written to DIR/report")
    return run_demo(dataset=args.dataset, out=args.out, as_json=args.json, seed=args.seed,
                    report=args.report)


def cmd_datasets(args) -> int:
    from deepclust.data import dataset_status

    rows = dataset_status()
    if args.json:
        _print_json(rows)
    else:
        print(format_table(rows, ["name", "available", "where", "description"]))
    return 0


def cmd_methods(args) -> int:
    from deepclust.cluster import available_methods, get_clusterer_class

    rows = []
    for name, desc in available_methods().items():
        cls = get_clusterer_class(name)
        params = [p for p in cls._get_param_names() if p not in ("n_clusters", "random_state")]
        rows.append({"name": name, "takes k": "yes" if cls.takes_n_clusters else "no (finds k)",
                     "parameters": ", ".join(params), "description": desc})
    if args.json:
        _print_json(rows)
    else:
        print(format_table(rows, ["name", "takes k", "description"]))
        print("\nparameters (pass with --param KEY=VALUE):")
        for r in rows:
            print(f"  {r['name']}: {r['parameters']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from deepclust.cli_report import add_report_flag

    p = sub.add_parser("cluster", help="cluster a feature file, store or built-in dataset",
                       description="Reduce, cluster and score; writes OUT/labels.npy and "
                                   "OUT/run.json.")
    p.add_argument("input", help="feature file (.npz with X and optional y, .npy, .parquet, "
                                 ".csv), embedding store directory, or built-in dataset name")
    p.add_argument("--method", default="kmeans", help="clusterer (see `deepclust methods`)")
    p.add_argument("--k", default=None,
                   help="number of clusters, or 'auto' to choose it without labels")
    p.add_argument("--reduce", default=None, metavar="SPEC",
                   help="reduction chain, e.g. zscore,pca:0.9,umap:50 (default: none)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="clusterer parameter, repeatable (e.g. --param n_init=10)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--precision", default=None, choices=["auto", "bf16", "fp32"],
                   help="k-means assignment: bf16 product with a float32 re-check, or fp32 "
                        "(default auto: bf16 where the hardware has it)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", default=None, help="true labels file (.npy or text), optional")
    p.add_argument("--label-column", default=None, help="label column of a .parquet/.csv input")
    p.add_argument("--k-range", default="2:20", help="candidates for --k auto (LO:HI[:STEP])")
    p.add_argument("--criterion", default="umap_silhouette",
                   help="criterion for --k auto: umap_silhouette (default), silhouette, "
                        "davies_bouldin, calinski_harabasz, or oracle_ami (uses labels)")
    p.add_argument("--noise", default="cluster", choices=["cluster", "singletons", "exclude"],
                   help="how noise points (-1) are scored")
    p.add_argument("--no-label-free", action="store_true",
                   help="skip the label-free scores (saves the UMAP of the proxy)")
    p.add_argument("--json", action="store_true", help="print run.json instead of tables")
    add_report_flag(p)
    p.set_defaults(func=cmd_cluster)

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

    p = sub.add_parser("demo", help="cluster Fashion-MNIST (or digits) several ways, ranked")
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist (default; falls back to digits when absent) or digits")
    p.add_argument("--out", default=None, help="write run.json and per-pipeline labels here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    add_report_flag(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("datasets", help="list the built-in datasets and where they are")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("methods", help="list the clustering methods and their parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)
