"""The report people act on: made from any working folder, every member reachable (paged),
file names and links, cohesion and mixed clusters, duplicates, outliers, failed images, the
choice of k, no empty label-only sections, and the page checked in headless Chromium."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from deepclust.report import ReportOptions, load_run, write_report
from deepclust.report.browser import body_attributes, dump_dom, find_chromium
from deepclust.report.cohesion import MIXED_FACTOR, cluster_cohesion
from deepclust.report.data import ASSIGNMENT_COLUMNS, resolve_recorded_path


def _photos(folder: Path, n_per: int = 30) -> list[str]:
    """Crops and flips of scikit-learn's two sample photos, names with spaces and unicode;
    returns the relative paths in the order the folder source lists them."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    names = []
    for name, img in zip(("china", "flower"), load_sample_images().images, strict=True):
        sub = folder / ("Zhōngguó pics" if name == "china" else "flower pics")
        sub.mkdir(parents=True)
        h, w = img.shape[:2]
        for i in range(n_per):
            y, x = rng.integers(0, h - 120), rng.integers(0, w - 160)
            crop = Image.fromarray(img[y:y + 120, x:x + 160])
            if i % 3 == 0:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            fname = f"{name} crop {i:02d}.jpg"
            crop.save(sub / fname, quality=90)
            names.append(f"{sub.name}/{fname}")
    return names


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory):
    """A run made with relative paths from folder ``made``: ``embed pics --out store``,
    ``cluster store --out runs/km``, as a user typing short paths would."""
    from deepclust.cli import main

    made = tmp_path_factory.mktemp("made")
    _photos(made / "pics")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(made)
        assert main(["embed", "pics", "--encoder", "raw", "--out", "store",
                     "--no-progress"]) == 0
        assert main(["cluster", "store", "--method", "kmeans", "--k", "2", "--no-label-free",
                     "--out", "runs/km"]) == 0
    # an old-style run: the input path as typed (runs now record it absolute)
    run_json = made / "runs/km/run.json"
    run = json.loads(run_json.read_text())
    run["input"]["path"] = "store"
    run["input"].pop("store", None)
    run_json.write_text(json.dumps(run))
    for name in ("assignments.parquet", "assignments.csv"):  # old runs had none
        (made / "runs/km" / name).unlink()
    return made


def _cells(html: str) -> list[tuple[str | None, str]]:
    """(href, title) of every thumbnail cell of a page's galleries."""
    return [(unescape(h) if h else None, unescape(t)) for h, t in re.findall(
        r'<(?:a href="([^"]*)" target="_blank"|i)[^>]* title="([^"]*)"', html)]


def test_relative_paths_resolve_against_the_run_folder_and_its_parents(tmp_path):
    (tmp_path / "proj" / "runs" / "km").mkdir(parents=True)
    (tmp_path / "proj" / "store").mkdir()
    run_dir = tmp_path / "proj" / "runs" / "km"
    found, looked = resolve_recorded_path("store", run_dir, {})
    assert found == tmp_path / "proj" / "store"
    assert looked[:3] == [str(run_dir), str(run_dir.parent), str(tmp_path / "proj")]
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "store").mkdir()
    found, _ = resolve_recorded_path("store", run_dir, {"cwd": str(elsewhere)})
    assert found == elsewhere / "store"  # the recorded working folder comes first
    found, looked = resolve_recorded_path("nowhere", run_dir, {})
    assert found is None and str(run_dir) in looked


def test_report_from_another_folder_shows_galleries_with_file_names(relative_run, tmp_path,
                                                                   monkeypatch, capsys):
    from deepclust.cli import main

    monkeypatch.chdir(tmp_path)  # not where the run was made
    run_dir = relative_run / "runs" / "km"
    assert main(["report", str(run_dir), "--out", "rep"]) == 0
    assert "warning" not in capsys.readouterr().out
    html = (tmp_path / "rep" / "report.html").read_text()
    manifest = json.loads((tmp_path / "rep" / "report.json").read_text())
    ids = [s["id"] for s in manifest["sections"]]
    assert "galleries" in ids and "missing" not in ids and manifest["input_found"] is True
    assert "confusion" in ids  # folder names are classes here
    cells = _cells(html)
    titles = [t for _, t in cells]
    assert any(t.startswith("Zhōngguó pics/china crop") for t in titles)
    hrefs = [h for h, _ in cells if h]
    # 60 images, each linked (duplicates and outliers sections link some of them again)
    assert len(set(hrefs)) == 60 and all(h.startswith("file:///") for h in hrefs)
    from urllib.parse import unquote, urlparse

    assert all(Path(unquote(urlparse(h).path)).is_file() for h in hrefs)
    # the interactive map is there, with every point and its name
    data = json.loads(unescape(re.search(
        r'<script type="application/json">(.*?)</script>', html, re.S).group(1)))
    assert len(data["x"]) == 60 and sorted(data["n"]) == sorted(t.split(" · ")[0] for t in titles)
    assert all(t != 0 for t in data["t"])  # every point has its thumbnail in a sheet


