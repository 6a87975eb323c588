"""The ``bench`` sub-command: run (or resume) a benchmark config and print its pivot tables."""

from __future__ import annotations

import argparse
import time


def cmd_bench(args: argparse.Namespace) -> int:
    """``deepclust bench CONFIG.yaml``: run the pending tasks, append rows, print tables."""
    from deepclust.bench.config import load_config
    from deepclust.bench.runner import BenchRun, plan_tasks
    from deepclust.bench.tables import format_delta, format_non_primary, format_pivot

    cfg = load_config(args.config)
    run = BenchRun(cfg, args.out)
    if args.plan:
        tasks = plan_tasks(cfg)
        done = run.results.keys()
        for t in tasks:
            mark = "done" if t.key(cfg) in done else "todo"
            print(f"{mark}  {t.features.name} / {t.benchmark['name']} / seed {t.seed} / "
                  f"{t.reducer} / {t.method.label}")
        n_done = sum(t.key(cfg) in done for t in tasks)
        print(f"\n{len(tasks)} tasks: {n_done} done, {len(tasks) - n_done} to run; results in "
              f"{run.results.path}")
        return 0
    failed = 0
    if not args.table_only:
        summary = run.run(max_tasks=args.max_tasks)
        failed = summary["failed"]
    # only the rows of this config (a results file may hold older settings too)
    keys = {t.key(cfg) for t in plan_tasks(cfg)}
    rows = [r for r in run.results.rows() if r.get("key") in keys]
    metrics = args.metric or cfg.metrics
    print(f"{cfg.title}: {len(rows)} of {len(keys)} results ({run.results.path})")
    print("features: " + ", ".join(f.name for f in cfg.features) + "; seeds: "
          + ", ".join(map(str, cfg.seeds)) + "; k: "
          + ("the benchmark's class count" if cfg.k == "benchmark" else
             f"chosen by {cfg.criterion} (label-free)"))
    print("pipelines: " + ", ".join(
        f"{m.label} = {'' if r == 'none' else r + ' -> '}{m.name}"
        + (" " + ",".join(f"{k}={v}" for k, v in m.params.items()) if m.params else "")
        for m in cfg.methods for r in cfg.reducers_for(m)))
    for metric in metrics:
        print(f"\n{metric.upper()} (mean ± std over seeds; * best mean of the row)")
        print(format_pivot(rows, metric))
    paired = "ami" if "ami" in metrics else metrics[0]
    print(f"\n{paired.upper()} difference to the k-means baseline, paired by seed "
          "(mean ± std of the differences)")
    print(format_delta(rows, paired))
    if cfg.non_primary is not None:
        print("\nNon-primary clusters: share of images whose rank-r cluster names a true "
              "ancestor (or the same class), beside chance (a random other cluster)")
        print(format_non_primary(rows))
    if args.report:
        from deepclust.bench.report import write_bench_report
        from deepclust.cli.report import print_written

        t = time.perf_counter()
        page = write_bench_report(run.out / "report", rows, title=cfg.title, metrics=metrics,
                                  config=cfg.raw, results_path=str(run.results.path))
        if print_written(page, time.perf_counter() - t):
            failed += 1
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` sub-command."""
    p = sub.add_parser(
        "bench", help="run benchmarks (imbalance, granularity, easy classes) from a YAML config",
        description="Run every features x reducer x method x benchmark x seed of CONFIG, "
                    "appending one row per task to OUT/results.parquet (a rerun resumes where it "
                    "stopped), and print pivot tables (mean ± std over seeds). k-means is always "
                    "run as the baseline. See docs/bench.md.")
    p.add_argument("config", help="YAML (or JSON) benchmark config")
    p.add_argument("--out", default=None, help="output folder (default: the config's 'out')")
    p.add_argument("--metric", action="append", metavar="NAME",
                   help="metric of a printed table (repeatable; default: the config's 'metrics')")
    p.add_argument("--plan", action="store_true", help="list the tasks, done or not, and exit")
    p.add_argument("--table-only", action="store_true",
                   help="print the tables of the results so far without running anything")
    p.add_argument("--max-tasks", type=int, default=None, metavar="N",
                   help="stop after N tasks (the rest run next time)")
    p.add_argument("--report", action="store_true",
                   help="also write an HTML report (OUT/report/report.html) with PNG figures")
    p.set_defaults(func=cmd_bench)
