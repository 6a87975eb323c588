"""Tests of deepclust.neighbors: the block-wise cosine miner and its cache."""

from __future__ import annotations

import numpy as np
import pytest

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