def test_missing_images_are_named_and_a_missing_input_exits_1(relative_run, tmp_path,
                                                              monkeypatch, capsys):
    import shutil

    from deepclust.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(relative_run / "runs", copy / "runs")
    shutil.copytree(relative_run / "store", copy / "store")
    # the store's source root is absolute and still exists: move one picture away
    victim = next((relative_run / "pics" / "flower pics").iterdir())
    moved = tmp_path / victim.name
    shutil.move(victim, moved)
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["report", str(copy / "runs" / "km"), "--out", "rep1"]) == 0
        out = capsys.readouterr().out
        assert "warning: 1 of 60 image files not found" in out
        html = (tmp_path / "rep1" / "report.html").read_text()
        assert 'data-section="missing"' in html and "1 of 60 image files were not found" in html
        assert str(relative_run / "pics") in html  # where it looked
    finally:
        shutil.move(moved, victim)
    shutil.rmtree(copy / "store")
    assert main(["report", str(copy / "runs" / "km"), "--out", "rep2"]) == 1
    out = capsys.readouterr().out
    assert "the run's input store was not found" in out
    html = (tmp_path / "rep2" / "report.html").read_text()
    assert 'data-section="missing"' in html and "No images are available" in html


def test_cohesion_flags_a_cluster_that_merges_two_groups():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16))
    centres *= 10 / np.linalg.norm(centres, axis=1, keepdims=True)  # equal norms, as after L2
    y = np.repeat(np.arange(5), 40)
    X = centres[y] + rng.normal(size=(len(y), 16))
    clean = cluster_cohesion(X, y)
    assert not any(c.mixed for c in clean.values())
    merged = np.where(y == 4, 3, y)
    coh = cluster_cohesion(X, merged)
    assert [c for c, v in coh.items() if v.mixed] == [3]
    spreads = sorted(v.spread for v in coh.values())
    assert coh[3].spread > MIXED_FACTOR * float(np.median(spreads))


