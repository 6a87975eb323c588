"""Label-free criteria checked by hand, and ``--method auto`` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import sparse
from sklearn.datasets import make_blobs

from deepclust.cluster import make_clusterer
from deepclust.errors import InputError
from deepclust.pipeline import run_clustering
from deepclust.selection import (
    COMBINED_WEIGHTS,
    DEFAULT_CRITERION,
    Candidate,
    ScoringSample,
    check_criterion,
    combine,
    default_candidates,
    score,
    select,
)
from deepclust.selection.criteria import learnability, modularity


def two_triangles() -> ScoringSample:
    """Nodes 0-1-2 and 3-4-5 are triangles, joined by the edge 2-3."""
    edges = [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)]
    a = sparse.lil_matrix((6, 6))
    for i, j in edges:
        a[i, j] = a[j, i] = 1.0
    sample = ScoringSample(np.zeros((6, 2), np.float32))
    sample._graph = a.tocsr()
    return sample


def test_modularity_by_hand():
    s = two_triangles()
    # 7 edges, 14 edge ends; each triangle holds 6 of them and degree sum 7:
    # Q = 2 * (6/14 - (7/14)^2)
    assert modularity(np.array([0, 0, 0, 1, 1, 1]), s) == pytest.approx(2 * (6 / 14 - 0.25))
    assert modularity(np.zeros(6, dtype=int), s) == pytest.approx(0.0)
    # a noise point is a community of its own: its edges are cut, so leaving a point out
    # never scores better than keeping it where it belongs
    with_noise = modularity(np.array([0, 0, -1, 1, 1, 1]), s)
    by_hand = (2 / 14 + 6 / 14) - ((4 / 14) ** 2 + (3 / 14) ** 2 + (7 / 14) ** 2)
    assert with_noise == pytest.approx(by_hand)
    assert with_noise < modularity(np.array([0, 0, 0, 1, 1, 1]), s)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=300, n_features=8, centers=4, cluster_std=1.0, random_state=3)
    return X.astype(np.float32), y


def test_learnability_is_one_when_separable_and_near_zero_for_random_labels(blobs):
    X, y = blobs
    s = ScoringSample(X)
    assert learnability(y, s) == pytest.approx(1.0)
    rnd = np.random.default_rng(0).integers(0, 4, len(y))
    assert abs(learnability(rnd, s)) < 0.15


def test_every_label_free_criterion_prefers_the_true_partition_to_a_random_one(blobs):
    X, y = blobs
    s = ScoringSample(X, random_state=0)
    rnd = np.random.default_rng(1).integers(0, 4, len(y))

    def refit_true(pos, seed):
        return make_clusterer("kmeans", n_clusters=4, random_state=seed).fit_predict(X[pos])

    for name in ("modularity", "silhouette", "learnability", "calinski_harabasz",
                 "davies_bouldin", "density"):
        good, bad = score(name, y, s), score(name, rnd, s)
        better = good > bad if check_criterion(name).higher_is_better else good < bad
        assert better, (name, good, bad)
    assert score("stability", y, s, refit=refit_true) > 0.9
    assert math.isnan(score("head_loss", y, s, estimator=object()))
    with pytest.raises(InputError, match="oracle and needs true labels"):
        score("oracle_ami", y, s)


def test_the_default_is_the_combination_the_benchmark_chose():
    # benchmarks/selection.py, part A: modularity and the UMAP-silhouette, equal weights
    assert DEFAULT_CRITERION == "combined"
    assert COMBINED_WEIGHTS == {"modularity": 0.5, "umap_silhouette": 0.5}


def test_combine_ranks_within_the_table():
    table = [{"scores": {"modularity": 0.1, "learnability": 0.9}},
             {"scores": {"modularity": 0.5, "learnability": 0.5}},
             {"scores": {"modularity": 0.9, "learnability": float("nan")}}]
    got = combine(table, {"modularity": 1.0, "learnability": 1.0})
    assert got.tolist() == pytest.approx([0.5, 0.25, 1.0])


def test_select_picks_the_four_blobs_and_reports_every_candidate(blobs):
    X, y = blobs
    cands, skipped = default_candidates([2, 3, 4, 5, 6], len(X), X.shape[1],
                                        reducers=("",))
    assert not skipped
    assert {c.method for c in cands} == {"kmeans", "agglomerative", "gmm", "hdbscan"}
    sel = select(ScoringSample(X, random_state=0), cands, criterion="modularity")
    assert sel.best["n_clusters"] == 4 and sel.best["k"] in (4, None)
    assert len(sel.candidates) == len(cands) and sel.runner_up is not None
    assert sel.margin >= 0 and not sel.oracle and not sel.warnings
    others = [c["score"] for i, c in enumerate(sel.candidates) if i != sel.pick]
    assert sel.best["score"] >= np.nanmax(others)
    assert all(set(c["scores"]) == {"modularity", "learnability"} for c in sel.candidates)
    # the pick at the edge of the range is said
    edge = select(ScoringSample(X, random_state=0),
                  [Candidate("", "kmeans", k) for k in (2, 3, 4)], criterion="modularity")
    assert edge.best["k"] == 4 and "largest k of the range 2:4" in edge.warnings[0]


def test_label_free_choice_never_reads_the_labels(blobs):
    X, y = blobs
    cands = [Candidate("", "kmeans", k) for k in (2, 3, 4, 5)]
    a = select(ScoringSample(X, random_state=0, y=y), cands)
    b = select(ScoringSample(X, random_state=0, y=np.roll(y, 11)), cands)
    assert [c["scores"] for c in a.candidates] == [c["scores"] for c in b.candidates]


def test_large_inputs_leave_out_what_would_not_scale():
    cands, skipped = default_candidates(range(2, 21), 2_000_000, 64)
    assert {c.method for c in cands} == {"kmeans", "gmm"}
    reasons = " ".join(s["reason"] for s in skipped)
    assert "UMAP on 2000000 rows" in reasons and "agglomerative" in reasons


def test_run_clustering_method_auto_records_the_choice(blobs, tmp_path):
    X, y = blobs
    res = run_clustering(X, y, method="auto", k="auto", k_values=range(2, 7), reducer="",
                         random_state=0)
    assert res.n_clusters == 4 and res.metrics["ami"] > 0.95
    rec = res.record().to_dict()
    sel = rec["selection"]
    assert rec["method"] == sel["best"]["method"] and sel["criterion"] == DEFAULT_CRITERION
    assert set(sel["best"]["scores"]) >= {"modularity", "umap_silhouette", "learnability"}
    assert len(sel["candidates"]) == 3 * 5 + 1 and sel["rows"] == len(X)
    json.dumps(rec)  # JSON-safe
    with pytest.raises(InputError, match="--method auto chooses the method"):
        run_clustering(X, method="auto", k="auto", params={"n_init": 2})


def test_method_auto_on_a_sample_of_a_larger_input(blobs):
    X, y = blobs
    res = run_clustering(X, y, method="auto", k=4, reducer="", auto_rows=120, random_state=0)
    sel = res.selection
    assert sel.rows == 120 and sel.of_rows == len(X)
    assert {c["k"] for c in sel.candidates} == {4, None}
    assert res.label_free_rows == 120 and len(res.labels) == len(X)


def test_cli_method_auto_prints_the_candidates(blobs, tmp_path, capsys):
    from deepclust.cli import main

    X, _ = blobs
    np.save(tmp_path / "X.npy", X)
    rc = main(["cluster", str(tmp_path / "X.npy"), "--method", "auto", "--reduce", "none",
               "--k-range", "2:6", "--out", str(tmp_path / "run"), "--no-label-free"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"chosen by {DEFAULT_CRITERION} (label-free) among 16 candidates" in out
    assert "<- pick" in out and "margin to the runner-up" in out
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["n_clusters"] == 4 and rec["selection"]["best"]["name"] in out
    rc = main(["cluster", str(tmp_path / "X.npy"), "--method", "auto", "--criterion", "gap",
               "--out", str(tmp_path / "run2")])
    assert rc == 2
    assert "unknown criterion 'gap'; choose from modularity" in capsys.readouterr().err


def test_encoder_auto_embeds_a_sample_with_each_encoder_and_records_the_choice(tmp_path,
                                                                               monkeypatch):
    import sys
    from pathlib import Path

    import deepclust.selection.encoders as enc
    from deepclust.cli import main
    from deepclust.encoders import register_encoder
    from deepclust.encoders.raw import RawPixelEncoder

    sys.path.insert(0, str(Path(__file__).parent))
    from test_results import build_photo_folder

    monkeypatch.setenv("DEEPCLUST_CACHE", str(tmp_path / "cache"))
    def grey(**kw):  # named as registered: the run records the store's encoder name
        encoder = RawPixelEncoder(grey=True, **kw)
        encoder.name = "test-raw-grey"
        return encoder

    register_encoder("test-raw-grey", grey)
    monkeypatch.setattr(enc, "offline_encoders", lambda: ["raw", "test-raw-grey"])
    made = build_photo_folder(tmp_path / "photos")
    rc = main(["cluster", str(tmp_path / "photos"), "--encoder", "auto", "--k-range", "2:5",
               "--out", str(tmp_path / "run"), "--no-label-free", "--quiet"])
    assert rc == 0
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    sel = rec["input"]["encoder_selection"]
    assert set(sel["encoders"]) == {"raw", "test-raw-grey"} and sel["pick"] in sel["encoders"]
    assert sel["rows"] == len(made["good"]) + 1 and sel["criterion"] == DEFAULT_CRITERION
    assert sel["encoders"]["raw"]["dim"] == 3 * sel["encoders"]["test-raw-grey"]["dim"]
    assert all(np.isfinite(e["score"]) for e in sel["encoders"].values())
    assert rec["input"]["encoder"] == sel["pick"]  # the run's store is the chosen encoder's
    # the pick is the encoder of the best pooled score (ties go to the first listed)
    best = max(sel["encoders"].values(), key=lambda e: e["score"])["score"]
    assert sel["encoders"][sel["pick"]]["score"] == best


def test_method_auto_on_a_large_store_keeps_it_streamed(tmp_path, monkeypatch):
    import deepclust.pipeline as pipeline
    from deepclust.data.rows import RowSource
    from deepclust.store import write_array_store

    X, y = make_blobs(n_samples=600, n_features=8, centers=3, random_state=1)
    write_array_store(tmp_path / "s", np.asarray(X, np.float32), n=600, dim=8,
                      dtype="float32", shard_size=200, labels=y)
    monkeypatch.setattr(pipeline, "AUTO_LOAD_BYTES", 1000)  # this store counts as large

    def no_loading(self, dtype=None):
        raise AssertionError("the store was loaded whole")

    monkeypatch.setattr(RowSource, "to_array", no_loading)
    res = run_clustering(tmp_path / "s", method="auto", k="auto", k_values=range(2, 6),
                         random_state=0, label_free=False)
    assert res.streamed and res.method == "kmeans" and res.n_clusters == 3
    sel = res.selection
    assert {(c["reducer"], c["method"]) for c in sel.candidates} == {("", "kmeans")}
    assert "streamed, not loaded" in sel.skipped[-1]["reason"]
