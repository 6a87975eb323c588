"""Tests of the ``deepclust`` command (deepclust.cli and its command modules), the demo, and the
helpers that write its output (deepclust.runinfo, deepclust.tables).

Commands run in-process through :func:`deepclust.cli.main`; one test runs the installed
entry point.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from deepclust import __version__
from deepclust.cli import main
from deepclust.cluster import available_methods
from deepclust.errors import DataNotFoundError, InputError
from deepclust.runinfo import environment, to_json, write_json, write_npy
from deepclust.tables import format_table


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Feature files of 4 clear blobs: .npz with labels, .npy without, labels alone."""
    d = tmp_path_factory.mktemp("cli")
    X, y = make_blobs(n_samples=200, centers=4, n_features=8, cluster_std=0.8,
                      center_box=(-12, 12), random_state=2)
    X = X.astype(np.float32)
    np.savez(d / "blobs.npz", X=X, y=y)
    np.save(d / "blobs.npy", X)
    np.save(d / "labels.npy", y)
    np.save(d / "short_labels.npy", y[:-1])
    np.save(d / "one_d.npy", X[:, 0])
    Xn = X.copy()
    Xn[5, 1] = np.nan
    np.save(d / "nan.npy", Xn)
    (d / "garbage.npy").write_bytes(b"not numpy at all")
    (d / "empty.npz").write_bytes(b"")
    (d / "a_file").write_text("I am not a directory")
    return d


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- cluster


@pytest.fixture(scope="module")
def kmeans_run(files, tmp_path_factory):
    """``deepclust cluster blobs.npz --method kmeans --k 4 --out DIR`` (output captured)."""
    out = tmp_path_factory.mktemp("run") / "out"
    argv = ["cluster", str(files / "blobs.npz"), "--method", "kmeans", "--k", "4",
            "--out", str(out), "--seed", "3", "--no-label-free"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return {"code": code, "out": out, "argv": argv, "stdout": stdout.getvalue(),
            "run": json.loads((out / "run.json").read_text())}


def test_cluster_writes_labels_and_run_json(kmeans_run):
    assert kmeans_run["code"] == 0
    labels = np.load(kmeans_run["out"] / "labels.npy")
    assert labels.shape == (200,) and labels.dtype == np.int64
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]
    assert sorted((kmeans_run["out"]).iterdir()) == [
        kmeans_run["out"] / name for name in ("assignments.csv", "assignments.parquet",
                                              "labels.npy", "run.json")]


def test_run_json_records_the_run(kmeans_run, files):
    run = kmeans_run["run"]
    assert run["command"] == "cluster" and run["argv"] == kmeans_run["argv"]
    assert run["method"] == "kmeans" and run["seed"] == 3
    assert run["params"]["n_clusters"] == 4 and run["params"]["random_state"] == 3
    assert run["input"]["n_samples"] == 200 and run["input"]["n_features"] == 8
    assert run["input"]["has_labels"] is True
    env = run["environment"]
    assert env["deepclust"] == __version__ and env["python"] == sys.version.split()[0]
    assert {"numpy", "scikit-learn", "umap-learn"} <= set(env["packages"])
    assert {"load_s", "reduce_s", "cluster_s", "total_s"} <= set(run["timings"])
    assert run["timings"]["total_s"] >= run["timings"]["cluster_s"] >= 0
    metrics = run["metrics"]
    assert {"acc", "nmi", "ami", "ari"} <= set(metrics)
    assert metrics["ari"] > 0.95
    assert run["label_free"] is None and run["started"] <= run["finished"]


def test_cluster_prints_the_scores(kmeans_run):
    text = kmeans_run["stdout"]
    assert "200 x 8; reducer raw -> 8 dims; method kmeans" in text
    assert "4 clusters" in text
    for name in ("acc", "nmi", "ami", "ari"):
        assert any(line.split()[:1] == [name] for line in text.splitlines())
    assert "wrote" in text and "labels.npy" in text


def test_cluster_json_prints_run_json(files, tmp_path, capsys):
    code, out, _ = run(capsys, "cluster", files / "blobs.npz", "--method", "agglomerative",
                       "--k", "4", "--param", "linkage=average", "--out", tmp_path,
                       "--no-label-free", "--json")
    assert code == 0
    printed = json.loads(out)  # nothing but the JSON on stdout
    assert printed["params"]["linkage"] == "average"
    assert printed["metrics"]["ari"] > 0.95
    assert printed == json.loads((tmp_path / "run.json").read_text())


