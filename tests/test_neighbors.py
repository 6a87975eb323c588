"""Tests of deepclust.neighbors: the block-wise cosine miner and its cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepclust.errors import InputError
from deepclust.neighbors import mine_neighbors, neighbors_for


def _brute_force(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = U.astype(np.float64) @ U.T.astype(np.float64)
    np.fill_diagonal(S, -np.inf)
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(S, order, axis=1)


@pytest.fixture(scope="module")
def clustered():
    # 12 directions with spread: a realistic mix of close and distant neighbours
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 48))
    X = centres[rng.integers(12, size=900)] + 0.7 * rng.standard_normal((900, 48))
    return X.astype(np.float32)


@pytest.mark.parametrize("block_rows", [900, 256, 97])
def test_fp32_matches_brute_force_across_blocks(clustered, block_rows):
    ids, sims = _brute_force(clustered, 10)
    nb = mine_neighbors(clustered, 10, precision="fp32", block_rows=block_rows)
    assert nb.indices.shape == (900, 10)
    assert np.array_equal(nb.indices, ids)
    np.testing.assert_allclose(nb.similarities, sims, atol=1e-5)
    assert not np.any(nb.indices == np.arange(900)[:, None])  # never itself


def test_bf16_is_close_to_exact(clustered):
    ids, sims = _brute_force(clustered, 10)
    nb = mine_neighbors(clustered, 10, precision="bf16", device="cpu", block_rows=300)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(nb.indices, ids, strict=True)])
    assert recall >= 0.95
    # what was missed is within bfloat16 rounding of the true 10th neighbour
    np.testing.assert_allclose(nb.similarities, sims, atol=5e-3)
    assert not np.any(nb.indices == np.arange(900)[:, None])
    assert np.all(np.diff(nb.similarities, axis=1) <= 0)


def test_duplicates_never_return_the_row_itself():
    X = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # every row has 3 exact twins
    nb = mine_neighbors(X, 3, precision="fp32")
    own = np.arange(len(X))[:, None]
    assert not np.any(nb.indices == own)
    assert np.all(nb.indices // 4 == own // 4)  # the twins, and only them
    np.testing.assert_allclose(nb.similarities, 1.0, atol=1e-6)


def test_rejects_too_many_neighbours():
    with pytest.raises(InputError, match="at most 4"):
        mine_neighbors(np.ones((5, 2)), 5)


def test_array_cache_is_reused_and_serves_smaller_k(clustered, tmp_path):
    first = neighbors_for(clustered, 8, cache=tmp_path / "nb", precision="fp32")
    assert first.info["cached"] is False
    again = neighbors_for(clustered, 5, cache=tmp_path / "nb", precision="fp32")
    assert again.info["cached"] is True
    assert np.array_equal(again.indices, first.indices[:, :5])
    other = clustered.copy()
    other[0, 0] += 1.0  # different data: a different fingerprint, mined afresh
    assert neighbors_for(other, 5, cache=tmp_path / "nb", precision="fp32").info["cached"] is False


def _make_store(path, X, y):
    from deepclust.store import FORMAT, FORMAT_VERSION, StoreWriter

    writer = StoreWriter(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "encoder": "test",
            "encoder_config": {}, "dim": X.shape[1], "dtype": "float32", "precision": "fp32",
            "source": "test", "source_fingerprint": "abc", "n_items": len(X),
            "shard_size": len(X), "n_shards": 1, "class_names": None}
    writer.prepare(meta)
    n = len(X)
    writer.write_shard(0, X, {"item": list(range(n)), "id": [str(i) for i in range(n)],
                              "label": list(map(int, y)), "path": [""] * n,
                              "row": list(range(n)), "error": [""] * n})
    writer.finalize()


def test_store_table_is_cached_inside_the_store(clustered, tmp_path):
    from deepclust.store import open_store

    _make_store(tmp_path / "store", clustered, np.zeros(len(clustered), dtype=int))
    store = open_store(tmp_path / "store")
    first = neighbors_for(store, 6, precision="fp32")
    assert first.info["cache"].startswith(str(tmp_path / "store" / "neighbors"))
    second = neighbors_for(tmp_path / "store", 6, precision="fp32")  # by path
    assert second.info["cached"] is True
    assert np.array_equal(second.indices, _brute_force(clustered, 6)[0])


# ----------------------------------------------------------------------------- approximate


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1]
                          for a, b in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def larger():
    # 40 directions, 4000 rows: enough rows per IVF list for probing to be selective
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((40, 32))
    X = centres[rng.integers(40, size=4000)] + 0.6 * rng.standard_normal((4000, 32))
    return X.astype(np.float32)


def test_ivf_recall_and_never_itself(larger):
    truth, _ = _brute_force(larger, 10)
    nb = mine_neighbors(larger, 10, method="ivf")
    info = nb.info
    assert info["method"] == "ivf" and info["nlist"] == round(4 * np.sqrt(4000))
    assert info["nprobe"] < info["nlist"]  # an actual approximation, not a full scan
    assert info["recall_estimate"] >= 0.95
    assert _recall(nb.indices, truth) >= 0.9
    assert not np.any(nb.indices == np.arange(4000)[:, None])
    assert nb.indices.min() >= 0 and nb.indices.max() < 4000
    assert np.all(np.diff(nb.similarities, axis=1) <= 1e-6)
    # the similarities are the true cosines of the rows returned
    U = larger / np.linalg.norm(larger, axis=1, keepdims=True)
    np.testing.assert_allclose(nb.similarities[:, 0],
                               np.einsum("ij,ij->i", U, U[nb.indices[:, 0]]), atol=1e-5)


def test_ivf_with_fixed_parameters_and_tiny_lists(clustered):
    # one probe of lists holding about 7 rows: many rows find fewer than k + 1 candidates
    # and are searched exactly, so the table is still complete
    nb = mine_neighbors(clustered, 10, method="ivf", nlist=120, nprobe=1)
    assert nb.info["nprobe"] == 1 and nb.info["nlist"] == 120
    assert "recall_estimate" not in nb.info
    assert nb.info["exact_fallback_rows"] > 0
    assert nb.indices.min() >= 0
    assert not np.any(nb.indices == np.arange(900)[:, None])
    with pytest.raises(InputError, match="nprobe must be between 1 and nlist=120"):
        mine_neighbors(clustered, 10, method="ivf", nlist=120, nprobe=500)
    with pytest.raises(InputError, match="method must be"):
        mine_neighbors(clustered, 10, method="hnsw")


def test_auto_is_exact_below_the_threshold_and_ivf_above(clustered, monkeypatch):
    import deepclust.neighbors as nbm

    assert mine_neighbors(clustered, 5, precision="fp32").info["method"] == "exact"
    monkeypatch.setattr(nbm, "EXACT_MAX_ROWS", 500)
    assert mine_neighbors(clustered, 5, precision="fp32").info["method"] == "ivf"
    assert nbm.resolve_knn_method("auto", 900, torch.device("cuda"), "auto") == "exact"


def test_cache_never_serves_an_approximate_table_to_an_exact_request(clustered, tmp_path,
                                                                      monkeypatch):
    import deepclust.neighbors as nbm

    folder = tmp_path / "nb"
    ivf = neighbors_for(clustered, 8, cache=folder, method="ivf")
    assert ivf.info["cached"] is False and ivf.info["method"] == "ivf"
    again = neighbors_for(clustered, 5, cache=folder, method="ivf")
    assert again.info["cached"] is True and again.info["method"] == "ivf"
    assert np.array_equal(again.indices, ivf.indices[:, :5])
    # the table was calibrated for 0.95: it does not serve a stricter target
    assert neighbors_for(clustered, 5, cache=folder, method="ivf",
                         target_recall=0.999).info["cached"] is False
    # exact (explicitly, or auto at this size) is mined, not served from the ivf table
    exact = neighbors_for(clustered, 8, cache=folder, method="auto", precision="fp32")
    assert exact.info["cached"] is False and exact.info["method"] == "exact"
    assert np.array_equal(exact.indices, _brute_force(clustered, 8)[0])
    # above the threshold auto accepts approximate tables; the exact one is preferred
    monkeypatch.setattr(nbm, "EXACT_MAX_ROWS", 500)
    served = neighbors_for(clustered, 8, cache=folder, method="auto", precision="fp32")
    assert served.info["cached"] is True and served.info["method"] == "exact"
    names = sorted(p.name for p in folder.glob("*.json"))
    assert "knn-cosine-exact-fp32-k8.json" in names and "knn-cosine-ivf-k8.json" in names


def test_cache_keeps_bf16_from_an_fp32_request(clustered, tmp_path):
    folder = tmp_path / "nb"
    bf16 = neighbors_for(clustered, 6, cache=folder, method="exact", precision="bf16",
                         device="cpu")
    assert bf16.info["precision"] == "bf16"
    assert neighbors_for(clustered, 6, cache=folder, method="exact", precision="bf16",
                         device="cpu").info["cached"] is True
    fp32 = neighbors_for(clustered, 6, cache=folder, method="exact", precision="fp32")
    assert fp32.info["cached"] is False and fp32.info["precision"] == "fp32"
    # an ivf request takes an exact table
    assert neighbors_for(clustered, 6, cache=folder, method="ivf").info["method"] == "exact"


def test_version_1_tables_are_read_as_exact(clustered, tmp_path):
    import json

    folder = tmp_path / "nb"
    table = neighbors_for(clustered, 4, cache=folder, method="exact", precision="fp32")
    stem = folder / "knn-cosine-exact-fp32-k4"
    old = folder / "knn-cosine-k4"  # the version-1 name and metadata, without "method"
    for suffix in ("-indices.npy", "-similarities.npy"):
        (folder / f"{stem.name}{suffix}").rename(folder / f"{old.name}{suffix}")
    meta = json.loads((folder / f"{stem.name}.json").read_text())
    meta.pop("method")
    meta["version"] = 1
    (folder / f"{stem.name}.json").unlink()
    (folder / f"{old.name}.json").write_text(json.dumps(meta))
    found = neighbors_for(clustered, 4, cache=folder, method="exact", precision="fp32")
    assert found.info["cached"] is True and found.info["method"] == "exact"
    assert np.array_equal(found.indices, table.indices)


def test_a_float16_store_is_searched_shard_by_shard(clustered, tmp_path, monkeypatch):
    from deepclust.store import FORMAT, FORMAT_VERSION, EmbeddingStore, StoreWriter, open_store

    n, size = len(clustered), 250  # 4 shards, the last short
    writer = StoreWriter(tmp_path / "s")
    writer.prepare({"format": FORMAT, "format_version": FORMAT_VERSION, "encoder": "test",
                    "encoder_config": {}, "dim": 48, "dtype": "float16", "precision": "fp32",
                    "source": "test", "source_fingerprint": "f16", "n_items": n,
                    "shard_size": size, "n_shards": 4, "class_names": None})
    for k in range(4):
        items = list(range(k * size, min(n, (k + 1) * size)))
        writer.write_shard(k, clustered[items].astype(np.float16), {
            "item": items, "id": [str(i) for i in items], "label": [0] * len(items),
            "path": [""] * len(items), "row": list(range(len(items))),
            "error": [""] * len(items)})
    writer.finalize()
    writer.release()
    store = open_store(tmp_path / "s")
    monkeypatch.setattr(EmbeddingStore, "X", property(lambda self: pytest.fail("store.X read")))
    widened = clustered.astype(np.float16).astype(np.float32)
    truth, _ = _brute_force(widened, 6)
    # query and database blocks of 97 rows cross the shard boundaries
    nb = mine_neighbors(store, 6, method="exact", precision="fp32", block_rows=97)
    assert np.array_equal(nb.indices, truth)
    approx = neighbors_for(store, 6, method="ivf")
    assert approx.info["cache"].startswith(str(tmp_path / "s" / "neighbors"))
    assert _recall(approx.indices, truth) >= 0.9


# ----------------------------------------------------------------------------- pruned by groups


def _mixture(n=3000, d=16, k=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, d))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def _same_table(a, b):
    """Equal similarities everywhere; neighbour sets equal except where similarities tie."""
    assert np.allclose(a.similarities, b.similarities, atol=1e-5)
    differ = (np.sort(a.indices, 1) != np.sort(b.indices, 1)).any(axis=1)
    assert differ.mean() < 0.01


def test_grouped_search_equals_the_exact_search_and_prunes():
    from deepclust.neighbors import exact_by_groups

    X, y = _mixture()
    exact = mine_neighbors(X, 10, method="exact", precision="fp32", device="cpu")
    pruned = exact_by_groups(X, 10, y)
    _same_table(pruned, exact)
    assert pruned.info["pruned_by"] == "groups" and pruned.info["pairs_searched"] < 0.4


@pytest.mark.parametrize("how", ["split clusters", "random", "one group", "singletons"])
def test_grouped_search_is_exact_whatever_the_groups(how):
    """Groups that cut through clusters (true neighbours in another group), random groups,
    one group and groups smaller than k: the bound never drops a nearer row."""
    from deepclust.neighbors import exact_by_groups

    X, y = _mixture(n=1500)
    rng = np.random.default_rng(1)
    groups = {"split clusters": y * 2 + (X[:, 0] > np.median(X[:, 0])),
              "random": rng.integers(0, 4, len(X)),
              "one group": np.zeros(len(X), int),
              "singletons": np.arange(len(X)) // 3}[how]
    exact = mine_neighbors(X, 10, method="exact", precision="fp32", device="cpu")
    _same_table(exact_by_groups(X, 10, groups), exact)


def test_neighbors_for_with_groups_caches_an_exact_table(tmp_path):
    X, y = _mixture(n=1000)
    first = neighbors_for(X, 5, cache=tmp_path, groups=y, device="cpu")  # auto precision
    assert first.info.get("pruned_by") == "groups" and not first.info.get("cached")
    again = neighbors_for(X, 5, cache=tmp_path, method="exact", precision="fp32", device="cpu")
    assert again.info["cached"] and np.array_equal(again.similarities, first.similarities)
    with pytest.raises(InputError, match="one label per row"):
        neighbors_for(X, 5, cache=False, groups=y[:-1], precision="fp32", device="cpu")
