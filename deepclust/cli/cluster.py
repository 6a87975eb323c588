"""``deepclust cluster``: reduce, cluster and score one input; write labels and run.json.

Parse the arguments, call :func:`deepclust.pipeline.run_clustering` (which decides whether the
input is streamed or loaded), write its run record, print. No algorithm lives here.
"""

from __future__ import annotations

import argparse
import sys
import time

from deepclust import runtime
from deepclust.cli.common import parse_k, parse_params, print_json, scores_rows
from deepclust.cli.report import add_report_flag, print_written
from deepclust.errors import InputError
from deepclust.tables import format_table


def _runtime_params(args, params: dict) -> dict:
    """``--precision``/``--device`` as parameters of methods that have those settings."""
    from deepclust.cluster import get_clusterer_class

    for name in ("precision", "device"):
        value = getattr(args, name, None)
        if value is not None:
            if name not in get_clusterer_class(args.method)._get_param_names():
                raise InputError(f"--{name} is not a setting of method {args.method!r}")
            params[name] = value
    return params


def cmd_cluster(args) -> int:
    from deepclust.pipeline import run_clustering
    from deepclust.runinfo import check_output_dir, now_iso, write_npy
    from deepclust.selection import parse_k_range

    started = now_iso()
    t0 = time.perf_counter()
    out = check_output_dir(args.out)  # before the work, not after it
    k = parse_k(args.k)
    params = _runtime_params(args, parse_params(args.param))
    result = run_clustering(
        args.input, args.labels, method=args.method, k=k, reducer=args.reduce, params=params,
        random_state=args.seed, k_values=parse_k_range(args.k_range), criterion=args.criterion,
        label_free=not args.no_label_free, noise=args.noise, progress=not args.json,
        label_column=args.label_column,
    )
    result.timings["total_s"] = time.perf_counter() - t0
    write_npy(out / "labels.npy", result.labels)
    record = result.record(
        "cluster", argv=getattr(args, "argv", sys.argv[1:]), seed=args.seed, k_requested=k,
        noise=args.noise, input={"path": str(args.input)}, started=started, finished=now_iso())
    record.write(out)
    page = None
    if args.report:
        from deepclust.report import write_report

        data = result.input
        page = write_report(out, features=result.sample if data.X is None else data.feature_set())
    if args.json:
        print_json(record.to_dict())
        return 0
    data = result.input
    if result.streamed:
        print(f"{data.source}: {data.n} x {data.d}, streamed block by block (not loaded); "
              f"method {args.method}, k={record.k}")
    else:
        print(f"{data.source}: {data.n} x {data.d}; reducer {result.reducer} -> "
              f"{result.reduced_shape[1]} dims; method {args.method}")
    if result.k_selection is not None:
        sel = result.k_selection
        tag = "ORACLE (uses true labels)" if sel.oracle else "label-free"
        print(f"\nk chosen by {sel.criterion} ({tag}): {sel.best_k}")
        print(format_table([{**c, "best": "<-" if c["k"] == sel.best_k else ""}
                            for c in sel.curve], ["k", "score", "n_clusters", "best"]))
    noise = f", {result.n_noise} noise points" if result.n_noise else ""
    print(f"\n{result.n_clusters} clusters{noise}")
    rows = scores_rows(result.metrics, result.label_free)
    if rows:
        print(format_table(rows))
    if result.label_free is not None and result.label_free_rows < data.n:
        print(f"(label-free scores on a seeded sample of {result.label_free_rows} of "
              f"{data.n} rows)")
    print(f"\nwrote {out / 'labels.npy'} and {out / 'run.json'} "
          f"({result.timings['total_s']:.1f} s)")
    if page is not None:
        return print_written(page)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--precision", default=None, choices=list(runtime.PRECISIONS),
                   help=runtime.PRECISION_HELP)
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