def test_cluster_without_labels_has_no_metrics(files, tmp_path, capsys):
    code, out, _ = run(capsys, "cluster", files / "blobs.npy", "--k", "4", "--out", tmp_path,
                       "--no-label-free")
    assert code == 0
    run_json = json.loads((tmp_path / "run.json").read_text())
    assert run_json["metrics"] is None and run_json["input"]["has_labels"] is False
    assert "acc" not in out.split()


def test_cluster_with_a_labels_file(files, tmp_path, capsys):
    code, _, _ = run(capsys, "cluster", files / "blobs.npy", "--k", "4", "--labels",
                     files / "labels.npy", "--out", tmp_path, "--no-label-free")
    assert code == 0
    run_json = json.loads((tmp_path / "run.json").read_text())
    assert run_json["metrics"]["ari"] > 0.95
    assert run_json["input"]["labels_path"] == str(files / "labels.npy")


def test_k_auto_prints_the_curve(files, tmp_path, capsys):
    code, out, _ = run(capsys, "cluster", files / "blobs.npz", "--k", "auto", "--k-range",
                       "2:6", "--reduce", "pca:5,umap:5:n_epochs=100", "--out", tmp_path,
                       "--criterion", "umap_silhouette", "--method", "kmeans")
    assert code == 0
    assert "k chosen by umap_silhouette (label-free): 4" in out
    curve = [line.split() for line in out.splitlines() if line.split()[:1] in (["2"], ["6"])]
    assert len(curve) == 2
    assert any(line.split()[:1] == ["4"] and line.rstrip().endswith("<-")
               for line in out.splitlines())
    for name in ("umap_silhouette", "silhouette", "davies_bouldin", "calinski_harabasz"):
        assert name in out
    run_json = json.loads((tmp_path / "run.json").read_text())
    assert run_json["k_requested"] == "auto" and run_json["k_selection"]["best_k"] == 4
    assert run_json["k"] == 4  # k is the int the method was given; the request is apart
    assert [c["k"] for c in run_json["k_selection"]["curve"]] == [2, 3, 4, 5, 6]
    assert run_json["label_free"]["umap_silhouette"] > 0.5
    assert run_json["reducer"] == "pca:5,umap:5:n_epochs=100"


def test_k_auto_with_the_oracle_says_so(files, tmp_path, capsys):
    code, out, _ = run(capsys, "cluster", files / "blobs.npz", "--k", "auto", "--k-range",
                       "3:5", "--criterion", "oracle_ami", "--out", tmp_path, "--no-label-free",
                       "--method", "kmeans")
    assert code == 0
    assert "k chosen by oracle_ami (ORACLE (uses true labels)): 4" in out
    assert json.loads((tmp_path / "run.json").read_text())["k_selection"]["oracle"] is True
    # --method auto (the default) says it too, and records it
    code, out, _ = run(capsys, "cluster", files / "blobs.npz", "--k-range", "3:5",
                       "--criterion", "oracle_ami", "--out", tmp_path / "auto",
                       "--no-label-free", "--reduce", "none")
    assert code == 0 and "chosen by oracle_ami (ORACLE (uses true labels)) among" in out
    assert json.loads((tmp_path / "auto" / "run.json").read_text())["selection"]["oracle"]


