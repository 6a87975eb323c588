"""``deepclust demo``: the zero-shot recipe on a built-in dataset, several ways, ranked."""

from __future__ import annotations

import argparse

from deepclust.cli.report import add_report_flag
from deepclust.errors import InputError


def cmd_demo(args) -> int:
    from deepclust.demo import run_demo

    if args.report and not args.out:
        raise InputError("--report needs --out DIR: the report is written to DIR/report")
    return run_demo(dataset=args.dataset, out=args.out, as_json=args.json, seed=args.seed,
                    report=args.report, argv=getattr(args, "argv", None))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="cluster Fashion-MNIST (or digits) several ways, ranked")
    p.add_argument("--dataset", default="fashion-mnist",
                   help="fashion-mnist (default; falls back to digits when absent) or digits")
    p.add_argument("--out", default=None, help="write run.json and per-pipeline labels here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    add_report_flag(p)
    p.set_defaults(func=cmd_demo)
