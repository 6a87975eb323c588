"""Find similar: ``deepclust.results.similar.find_similar`` and ``deepclust similar``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from deepclust.cli import main
from deepclust.embed import embed
from deepclust.errors import InputError
from deepclust.neighbors import search
from deepclust.results.similar import find_similar
from deepclust.store import write_array_store


@pytest.fixture(scope="module")
def photo_store(tmp_path_factory):
    """A folder of small real photos (scikit-learn's two, crops and mirrors of them), embedded
    with the raw-pixel encoder: (folder, store path)."""
    from sklearn.datasets import load_sample_images

    root = tmp_path_factory.mktemp("photos")
    folder = root / "photos"
    (folder / "sub dir").mkdir(parents=True)
    for name, arr in zip(("china", "flower"), load_sample_images().images, strict=True):
        img = Image.fromarray(arr).resize((64, 48))
        img.save(folder / f"{name}.png")
        ImageOps.mirror(img).save(folder / f"{name} mirrored.png")
        img.crop((8, 6, 56, 42)).save(folder / "sub dir" / f"{name}-crop.jpg", quality=90)
    (root / "not-an-image.jpg").write_bytes(b"this is not a jpeg")
    store = root / "store"
    embed(folder, "raw", store, progress=False, encoder_options={"size": 16}, num_workers=0)
    return folder, store


def test_image_query_finds_its_own_row_first(photo_store):
    folder, store = photo_store
    hits = find_similar(store, folder / "flower.png", n=3)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["id"] == "flower.png"
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert hits[0]["path"] == str((folder / "flower.png").resolve())
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True)
    # the crop of the same photo is nearer than any china image
    assert hits[1]["id"] in ("sub dir/flower-crop.jpg", "flower mirrored.png")


def test_id_query_leaves_the_item_out(photo_store):
    _, store = photo_store
    hits = find_similar(store, "sub dir/china-crop.jpg", n=10)
    assert len(hits) == 5  # six items, the query left out
    assert "sub dir/china-crop.jpg" not in [h["id"] for h in hits]
    assert hits[0]["id"] == "china.png"
    for h in hits:
        assert h["path"] and (h["path"].startswith("/"))


def test_cli_table_json_and_quiet(photo_store, capsys):
    folder, store = photo_store
    assert main(["similar", str(store), str(folder / "china.png"), "-n", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["rank", "similarity", "id", "path"]
    assert out[2].split()[0] == "1" and "china.png" in out[2]
    assert main(["similar", str(store), "china.png", "-n", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["rank"] for d in data] == [1, 2] and all(d["id"] != "china.png" for d in data)
    assert main(["similar", str(store), "china.png", "-n", "3", "--paths"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith(str(folder.resolve())) for line in lines)
    assert main(["similar", str(store), "china.png", "-n", "3", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("query, phrase", [
    ("no-such-id.png", "neither an image file nor an id"),
    ("NOT_AN_IMAGE", "cannot read the image"),
])
def test_cli_errors_are_one_line(photo_store, capsys, query, phrase):
    _, store = photo_store
    if query == "NOT_AN_IMAGE":
        query = str(store.parent / "not-an-image.jpg")
    assert main(["similar", str(store), query]) == 2
    err = capsys.readouterr().err
    assert phrase in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_store_and_bad_n(tmp_path, photo_store, capsys):
    assert main(["similar", str(tmp_path / "nothing"), "x.png"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(InputError, match="positive integer"):
        find_similar(photo_store[1], "china.png", n=0)


def test_empty_store_is_refused(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not an image")
    (folder / "b.png").write_bytes(b"nor this")
    store = tmp_path / "store"
    embed(folder, "raw", store, progress=False, encoder_options={"size": 8}, num_workers=0)
    assert main(["similar", str(store), "a.jpg"]) == 2
    assert "is empty" in capsys.readouterr().err


def test_known_vectors(tmp_path):
    """A store of known vectors: the cosine order, and an embedding as the query."""
    X = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0]], dtype=np.float32)
    store = write_array_store(tmp_path / "s", X, n=5, dim=3, dtype="float32")
    hits = find_similar(store, np.array([1.0, 0.05, 0.0]), n=5)
    assert [h["row"] for h in hits] == [0, 1, 2, 3, 4]
    assert hits[-1]["similarity"] == pytest.approx(-1.0, abs=1e-2)
    assert [h["row"] for h in find_similar(store, "0", n=2)] == [1, 2]  # id "0", itself out
    sims, rows = search(X[:2], X, 2)
    assert rows.tolist() == [[0, 1], [1, 0]]
    with pytest.raises(InputError, match="between 1 and"):
        search(X[:1], X, 6)
