"""The person with a folder and no labels, end to end (issue 13): one command, per-image
results, duplicates, export and undo, and a report read from another working folder."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_results import RAW, build_photo_folder

from deepclust.cli import main
from deepclust.report.browser import dump_dom, find_chromium


def listing(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("product")
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPCLUST_CACHE", str(tmp / "cache"))
    made = build_photo_folder(tmp / "photos")
    # no --method and no --k: the automatic, label-free choice
    code = main(["cluster", str(tmp / "photos"), "--out", str(tmp / "run"), "--encoder", RAW,
                 "--no-label-free", "--k-range", "2:6", "--criterion", "silhouette", "--quiet"])
    yield {"tmp": tmp, "code": code, **made}
    mp.undo()


def test_one_command_gives_every_good_image_an_absolute_existing_path(folder_run):
    assert folder_run["code"] == 0
    table = pq.read_table(folder_run["tmp"] / "run" / "assignments.parquet").to_pylist()
    paths = [Path(r["path"]) for r in table]
    assert all(p.is_absolute() and p.is_file() for p in paths)
    assert sorted(map(str, paths)) == sorted(str(p.resolve()) for p in folder_run["good"])
    record = json.loads((folder_run["tmp"] / "run" / "run.json").read_text())
    assert record["k_requested"] == "auto" and record["selection"]["criterion"] == "silhouette"
    assert record["method"] == record["selection"]["best"]["method"]
    assert [Path(f["path"]).name for f in record["failed"]] == [folder_run["broken"].name]
    original, copy = (str(p.resolve()) for p in folder_run["copies"])
    group = {r["path"]: r["duplicate_group"] for r in table}
    assert group[original] == group[copy] >= 0
    assert sum(g >= 0 for g in group.values()) == 2


def test_export_symlink_holds_every_image(folder_run):
    tmp = folder_run["tmp"]
    assert main(["export", str(tmp / "run"), "--to", str(tmp / "links"), "--symlink",
                 "--quiet"]) == 0
    links = [p for p in (tmp / "links").rglob("*") if p.is_symlink()]
    assert sorted(str(p.resolve()) for p in links) == \
        sorted(str(p.resolve()) for p in folder_run["good"])


def test_move_then_undo_leaves_the_folder_byte_identical(folder_run, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(folder_run["tmp"] / "photos", photos)
    before = listing(photos)
    assert main(["cluster", str(photos), "--out", str(tmp_path / "run"), "--encoder", RAW,
                 "--k", "2", "--no-label-free", "--quiet"]) == 0
    assert main(["export", str(tmp_path / "run"), "--to", str(tmp_path / "sorted"), "--move",
                 "--quiet"]) == 0
    moved = listing(photos)
    assert len(moved) == 1  # only the broken file, which has no cluster, stays
    assert main(["export", "--undo", str(tmp_path / "sorted"), "--quiet"]) == 0
    assert listing(photos) == before


def test_report_from_another_folder_shows_galleries_and_file_names(folder_run, tmp_path,
                                                                  monkeypatch):
    if find_chromium() is None:
        pytest.skip("chromium not installed (apt-get install chromium) - browser test skipped")
    monkeypatch.chdir(tmp_path)  # far from where the run was made
    run = folder_run["tmp"] / "run"
    assert main(["report", str(run), "--quiet"]) == 0
    dom = dump_dom(run / "report" / "report.html")
    for p in folder_run["good"]:
        assert p.name in dom, p.name  # every image reachable, named on hover
    assert "copy of original.jpg" in dom and folder_run["broken"].name in dom
