"""Benchmark builders (determinism, promised sizes and ratios), tables, and the resumable runner."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deepclust.bench import (
    balanced_classes,
    build_benchmark,
    easy_classes,
    granularity,
    imbalance_band,
    long_tail,
    long_tail_sizes,
    read_manifest,
    run_bench,
)
from deepclust.bench.config import parse_config
from deepclust.bench.runner import BenchRun, plan_tasks
from deepclust.bench.tables import format_delta, format_pivot, pivot
from deepclust.data.hierarchy import builtin_hierarchy
from deepclust.errors import InputError


def _labels(sizes, seed=0):
    y = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(y)


# ----------------------------------------------------------------------------- builders


@pytest.mark.parametrize("ratio", [1, 10, 100])
def test_long_tail_sizes_and_ratio(ratio):
    y = _labels([1000] * 10)
    sub = long_tail(y, ratio, seed=0)
    sizes = np.bincount(sub.fine_labels, minlength=10)
    order = sub.params["class_order"]
    assert sizes[order].tolist() == long_tail_sizes(1000, 10, ratio).tolist()
    assert sizes.max() == 1000
    # max/min is the asked ratio up to the rounding of the tail class
    assert abs(sizes.max() / sizes.min() - ratio) <= ratio / sizes.min()
    assert sub.imbalance_ratio == pytest.approx(sizes.max() / sizes.min())
    assert np.all(np.diff(sizes[order]) <= 0)  # sizes fall along the class order
    assert np.array_equal(y[sub.indices], sub.fine_labels)


def test_long_tail_is_deterministic_given_the_seed():
    y = _labels([300, 200, 250, 400, 120])
    a, b = long_tail(y, 5, seed=7), long_tail(y, 5, seed=7)
    c = long_tail(y, 5, seed=8)
    assert np.array_equal(a.indices, b.indices) and a.fingerprint() == b.fingerprint()
    assert not np.array_equal(a.indices, c.indices)
    # uneven classes: the head size is the largest every class can supply
    sizes = np.bincount(a.fine_labels, minlength=5)
    assert np.all(sizes <= np.bincount(y))
    assert sizes.max() / sizes.min() == pytest.approx(5, rel=0.05)


def test_long_tail_caps_and_refuses_impossible_ratios():
    y = _labels([100] * 4)
    sub = long_tail(y, 4, seed=0, max_per_class=40)
    assert sorted(np.bincount(sub.fine_labels)) == sorted(long_tail_sizes(40, 4, 4).tolist())
    with pytest.raises(InputError, match="imbalance ratio"):
        long_tail(y, 1000, seed=0)


def test_imbalance_band_keeps_the_classes_inside_the_band():
    sizes = [10, 20, 40, 80, 160, 320, 640, 1280, 2560]
    y = _labels(sizes)
    narrow = imbalance_band(y, 20)
    wide = imbalance_band(y, 60)
    everything = imbalance_band(y, 100)
    lo, hi = np.percentile(sizes, [40, 60])
    kept = set(np.unique(narrow.fine_labels).tolist())
    assert kept == {c for c, s in enumerate(sizes) if lo <= s <= hi}
    assert kept == {4}  # the median class alone
    assert kept <= set(np.unique(wide.fine_labels).tolist())
    assert len(np.unique(wide.fine_labels)) == 5  # classes 2..6
    assert everything.n_clusters == 9 and len(everything) == len(y)
    # wider bands, more imbalance; all images of a kept class are kept
    assert narrow.imbalance_ratio < wide.imbalance_ratio < everything.imbalance_ratio
    assert np.bincount(wide.fine_labels)[3] == 80
    assert np.array_equal(imbalance_band(y, 60).indices, wide.indices)


def test_granularity_relabels_to_the_fashion_mnist_coarse_classes():
    h = builtin_hierarchy("fashion-mnist")
    y = _labels([30] * 10)
    coarse = granularity(y, h, depth=0, class_names=h.classes)
    assert coarse.n_clusters == 5 and len(coarse) == 300
    assert sorted(coarse.class_names) == sorted(["tops", "Trouser", "Dress", "footwear", "Bag"])
    tops = coarse.class_names.index("tops")
    assert np.all((coarse.labels == tops) == np.isin(coarse.fine_labels, [0, 2, 4, 6]))
    assert np.bincount(coarse.labels).tolist().count(120) == 1  # tops: 4 classes x 30
    fine = granularity(y, h, depth=1, class_names=h.classes)
    assert fine.n_clusters == 10
    # relabelling a long-tail subset keeps its rows
    lt = build_benchmark({"type": "long_tail", "imbalance_ratio": 3, "depth": 0}, y,
                         class_names=h.classes, hierarchy=h, seed=1)
    assert lt.n_clusters == 5 and lt.kind == "long_tail"
    assert np.array_equal(lt.indices, long_tail(y, 3, seed=1).indices)


def test_easy_classes_picks_the_separable_ones():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 60)
    centres = rng.normal(0, 1, (6, 16))
    centres[:3] *= 20  # classes 0-2 far apart; 3-5 overlap
    X = centres[y] + rng.normal(0, 1.0, (len(y), 16))
    sub = easy_classes(X, y, 0.5, n_neighbors=10)
    assert sorted(np.unique(sub.fine_labels).tolist()) == [0, 1, 2]
    assert sub.params["n_kept"] == 3 and len(sub) == 180
    acc = sub.params["probe_accuracy"]
    assert min(acc[str(c)] for c in (0, 1, 2)) >= max(acc[str(c)] for c in (3, 4, 5))
    assert easy_classes(X, y, 2, n_neighbors=10).n_clusters == 2  # q >= 1: a count
    a = easy_classes(X, y, 0.5, n_neighbors=10, probe_per_class=20, seed=3)
    b = easy_classes(X, y, 0.5, n_neighbors=10, probe_per_class=20, seed=3)
    assert np.array_equal(a.indices, b.indices)


def test_balanced_subset_sizes_and_determinism():
    y = _labels([50, 80, 30, 90, 70, 60])
    a = balanced_classes(y, 3, per_class=40, seed=5)
    assert a.n_clusters == 3
    assert np.bincount(a.labels).tolist() == [40, 40, 40]
    assert 2 not in a.fine_labels  # class 2 has only 30 images
    assert np.array_equal(a.indices, balanced_classes(y, 3, per_class=40, seed=5).indices)
    d = balanced_classes(y, 4, seed=1)
    assert len(set(np.bincount(d.labels).tolist())) == 1
    with pytest.raises(InputError, match="n_classes"):
        balanced_classes(y, 6, per_class=40)


def test_manifest_round_trip(tmp_path):
    h = builtin_hierarchy("fashion-mnist")
    y = _labels([20] * 10)
    sub = build_benchmark({"type": "long_tail", "imbalance_ratio": 4, "depth": 0, "name": "lt"},
                          y, class_names=h.classes, hierarchy=h, seed=2)
    back = read_manifest(sub.write_manifest(tmp_path / "m.parquet"))
    assert back.name == "lt" and back.class_names == sub.class_names
    for a in ("indices", "fine_labels", "labels"):
        assert np.array_equal(getattr(back, a), getattr(sub, a))
    assert back.params["imbalance_ratio"] == 4


def test_spec_errors_are_clear():
    y = _labels([10] * 3)
    with pytest.raises(InputError, match="unknown benchmark type"):
        build_benchmark({"type": "tiny"}, y)
    with pytest.raises(InputError, match="does not take"):
        build_benchmark({"type": "long_tail", "imbalance_ratio": 2, "width": 3}, y)
    with pytest.raises(InputError, match="needs a hierarchy"):
        build_benchmark({"type": "granularity", "depth": 0}, y)


# ----------------------------------------------------------------------------- tables


def test_pivot_mean_std_and_best_mark():
    rows = [{"features": "f", "reducer": "none", "benchmark": "b", "method": m, "seed": s,
             "acc": v, "baseline": m == "kmeans"}
            for m, vals in (("temi", [0.7, 0.9]), ("kmeans", [0.5, 0.6])) for s, v in enumerate(vals)]
    table, methods = pivot(rows, "acc")
    assert methods == ["kmeans", "temi"]  # the baseline first
    assert table[0]["temi"]["mean"] == pytest.approx(0.8)
    assert table[0]["temi"]["std"] == pytest.approx(math.sqrt(0.02))  # ddof=1
    text = format_pivot(rows, "acc")
    assert "0.800 ± 0.141 *" in text and "0.550 ± 0.071" in text
    # paired by seed: differences 0.2 and 0.3
    delta = format_delta(rows, "acc")
    assert "temi - kmeans" in delta and "+0.250 ± 0.071" in delta


# ----------------------------------------------------------------------------- runner


@pytest.fixture
def small_config(tmp_path):
    rng = np.random.default_rng(0)
    h = builtin_hierarchy("fashion-mnist")
    centres = rng.normal(0, 6, (10, 12))
    y = np.repeat(np.arange(10), 40)
    X = (centres[y] + rng.normal(0, 1, (len(y), 12))).astype(np.float32)
    path = tmp_path / "feats.npz"
    np.savez(path, X=X, y=y, class_names=np.array(h.classes))
    return {
        "out": str(tmp_path / "out"),
        "seeds": [0, 1],
        "features": [{"name": "blobs", "path": str(path)}],
        "hierarchy": "fashion-mnist",
        "methods": [{"name": "gmm", "params": {"covariance_type": "spherical"}}],
        "benchmarks": [{"type": "long_tail", "imbalance_ratio": 4, "name": "lt4"},
                       {"type": "granularity", "depth": 0, "name": "coarse"}],
        "non_primary": {"depth": 0, "ranks": 3},
    }


def test_config_adds_the_kmeans_baseline_and_plans_the_grid(small_config):
    cfg = parse_config(small_config)
    assert [m.name for m in cfg.methods] == ["kmeans", "gmm"] and cfg.methods[0].baseline
    assert len(plan_tasks(cfg)) == 2 * 2 * 2
    with pytest.raises(InputError, match="n_clusters"):
        parse_config({**small_config, "methods": [{"name": "gmm", "params": {"n_clusters": 3}}]})
    with pytest.raises(InputError, match="unknown config key"):
        parse_config({**small_config, "seed": 1})


def test_runner_resumes_after_an_interruption_without_duplicates(small_config, monkeypatch):
    import deepclust.pipeline as pipeline

    real = pipeline.run_clustering
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the 4th task
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run_clustering", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_bench(small_config, log=lambda msg: None)
    first = BenchRun(parse_config(small_config)).results
    assert len(first.rows()) == 3
    kept = {r["key"]: r["finished"] for r in first.rows()}

    calls["n"] = -100  # no more interruptions
    run = run_bench(small_config, log=lambda msg: None)
    assert calls["n"] == -100 + 5  # only the 5 missing tasks ran
    rows = BenchRun(parse_config(small_config)).results.rows()  # read back from disk
    keys = [r["key"] for r in rows]
    assert len(rows) == 8 and len(set(keys)) == 8
    assert {r["key"]: r["finished"] for r in rows if r["key"] in kept} == kept
    assert run.summary["done_before"] == 3 and run.summary["ran"] == 5
    # a third run has nothing to do
    assert run_bench(small_config, log=lambda msg: None).summary["ran"] == 0
    coarse = [r for r in rows if r["benchmark"] == "coarse"]
    assert {r["k"] for r in coarse} == {5} and {r["k"] for r in rows if r["benchmark"] == "lt4"} == {10}
    assert all(0 <= r["np_r2_ancestor"] <= 1 and r["np_r2_chance_ancestor"] is not None
               for r in rows)
    lt = [r for r in rows if r["benchmark"] == "lt4"]
    assert {r["subset_imbalance_ratio"] for r in lt} == {4.0}
    manifests = sorted(p.name for p in (run.out / "manifests" / "blobs").iterdir())
    assert manifests == ["coarse.parquet", "lt4-seed0.parquet", "lt4-seed1.parquet"]


def test_cli_prints_the_pivot_table(small_config, tmp_path, capsys):
    from deepclust.cli import main

    small_config["benchmarks"] = small_config["benchmarks"][1:]
    small_config["seeds"] = [0]
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(small_config))
    assert main(["bench", str(path), "--metric", "ami"]) == 0
    out = capsys.readouterr().out
    assert "AMI (mean ± std over seeds" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("coarse"))
    assert line.count("±") == 2  # kmeans and gmm
    assert "r2 ancestor" in out
    assert main(["bench", str(path), "--plan"]) == 0
    assert "2 tasks: 2 done, 0 to run" in capsys.readouterr().out


def test_runner_can_choose_k_without_labels(small_config):
    small_config.update(k="auto", k_values="3:7", criterion="silhouette", seeds=[0],
                        methods=[], non_primary=False,
                        benchmarks=[{"type": "granularity", "depth": 0, "name": "coarse"}])
    run = run_bench(small_config, log=lambda msg: None)
    (row,) = run.results.rows()
    assert row["method"] == "kmeans" and row["k_chosen_by"] == "silhouette"
    assert 3 <= row["k"] <= 7 and "np_naming" not in row


def test_bench_report_sections(small_config, tmp_path):
    from deepclust.bench.report import BENCH_SECTIONS, write_bench_report
    from deepclust.report import ReportContext

    small_config["seeds"] = [0]
    rows = run_bench(small_config, log=lambda msg: None).results.rows()
    page = write_bench_report(tmp_path / "report", rows, title="t", metrics=["ami"])
    manifest = json.loads((page.parent / "report.json").read_text())
    assert manifest["errors"] == []
    assert [s["id"] for s in manifest["sections"]] == ["bench-setup", "bench-results",
                                                       "bench-non-primary"]
    for s in manifest["sections"]:
        for f in s["files"]:
            assert (page.parent / f).stat().st_size > 0
    html = page.read_text()
    assert "coarse" in html and "rank 2: ancestor" in html
    # without benchmark data the sections stay out of any other report
    assert all(fn(ReportContext(tmp_path / "other")) is None for fn in BENCH_SECTIONS)