def test_streamed_store_with_report_and_labels_never_loads_it(files, tmp_path, monkeypatch,
                                                               capsys):
    from deepclust.record import SCHEMA_VERSION, RunRecord
    from deepclust.store import EmbeddingStore, write_array_store

    X = np.load(files / "blobs.npy")
    write_array_store(tmp_path / "store", X, n=len(X), dim=X.shape[1], shard_size=64)

    def loaded(self, *args, **kwargs):
        raise AssertionError("the store was loaded whole")

    monkeypatch.setattr(EmbeddingStore, "X", property(loaded))
    monkeypatch.setattr(EmbeddingStore, "as_feature_set", loaded)
    code, out, _ = run(capsys, "cluster", tmp_path / "store", "--k", "4", "--labels",
                       files / "labels.npy", "--report", "--out", tmp_path / "streamed")
    assert code == 0, out
    assert "not loaded" in out and "report.html" in out
    streamed = json.loads((tmp_path / "streamed" / "run.json").read_text())
    assert streamed["input"]["streamed"] and streamed["metrics"]["ari"] > 0.95
    assert streamed["label_free_rows"] == len(X) and streamed["label_free"] is not None
    manifest = json.loads((tmp_path / "streamed" / "report" / "report.json").read_text())
    assert manifest["errors"] == []

    code, _, _ = run(capsys, "cluster", files / "blobs.npy", "--k", "4", "--labels",
                     files / "labels.npy", "--out", tmp_path / "memory")
    assert code == 0
    memory = json.loads((tmp_path / "memory" / "run.json").read_text())
    assert not memory["input"]["streamed"]
    assert set(streamed) == set(memory) and set(streamed["input"]) == set(memory["input"])
    assert set(streamed["timings"]) == set(memory["timings"])
    for run_json in (streamed, memory):
        assert run_json["schema_version"] == SCHEMA_VERSION
        assert run_json["k"] == 4 and run_json["k_requested"] == 4
    back = RunRecord.read(tmp_path / "streamed")
    assert back.to_dict() == streamed and back.k == 4 and back.input["streamed"]
    assert RunRecord.from_dict(memory).to_dict() == memory


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_prints_the_table(kmeans_run, files, capsys):
    code, out, _ = run(capsys, "evaluate", kmeans_run["out"], "--truth", files / "labels.npy")
    assert code == 0
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:10] if line.strip()}
    assert {"acc", "many_to_one_acc", "nmi", "ami", "ari"} <= set(rows)
    assert float(rows["ari"]) == pytest.approx(kmeans_run["run"]["metrics"]["ari"], abs=1e-4)
    assert "200 samples, 4 classes, 4 clusters, 0 noise" in out


def test_evaluate_json_and_tables(kmeans_run, files, capsys):
    code, out, _ = run(capsys, "evaluate", kmeans_run["out"] / "labels.npy", "--truth",
                       files / "blobs.npz", "--json", "--per-class", "--per-cluster",
                       "--average", "geometric")
    assert code == 0
    result = json.loads(out)
    assert result["metrics"]["average_method"] == "geometric"
    assert result["metrics"]["ari"] == pytest.approx(kmeans_run["run"]["metrics"]["ari"])
    assert len(result["per_class"]) == 4 and len(result["per_cluster"]) == 4
    code, out, _ = run(capsys, "evaluate", kmeans_run["out"], "--truth", files / "labels.npy",
                       "--per-class", "--per-cluster")
    assert code == 0 and "per class" in out and "per cluster" in out


def test_evaluate_scores_noise_by_the_rule(tmp_path, capsys):
    np.save(tmp_path / "pred.npy", np.array([0, 0, 1, -1]))
    np.save(tmp_path / "truth.npy", np.array([0, 0, 1, 1]))
    code, out, _ = run(capsys, "evaluate", tmp_path / "pred.npy", "--truth",
                       tmp_path / "truth.npy", "--noise", "exclude", "--json")
    assert code == 0
    m = json.loads(out)["metrics"]
    assert m["acc"] == 1.0 and m["n_noise"] == 1 and m["coverage"] == 0.75


# ----------------------------------------------------------------------------- datasets, methods


