"""Benchmarks of "Scaling Up Deep Clustering Methods Beyond ImageNet-1K" (Adaloglou et al. 2024).

- :mod:`.builders` -- subsets and relabellings that isolate class imbalance, granularity and
  easy classes; each writes a manifest;
- :mod:`.config` -- the YAML config of ``deepclust bench``;
- :mod:`.runner` -- features x reducers x methods x benchmarks x seeds, resumable, one
  Parquet row per task;
- :mod:`.tables` -- pivot tables (mean ± std over seeds);
- :mod:`.report` -- the report sections (pivot tables and plots).

The non-primary cluster analysis lives in :mod:`deepclust.analysis`; hierarchies in
:mod:`deepclust.data.hierarchy`. How to run them: docs/bench.md.
"""

from deepclust.bench.builders import (
    BUILDERS,
    BenchmarkSubset,
    balanced_classes,
    build_benchmark,
    easy_classes,
    full_set,
    granularity,
    imbalance_band,
    knn_probe_accuracy,
    long_tail,
    long_tail_sizes,
    read_manifest,
)
from deepclust.bench.config import BenchConfig, load_config, parse_config
from deepclust.bench.runner import BenchRun, plan_tasks, run_bench

__all__ = [
    "BUILDERS",
    "BenchConfig",
    "BenchRun",
    "BenchmarkSubset",
    "balanced_classes",
    "build_benchmark",
    "easy_classes",
    "full_set",
    "granularity",
    "imbalance_band",
    "knn_probe_accuracy",
    "load_config",
    "long_tail",
    "long_tail_sizes",
    "parse_config",
    "plan_tasks",
    "read_manifest",
    "run_bench",
]
