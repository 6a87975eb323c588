"""``deepclust cluster``: embed images if needed, reduce, cluster and score one input; write
the assignments, labels and run.json.

Parse the arguments, call :func:`deepclust.images.cluster_to_folder` (which embeds images into
a cached store and calls :func:`deepclust.pipeline.run_clustering`, which decides whether the
input is streamed or loaded), print. No algorithm lives here.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from deepclust import runtime
from deepclust.cli.common import parse_k, parse_params, print_json, scores_rows
from deepclust.cli.report import add_report_flag, print_written
from deepclust.errors import InputError
from deepclust.selection.criteria import CRITERIA, DEFAULT_CRITERION, check_criterion
from deepclust.tables import format_table


def _runtime_params(args, params: dict) -> dict:
    """``--precision``/``--device`` as parameters of methods that have those settings."""
    from deepclust.cluster import get_clusterer_class
    from deepclust.images import DEFAULT_METHOD

    method = args.method or DEFAULT_METHOD
    if method == "auto":
        for name in ("precision", "device"):
            if getattr(args, name, None) is not None:
                raise InputError(f"--{name} needs a named --method (not auto)")
        return params
    for name in ("precision", "device"):
        value = getattr(args, name, None)
        if value is not None:
            if name not in get_clusterer_class(method)._get_param_names():
                raise InputError(f"--{name} is not a setting of method {method!r}")
            params[name] = value
    return params


def _cost_warnings_at_once(said: set[str]):
    """A ``warnings.showwarning`` that prints a cost warning at once, as one line (the run
    goes on), and records it in ``said``; other warnings are shown as before."""
    from deepclust.cluster.cost import CostWarning

    show = warnings.showwarning

    def showwarning(message, category, *rest, **kw) -> None:
        if issubclass(category, CostWarning):
            print(f"deepclust cluster: warning: {message}", file=sys.stderr, flush=True)
            said.add(str(message))
        else:
            show(message, category, *rest, **kw)

    return showwarning


def cmd_cluster(args) -> int:
    from deepclust.images import cluster_to_folder
    from deepclust.selection import parse_k_range

    out = Path(args.out)
    check_criterion(args.criterion)  # before any image is embedded
    k = parse_k(args.k)
    params = _runtime_params(args, parse_params(args.param))
    show = not (args.json or args.quiet)
    said: set[str] = set()
    with warnings.catch_warnings():
        warnings.showwarning = _cost_warnings_at_once(said)
        result, record, table, how = cluster_to_folder(
            args.input, out, encoder=args.encoder, store=args.store, method=args.method, k=k,
            reducer=args.reduce, labels=args.labels, params=params, random_state=args.seed,
            progress=show, k_values=parse_k_range(args.k_range), criterion=args.criterion,
            label_free=not args.no_label_free, noise=args.noise,
            label_column=args.label_column, id_column=args.id_column,
            record_fields={"argv": getattr(args, "argv", sys.argv[1:]), "noise": args.noise})
    for text in result.warnings:
        if text not in said:
            print(f"deepclust cluster: warning: {text}", file=sys.stderr)
    page = None
    if args.report:
        from deepclust.report import write_report

        data = result.input
        page = write_report(out, features=result.sample if data.X is None else data.feature_set())
    if args.json:
        print_json(record.to_dict())
        return 0
    if args.quiet:
        return 0
    inp = record.input or {}
    enc_sel = inp.get("encoder_selection")
    if enc_sel:
        print(f"encoder chosen by {enc_sel['criterion']} (label-free) on a sample of "
              f"{enc_sel['rows']} of {enc_sel['of_rows']} images: {enc_sel['pick']}")
        for name, e in enc_sel["encoders"].items():
            print(f"  {name:<16} {e['dim']:>6} dims  best {e.get('best')}  "
                  f"score {e.get('score', float('nan')):.4f}"
                  + ("  <- pick" if name == enc_sel["pick"] else ""))
    if inp.get("store") and how["embedded"] is not None:
        n_failed = len(record.failed or [])
        print(f"{inp['path']}: {result.input.n} images embedded with {inp.get('encoder')} "
              + ("(this run)" if how["embedded"] else "(cached store reused, nothing embedded)")
              + f"; {n_failed} could not be read" + (":" if n_failed else ""))
        for item in (record.failed or [])[:10]:
            print(f"  {item['path'] or item['id']}: {item['reason']}")
        if n_failed > 10:
            print(f"  ... and {n_failed - 10} more (all in run.json 'failed')")
    data = result.input
    if result.streamed:
        print(f"{data.source}: {data.n} x {data.d}, streamed block by block (not loaded); "
              f"method {record.method}, k={record.k}")
    else:
        print(f"{data.source}: {data.n} x {data.d}; reducer {result.reducer} -> "
              f"{result.reduced_shape[1]} dims; method {record.method}")
    if record.selection is not None:
        print_selection(record.selection)
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
    groups = _group_counts(table)
    print(f"{groups['duplicates']} rows in exact-copy groups, {groups['near']} in "
          f"near-duplicate groups, {groups['outliers']} with outlier score >= 0.95")
    print(f"\nwrote {out / 'assignments.csv'} (one row per image: id, path, cluster, "
          f"distance, rank, representative, outlier_score, duplicate groups),\n      "
          f"{out / 'assignments.parquet'}, {out / 'labels.npy'} and {out / 'run.json'} "
          f"({result.timings['total_s']:.1f} s)")
    if page is not None:
        return print_written(page)
    return 0


def _group_counts(table) -> dict:
    import numpy as np

    return {"duplicates": int(np.count_nonzero(table["duplicate_group"].to_numpy() >= 0)),
            "near": int(np.count_nonzero(table["near_duplicate_group"].to_numpy() >= 0)),
            "outliers": int(np.count_nonzero(table["outlier_score"].to_numpy() >= 0.95))}


def print_selection(sel: dict, top: int = 8) -> None:
    """The candidates of ``--method auto`` best first (``top`` of them), the pick, the
    margin to the runner-up, and what was left out."""
    crit = sel["criterion"]
    tag = "ORACLE (uses true labels)" if sel["oracle"] else "label-free"
    rows = sel["rows"]
    where = f"a seeded sample of {rows} of {sel['of_rows']} rows" if rows < sel["of_rows"] \
        else f"all {rows} rows"
    print(f"\nchosen by {crit} ({tag}) among {len(sel['candidates'])} candidates fitted on "
          f"{where}, in {sel['seconds']:.0f} s:")
    ranked = sorted((c for c in sel["candidates"] if c.get("score") == c.get("score")),
                    key=lambda c: c["score"], reverse=check_criterion(crit).higher_is_better)
    names = [n for n in ranked[0]["scores"] if n != crit] if ranked else []
    table = [{"candidate": c["name"], crit: c["score"], "clusters": c.get("n_clusters"),
              **{n: c["scores"].get(n) for n in names},
              "": "<- pick" if c["name"] == sel["best"]["name"] else ""}
             for c in ranked[:top]]
    print(format_table(table))
    if sel["runner_up"] is not None:
        print(f"margin to the runner-up ({sel['candidates'][sel['runner_up']]['name']}): "
              f"{sel['margin']:.4f}")
    for item in sel.get("skipped") or []:
        what = " | ".join(str(item[key]) for key in ("reducer", "method") if key in item)
        print(f"left out: {what}: {item['reason']}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="cluster a folder of images, a feature file, a store "
                                       "or a built-in dataset",
                       description="Embed images (into a cached store), reduce, cluster and "
                                   "score; writes OUT/assignments.parquet and .csv (one row per "
                                   "image), OUT/labels.npy and OUT/run.json.")
    p.add_argument("input", help="image folder, manifest (.csv/.parquet of image paths), tar "
                                 "shards or saved HF dataset; or a feature file (.npz with X and "
                                 "optional y, .npy, .parquet, .csv), embedding store directory, "
                                 "or built-in dataset name")
    p.add_argument("--encoder", default="effnet-lite0",
                   help="encoder for images (see `deepclust encoders`; default effnet-lite0), "
                        "or 'auto': chosen without labels among the encoders that work offline "
                        "(a seeded sample embedded with each; see docs/selection.md)")
    p.add_argument("--store", default=None, metavar="DIR",
                   help="embedding store for images (default: cached per images and encoder "
                        "under the deepclust cache, reused by later runs)")
    p.add_argument("--method", default=None,
                   help="clusterer (see `deepclust methods`), or 'auto': reducer, method and k "
                        "chosen without labels among k-means, Ward, GMM and HDBSCAN on PCA and "
                        "UMAP (see docs/selection.md); default: auto")
    p.add_argument("--k", default=None,
                   help="number of clusters, or 'auto' to choose it without labels (the "
                        "default for methods that take k)")
    p.add_argument("--reduce", default=None, metavar="SPEC",
                   help="reduction chain, e.g. zscore,pca:0.9,umap:50 (default: none with "
                        "--method, else the automatic choice)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="clusterer parameter, repeatable (e.g. --param n_init=10)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--precision", default=None, choices=list(runtime.PRECISIONS),
                   help=runtime.PRECISION_HELP)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", default=None, help="true labels file (.npy or text), optional")
    p.add_argument("--label-column", default=None, help="label column of a .parquet/.csv input")
    p.add_argument("--id-column", default=None,
                   help="id column of a .parquet/.csv feature file (written back in "
                        "assignments 'id')")
    p.add_argument("--k-range", default="2:20", help="candidates for --k auto (LO:HI[:STEP])")
    p.add_argument("--criterion", default=DEFAULT_CRITERION,
                   help=f"label-free criterion of --k auto and --method auto: "
                        f"{', '.join([*CRITERIA, 'combined'])} (default "
                        f"{DEFAULT_CRITERION}, measured best by benchmarks/selection.py; "
                        "oracle_ami reads the labels and is marked ORACLE)")
    p.add_argument("--noise", default="cluster", choices=["cluster", "singletons", "exclude"],
                   help="how noise points (-1) are scored")
    p.add_argument("--no-label-free", action="store_true",
                   help="skip the label-free scores (saves the UMAP of the proxy)")
    p.add_argument("--json", action="store_true", help="print run.json instead of tables")
    add_report_flag(p)
    p.set_defaults(func=cmd_cluster)
