"""Tests of deepclust.cluster.minibatch: mini-batch k-means on arrays, streams and stores."""

from __future__ import annotations

import numpy as np
import pytest

from deepclust.cluster.base import make_clusterer
from deepclust.cluster.kmeans import KMeans
from deepclust.cluster.minibatch import MiniBatchKMeans, default_batch_size, minibatch_step
from deepclust.errors import InputError


@pytest.fixture(scope="module")
def blobs():
    # 20 overlapping blobs: full k-means needs several iterations, a bad step would show
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 16)) * 3
    X = centres[rng.integers(20, size=6000)] + rng.standard_normal((6000, 16))
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def full_kmeans(blobs):
    return KMeans(20, random_state=0).fit(blobs)


def _write_store(path, X, shard_size):
    """A finished float16 store of ``X`` in shards of ``shard_size`` rows."""
    from deepclust.store import FORMAT, FORMAT_VERSION, StoreWriter

    n = len(X)
    n_shards = -(-n // shard_size)
    writer = StoreWriter(path)
    writer.prepare({"format": FORMAT, "format_version": FORMAT_VERSION, "encoder": "test",
                    "encoder_config": {}, "dim": X.shape[1], "dtype": "float16",
                    "precision": "fp32", "source": "test", "source_fingerprint": "abc",
                    "n_items": n, "shard_size": shard_size, "n_shards": n_shards,
                    "class_names": None})
    for k in range(n_shards):
        items = list(range(k * shard_size, min(n, (k + 1) * shard_size)))
        writer.write_shard(k, X[items].astype(np.float16), {
            "item": items, "id": [str(i) for i in items], "label": [0] * len(items),
            "path": [""] * len(items), "row": list(range(len(items))), "error": [""] * len(items)})
    writer.finalize()
    writer.release()


def test_fit_is_within_a_few_percent_of_full_kmeans(blobs, full_kmeans):
    mbk = MiniBatchKMeans(20, batch_size=640, random_state=0).fit(blobs)
    assert mbk.inertia_ <= 1.03 * full_kmeans.inertia_
    assert mbk.cluster_centers_.shape == (20, 16) and mbk.cluster_centers_.dtype == np.float32
    assert mbk.labels_.shape == (6000,)
    assert np.array_equal(mbk.labels_, mbk.predict(blobs))
    assert mbk.score(blobs) == pytest.approx(-mbk.inertia_, rel=1e-6)
    assert mbk.n_steps_ == 3 * -(-6000 // 640)  # n_epochs=3
    assert mbk.counts_.sum() > 0 and len(mbk.stats_["epoch_objective"]) == 3


def test_partial_fit_over_a_generator_matches_fit(blobs, full_kmeans):
    fitted = MiniBatchKMeans(20, batch_size=640, random_state=0).fit(blobs)

    def stream():  # batches arriving one by one, three passes over shuffled data
        rng = np.random.default_rng(1)
        for _ in range(3):
            yield from np.array_split(blobs[rng.permutation(len(blobs))], 10)

    online = MiniBatchKMeans(20, batch_size=640, random_state=0)
    for batch in stream():
        online.partial_fit(batch)
    assert not hasattr(online, "labels_")  # a stream has no "all rows" to label
    assert online.n_rows_seen_ == 3 * 6000
    assert -online.score(blobs) <= 1.03 * fitted.inertia_
    assert -online.score(blobs) <= 1.05 * full_kmeans.inertia_


def test_a_large_partial_fit_call_is_cut_into_steps(blobs):
    mbk = MiniBatchKMeans(20, batch_size=1000, random_state=0).partial_fit(blobs)
    assert mbk.n_steps_ == 6
    assert mbk.inertia_ > 0


def test_fits_a_float16_store_shard_by_shard(blobs, tmp_path, monkeypatch):
    from deepclust.store import EmbeddingStore, open_store

    _write_store(tmp_path / "store", blobs, shard_size=1700)  # 4 shards, the last short
    store = open_store(tmp_path / "store")
    assert store.n_shards == 4 and store.dtype == np.float16

    def no_whole_store(self):
        raise AssertionError("the whole store was loaded")

    monkeypatch.setattr(EmbeddingStore, "X", property(no_whole_store))
    from_store = MiniBatchKMeans(20, batch_size=640, random_state=0).fit(store)
    from_path = MiniBatchKMeans(20, batch_size=640, random_state=0).fit(tmp_path / "store")
    # the same rows, widened from float16 in memory: the same fit
    widened = blobs.astype(np.float16).astype(np.float32)
    from_array = MiniBatchKMeans(20, batch_size=640, random_state=0).fit(widened)
    np.testing.assert_allclose(from_store.cluster_centers_, from_array.cluster_centers_, atol=1e-5)
    assert np.array_equal(from_store.labels_, from_array.labels_)
    assert np.array_equal(from_path.labels_, from_store.labels_)
    assert np.array_equal(from_store.predict(store), from_store.labels_)
    # a store streamed with partial_fit, one shard per call
    online = MiniBatchKMeans(20, batch_size=640, random_state=0)
    for shard in store.iter_shards():
        online.partial_fit(shard)
    assert online.n_rows_seen_ == 6000


def test_fit_takes_a_feature_set(blobs):
    from deepclust.data.features import FeatureSet

    a = MiniBatchKMeans(5, batch_size=500, random_state=3).fit(FeatureSet(blobs))
    b = MiniBatchKMeans(5, batch_size=500, random_state=3).fit(blobs)
    assert np.array_equal(a.labels_, b.labels_)


def test_reproducible_with_random_state(blobs):
    a = MiniBatchKMeans(20, batch_size=640, random_state=7).fit(blobs)
    b = MiniBatchKMeans(20, batch_size=640, random_state=7).fit(blobs)
    c = MiniBatchKMeans(20, batch_size=640, random_state=8).fit(blobs)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)
    assert np.array_equal(a.labels_, b.labels_)
    assert not np.array_equal(a.cluster_centers_, c.cluster_centers_)


def test_spherical_keeps_unit_centres_and_matches_spherical_kmeans(blobs):
    mbk = MiniBatchKMeans(20, batch_size=640, spherical=True, random_state=0).fit(blobs)
    np.testing.assert_allclose(np.linalg.norm(mbk.cluster_centers_, axis=1), 1.0, atol=1e-5)
    U = blobs / np.linalg.norm(blobs, axis=1, keepdims=True)
    assert np.array_equal(mbk.labels_, np.argmax(U @ mbk.cluster_centers_.T, axis=1))
    full = KMeans(20, spherical=True, random_state=0).fit(blobs)
    assert mbk.inertia_ <= 1.05 * full.inertia_


def test_a_centre_that_gets_no_rows_is_reassigned(blobs):
    init = blobs[:20].copy()
    init[0] = 1e4  # far from every row: it never receives one
    mbk = MiniBatchKMeans(20, init=init, batch_size=640, random_state=0).fit(blobs)
    assert mbk.n_reassigned_ >= 1
    assert np.abs(mbk.cluster_centers_).max() < 100
    assert np.bincount(mbk.labels_, minlength=20).min() > 0


def test_step_is_the_running_mean():
    centers = np.zeros((2, 2), dtype=np.float32)
    counts = np.array([2.0, 0.0])
    batch = np.array([[3.0, 3.0], [0.1, 0.1]], dtype=np.float32)
    centers[1] = [10.0, 10.0]
    labels, objective = minibatch_step(batch, centers, counts)
    assert labels.tolist() == [0, 0]
    # centre 0 had 2 rows at the origin, then 2 more: the mean of all four
    np.testing.assert_allclose(centers[0], [3.1 / 4, 3.1 / 4], rtol=1e-6)
    assert counts.tolist() == [4.0, 0.0]
    assert objective == pytest.approx(18.0 + 0.02, rel=1e-5)


def test_registered_and_default_batch_size():
    mbk = make_clusterer("minibatch-kmeans", n_clusters=4, random_state=0)
    assert isinstance(mbk, MiniBatchKMeans)
    assert default_batch_size(10) == 4096 and default_batch_size(1000) == 32000
    assert default_batch_size(10_000) == 65536


def test_errors_name_the_problem(blobs):
    first = MiniBatchKMeans(20, random_state=0).partial_fit(blobs[:100])
    with pytest.raises(InputError, match="16.*same number of features"):
        first.partial_fit(np.ones((50, 8), dtype=np.float32))
    with pytest.raises(InputError, match="first batch has 10 rows, fewer than n_clusters=20"):
        MiniBatchKMeans(20).partial_fit(blobs[:10])
    with pytest.raises(InputError, match="iterator.*partial_fit"):
        MiniBatchKMeans(3).fit(iter([blobs[:100]]))
    with pytest.raises(InputError, match="not fitted"):
        MiniBatchKMeans(3).predict(blobs)
    bad = blobs[:200].copy()
    bad[17, 3] = np.nan
    with pytest.raises(InputError, match=r"NaN or infinite values \(rows 17"):
        MiniBatchKMeans(3, random_state=0).fit(bad)
    with pytest.raises(InputError, match=r"NaN or infinite values \(rows \[17\]"):
        MiniBatchKMeans(3, random_state=0).fit(bad.astype(np.float16))  # checked per block
    zero = blobs[:200].copy()
    zero[5] = 0
    with pytest.raises(InputError, match="all-zero rows"):
        MiniBatchKMeans(3, spherical=True, random_state=0).fit(zero)
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        MiniBatchKMeans(3, batch_size=0).fit(blobs)
    with pytest.raises(InputError, match="reassignment_ratio"):
        MiniBatchKMeans(3, reassignment_ratio=1.5).fit(blobs)
    with pytest.raises(InputError, match="larger than the number of samples"):
        MiniBatchKMeans(300).fit(blobs[:100])
    with pytest.raises(InputError, match=r"init has shape \(2, 16\)"):
        MiniBatchKMeans(3, init=blobs[:2]).fit(blobs)
