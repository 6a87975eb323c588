"""``deepclust bench``: features x reducers x methods x benchmarks x seeds, resumable.

For every features entry, benchmark and seed the runner builds the subset (writing its
manifest), reduces it once per reducer, and clusters it with every method that runs after
that reducer, with k = the benchmark's number of classes (or chosen without labels when
``k: auto``). Each finished task appends one row to ``OUT/results.parquet``; a rerun skips the
tasks whose key is already there, so an interrupted run resumes where it stopped. A task
that fails is reported (``OUT/errors.jsonl``) and retried on the next run.

Layout of ``OUT``::

    results.parquet          one row per (features, reducer, method, benchmark, seed)
    manifests/<features>/<benchmark>-seed<s>.parquet   the subsets (index, fine_label, label)
    errors.jsonl             tasks that failed, with the error
    run.json                 the config, versions, timings of the last invocation
    report/                  ``--report``: pivot tables and plots (HTML + PNG)
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.bench.builders import BenchmarkSubset, build_benchmark, uses_seed
from deepclust.bench.config import BenchConfig, FeaturesSpec, MethodSpec, canonical, short_hash
from deepclust.bench.results import ResultsFile
from deepclust.errors import InputError, OutputError

__all__ = ["BenchRun", "Task", "plan_tasks", "run_bench"]

RESULTS_NAME = "results.parquet"
#: Scores copied from ``evaluate`` into each row.
ROW_METRICS = ("acc", "nmi", "ami", "ari", "purity", "homogeneity", "completeness")


@dataclass(frozen=True)
class Task:
    """One cell of the grid."""

    features: FeaturesSpec
    benchmark: dict
    seed: int
    reducer: str
    method: MethodSpec

    def identity(self, cfg: BenchConfig) -> dict:
        """Everything that determines the row; its digest is the row's key."""
        ident = {
            "features": self.features.name, "features_source": self.features.identity(),
            "benchmark": self.benchmark, "seed": self.seed, "reducer": self.reducer,
            "method": self.method.name, "params": self.method.params, "k": cfg.k,
            "noise": cfg.noise, "non_primary": cfg.non_primary,
        }
        if cfg.k == "auto":
            ident.update(k_values=str(cfg.k_values), criterion=cfg.criterion)
        return ident

    def key(self, cfg: BenchConfig) -> str:
        return short_hash(self.identity(cfg), 20)


def plan_tasks(cfg: BenchConfig) -> list[Task]:
    """Every task of the config, in run order (features, benchmark, seed, reducer, method)."""
    tasks = []
    for feat in cfg.features:
        for bench in cfg.benchmarks:
            for seed in cfg.seeds:
                reducers = list(dict.fromkeys(r for m in cfg.methods for r in cfg.reducers_for(m)))
                for reducer in reducers:
                    for method in cfg.methods:
                        if reducer in cfg.reducers_for(method):
                            tasks.append(Task(feat, bench, seed, reducer, method))
    return tasks


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "x"


