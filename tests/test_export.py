"""Export a run into per-cluster folders, and undo a move."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps

from deepclust.cli import main
from deepclust.errors import DataNotFoundError, InputError
from deepclust.results.export import MANIFEST, export_run, folder_names, safe_name, undo_export

SCHEMA = pa.schema([
    ("row", pa.int64()), ("id", pa.string()), ("path", pa.string()), ("cluster", pa.int64()),
    ("probability", pa.float64()), ("distance", pa.float64()), ("rank", pa.int64()),
    ("representative", pa.bool_()), ("outlier_score", pa.float64()),
    ("duplicate_group", pa.int64()), ("near_duplicate_group", pa.int64()),
])


def write_assignments(run: Path, root: Path, rel_paths: list[str | None], clusters: list[int]):
    """``run/assignments.parquet`` in the shared schema over files under ``root``."""
    run.mkdir(parents=True, exist_ok=True)
    n = len(rel_paths)
    rank, seen = [], {}
    for c in clusters:
        rank.append(-1 if c == -1 else seen.setdefault(c, 0))
        if c != -1:
            seen[c] += 1
    table = pa.table({
        "row": list(range(n)),
        "id": [p if p else str(i) for i, p in enumerate(rel_paths)],
        "path": [str((root / p).resolve()) if p else None for p in rel_paths],
        "cluster": clusters,
        "probability": [None] * n,
        "distance": [None if c == -1 else 0.5 for c in clusters],
        "rank": rank,
        "representative": [0 <= r < 5 for r in rank],
        "outlier_score": [i / n for i in range(n)],
        "duplicate_group": [-1] * n,
        "near_duplicate_group": [-1] * n,
    }, schema=SCHEMA)
    pq.write_table(table, run / "assignments.parquet")


def listing(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (links followed)."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = Path(dirpath) / f
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def photos(tmp_path):
    """A folder of small real photos (two with the same file name in different folders, names
    with spaces and unicode) and a run over it: (folder, run, rel paths, clusters)."""
    from sklearn.datasets import load_sample_images

    folder = tmp_path / "photos"
    (folder / "trip 2019").mkdir(parents=True)
    (folder / "été").mkdir()
    rel = []
    for name, arr in zip(("china", "flower"), load_sample_images().images, strict=True):
        img = Image.fromarray(arr).resize((40, 30))
        for sub, variant in (("trip 2019", img), ("été", ImageOps.mirror(img)), ("", img.rotate(5))):
            p = Path(sub) / f"{name}.jpg" if sub else Path(f"{name} café.png")
            variant.save(folder / p)
            rel.append(p.as_posix())
    # rel: china x3, flower x3; both "trip 2019/china.jpg" and "été/china.jpg" go to cluster 0
    clusters = [0, 0, 10, 1, 1, -1]
    run = tmp_path / "run"
    write_assignments(run, folder, rel, clusters)
    return folder, run, rel, clusters


def test_copy_holds_every_image_without_overwriting(photos, tmp_path):
    folder, run, rel, _ = photos
    before = listing(folder)
    manifest = export_run(run, tmp_path / "out", mode="copy")
    out = tmp_path / "out"
    got = listing(out)
    got.pop(MANIFEST)
    assert sorted(got) == sorted([
        "cluster_00/china.jpg", "cluster_00/china (2).jpg", "cluster_10/china café.png",
        "cluster_01/flower.jpg", "cluster_01/flower (2).jpg", "noise/flower café.png"])
    assert sorted(got.values()) == sorted(before.values())  # every image, byte for byte
    assert listing(folder) == before  # the originals are untouched
    m = json.loads(manifest.read_text())
    assert m["mode"] == "copy" and m["complete"] and len(m["files"]) == 6
    assert {e["source"] for e in m["files"]} == {str((folder / p).resolve()) for p in rel}
    for e in m["files"]:
        assert (out / e["target"]).stat().st_size == e["size"]
    # a second export into the same folder is refused, nothing is overwritten
    with pytest.raises(InputError, match="already holds an export"):
        export_run(run, out, mode="copy")


def test_existing_file_gets_a_suffix(photos, tmp_path):
    _, run, _, _ = photos
    out = tmp_path / "out"
    (out / "noise").mkdir(parents=True)
    (out / "noise" / "flower café.png").write_bytes(b"mine")
    export_run(run, out, mode="copy")
    assert (out / "noise" / "flower café.png").read_bytes() == b"mine"
    assert (out / "noise" / "flower café (2).png").stat().st_size > 100


def test_symlink_holds_every_image(photos, tmp_path):
    folder, run, _, _ = photos
    out = tmp_path / "links"
    assert main(["export", str(run), "--to", str(out), "--symlink", "--quiet"]) == 0
    links = [p for p in out.rglob("*") if p.is_symlink()]
    assert len(links) == 6
    assert all(os.path.isabs(os.readlink(p)) for p in links)
    got = listing(out)
    got.pop(MANIFEST)
    assert sorted(got.values()) == sorted(listing(folder).values())


def test_move_then_undo_is_byte_identical(photos, tmp_path, capsys):
    folder, run, _, _ = photos
    before = listing(folder)
    out = tmp_path / "moved"
    assert main(["export", str(run), "--to", str(out), "--move"]) == 0
    printed = capsys.readouterr().out
    assert "undo with: deepclust export --undo" in printed
    assert listing(folder) == {}  # every image left its folder
    m = json.loads((out / MANIFEST).read_text())
    assert all(len(e["sha256"]) == 64 for e in m["files"])
    assert main(["export", "--undo", str(out)]) == 0
    assert "restored 6 files" in capsys.readouterr().out
    assert listing(folder) == before
    assert not out.exists()  # the export made the folder, so the undo removed it
    assert main(["export", "--undo", str(out)]) == 2  # nothing left to undo


def test_undo_refuses_a_changed_file(photos, tmp_path, capsys):
    folder, run, _, _ = photos
    out = tmp_path / "moved"
    manifest = export_run(run, out, mode="move")
    changed = out / "cluster_01" / "flower.jpg"
    changed.write_bytes(changed.read_bytes()[:-10])
    assert main(["export", "--undo", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "cluster_01/flower.jpg changed size" in err and len(err.strip().splitlines()) == 1
    assert listing(folder) == {}  # nothing was moved back
    # the same size but other bytes is caught by the hash
    changed.write_bytes(b"x" * json.loads(manifest.read_text())["files"][3]["size"])
    with pytest.raises(InputError, match="changed content"):
        undo_export(out)


def test_names_file_applied_and_unsafe_names(photos, tmp_path):
    _, run, _, _ = photos
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"0": "Chinese garden", "1": "flowers/roses", "noise": "odd ones"}))
    export_run(run, tmp_path / "named", mode="symlink", names=names)
    assert sorted(p.name for p in (tmp_path / "named").iterdir() if p.is_dir()) == [
        "Chinese garden", "cluster_10", "flowers_roses", "odd ones"]
    csv_names = tmp_path / "names.csv"
    csv_names.write_text("cluster,name\n0,Cats\n1,cats\n")
    with pytest.raises(InputError, match="share the folder"):
        export_run(run, tmp_path / "dup", mode="copy", names=csv_names)
    assert not (tmp_path / "dup").exists()  # refused before writing anything
    for bad in ("..", "  ", "///", "con"):
        with pytest.raises(InputError):
            safe_name(bad)
    with pytest.raises(InputError, match="does not have"):
        folder_names([0, 1], {7: "cats"})
    assert folder_names([-1, 3, 12]) == {-1: "noise", 3: "cluster_03", 12: "cluster_12"}


def test_rows_without_paths_and_missing_files(tmp_path, photos, capsys):
    folder, _, rel, clusters = photos
    features_run = tmp_path / "features-run"
    write_assignments(features_run, folder, [None] * 3, [0, 1, 1])
    assert main(["export", str(features_run), "--to", str(tmp_path / "x"), "--copy"]) == 2
    err = capsys.readouterr().err
    assert "have no image path" in err and len(err.strip().splitlines()) == 1
    gone_run = tmp_path / "gone-run"
    write_assignments(gone_run, folder, rel[:2] + ["deleted.jpg"], [0, 0, 1])
    with pytest.raises(DataNotFoundError, match="missing"):
        export_run(gone_run, tmp_path / "y", mode="move")
    assert (folder / rel[0]).exists()  # nothing moved
    with pytest.raises(DataNotFoundError, match="no assignments.parquet"):
        export_run(tmp_path, tmp_path / "z")
    assert main(["export", str(gone_run)]) == 2  # no --to


def test_undo_of_a_copy_is_refused(photos, tmp_path):
    _, run, _, _ = photos
    export_run(run, tmp_path / "c", mode="copy")
    with pytest.raises(InputError, match="only a move can be undone"):
        undo_export(tmp_path / "c")
