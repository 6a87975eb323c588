"""k-means at scale: bf16 assignment, pruning, stores larger than memory, torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import faiss
import numpy as np
import pytest
from sklearn.cluster import KMeans as SklearnKMeans

import deepclust.data.rows as rows_module
from deepclust.cluster import KMeans
from deepclust.cluster.assign import CentroidSearch
from deepclust.cluster.seeding import kmeans_plus_plus_init
from deepclust.errors import InputError
from deepclust.store import EmbeddingStore, open_store, write_array_store


@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (60, 24)).astype(np.float32)
    comp = rng.integers(0, 60, 9000)
    X = centres[comp] + rng.normal(0, 1, (9000, 24)).astype(np.float32) + 5.0
    return X.astype(np.float16).astype(np.float32)  # exactly representable in a float16 store


def test_bf16_assignment_equals_fp32_and_brute_force(mixture):
    import torch

    C = kmeans_plus_plus_init(mixture, 80, random_state=0)
    d2 = ((mixture.astype(np.float64)[:, None, :] - C[None].astype(np.float64)) ** 2).sum(-1)
    exact = d2.argmin(1)
    order = np.sort(d2, axis=1)
    clear = order[:, 1] - order[:, 0] > 1e-4 * order[:, 0]  # not a float32 near-tie
    for precision in ("bf16", "fp32"):
        search = CentroidSearch(C, spherical=False, precision=precision,
                                device=torch.device("cpu"), center=mixture.mean(0))
        labels, nearest, second = search.search(mixture)
        assert np.array_equal(labels[clear], exact[clear]), precision
        # the bounds are bounds: nearest >= true distance, second <= every other distance
        assert np.all(nearest >= np.sqrt(order[:, 0]) - 1e-9)
        assert np.all(second <= np.sqrt(order[:, 1]) + 1e-9)
    # the exact fallback used on GPUs, run here on the CPU
    search = CentroidSearch(C, spherical=False, precision="bf16", device=torch.device("cpu"))
    labels, second = search._search_fp64(mixture)
    assert np.array_equal(labels[clear], exact[clear])
    assert np.all(second <= np.sqrt(order[:, 1]) + 1e-9)


def test_cpu_bf16_candidates_are_exact_in_high_dimension():
    """The CPU bf16 path (actual-rounding bound, candidates re-checked in float32) on rows
    far from the origin in 256 dims, searched whole and as a subset of prepared rows."""
    import torch

    rng = np.random.default_rng(3)
    centres = rng.normal(0, 1, (400, 256)).astype(np.float32)
    X = (centres[rng.integers(0, 400, 4000)] + rng.normal(0, 0.7, (4000, 256))
         + 20.0).astype(np.float32)
    C = kmeans_plus_plus_init(X, 300, random_state=0)
    X64, C64 = X - X.mean(0, dtype=np.float64), C - X.mean(0, dtype=np.float64)
    d2 = np.maximum((X64 ** 2).sum(1)[:, None] + (C64 ** 2).sum(1)[None] - 2 * X64 @ C64.T, 0)
    order = np.sort(d2, axis=1)
    clear = order[:, 1] - order[:, 0] > 1e-4 * order[:, 0]
    search = CentroidSearch(C, spherical=False, precision="bf16", device=torch.device("cpu"),
                            center=X.mean(0))
    assert search.candidates_path
    prepared = search.prepare(X)
    rechecked = []
    recheck = search._recheck
    search._recheck = lambda X, rows, *rest: (rechecked.append(rows.size),
                                              recheck(X, rows, *rest))[1]
    sub = np.arange(0, 4000, 3)
    for labels, nearest, second, rows in (
            (*search.search(X, prepared), np.arange(4000)),
            (*search.search(X, prepared.take(sub), sub), sub)):
        assert np.array_equal(labels[clear[rows]], d2[rows].argmin(1)[clear[rows]])
        assert np.all(nearest >= np.sqrt(order[rows, 0]) - 1e-9)
        assert np.all(second <= np.sqrt(order[rows, 1]) + 1e-9)
    # the product alone cannot certify every row here: the re-check ran, on a minority
    assert len(rechecked) == 2 and 0 < rechecked[0] < 4000


def test_pruned_lloyd_equals_plain_lloyd(mixture):
    """Hamerly's bounds skip rows, never change the result: same as scikit-learn's Lloyd."""
    C = kmeans_plus_plus_init(mixture, 40, random_state=1)
    ours = KMeans(40, init=C, max_iter=30, tol=0, precision="fp32").fit(mixture)
    ref = SklearnKMeans(40, init=C, n_init=1, max_iter=30, tol=0, algorithm="lloyd").fit(mixture)
    assert np.array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-5)
    diff = mixture.astype(np.float64) - ours.cluster_centers_.astype(np.float64)[ours.labels_]
    assert ours.inertia_ == pytest.approx(float((diff**2).sum()), rel=1e-9)  # exact, float64
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)  # scikit-learn's is float32
    searched = ours.stats_["rows_searched"]
    assert searched[0] == len(mixture) and min(searched[1:]) < len(mixture) / 2  # it prunes


@pytest.mark.parametrize("spherical", [False, True])
def test_bf16_fit_equals_fp32_fit(mixture, spherical):
    a = KMeans(50, random_state=0, precision="bf16", spherical=spherical).fit(mixture)
    b = KMeans(50, random_state=0, precision="fp32", spherical=spherical).fit(mixture)
    assert a.precision_ == "bf16" and b.precision_ == "fp32"
    assert np.array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


@pytest.mark.parametrize("spherical", [False, True])
def test_store_streamed_in_blocks_equals_the_array(mixture, tmp_path, monkeypatch, spherical):
    # small blocks that straddle the shard edges (shards of 1000 rows, blocks of 768)
    monkeypatch.setattr(rows_module, "BLOCK_ROWS", 768)
    store = write_array_store(tmp_path / "s", mixture, n=len(mixture), dim=24,
                              dtype="float16", shard_size=1000)
    assert store.n_shards == 9

    def no_loading(self):
        raise AssertionError("the store was loaded whole")

    monkeypatch.setattr(EmbeddingStore, "X", property(no_loading))
    for precision in ("bf16", "fp32"):
        params = dict(n_clusters=30, random_state=3, precision=precision, spherical=spherical)
        from_store = KMeans(**params).fit(open_store(tmp_path / "s"))
        from_array = KMeans(**params).fit(mixture)
        assert np.array_equal(from_store.labels_, from_array.labels_)
        np.testing.assert_array_equal(from_store.cluster_centers_, from_array.cluster_centers_)
        assert from_store.inertia_ == from_array.inertia_
        assert np.array_equal(from_store.predict(tmp_path / "s"), from_store.labels_)


def test_store_with_nan_rows_is_refused(tmp_path):
    X = np.ones((200, 4), dtype=np.float32)
    X[150, 2] = np.nan
    write_array_store(tmp_path / "s", X, n=200, dim=4, dtype="float32", shard_size=64)
    with pytest.raises(InputError, match=r"NaN or infinite.*150"):
        KMeans(3, init="random", random_state=0).fit(tmp_path / "s")


def test_device_and_precision_are_checked(mixture):
    with pytest.raises(InputError, match="precision"):
        KMeans(3, precision="fp8").fit(mixture)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            KMeans(3, device="cuda").fit(mixture)


_WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import deepclust.data.rows as rows_module
    from deepclust import runtime
    from deepclust.cluster import KMeans

    def fit(path, precision):
        rows_module.BLOCK_ROWS = 1024  # several blocks, so each process has its own share
        m = KMeans(40, random_state=5, precision=precision, n_init=2).fit(path)
        return {"labels": m.labels_, "centers": m.cluster_centers_, "inertia": m.inertia_,
                "world": m.stats_["world_size"], "iters": m.n_iter_}

    if __name__ == "__main__":
        runtime.init_from_env()
        out = {}
        for precision in ("bf16", "fp32"):
            for key, value in fit(sys.argv[1], precision).items():
                out[precision + "." + key] = value
        if runtime.info().is_main:
            np.savez(sys.argv[2], **out)
        runtime.shutdown()
""")