def _print(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class BenchRun:
    """A benchmark run over a config: loads data lazily, runs pending tasks, appends rows.

    Parameters
    ----------
    cfg : BenchConfig
    out : path, optional
        Output folder (default ``cfg.out``).
    log : callable
        Progress messages (default: stderr).
    """

    def __init__(self, cfg: BenchConfig, out: str | Path | None = None,
                 log: Callable[[str], None] = _print):
        self.cfg = cfg
        self.out = Path(out if out is not None else cfg.out)
        self.results = ResultsFile(self.out / RESULTS_NAME)
        self.log = log
        self._features: dict[str, Any] = {}
        self._hierarchies: dict[str, Any] = {}

    # -- data

    def features(self, spec: FeaturesSpec):
        """The FeatureSet of a features entry (loaded once)."""
        if spec.name not in self._features:
            if spec.builtin is not None:
                from deepclust.embed import builtin_embeddings

                name, _, split = spec.builtin.partition(":")
                fs = builtin_embeddings(name, split or "test", spec.encoder, progress=True)
            else:
                from deepclust.data import load_features

                fs = load_features(spec.path)
            if fs.y is None or not np.any(fs.y >= 0):
                raise InputError(f"features {spec.name}: benchmarks need labels, and "
                                 f"{fs.source} has none")
            if fs.class_names is None:
                fs.class_names = [str(i) for i in range(int(fs.y.max()) + 1)]
            self._features[spec.name] = fs
        return self._features[spec.name]

    def hierarchy(self, spec: FeaturesSpec):
        """The hierarchy of a features entry (its own, else the config's), checked against
        its class names; None when neither is given."""
        if spec.name not in self._hierarchies:
            source = spec.hierarchy if spec.hierarchy is not None else self.cfg.hierarchy
            h = None
            if source is not None:
                from deepclust.data.hierarchy import load_hierarchy

                h = load_hierarchy(source)
                h.check_classes(self.features(spec).class_names)
            self._hierarchies[spec.name] = h
        return self._hierarchies[spec.name]

    def subset(self, feat: FeaturesSpec, bench: dict, seed: int) -> BenchmarkSubset:
        fs = self.features(feat)
        sub = build_benchmark(bench, fs.y, class_names=fs.class_names,
                              hierarchy=self.hierarchy(feat), X=fs.X, seed=seed)
        tag = f"-seed{seed}" if uses_seed(bench) else ""
        path = self.out / "manifests" / _slug(feat.name) / f"{_slug(bench['name'])}{tag}.parquet"
        if not path.is_file():
            sub.write_manifest(path)
        return sub

    # -- running

    def pending(self) -> list[Task]:
        done = self.results.keys()
        return [t for t in plan_tasks(self.cfg) if t.key(self.cfg) not in done]

    def run(self, *, max_tasks: int | None = None) -> dict:
        """Run the pending tasks; returns counts (``done_before``, ``ran``, ``failed``)."""
        from deepclust.runinfo import check_output_dir, now_iso

        check_output_dir(self.out)  # a full or read-only disk: one line, before any task
        lock = _lock(self.out)
        try:
            all_tasks = plan_tasks(self.cfg)
            todo = self.pending()
            self.log(f"bench: {len(all_tasks)} tasks, {len(all_tasks) - len(todo)} already in "
                     f"{self.results.path}, {len(todo)} to run")
            ran = failed = 0
            started = now_iso()
            t0 = time.perf_counter()
            groups: dict[tuple, list[Task]] = {}
            for t in todo:
                groups.setdefault((t.features.name, t.benchmark["name"], t.seed), []).append(t)
            for (_, _, seed), tasks in groups.items():
                if max_tasks is not None and ran + failed >= max_tasks:
                    break
                first = tasks[0]
                try:
                    sub = self.subset(first.features, first.benchmark, seed)
                except OutputError:
                    raise  # the disk, not the benchmark: every later write would fail too
                except InputError as exc:
                    for t in tasks:
                        self._record_error(t, exc)
                    failed += len(tasks)
                    continue
                X = self.features(first.features).X[sub.indices]
                reduced: dict[str, np.ndarray] = {}
                for t in tasks:
                    if max_tasks is not None and ran + failed >= max_tasks:
                        break
                    try:
                        if t.reducer not in reduced:
                            reduced = {t.reducer: self._reduce(X, t.reducer, seed)}
                        row = self._run_task(t, sub, X, reduced[t.reducer])
                    except (KeyboardInterrupt, SystemExit, OutputError):
                        raise
                    except Exception as exc:  # one failing cell must not stop the grid
                        self._record_error(t, exc)
                        failed += 1
                        continue
                    self.results.append(row)
                    ran += 1
                    self.log(_progress_line(row, len(all_tasks), len(self.results.rows())))
            summary = {"tasks": len(all_tasks), "done_before": len(all_tasks) - len(todo),
                       "ran": ran, "failed": failed, "seconds": time.perf_counter() - t0,
                       "started": started, "finished": now_iso()}
            self._write_run_json(summary)
            return summary
        finally:
            lock.close()

    def _reduce(self, X: np.ndarray, reducer: str, seed: int) -> np.ndarray:
        from deepclust.reduce import build_reducer, parse_reducer_spec

        if reducer == "none":
            return X
        pipe = build_reducer(parse_reducer_spec(reducer), random_state=seed)
        return np.ascontiguousarray(pipe.fit_transform(X), dtype=np.float32)

    def _run_task(self, task: Task, sub: BenchmarkSubset, X: np.ndarray,
                  Z: np.ndarray) -> dict:
        from deepclust.pipeline import run_clustering
        from deepclust.runinfo import now_iso
        from deepclust.selection import parse_k_range
        from deepclust.version import __version__

        cfg = self.cfg
        k: int | str = sub.n_clusters if cfg.k == "benchmark" else "auto"
        t = time.perf_counter()
        result = run_clustering(
            X, sub.labels, method=task.method.name, k=k,
            reducer=None if task.reducer == "none" else task.reducer,
            params=dict(task.method.params), random_state=task.seed,
            k_values=parse_k_range(cfg.k_values), criterion=cfg.criterion,
            label_free=cfg.label_free, reduced=Z, noise=cfg.noise,
        )
        seconds = time.perf_counter() - t
        stats = sub.stats()
        row: dict[str, Any] = {
            "key": task.key(cfg),
            "features": task.features.name,
            "reducer": task.reducer,
            "method": task.method.label,
            "method_name": task.method.name,
            "params": canonical(task.method.params),
            "baseline": task.method.baseline,
            "benchmark": task.benchmark["name"],
            "benchmark_type": task.benchmark["type"],
            "benchmark_spec": canonical(task.benchmark),
            "seed": task.seed,
            "subset_fingerprint": sub.fingerprint(),
            **{f"subset_{k_}": v for k_, v in stats.items()},
            "k": int(result.params.get("n_clusters") or result.n_clusters),
            "k_chosen_by": "benchmark" if cfg.k == "benchmark" else cfg.criterion,
            "n_clusters_found": result.n_clusters,
        }
        for m in ROW_METRICS:
            row[m] = (result.metrics or {}).get(m)
        for key_, value in (result.label_free or {}).items():
            if isinstance(value, (int, float)) or value is None:
                row[f"lf_{key_}"] = value
        row["cluster_s"] = result.timings.get("cluster_s")
        row["task_s"] = seconds
        if cfg.non_primary is not None:
            row.update(self._non_primary(task, sub, Z, result))
        row["deepclust"] = __version__
        row["finished"] = now_iso()
        return row

    def _non_primary(self, task: Task, sub: BenchmarkSubset, Z: np.ndarray, result) -> dict:
        from deepclust.analysis import non_primary_analysis, rank_clusters, soft_scores

        h = self.hierarchy(task.features)
        np_cfg = self.cfg.non_primary or {}
        only = np_cfg.get("benchmarks")
        if h is None or (only is not None and task.benchmark["name"] not in only):
            return {}
        k = int(result.params.get("n_clusters") or result.n_clusters)
        scores, higher = soft_scores(result.estimator, Z)
        if scores is not None and scores.shape[1] != k:
            scores = None  # e.g. a k-means that dropped empty clusters: fall back to means
        ranked = rank_clusters(result.labels, scores, higher_is_better=higher, X=Z,
                               n_clusters=k, n_ranks=int(np_cfg.get("ranks", 3)))
        res = non_primary_analysis(ranked, sub.fine_labels, sub.fine_class_names, h,
                                   depth=np_cfg.get("depth"), level=np_cfg.get("level"),
                                   n_clusters=k)
        out = res.flat("np_")
        out["np_soft"] = ("probabilities" if scores is not None and higher
                          else "centroid distance" if scores is not None else "cluster means")
        out["np_cluster_names"] = json.dumps(res.cluster_names)
        return out

    def _record_error(self, task: Task, exc: BaseException) -> None:
        from deepclust.runinfo import append_line, now_iso, to_json

        msg = f"{type(exc).__name__}: {exc}"
        self.log(f"  FAILED {task.features.name} / {task.benchmark['name']} / seed {task.seed} / "
                 f"{task.reducer} / {task.method.label}: {msg}")
        self.out.mkdir(parents=True, exist_ok=True)
        append_line(self.out / "errors.jsonl",  # a whole line or none, on a full disk too
                    to_json({"key": task.key(self.cfg), "features": task.features.name,
                             "benchmark": task.benchmark["name"], "seed": task.seed,
                             "reducer": task.reducer, "method": task.method.label,
                             "error": msg, "traceback": traceback.format_exc(limit=-4),
                             "time": now_iso()}))

    def _write_run_json(self, summary: dict) -> None:
        from deepclust.record import RunRecord

        RunRecord(command="bench", argv=sys.argv[1:], timings={"total_s": summary["seconds"]},
                  started=summary.get("started"), finished=summary.get("finished"),
                  extra={"config": self.cfg.raw, "results": str(self.results.path),
                         "summary": summary}).write(self.out)


def _progress_line(row: dict, total: int, n_rows: int) -> str:
    score = "" if row.get("ami") is None else f" AMI {row['ami']:.3f} ACC {row['acc']:.3f}"
    return (f"  [{n_rows}/{total}] {row['features']} / {row['benchmark']} / seed {row['seed']} "
            f"/ {row['reducer']} / {row['method']}: k={row['k']}{score} "
            f"({row['task_s']:.1f} s)")


def _lock(out: Path):
    """Hold an exclusive lock on ``out`` while a run appends to it (released on exit)."""
    f = open(out / ".lock", "a+")
    try:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # not POSIX: no protection against two concurrent runs
        pass
    except OSError:
        f.close()
        raise InputError(f"{out} is being written by another deepclust bench run; wait for it "
                         "to finish (or stop it)") from None
    return f


def run_bench(cfg: BenchConfig | dict | str | Path, *, out: str | Path | None = None,
              log: Callable[[str], None] = _print, max_tasks: int | None = None) -> BenchRun:
    """Run (or resume) a benchmark config; returns the :class:`BenchRun` (``.results``).

    Parameters
    ----------
    cfg : BenchConfig, mapping or path of a YAML/JSON config
    out : path, optional
        Output folder; default the config's ``out``.
    log : callable
        Progress messages.
    max_tasks : int, optional
        Stop after this many tasks (the rest stay pending for the next run).
    """
    from deepclust.bench.config import load_config, parse_config

    if isinstance(cfg, (str, Path)):
        cfg = load_config(cfg)
    elif isinstance(cfg, dict):
        cfg = parse_config(cfg)
    run = BenchRun(cfg, out, log=log)
    run.summary = run.run(max_tasks=max_tasks)
    return run
