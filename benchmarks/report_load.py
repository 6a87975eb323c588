"""How fast a report opens in a browser, for a 10 000-image run.

Builds (unless given) a run on the 10 000 Fashion-MNIST test images —
``deepclust cluster fashion-mnist --reduce pca:50 --method kmeans --k K --report`` — then opens
its ``report.html`` from ``file://`` in headless Chromium several times, each in a fresh tab,
and reads the page's navigation timing through the DevTools protocol
(:func:`deepclust.report.browser.load_times`):

- ``load``: ``loadEventEnd - startTime``, i.e. until the page and every image in it
  (figures, one thumbnail sprite per cluster) have loaded and decoded;
- ``DOMContentLoaded`` and first contentful paint, for reference.

The first opening is the coldest (a new browser process); the others are what a reader
re-opening the report sees. The target (issue 7) is under 2 s.

Run: ``python benchmarks/report_load.py [RUN_DIR] [--k 10] [--runs 5]``
(``RUN_DIR``: an existing ``cluster`` or ``demo`` run folder; its report is rebuilt).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def folder_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def make_run(out: Path, k: int) -> None:
    from deepclust.data.builtin import dataset_status

    fm = next(r for r in dataset_status() if r["name"] == "fashion-mnist")
    if not fm["available"]:
        sys.exit("Fashion-MNIST is not on this machine (apt-get install dataset-fashion-mnist)")
    cmd = [sys.executable, "-m", "deepclust", "cluster", "fashion-mnist", "--reduce", "pca:50",
           "--method", "kmeans", "--k", str(k), "--no-label-free", "--out", str(out)]
    print("$", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", nargs="?", help="an existing run folder (default: make one)")
    ap.add_argument("--k", type=int, default=10, help="clusters of the run made here")
    ap.add_argument("--runs", type=int, default=5, help="openings of the page")
    args = ap.parse_args()

    from deepclust.report import write_report
    from deepclust.report.browser import find_chromium, load_times

    if find_chromium() is None:
        sys.exit("no Chromium found (apt-get install chromium)")
    tmp = None
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="report-load-")
        run_dir = Path(tmp.name) / "run"
        make_run(run_dir, args.k)

    t = time.perf_counter()
    page = write_report(run_dir, log=lambda m: None)
    first_build = time.perf_counter() - t
    t = time.perf_counter()
    page = write_report(run_dir, log=lambda m: None)  # the 2-D UMAP now comes from the cache
    rebuild = time.perf_counter() - t
    n_files, n_bytes = folder_size(page.parent)

    timings = load_times(page, runs=args.runs)
    loads = [r["load_ms"] for r in timings]
    from deepclust.report import load_run

    data = load_run(run_dir)
    print(f"run: {run_dir} ({data.n_samples} images, "
          f"{len(set(data.labels.tolist()))} clusters)")
    print(f"report: {page} — {n_files} files, {n_bytes / 1e6:.2f} MB "
          f"(report.html {page.stat().st_size / 1e3:.0f} kB)")
    print(f"build: {first_build:.1f} s, then {rebuild:.1f} s again (a run's first report also "
          "computes its 2-D UMAP; later ones read it from the cache)")
    print(f"{'opening':>8} {'load ms':>8} {'DCL ms':>8} {'FCP ms':>8} {'images':>7} {'broken':>7}")
    for i, r in enumerate(timings, 1):
        fcp = r.get("first_contentful_paint_ms")
        fcp_text = "-" if fcp is None else f"{fcp:.0f}"
        print(f"{i:>8} {r['load_ms']:>8.0f} {r['dom_content_loaded_ms']:>8.0f} "
              f"{fcp_text:>8} {r['images']:>7} {r['broken']:>7}")
    rest = loads[1:] or loads
    verdict = "under" if max(loads) < 2000 else "OVER"
    print(f"load: first {loads[0]:.0f} ms, median of the others {statistics.median(rest):.0f} ms,"
          f" worst {max(loads):.0f} ms — {verdict} the 2 s target")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