def test_two_process_torchrun_equals_one_process(mixture, tmp_path):
    write_array_store(tmp_path / "s", mixture, n=len(mixture), dim=24, shard_size=2000)
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path / "s"), str(tmp_path / "two.npz")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = np.load(tmp_path / "two.npz")
    namespace: dict = {}
    exec(compile(_WORKER, "worker", "exec"), namespace)  # the same code, one process
    for precision in ("bf16", "fp32"):
        one = namespace["fit"](str(tmp_path / "s"), precision)
        assert int(two[f"{precision}.world"]) == 2 and one["world"] == 1
        assert np.array_equal(two[f"{precision}.labels"], one["labels"])
        assert int(two[f"{precision}.iters"]) == one["iters"]
        # float64 sums added in another order: equal after rounding to float32, or within it
        np.testing.assert_allclose(two[f"{precision}.centers"], one["centers"], rtol=1e-6,
                                   atol=1e-6)
        assert float(two[f"{precision}.inertia"]) == pytest.approx(one["inertia"], rel=1e-9)


def test_cli_clusters_a_store_without_loading_it(mixture, tmp_path, monkeypatch, capsys):
    import json

    from deepclust.cli import main

    truth = np.repeat(np.arange(9), 1000)
    write_array_store(tmp_path / "s", mixture, n=len(mixture), dim=24, shard_size=4000,
                      labels=truth)

    def no_loading(self):
        raise AssertionError("the store was loaded whole")

    monkeypatch.setattr(EmbeddingStore, "X", property(no_loading))
    code = main(["cluster", str(tmp_path / "s"), "--k", "9", "--out", str(tmp_path / "o"),
                 "--precision", "fp32", "--method", "kmeans"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "not loaded" in printed and "nmi" in printed
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["input"]["out_of_core"] and run["params"]["precision"] == "fp32"
    labels = np.load(tmp_path / "o" / "labels.npy")
    expected = KMeans(9, random_state=0, precision="fp32").fit(mixture).labels_
    assert np.array_equal(labels, expected)
    assert 0 <= run["metrics"]["nmi"] <= 1


@pytest.fixture(scope="module")
def wide_mixture():
    """128 dimensions on a decaying spectrum, far from the origin: the projected search's
    case (32 dimensions in the projection), with its rounding stressed."""
    rng = np.random.default_rng(3)
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(128))
    centres = rng.normal(0, 4, (50, 128)) * spectrum
    comp = rng.integers(0, 50, 6000)
    X = centres[comp] + rng.normal(0, 1, (6000, 128)) * spectrum + 40.0
    return X.astype(np.float32)


@pytest.mark.parametrize("rank", [20, 128])
def test_projected_bounds_are_lower_bounds(rank):
    """|x~ - c~| never exceeds |x - c|, rounding included (float64 reference). Data of
    rank 20 lie in the projection's span: there the bound is the distance itself, up to
    rounding, so a bound too large by any rounding slack would show."""
    from deepclust.cluster.projected import ProjectedSearch, fits

    rng = np.random.default_rng(rank)
    basis = np.linalg.qr(rng.normal(size=(128, 128)))[0][:, :rank]
    X = (rng.normal(0, 3, (3000, rank)) @ basis.T + 40.0).astype(np.float32)
    C = X[::70][:40] + rng.normal(0, 0.01, (40, 128)).astype(np.float32)
    assert fits(len(X), X.shape[1], len(C))
    ps = ProjectedSearch(X[::3], len(X))
    ps.project(X, 0, np.einsum("ij,ij->i", X, X, dtype=np.float64))
    ps.centroids(C)
    bound2 = faiss.pairwise_distances(ps.rows, ps.Ct) - (ps.slack + ps.cs)[:, None]
    exact2 = ((X.astype(np.float64)[:, None, :] - C.astype(np.float64)[None]) ** 2).sum(-1)
    assert np.all(bound2 <= exact2)
    ratio = np.median(bound2 / exact2)
    assert ratio > 0.999 if rank == 20 else ratio > 0.1


@pytest.mark.parametrize("block_rows", [None, 1000])
def test_projected_lloyd_equals_plain_lloyd(wide_mixture, block_rows, monkeypatch):
    """The projected search (fp32 on the CPU, d >= 32) gives plain Lloyd's labels and
    centroids, in one block or several, and computes a small share of the (row,
    centroid) distances."""
    if block_rows:
        monkeypatch.setattr(rows_module, "BLOCK_ROWS", block_rows)
    X = wide_mixture
    C = kmeans_plus_plus_init(X, 40, random_state=2)
    ours = KMeans(40, init=C, max_iter=25, tol=0, precision="fp32").fit(X)
    ref = SklearnKMeans(40, init=C, n_init=1, max_iter=25, tol=0, algorithm="lloyd").fit(X)
    assert np.array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-4)
    # the labels are the exact nearest centroids of the final centroids (float64)
    C64 = ours.cluster_centers_.astype(np.float64)
    d2 = ((X.astype(np.float64)[:, None, :] - C64[None]) ** 2).sum(-1)
    assert np.array_equal(ours.labels_, d2.argmin(1))
    pairs = ours.stats_["pairs_computed"]
    assert len(pairs) == ours.n_iter_ + 1 and max(pairs[1:]) < 0.2 * len(X) * 40