def test_datasets(capsys):
    code, out, _ = run(capsys, "datasets")
    assert code == 0
    assert out.splitlines()[0].split() == ["name", "available", "where", "description"]
    assert any(line.startswith("digits") and "True" in line for line in out.splitlines())
    assert any(line.startswith("fashion-mnist") for line in out.splitlines())
    code, out, _ = run(capsys, "datasets", "--json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["digits", "fashion-mnist"]
    assert rows[0]["available"] is True


def test_methods(capsys):
    code, out, _ = run(capsys, "methods")
    assert code == 0
    for name in available_methods():
        assert any(line.startswith(name + " ") for line in out.splitlines())
    assert "hdbscan: cluster_selection_epsilon" in out
    code, out, _ = run(capsys, "methods", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == set(available_methods())
    assert rows["kmeans"]["takes k"] == "yes" and rows["hdbscan"]["takes k"] == "no (finds k)"
    assert "n_clusters" not in rows["gmm"]["parameters"]


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 1 and "usage: deepclust" in out


# ----------------------------------------------------------------------------- bad input

BAD_CLUSTER = [
    (["nope.npz"], "nope.npz does not exist"),
    (["garbage.npy"], "not a readable .npy file"),
    (["empty.npz"], "is empty"),
    (["one_d.npy"], "is 1-D"),
    (["nan.npy"], "NaN or infinite values \\(rows 5\\)"),
    (["blobs.npz", "--method", "kmedoids"], "unknown clustering method 'kmedoids'; known"),
    (["blobs.npz", "--k", "0"], "at least 1"),
    (["blobs.npz", "--k", "201"], "larger than the number of samples \\(200\\)"),
    (["blobs.npz", "--k", "four"], "--k takes an integer or 'auto'"),
    (["blobs.npz", "--method", "hdbscan", "--k", "4"], "finds the number of clusters itself"),
    (["blobs.npz", "--k", "4", "--reduce", "tsne:2"], "unknown reducer 'tsne'"),
    (["blobs.npz", "--k", "4", "--reduce", "pca:1.5"], "fraction must lie in \\(0, 1\\)"),
    (["blobs.npz", "--k", "4", "--param", "n_init"], "--param takes KEY=VALUE"),
    (["blobs.npz", "--method", "kmeans", "--k", "4", "--param", "colour=red"],
     "does not take parameter\\(s\\) colour"),
    (["blobs.npz", "--k", "4", "--param", "n_init=2"], "give --param only with a named --method"),
    (["blobs.npz", "--k", "4", "--param", "random_state=1"], "do not pass random_state"),
    (["blobs.npz", "--k", "auto", "--k-range", "6:2"], "k range '6:2' is empty"),
    (["blobs.npz", "--k", "auto", "--criterion", "gap"], "unknown criterion 'gap'"),
    (["blobs.npy", "--k", "4", "--labels", "short_labels.npy"], "199 entries but there are 200"),
    (["blobs.npz", "--k", "4", "--out", "a_file"], "exists and is not a directory"),
]


@pytest.mark.parametrize("args, match", BAD_CLUSTER, ids=[" ".join(a) for a, _ in BAD_CLUSTER])
def test_bad_cluster_input_exits_2_with_a_one_line_error(files, tmp_path, capsys, args, match):
    argv = ["cluster", *(str(files / a) if a.endswith((".npz", ".npy", "a_file")) else a
                         for a in args)]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    code, out, err = run(capsys, *argv, "--no-label-free")
    assert code == 2
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0]
    assert errors[0].startswith("deepclust cluster: error: ")
    assert re.search(match, errors[0])
    assert not (tmp_path / "out" / "run.json").exists()


BAD_EVALUATE = [
    (["pred.npy"], "give the true labels with --truth"),
    (["nope.npy", "--truth", "truth.npy"], "predicted labels file .*nope.npy does not exist"),
    (["pred.npy", "--truth", "short.npy"], "3 entries but there are 4 samples"),
    (["pred.npy", "--truth", "garbage.npy"], "could not be read as true labels"),
    (["pred.npy", "--truth", "imagenet"], "imagenet does not exist"),
]


@pytest.mark.parametrize("args, match", BAD_EVALUATE, ids=[" ".join(a) for a, _ in BAD_EVALUATE])
def test_bad_evaluate_input_exits_2(tmp_path, capsys, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    np.save("pred.npy", np.array([0, 0, 1, 1]))
    np.save("truth.npy", np.array([0, 0, 1, 1]))
    np.save("short.npy", np.array([0, 0, 1]))
    Path("garbage.npy").write_bytes(b"garbage")
    code, _, err = run(capsys, "evaluate", *args)
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("deepclust evaluate: error: ")
    assert re.search(match, err)


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["cluster", "x.npz", "--out", "o", "--noise", "ignore"])
    assert info.value.code == 2
    assert "invalid choice: 'ignore'" in capsys.readouterr().err


def test_installed_entry_point(files, tmp_path):
    exe = shutil.which("deepclust") or str(Path(sys.executable).with_name("deepclust"))
    proc = subprocess.run(
        [exe, "cluster", str(files / "blobs.npz"), "--k", "4", "--out", str(tmp_path),
         "--no-label-free", "--json"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    run_json = json.loads(proc.stdout)
    assert run_json["argv"][:2] == ["cluster", str(files / "blobs.npz")]
    assert run_json["metrics"]["ari"] > 0.95
    assert (tmp_path / "labels.npy").is_file() and (tmp_path / "run.json").is_file()


# ----------------------------------------------------------------------------- demo


def test_demo_on_digits_ranks_every_pipeline(tmp_path, capsys, monkeypatch):
    import deepclust.embed
    from deepclust.demo import DEMO_PIPELINES, run_demo

    def no_weights(*args, **kwargs):  # keep the test offline and fast: pixels only
        raise DataNotFoundError("encoder weights not on this machine")

    monkeypatch.setattr(deepclust.embed, "builtin_embeddings", no_weights)
    assert run_demo(dataset="digits", out=str(tmp_path), rows=None) == 0  # all 1 797 images
    out = capsys.readouterr().out
    assert "digits (all), 1797 images, 10 classes" in out
    assert "pixels only" in out
    on_pixels = [p for p in DEMO_PIPELINES if "pixels" in p.on]
    assert 0 < len(on_pixels) < len(DEMO_PIPELINES)  # TEMI runs on the embeddings only
    table = [line for line in out.splitlines() if line.split()[:2][-1:] == ["pixels"]]
    assert len(table) == len(on_pixels)
    assert [int(line.split()[0]) for line in table] == list(range(1, len(on_pixels) + 1))
    for p in on_pixels:
        shown = "pca:50,umap:50" if p.reducer == "umap" else p.reducer
        assert any(f"| {shown} | {p.method}" in line for line in table)
    assert "Ranked by AMI" in out and "Spearman correlation" in out

    summary = json.loads((tmp_path / "run.json").read_text())
    rows = summary["rows"]
    assert summary["dataset"] == "digits" and summary["n_samples"] == 1797
    assert summary["dataset_rows"] is None and not (tmp_path / "dataset_rows.npy").exists()
    assert len(rows) == len(on_pixels)
    amis = [r["ami"] for r in rows]
    assert amis == sorted(amis, reverse=True)
    assert sorted(r["proxy_rank"] for r in rows) == list(range(1, len(rows) + 1))
    assert rows[0]["ami"] > 0.8  # UMAP pipelines cluster digits well
    assert len(list(tmp_path.glob("labels_*.npy"))) == len(on_pixels)
    # the label-free pick: the best default criterion, its regret against the best AMI
    picked = [r for r in rows if r["picked"]]
    assert len(picked) == 1 and picked[0]["proxy_rank"] == 1
    assert summary["proxy_pick"] == picked[0]["pipeline"]
    assert summary["regret"] == pytest.approx(rows[0]["ami"] - picked[0]["ami"])
    line = next(x for x in out.splitlines() if x.startswith("Without labels"))
    assert picked[0]["pipeline"] in line and f"regret {summary['regret']:.3f}" in line


def test_demo_rows_are_seeded_and_class_balanced():
    from deepclust.demo import demo_rows

    labels = np.repeat(np.arange(10), 1000)
    rows = demo_rows(labels, 2000, seed=0)
    assert len(rows) == 2000 and np.all(np.diff(rows) > 0)
    assert np.bincount(labels[rows]).tolist() == [200] * 10
    assert np.array_equal(rows, demo_rows(labels, 2000, seed=0))
    assert not np.array_equal(rows, demo_rows(labels, 2000, seed=1))
    assert demo_rows(labels, 10_000) is None and demo_rows(labels, None) is None
    # a class smaller than its share gives all it has; the others share the rest evenly
    skewed = np.concatenate([np.zeros(5, int), np.ones(100, int), np.full(100, 2)])
    counts = np.bincount(skewed[demo_rows(skewed, 65)]).tolist()
    assert counts == [5, 30, 30]
    assert np.bincount(skewed[demo_rows(skewed, 64)]).tolist() in ([5, 30, 29], [5, 29, 30])


def test_pick_without_labels_takes_the_best_finite_score():
    from deepclust.demo import pick_without_labels

    rows = [{"pipeline": "a", "label_free": 0.2}, {"pipeline": "b", "label_free": None},
            {"pipeline": "c", "label_free": 0.5}, {"pipeline": "d", "label_free": math.nan}]
    assert pick_without_labels(rows)["pipeline"] == "c"
    assert pick_without_labels(rows[1:2] + rows[3:]) is None


def test_demo_subset_is_recorded_and_read_back_by_the_report(tmp_path, capsys, monkeypatch):
    import deepclust.embed
    from deepclust.demo import run_demo
    from deepclust.report.data import load_run

    monkeypatch.setattr(deepclust.embed, "builtin_embeddings",
                        lambda *a, **k: (_ for _ in ()).throw(DataNotFoundError("offline")))
    assert main(["demo", "--dataset", "digits", "--rows", "300", "--out", str(tmp_path),
                 "--quiet"]) == 0
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["n_samples"] == 300 and summary["dataset_size"] == 1797
    rows = np.load(tmp_path / summary["dataset_rows"])
    assert len(rows) == 300 and np.array_equal(rows, np.unique(rows))
    data = load_run(tmp_path, pipeline=1)
    from deepclust.data import load_dataset

    assert np.array_equal(data.y, load_dataset("digits").labels[rows])
    assert data.X.shape == (300, 64) and len(data.labels) == 300
    assert data.metrics["ami"] == pytest.approx(summary["rows"][0]["ami"])
    assert main(["demo", "--full", "--rows", "5"]) == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(InputError, match="at least 20"):
        run_demo(dataset="digits", rows=3)


# ----------------------------------------------------------------------------- runinfo, tables


def test_to_json_handles_numpy_and_nan():
    obj = {"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), "d": (np.int64(2),),
           "e": Path("/x"), 3: -math.inf}
    assert json.loads(to_json(obj)) == {"a": 0.5, "b": [0, 1, 2], "c": None, "d": [2],
                                        "e": "/x", "3": None}


def test_writes_are_atomic_and_complete(tmp_path):
    write_json(tmp_path / "sub" / "r.json", {"x": np.float64(1.5)})
    write_npy(tmp_path / "sub" / "l.npy", np.array([3, 1], dtype=np.int64))
    assert json.loads((tmp_path / "sub" / "r.json").read_text()) == {"x": 1.5}
    assert np.load(tmp_path / "sub" / "l.npy").tolist() == [3, 1]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["l.npy", "r.json"]
    env = environment()
    assert env["deepclust"] == __version__ and env["packages"]["numpy"] == np.__version__


def test_format_table():
    text = format_table([{"name": "a", "v": 1.23456, "n": None},
                         {"name": "long", "v": float("nan"), "n": 7}], floatfmt=".2f")
    lines = text.splitlines()
    assert lines[0].split() == ["name", "v", "n"]
    assert lines[2].split() == ["a", "1.23", "-"] and lines[3].split() == ["long", "nan", "7"]
    assert lines[3].index("nan") + 3 == lines[2].index("1.23") + 4  # numbers right-aligned
    assert format_table([]) == "(no rows)"
    assert format_table([{"a": 1}], headers={"a": "Alpha"}).splitlines()[0] == "Alpha"


def test_cluster_without_method_or_k_chooses_without_labels(files, tmp_path, capsys):
    code, out, _ = run(capsys, "cluster", files / "blobs.npz", "--criterion", "silhouette",
                       "--k-range", "2:8", "--no-label-free", "--out", tmp_path / "auto")
    assert code == 0
    record = json.loads((tmp_path / "auto" / "run.json").read_text())
    assert record["k_requested"] == "auto" and record["n_clusters"] == 4
    sel = record["selection"]
    assert record["method"] == sel["best"]["method"] and sel["criterion"] == "silhouette"
    assert "chosen by silhouette (label-free) among" in out and "<- pick" in out


def test_quiet_and_json_on_embed(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 80, 0, 0)).save(tmp_path / "imgs" / f"{i}.png")
    code, out, err = run(capsys, "embed", tmp_path / "imgs", "--encoder", "raw", "--out",
                         tmp_path / "s", "--quiet")
    assert code == 0 and out == "" and "img" not in err
    code, out, _ = run(capsys, "embed", tmp_path / "imgs", "--encoder", "raw", "--out",
                       tmp_path / "s", "--json")
    printed = json.loads(out)
    assert printed["count"] == 3 and printed["encoder"] == "raw" and printed["failed"] == []


def test_system_refusals_are_one_line_errors(monkeypatch, capsys):
    """MemoryError and OSError from deep inside a run end as one line, exit 2."""
    import errno

    from deepclust import cli

    def refuse(exc):
        def fn(args):
            raise exc
        return fn

    for exc in (MemoryError(), OSError(errno.ENOMEM, "Cannot allocate memory", "/x/shard.npy")):
        monkeypatch.setattr(cli, "build_parser", lambda e=exc: _parser_with(refuse(e)))
        assert cli.main(["boom"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and "memory" in err


def _parser_with(func):
    import argparse

    p = argparse.ArgumentParser(prog="deepclust")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("boom").set_defaults(func=func)
    return p
