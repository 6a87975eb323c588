"""``deepclust demo``: the zero-shot recipe on a built-in dataset, several ways, ranked."""

from __future__ import annotations

import argparse

from deepclust.cli.report import add_report_flag
from deepclust.errors import InputError


def cmd_demo(args) -> int:
    from deepclust.demo import DEMO_ROWS, run_demo

    if args.report and not args.out:
        raise InputError("--report needs --out DIR: the report is written to DIR/report")
    if args.full and args.rows is not None:
        raise InputError("give --full or --rows N, not both")
    rows = None if args.full else (DEMO_ROWS if args.rows is None else args.rows)
    return run_demo(dataset=args.dataset, out=args.out, as_json=args.json, seed=args.seed,
                    report=args.report, argv=getattr(args, "argv", None), rows=rows)


def register(sub: argparse._SubParsersAction) -> None:
    from deepclust.demo import DEMO_ROWS

    p = sub.add_parser("demo", help="cluster Fashion-MNIST (or digits) several ways, ranked: "
                                    "pixels vs embeddings, k-means, UMAP, HDBSCAN, TEMI")
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist (default; falls back to digits when absent) or digits")
    p.add_argument("--rows", type=int, default=None, metavar="N",
                   help=f"a seeded class-balanced subset of N images (default {DEMO_ROWS}; "
                        "docs/demo.md has the time of each part)")
    p.add_argument("--full", action="store_true",
                   help="every image of the split (10 000 for Fashion-MNIST test)")
    p.add_argument("--out", default=None, help="write run.json and per-pipeline labels here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    add_report_flag(p)
    p.set_defaults(func=cmd_demo)