def _write_assignments(run_dir: Path, labels: np.ndarray, X: np.ndarray, paths, ids,
                       dup: dict[int, int], near: dict[int, int]) -> np.ndarray:
    """An assignments.parquet as the per-image results contract describes it."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from scipy.stats import rankdata

    n = len(labels)
    dist = np.zeros(n)
    rank = np.full(n, -1, dtype=np.int64)
    for c in np.unique(labels):
        m = np.flatnonzero(labels == c)
        d = np.linalg.norm(X[m] - X[m].mean(axis=0), axis=1)
        dist[m] = d
        rank[m[np.argsort(d, kind="stable")]] = np.arange(len(m))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    cos = 1 - Xn @ Xn.T
    np.fill_diagonal(cos, np.inf)
    knn = np.sort(cos, axis=1)[:, :10].mean(axis=1)
    outlier = rankdata(knn) / n
    dgroup = np.array([dup.get(i, -1) for i in range(n)], dtype=np.int64)
    ngroup = np.array([near.get(i, -1) for i in range(n)], dtype=np.int64)
    table = pa.table({
        "row": np.arange(n, dtype=np.int64), "id": ids, "path": paths,
        "cluster": labels.astype(np.int64), "probability": pa.nulls(n, pa.float64()),
        "distance": dist, "rank": rank, "representative": rank < 5,
        "outlier_score": outlier, "duplicate_group": dgroup, "near_duplicate_group": ngroup,
    })
    assert tuple(table.column_names) == ASSIGNMENT_COLUMNS
    pq.write_table(table, run_dir / "assignments.parquet")
    table.to_pandas().to_csv(run_dir / "assignments.csv", index=False)
    return outlier


@pytest.fixture()
def acted_run(relative_run, tmp_path):
    """The relative run copied, with assignments.parquet, failed images and a k sweep
    added as the new writers record them (absolute paths, input.store)."""
    import shutil

    from deepclust.store import open_store, read_index

    run_dir = tmp_path / "run"
    shutil.copytree(relative_run / "runs" / "km", run_dir)
    store = relative_run / "store"
    index = read_index(store)
    root = relative_run / "pics"
    paths = [str(root / p) for p in index["path"].to_pylist()]
    ids = index["id"].to_pylist()
    X = open_store(store).as_feature_set().X.astype(np.float64)
    labels = np.load(run_dir / "labels.npy")
    outlier = _write_assignments(run_dir, labels, X, paths, ids, {0: 0, 1: 0}, {2: 0, 3: 0, 4: 0})
    run = json.loads((run_dir / "run.json").read_text())
    run["input"]["path"] = str(root)
    run["input"]["store"] = str(store)
    run["failed"] = [{"path": str(root / "broken one.jpg"), "reason": "cannot identify image"}]
    run["k_selection"] = {"criterion": "umap_silhouette", "best_k": 2, "oracle": False,
                          "curve": [{"k": k, "score": s} for k, s in ((2, 0.61), (3, 0.42),
                                                                      (4, 0.40))]}
    (run_dir / "run.json").write_text(json.dumps(run))
    return run_dir, ids, outlier


def test_sections_from_assignments_failed_and_k_selection(acted_run, tmp_path, monkeypatch):
    run_dir, ids, outlier = acted_run
    monkeypatch.chdir(tmp_path)
    page = write_report(run_dir, log=lambda m: None,
                        options=ReportOptions(per_page=12, top_outliers=8))
    html = page.read_text()
    manifest = json.loads((page.parent / "report.json").read_text())
    assert manifest["errors"] == []
    secs = [s["id"] for s in manifest["sections"]]
    for sid in ("k-selection", "galleries", "duplicates", "outliers", "failed"):
        assert sid in secs, sid
    # exact copies: rows 0 and 1 in one row of thumbnails; near duplicates 2, 3, 4
    dup = html[html.index('data-section="duplicates"'):html.index('data-section="outliers"')]
    assert "1 group of byte-identical files (same SHA-256): 2 images" in dup
    dup_titles = [t.split(" · ")[0] for _, t in _cells(dup)]
    assert dup_titles == [ids[0], ids[1], ids[2], ids[3], ids[4]]
    # outliers: the 8 highest scores, most isolated first
    out = html[html.index('data-section="outliers"'):html.index('data-section="failed"')]
    top = np.argsort(-outlier, kind="stable")[:8]
    assert [t.split(" · ")[0] for _, t in _cells(out)] == [ids[i] for i in top]
    assert "broken one.jpg" in html and "cannot identify image" in html
    assert "k = 2 was chosen by umap_silhouette" in html and "edge of the range" in html
    # every member of every cluster is on one page of its gallery, ordered by rank
    gal = html[html.index('data-section="galleries"'):html.index('data-section="duplicates"')]
    labels = np.load(run_dir / "labels.npy")
    pages = re.findall(r'<template class="gpage">(.*?)</template>', gal, re.S)
    seen = [t.split(" · ")[0] for p in pages for _, t in _cells(p)]
    for c in np.unique(labels):
        if (labels == c).sum() <= 12:
            continue
        members = [ids[i] for i in np.flatnonzero(labels == c)]
        assert sorted(n for n in seen if n in set(members)) == sorted(members)
    assert len(seen) == sum(int((labels == c).sum()) for c in np.unique(labels)
                            if (labels == c).sum() > 12)
    assert len(manifest["sections"][secs.index("galleries")]["files"]) == sum(
        -(-int((labels == c).sum()) // 12) for c in np.unique(labels))
    assert "cohesion" in gal


def test_label_only_sections_are_hidden_without_labels(tmp_path):
    from deepclust.cli import main

    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(0, 1, (30, 4)), rng.normal(6, 1, (30, 4))])
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    out = tmp_path / "run"
    assert main(["cluster", str(tmp_path / "x.npy"), "--method", "kmeans", "--k", "2",
                 "--out", str(out), "--no-label-free", "--report"]) == 0
    html = (out / "report" / "report.html").read_text()
    ids = [s["id"] for s in json.loads((out / "report" / "report.json").read_text())["sections"]]
    assert "confusion" not in ids and "With labels" not in html and "ACC" not in html
    assert "How to read these scores" in html and "UMAP-silhouette" in html


def test_report_opens_in_chromium_from_another_folder(acted_run, tmp_path, monkeypatch):
    if find_chromium() is None:
        pytest.skip("chromium not installed (apt-get install chromium) - browser test skipped")
    run_dir, ids, _ = acted_run
    monkeypatch.chdir(tmp_path)
    page = write_report(run_dir, log=lambda m: None, options=ReportOptions(per_page=12))
    dom = dump_dom(page)
    attrs = body_attributes(dom)
    assert attrs.get("data-ready") == "true", "the page's script did not run"
    assert attrs["data-broken-images"] == "0", attrs.get("data-broken-list")
    labels = load_run(run_dir).labels
    assert dom.count('class="gcard') == len(np.unique(labels))
    live = re.findall(r'<div class="gpage-live">(.*?)</div></div>', dom, re.S)
    shown = {t.split(" · ")[0] for block in live for _, t in _cells(block)}
    assert len(shown) >= 12 and shown <= set(ids)
    assert 'class="pager"' in dom  # clusters of 30 at 12 a page
    m = re.search(r'class="dc-map"[^>]*data-points="(\d+)"', dom)
    assert m and int(m.group(1)) == len(labels), "the map's script did not draw its points"
