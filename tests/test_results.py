"""Per-image results: the one command from a folder of photos, assignments, duplicates,
outliers (issue 13)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from deepclust.cli import main
from deepclust.neighbors import Neighbors
from deepclust.results import (
    SCHEMA,
    assignments_table,
    exact_duplicate_groups,
    near_duplicate_groups,
    outlier_scores,
)
from deepclust.results.assignments import centre_distances

RAW = "raw"  # a tiny encoder (32x32 pixels): the folder tests stay fast


def build_photo_folder(root: Path) -> dict:
    """A folder of photos from sklearn's two sample images: crops, flips, JPEG re-encodes,
    two exact copies, one broken file, names with spaces and unicode, nested folders."""
    from PIL import Image, ImageOps
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    (root / "trip one" / "día 2").mkdir(parents=True)
    (root / "flowers").mkdir()
    good = []

    def save(img, rel, **kw):
        path = root / rel
        img.save(path, **kw)
        good.append(path)
        return path

    for p, (photo, where) in enumerate(zip(photos, ["trip one", "flowers"], strict=True)):
        w, h = photo.size
        for c in range(6):
            box = (c * 20, c * 10, w - 60 + c * 5, h - 40 + c * 4)
            save(photo.crop(box).resize((160, 120)), f"{where}/crop {c} é.jpg", quality=90)
        save(ImageOps.mirror(photo).resize((160, 120)), f"{where}/flip.png")
        buf = io.BytesIO()
        photo.save(buf, "JPEG", quality=30)
        save(Image.open(buf).resize((160, 120)), f"trip one/día 2/reencode {p}.jpg", quality=50)
    original = save(photos[0].resize((200, 150)), "trip one/original.jpg", quality=85)
    copy = root / "trip one" / "día 2" / "copy of original.jpg"
    shutil.copyfile(original, copy)
    good.append(copy)
    broken = root / "broken ✗.jpg"
    broken.write_bytes(np.random.default_rng(0).bytes(2000))
    return {"good": good, "copies": (original, copy), "broken": broken}


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("photos")
    cache = tmp / "cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPCLUST_CACHE", str(cache))
    folder = build_photo_folder(tmp / "photos")
    run = tmp / "run"
    code = main(["cluster", str(tmp / "photos"), "--out", str(run), "--encoder", RAW,
                 "--no-label-free", "--k-range", "2:6", "--criterion", "silhouette"])
    yield {"tmp": tmp, "run": run, "code": code, "cache": cache, **folder}
    mp.undo()


def test_one_command_clusters_a_folder_of_photos(photo_run, capsys):
    assert photo_run["code"] == 0
    run = photo_run["run"]
    table = pq.read_table(run / "assignments.parquet")
    assert table.schema.equals(SCHEMA)
    paths = table["path"].to_pylist()
    assert sorted(paths) == sorted(str(p.resolve()) for p in photo_run["good"])
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert table["row"].to_pylist() == list(range(len(paths)))
    # ids are paths relative to the folder, unicode and spaces intact
    assert "trip one/día 2/copy of original.jpg" in table["id"].to_pylist()
    record = json.loads((run / "run.json").read_text())
    assert record["method"] == record["selection"]["best"]["method"]
    assert record["k_requested"] == "auto"
    assert record["assignments"] == "assignments.parquet"
    assert record["input"]["path"] == str((photo_run["tmp"] / "photos").resolve())
    assert Path(record["input"]["store"]).is_dir() and record["input"]["fingerprint"]
    assert [Path(f["path"]).name for f in record["failed"]] == ["broken ✗.jpg"]
    assert photo_run["broken"].name not in " ".join(paths)
    csv = (run / "assignments.csv").read_text().splitlines()
    assert csv[0].replace('"', "").split(",") == SCHEMA.names and len(csv) == len(paths) + 1


def test_exact_copies_share_a_duplicate_group_and_nothing_else_does(photo_run):
    table = pq.read_table(photo_run["run"] / "assignments.parquet").to_pylist()
    by_path = {r["path"]: r for r in table}
    a, b = (by_path[str(p.resolve())]["duplicate_group"] for p in photo_run["copies"])
    assert a == b >= 0
    assert sum(r["duplicate_group"] >= 0 for r in table) == 2
    # byte-identical files have identical embeddings: near duplicates too
    na, nb = (by_path[str(p.resolve())]["near_duplicate_group"] for p in photo_run["copies"])
    assert na == nb >= 0


def test_columns_are_consistent(photo_run):
    t = pq.read_table(photo_run["run"] / "assignments.parquet").to_pylist()
    clusters = {r["cluster"] for r in t}
    for c in clusters:
        members = sorted((r for r in t if r["cluster"] == c), key=lambda r: r["rank"])
        assert [r["rank"] for r in members] == list(range(len(members)))
        dists = [r["distance"] for r in members]
        assert dists == sorted(dists)
        assert [r["representative"] for r in members] == [i < 5 for i in range(len(members))]
    scores = [r["outlier_score"] for r in t]
    assert max(scores) == 1.0 and 0.0 <= min(scores) < 0.2  # ties share their mean rank
    assert all(r["probability"] is None for r in t)  # k-means has no soft assignment


def test_a_rerun_reuses_the_cached_store(photo_run, tmp_path, monkeypatch, capsys):
    import deepclust.embed as E

    def refuse(*a, **k):
        raise AssertionError("embedded again")

    monkeypatch.setenv("DEEPCLUST_CACHE", str(photo_run["cache"]))
    monkeypatch.setattr(E, "embed", refuse)
    out = tmp_path / "again"
    assert main(["cluster", str(photo_run["tmp"] / "photos"), "--out", str(out), "--encoder", RAW,
                 "--no-label-free", "--k-range", "2:6", "--criterion", "silhouette"]) == 0
    assert "nothing embedded" in capsys.readouterr().out
    first = pq.read_table(photo_run["run"] / "assignments.parquet")
    assert pq.read_table(out / "assignments.parquet").equals(first)


def test_quiet_prints_nothing_and_json_prints_the_record(photo_run, tmp_path, monkeypatch,
                                                         capsys):
    monkeypatch.setenv("DEEPCLUST_CACHE", str(photo_run["cache"]))
    args = ["cluster", str(photo_run["tmp"] / "photos"), "--encoder", RAW, "--no-label-free",
            "--k-range", "2:6", "--criterion", "silhouette"]
    assert main(args + ["--out", str(tmp_path / "q"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert main(args + ["--out", str(tmp_path / "j"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["assignments"] == "assignments.parquet" and len(record["failed"]) == 1


def test_feature_file_ids_are_written_back(tmp_path, capsys):
    import pyarrow as pa

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (20, 4)), rng.normal(8, 1, (20, 4))])
    names = [f"item-{i:03d}" for i in range(40)]
    table = pa.table({"name": names, **{f"f{j}": X[:, j] for j in range(4)}})
    pq.write_table(table, tmp_path / "feats.parquet")
    out = tmp_path / "run"
    assert main(["cluster", str(tmp_path / "feats.parquet"), "--id-column", "name",
                 "--method", "kmeans", "--k", "2", "--out", str(out), "--no-label-free"]) == 0
    got = pq.read_table(out / "assignments.parquet")
    assert got["id"].to_pylist() == names
    assert got["path"].null_count == 40 and set(got["duplicate_group"].to_pylist()) == {-1}
    labels = got["cluster"].to_numpy()
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1


def test_an_unknown_id_column_is_a_one_line_error(tmp_path, capsys):
    np.savetxt(tmp_path / "f.csv", np.eye(3), delimiter=",", header="a,b,c", comments="")
    assert main(["cluster", str(tmp_path / "f.csv"), "--id-column", "nope", "--k", "2",
                 "--out", str(tmp_path / "r")]) == 2
    assert "no column 'nope'" in capsys.readouterr().err


def test_every_run_writes_assignments_and_k_auto_warns_at_the_edge(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(c, 0.1, (15, 3)) for c in (0, 5, 10, 15)])
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "run"
    assert main(["cluster", str(tmp_path / "X.npy"), "--method", "kmeans", "--k", "auto",
                 "--k-range", "2:4", "--criterion", "silhouette", "--no-label-free",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    assert record["k"] == 4 and "largest k of the range 2:4" in err
    assert record["warnings"] and "widen --k-range" in record["warnings"][0]
    t = pq.read_table(out / "assignments.parquet")
    assert t["id"].to_pylist() == [str(i) for i in range(60)]


def test_gmm_probability_and_hdbscan_noise(tmp_path):
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal((5, 0), 0.1, (20, 2)), rng.normal((0, 5), 0.1, (20, 2)),
                        [[-5.0, -5.0]]])
    np.save(tmp_path / "X.npy", X)
    assert main(["cluster", str(tmp_path / "X.npy"), "--method", "gmm", "--k", "2",
                 "--no-label-free", "--out", str(tmp_path / "g")]) == 0
    t = pq.read_table(tmp_path / "g" / "assignments.parquet")
    assert t["probability"].null_count == 0 and min(t["probability"].to_pylist()) > 0.5
    assert main(["cluster", str(tmp_path / "X.npy"), "--method", "hdbscan",
                 "--param", "min_cluster_size=5", "--no-label-free",
                 "--out", str(tmp_path / "h")]) == 0
    rows = pq.read_table(tmp_path / "h" / "assignments.parquet").to_pylist()
    noise = [r for r in rows if r["cluster"] == -1]
    assert noise and all(r["distance"] is None and r["rank"] == -1 and not r["representative"]
                         for r in noise)
    assert rows[40]["outlier_score"] == 1.0  # the odd direction is the most isolated (cosine)


def test_exact_duplicate_groups(tmp_path):
    a, b, c, d = (tmp_path / n for n in "abcd")
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    c.write_bytes(b"diff")  # same size, other content
    d.write_bytes(b"longer")
    groups = exact_duplicate_groups([a, c, None, b, d, tmp_path / "missing"])
    assert groups.tolist() == [0, -1, -1, 0, -1, -1]


def test_near_duplicate_groups_join_chains():
    ids = np.array([[1, 2], [0, 2], [1, 0], [0, 1]])
    sims = np.array([[0.99, 0.5], [0.99, 0.97], [0.97, 0.5], [0.2, 0.1]], dtype=np.float32)
    groups = near_duplicate_groups(Neighbors(ids, sims, {}), threshold=0.95)
    assert groups.tolist() == [0, 0, 0, -1]


def test_outlier_scores_rank_mean_distance():
    sims = np.array([[0.9, 0.9], [0.1, 0.3], [0.5, 0.5], [0.9, 0.9]], dtype=np.float32)
    scores = outlier_scores(Neighbors(np.zeros((4, 2), int), sims, {}))
    assert scores.tolist() == [1 / 6, 1.0, 2 / 3, 1 / 6]


def test_centre_distances_stream_a_store_like_an_array(tmp_path):
    from deepclust.store import write_array_store

    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 3)).astype(np.float32)
    labels = rng.integers(-1, 3, 50)
    store = write_array_store(tmp_path / "s", [X], n=50, dim=3, dtype="float32", shard_size=16)
    d1, r1 = centre_distances(X, labels)
    d2, r2 = centre_distances(store, labels)
    np.testing.assert_allclose(d1, d2)
    assert r1.tolist() == r2.tolist()
    c = labels[labels >= 0][0]
    members = labels == c
    centre = X[members].astype(np.float64).mean(0)
    np.testing.assert_allclose(d1[members], np.linalg.norm(X[members] - centre, axis=1),
                               rtol=1e-6)


def test_assignments_table_refuses_wrong_lengths():
    from deepclust.errors import InputError

    with pytest.raises(InputError, match="3 values for 2 rows"):
        assignments_table(np.array([0, 1]), ids=["a", "b", "c"])


def test_large_inputs_leave_the_neighbour_columns_empty_and_say_why(tmp_path, monkeypatch):
    import deepclust.results.run as run_module

    monkeypatch.setattr(run_module, "NEIGHBOR_COLUMNS_MAX_ROWS", 50)
    X = np.random.default_rng(0).normal(size=(80, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    assert main(["cluster", str(tmp_path / "x.npy"), "--method", "kmeans", "--k", "3",
                 "--no-label-free", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    table = pq.read_table(tmp_path / "run" / "assignments.parquet")
    assert table.column("outlier_score").null_count == 80
    assert table.column("near_duplicate_group").null_count == 80
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert any("outlier_score and near_duplicate_group are left empty" in w
               for w in record["warnings"])
