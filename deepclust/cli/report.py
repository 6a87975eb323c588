"""The ``report`` sub-command: an HTML report (and PNG figures) of a finished run."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def cmd_report(args: argparse.Namespace) -> int:
    """``deepclust report RUN_DIR``: write the report and say where it is."""
    from deepclust.errors import InputError
    from deepclust.report import ReportOptions, write_report

    if args.per_page < 0 or args.max_clusters < 1 or args.max_thumbs < 1:
        raise InputError("--per-page must be >= 0, --max-clusters and --max-thumbs >= 1")
    t = time.perf_counter()
    options = ReportOptions(per_page=args.per_page, max_galleries=args.max_clusters,
                            max_thumbs=args.max_thumbs)
    page = write_report(args.run_dir, args.out, options=options, pipeline=args.pipeline,
                        follow_outside=args.follow_outside)
    if args.json:
        import json

        manifest = json.loads((page.parent / "report.json").read_text())
        print(json.dumps({"report": str(page.resolve()), "seconds": time.perf_counter() - t,
                          "errors": manifest.get("errors", [])}, indent=2))
        return 1 if manifest.get("errors") else 0
    return print_written(page, time.perf_counter() - t)


def print_written(page: Path, seconds: float | None = None) -> int:
    """Say where a report went and what it could not show; exit status 1 when one of its
    sections failed or the run's input was found nowhere (the page then holds only what
    run.json and the labels say)."""
    import json

    manifest = json.loads((page.parent / "report.json").read_text())
    took = f" ({seconds:.1f} s)" if seconds is not None else ""
    print(f"wrote {page}{took}; figures for papers in {page.parent / 'assets' / 'figures'}")
    for err in manifest.get("errors", []):
        print(f"  section {err['section']} failed: {err['error']}")
    for warning in manifest.get("warnings", []):
        print(f"  warning: {warning}")
    return 1 if manifest.get("errors") or manifest.get("input_found") is False else 0


def add_report_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--report`` flag of commands that write a run folder."""
    parser.add_argument("--report", action="store_true",
                        help="also write an HTML report (OUT/report/report.html) with PNG figures")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command."""
    p = sub.add_parser(
        "report", help="write an HTML report of a cluster or demo run",
        description="Write RUN_DIR/report/report.html: scores and how to read them, "
                    "cluster sizes, the choice of k, an interactive 2-D map, every cluster's "
                    "images (paged, linked to the files), duplicates, outliers and unreadable "
                    "images, plus the plots as PNG files. Works from any folder; the report "
                    "folder is self-contained (no network access needed).")
    p.add_argument("run_dir", help="the --out folder of `deepclust cluster` or `deepclust demo`")
    p.add_argument("--out", default=None, help="report folder (default: RUN_DIR/report)")
    p.add_argument("--pipeline", type=int, default=None, metavar="RANK",
                   help="demo runs: rank of the pipeline to show in detail (default 1)")
    p.add_argument("--per-page", "--per-cluster", dest="per_page", type=int, default=48,
                   metavar="N", help="thumbnails per gallery page; every member of a cluster "
                                     "is on one of its pages, nearest the centre first "
                                     "(default 48; 0: no galleries)")
    p.add_argument("--max-thumbs", type=int, default=20_000, metavar="N",
                   help="thumbnails in all galleries at most; above it each cluster shows its "
                        "members nearest the centre (default 20000)")
    p.add_argument("--max-clusters", type=int, default=100, metavar="N",
                   help="galleries for at most the N largest clusters (default 100)")
    p.add_argument("--follow-outside", action="store_true",
                   help="read image files wherever the run names them; by default only files "
                        "inside the image folder its embedding store recorded are read (links "
                        "followed, then checked), and the others are skipped and counted")
    p.add_argument("--json", action="store_true",
                   help="print the report's path and any failed sections as JSON")
    p.set_defaults(func=cmd_report)
