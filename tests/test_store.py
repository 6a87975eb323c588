"""EmbeddingStore: format, atomic shards, resume bookkeeping, reading back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepclust.data.features import FeatureSet, load_features
from deepclust.errors import DataNotFoundError, InputError
from deepclust.store import StoreWriter, open_store


def base_meta(n_items=5, shard_size=2, dim=3, dtype="float16"):
    return {
        "format": "deepclust-store", "format_version": 1, "encoder": "toy",
        "encoder_config": {"name": "toy", "dim": dim}, "dim": dim, "dtype": dtype,
        "precision": "fp32", "source": {"kind": "toy"}, "source_fingerprint": "abc",
        "n_items": n_items, "shard_size": shard_size,
        "n_shards": (n_items + shard_size - 1) // shard_size, "class_names": ["a", "b"],
    }


def shard_table(items, failed=()):
    rows, table = 0, {"item": [], "id": [], "label": [], "path": [], "row": [], "error": []}
    for i in items:
        table["item"].append(i)
        table["id"].append(f"id{i}")
        table["label"].append(i % 2)
        table["path"].append(f"/p/{i}.png")
        if i in failed:
            table["row"].append(-1)
            table["error"].append("corrupt: boom")
        else:
            table["row"].append(rows)
            table["error"].append(None)
            rows += 1
    return table, rows


def write_toy_store(path, failed=(3,)):
    """5 items in shards of 2 (3 shards); item 3 failed."""
    w = StoreWriter(path)
    missing, complete = w.prepare(base_meta())
    assert missing == [0, 1, 2] and not complete
    X = np.arange(15, dtype=np.float32).reshape(5, 3)
    for k, items in enumerate([[0, 1], [2, 3], [4]]):
        table, n_ok = shard_table(items, failed)
        ok = [i for i in items if i not in failed]
        w.write_shard(k, X[ok].astype(np.float16), table)
    w.finalize()
    w.release()
    return X


def test_written_store_reads_back(tmp_path):
    X = write_toy_store(tmp_path / "s")
    store = open_store(tmp_path / "s")
    assert len(store) == 4 and store.dim == 3 and store.n_shards == 3
    assert np.array_equal(store.X, X[[0, 1, 2, 4]].astype(np.float16))
    assert store.labels.tolist() == [0, 1, 0, 0]
    assert store.ids.tolist() == ["id0", "id1", "id2", "id4"]
    assert store.failed == [{"item": 3, "id": "id3", "label": 1, "path": "/p/3.png", "reason": "corrupt: boom"}]
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["complete"] and meta["count"] == 4 and meta["n_failed"] == 1
    index = store.index.to_pydict()
    assert index["shard"] == [0, 0, 1, 2] and index["row"] == [0, 1, 0, 0]
    assert not list((tmp_path / "s" / "shards").glob(".*"))  # no temporary files left


def test_single_shard_store_is_memory_mapped(tmp_path):
    w = StoreWriter(tmp_path / "s")
    w.prepare(base_meta(n_items=2, shard_size=4))
    table, _ = shard_table([0, 1])
    w.write_shard(0, np.ones((2, 3), np.float16), table)
    w.finalize()
    X = open_store(tmp_path / "s").X
    assert isinstance(X, np.memmap) and not X.flags.writeable


def test_as_feature_set_and_load_features(tmp_path):
    X = write_toy_store(tmp_path / "s")
    fs = open_store(tmp_path / "s").as_feature_set()
    assert isinstance(fs, FeatureSet) and fs.X.dtype == np.float32
    assert np.allclose(fs.X, X[[0, 1, 2, 4]]) and fs.class_names == ["a", "b"]
    loaded = load_features(tmp_path / "s")
    assert np.allclose(loaded.X, fs.X) and loaded.y.tolist() == [0, 1, 0, 0]


def test_resume_rewrites_only_uncommitted_shards(tmp_path):
    w = StoreWriter(tmp_path / "s")
    w.prepare(base_meta())
    table, _ = shard_table([0, 1])
    w.write_shard(0, np.zeros((2, 3), np.float16), table)
    # an interrupted shard 1: rows written, table (the commit marker) not; plus a temp file
    np.save(tmp_path / "s" / "shards" / "shard-00001.npy", np.zeros((7, 3), np.float16))
    (tmp_path / "s" / "shards" / ".shard-00002.npy.abc.tmp").write_bytes(b"partial")
    w.release()  # as when the interrupted process died
    missing, complete = StoreWriter(tmp_path / "s").prepare(base_meta())
    assert missing == [1, 2] and not complete
    assert not (tmp_path / "s" / "shards" / ".shard-00002.npy.abc.tmp").exists()


def test_incomplete_store_refuses_to_open(tmp_path):
    w = StoreWriter(tmp_path / "s")
    w.prepare(base_meta())
    with pytest.raises(InputError, match="incomplete .*Run the same"):
        open_store(tmp_path / "s")
    with pytest.raises(InputError, match="missing"):
        w.finalize()


def test_other_inputs_are_refused_unless_overwrite(tmp_path):
    write_toy_store(tmp_path / "s")
    other = {**base_meta(), "source_fingerprint": "different"}
    with pytest.raises(InputError, match="source_fingerprint.*--overwrite"):
        StoreWriter(tmp_path / "s").prepare(other)
    same = StoreWriter(tmp_path / "s")
    missing, complete = same.prepare(base_meta())
    assert complete and missing == []  # same inputs: nothing to do
    same.release()
    missing, complete = StoreWriter(tmp_path / "s").prepare(other, overwrite=True)
    assert missing == [0, 1, 2] and not complete
    assert not (tmp_path / "s" / "index.parquet").exists()


def test_refuses_a_foreign_folder_and_reports_missing_paths(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="not an embedding store"):
        StoreWriter(tmp_path / "busy").prepare(base_meta())
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "precious"
    with pytest.raises(DataNotFoundError):
        open_store(tmp_path / "nowhere")
    with pytest.raises(InputError, match="not an embedding store"):
        open_store(tmp_path / "busy")


def test_shard_row_count_mismatch_is_detected(tmp_path):
    w = StoreWriter(tmp_path / "s")
    w.prepare(base_meta(n_items=2, shard_size=2))
    table, _ = shard_table([0, 1])
    w.write_shard(0, np.zeros((1, 3), np.float16), table)  # table says 2 rows
    with pytest.raises(InputError, match="shard 0 is damaged: it holds 1 rows but the store says 2"):
        w.finalize()


def test_extra_labels_are_indexed(tmp_path):
    w = StoreWriter(tmp_path / "s")
    w.prepare(base_meta(n_items=3, shard_size=3))
    table, _ = shard_table([0, 1, 2], failed=(1,))
    w.write_shard(0, np.zeros((2, 3), np.float16), table)
    w.finalize({"coarse": (np.array([5, 6, 7]), ["x", "y", "z", "w", "v", "u", "t", "s"])})
    store = open_store(tmp_path / "s")
    assert store.extra_labels("coarse").tolist() == [5, 7]
    with pytest.raises(InputError, match="no extra labels 'fine'"):
        store.extra_labels("fine")


def test_a_store_being_written_is_locked(tmp_path):
    first = StoreWriter(tmp_path / "s")
    first.prepare(base_meta())
    with pytest.raises(InputError, match="being written by another deepclust process"):
        StoreWriter(tmp_path / "s").prepare(base_meta())
    first.release()
    missing, _ = StoreWriter(tmp_path / "s").prepare(base_meta())
    assert missing == [0, 1, 2]
