"""DeepCluster: sampler, re-seeding, PCA-whitening, heads, checkpoints, export, runs, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from deepclust.cli import main
from deepclust.data.builtin import load_dataset
from deepclust.deepcluster import (
    DeepCluster,
    DeepClusterV2,
    UniformLabelSampler,
    build_network,
    cluster_features,
    pca_whiten_l2,
    read_history,
    uniform_label_indices,
)
from deepclust.deepcluster.augment import random_resized_crop_boxes, resized_crops
from deepclust.deepcluster.models import NETWORKS, SobelFilter
from deepclust.encoders import get_encoder
from deepclust.errors import InputError

# Tiny, fast and deterministic: 8x8 digits, one thread, float32.
FAST = dict(n_clusters=10, batch_size=64, threads=1, precision="fp32", progress=False,
            verbose=False, seed=3)
# PCA-whitening to 256 dimensions needs many more than a few hundred images: 16 here
V1 = dict(FAST, pca_dim=16)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# ----------------------------------------------------------------------------- sampler


def test_sampler_is_uniform_over_nonempty_clusters_and_repeats_only_small_ones():
    # cluster sizes 50, 5, 20, 25; id 3 is empty (absent); 7 is a singleton
    labels = np.repeat([0, 1, 2, 4, 7], [50, 5, 20, 25, 1])
    rng = np.random.default_rng(0)
    idx = uniform_label_indices(labels, 100, rng)
    assert idx.shape == (100,)
    counts = np.bincount(labels[idx], minlength=8)
    assert counts.tolist() == [20, 20, 20, 0, 20, 0, 0, 20]  # 5 non-empty clusters, 20 each
    per_item = np.bincount(idx, minlength=labels.size)
    members = {c: np.flatnonzero(labels == c) for c in (0, 1, 2, 4, 7)}
    # big enough clusters: drawn without replacement
    for c in (0, 2, 4):
        assert per_item[members[c]].max() == 1
    assert per_item[members[1]].tolist() == [4] * 5  # 5 items for 20 draws: each exactly 4 times
    assert per_item[members[7]].tolist() == [20]


def test_sampler_spreads_a_remainder_and_shortfall_evenly():
    labels = np.repeat([0, 1, 2], [3, 40, 40])
    idx = uniform_label_indices(labels, 50, random_state=1)  # 50 = 17 + 17 + 16
    counts = np.bincount(labels[idx])
    assert sorted(counts.tolist()) == [16, 17, 17]
    small = np.bincount(idx, minlength=labels.size)[:3]
    assert small.max() - small.min() <= 1 and small.min() >= 5  # 16 or 17 over 3 items
    with pytest.raises(InputError):
        uniform_label_indices([-1, 0], 4)


def test_sampler_class_is_reproducible_per_epoch():
    labels = np.repeat(np.arange(4), [10, 2, 30, 8])
    s = UniformLabelSampler(labels, seed=5)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    s.set_epoch(0)
    assert list(s) == first and first != second and len(s) == 50


# ----------------------------------------------------------------------------- clustering step


def test_empty_clusters_are_reseeded_by_splitting_a_populated_one():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (60, 4)), rng.normal(5, 0.1, (60, 4))]).astype(np.float32)
    # the third and fourth initial centroids are far from every point: empty after one assignment
    init = np.array([[0.0] * 4, [5.0] * 4, [100.0] * 4, [-100.0] * 4], dtype=np.float32)
    step = cluster_features(X, 4, pca=None, init=init, max_iter=20, random_state=0)
    assert step.n_reseeded >= 2
    assert step.sizes["n_empty"] == 0
    assert np.bincount(step.labels, minlength=4).min() > 0
    assert step.sizes["min"] + step.sizes["max"] <= 120


def test_pca_whitening_then_l2():
    rng = np.random.default_rng(0)
    d, n = 40, 4000
    X = (rng.standard_normal((n, d)) * np.geomspace(100, 1, d)) @ np.linalg.qr(
        rng.standard_normal((d, d)))[0]
    Z = pca_whiten_l2(X.astype(np.float32), 16, random_state=0)
    assert Z.shape == (n, 16) and Z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)
    # whitened Gaussian rows scaled to unit length are isotropic: covariance I / 16
    cov = np.cov(Z, rowvar=False)
    np.testing.assert_allclose(np.diag(cov), 1 / 16, rtol=0.15)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 0.01
    # fewer rows or columns than asked: as many components as there are
    assert pca_whiten_l2(X[:10].astype(np.float32), 256).shape == (10, 10)


# ----------------------------------------------------------------------------- networks, augmentation


@pytest.mark.parametrize("arch,size,dim", [("alexnet", 64, 4096), ("vgg16", 32, 4096),
                                           ("resnet18", 32, 512), ("resnet50", 32, 2048),
                                           ("small", 28, 256)])
def test_networks_give_their_feature_dimensions(arch, size, dim):
    net = build_network(arch, input_size=size).eval()
    with torch.no_grad():
        f = net.embed(torch.randn(2, 3, size, size))
        t = net.trunk(torch.randn(2, 3, size, size))
    assert f.shape == (2, dim) and t.shape == (2, net.trunk_dim)
    assert (net.sobel is not None) == NETWORKS[arch].sobel
    if net.sobel is not None:
        assert not any("sobel" in n for n, _ in net.named_parameters())  # fixed, never trained


def test_sobel_layer_sees_edges_not_colour():
    sobel = SobelFilter()
    flat = torch.full((1, 3, 8, 8), 0.7)
    assert sobel(flat)[..., 1:-1, 1:-1].abs().max() < 1e-6
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0  # a vertical edge: horizontal gradient only
    out = sobel(step)[0, :, 2:-2, 2:-2]
    assert out[0].abs().max() > 1 and out[1].abs().max() < 1e-6


def test_random_resized_crop_boxes_and_flip():
    g = torch.Generator().manual_seed(0)
    boxes = random_resized_crop_boxes(500, 20, 30, scale=(0.2, 0.6), generator=g)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 20).all() and (left + w <= 30).all()
    area = h * w / 600
    assert area.min() > 0.15 and area.max() < 0.65
    img = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    whole = torch.tensor([[0.0, 0.0, 6.0, 6.0]] * 2)
    np.testing.assert_allclose(resized_crops(img, whole, 6), img, atol=1e-4)
    flipped = resized_crops(img, whole, 6, flip=torch.tensor([True, False]))
    np.testing.assert_allclose(flipped[0], img[0].flip(-1), atol=1e-4)
    np.testing.assert_allclose(flipped[1], img[1], atol=1e-4)


def test_image_folders_are_decoded_to_squares_and_bad_files_left_out(tmp_path):
    from PIL import Image

    from deepclust.deepcluster import load_training_images

    rng = np.random.default_rng(0)
    for k, (w, h) in enumerate([(40, 20), (16, 30), (25, 25), (64, 48)]):
        (tmp_path / f"c{k % 2}").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            tmp_path / f"c{k % 2}" / f"{k}.png")
    (tmp_path / "c0" / "broken.png").write_bytes(b"not an image")
    images = load_training_images(tmp_path, side=16)
    assert tuple(images.pixels.shape) == (4, 3, 16, 16) and images.pixels.dtype == torch.uint8
    assert images.labels.tolist() == [0, 0, 1, 1] and len(images.failed) == 1
    assert images.failed[0]["id"] == "c0/broken.png"
    dc = DeepCluster("small", epochs=1, input_size=12, resize_size=16,
                     **{**V1, "n_clusters": 2, "pca_dim": 2}).fit(images)
    assert dc.labels_.shape == (4,) and dc.preprocessing_.output_size == (12, 12)


# ----------------------------------------------------------------------------- training


class _SpyHeads(DeepCluster):
    """Records every head the training loop creates, with its weights at creation."""

    def make_head(self, epoch):
        head = super().make_head(epoch)
        self.spy = getattr(self, "spy", []) + [(epoch, head, head.weight.detach().clone(),
                                                head.bias.detach().clone())]
        return head


def test_head_is_recreated_each_epoch_with_its_own_optimiser(digits):
    dc = _SpyHeads("small", epochs=2, **V1).fit(digits, limit=300)
    (e0, h0, w0, _), (e1, h1, w1, b1) = dc.spy
    assert (e0, e1) == (0, 1) and h0 is not h1
    assert h0.weight.shape == (10, dc.network_.feature_dim)
    assert not torch.equal(h0.weight.detach(), w0)  # the first head was trained ...
    assert abs(float(w1.std()) - 0.01) < 0.003 and not b1.any()  # ... the next one is fresh
    assert not torch.allclose(w1, h0.weight.detach())
    body = {id(p) for g in dc.optimizer_.param_groups for p in g["params"]}
    assert not body & {id(p) for p in h1.parameters()}  # the head is not in the network's SGD


def test_two_epoch_run_on_a_tiny_dataset(digits, tmp_path):
    out = tmp_path / "run"
    dc = DeepCluster("small", epochs=2, **V1).fit(digits, limit=400, out=out)
    assert len(dc.history_) == 2 and dc.labels_.shape == (400,)
    first, second = dc.history_
    assert first["nmi_prev"] is None and 0 <= second["nmi_prev"] <= 1
    assert json.loads((out / "checkpoint.json").read_text())["history"] == json.loads(
        json.dumps(dc.history_))
    # pseudo-labels of 8x8 digits from even a barely trained convnet follow the classes
    assert second["nmi_labels"] > 0.3
    assert np.isfinite(second["loss"]) and second["clusters"]["n_clusters"] == 10
    assert set(second["seconds"]) >= {"features", "pca", "kmeans", "train", "total"}
    assert [r["epoch"] for r in read_history(out)] == [1, 2]
    assert (out / "nmi.png").stat().st_size > 1000
    # the exported encoder computes the trained network's trunk features
    enc = get_encoder(f"checkpoint:{out / 'encoder'}")
    assert enc.dim == dc.network_.trunk_dim
    feats = dc.transform(digits, limit=5)
    from PIL import Image

    batch = torch.stack([enc.transform(Image.fromarray(im).convert("RGB")) for im in digits.images[:5]])
    np.testing.assert_allclose(enc(batch).numpy(), feats, rtol=1e-4, atol=1e-4)


def test_checkpoint_resume_equals_an_uninterrupted_run(digits, tmp_path):
    whole = DeepCluster("small", epochs=3, **V1).fit(digits, limit=300, out=tmp_path / "a")
    two = DeepCluster("small", epochs=2, **V1).fit(digits, limit=300, out=tmp_path / "b")
    state = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert state["epoch"] == 2 and state["tensors"] == "checkpoint-epoch0002.safetensors"
    assert sorted(p.name for p in (tmp_path / "b").glob("*.safetensors")) == [state["tensors"]]
    resumed = DeepCluster("small", epochs=3, **V1).fit(digits, limit=300, out=tmp_path / "b")
    assert len(resumed.history_) == 3 and resumed.epochs_done_ == 3
    np.testing.assert_array_equal(resumed.labels_, whole.labels_)
    for (k, a), b in zip(whole.network_.state_dict().items(), resumed.network_.state_dict().values(),
                         strict=True):
        torch.testing.assert_close(a, b, msg=k)
    assert json.loads(json.dumps(two.history_)) == resumed.history_[:2]
    # NMI(t, t-1) of epoch 3 compares the pseudo-labels of epochs 2 and 3
    assert whole.history_[2]["nmi_prev"] == pytest.approx(
        normalized_mutual_info_score(two.labels_, whole.labels_))
    assert resumed.history_[2]["nmi_prev"] == pytest.approx(whole.history_[2]["nmi_prev"])
    with pytest.raises(InputError, match="other settings"):
        DeepCluster("small", epochs=4, **{**V1, "n_clusters": 12}).fit(digits, limit=300,
                                                                         out=tmp_path / "b")
    with pytest.raises(InputError, match="other images"):
        DeepCluster("small", epochs=4, **V1).fit(digits, limit=299, out=tmp_path / "b")


def test_v2_prototypes_are_the_frozen_centroids_and_runs_resume(digits, tmp_path):
    opts = {**FAST, "n_heads": 2, "proj_dim": 16}
    v2 = DeepClusterV2("small", epochs=2, **opts).fit(digits, limit=300, out=tmp_path / "v2")
    assert v2.assignments_.shape == (2, 300) and v2.memory_.shape == (2, 300, 16)
    assert v2.prototypes_.shape == (2, 10, 16)
    np.testing.assert_allclose(v2.prototypes_.norm(dim=2), 1.0, atol=1e-5)
    assert not any("proto" in n for n, _ in v2._model.named_parameters())
    r = v2.history_[-1]
    assert np.isfinite(r["loss"]) and r["loss"] < np.log(10) and len(r["nmi_labels_heads"]) == 2
    more = DeepClusterV2("small", epochs=3, **opts).fit(digits, limit=300, out=tmp_path / "v2")
    assert [h["epoch"] for h in more.history_] == [1, 2, 3]
    assert more.history_[:2] == json.loads(json.dumps(v2.history_))


def test_cli_trains_writes_run_json_and_the_encoder_embeds(digits, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["deepcluster", "digits", "--arch", "small", "--k", "10", "--epochs", "1",
                 "--limit", "200", "--out", str(out), "--threads", "1", "--no-progress",
                 "--precision", "fp32", "--pca-dim", "16"])
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["epochs_done"] == 1 and run["n_images"] == 200 and run["parameters"]["n_clusters"] == 10
    assert main(["embed", "digits", "--encoder", f"checkpoint:{out / 'encoder'}", "--out",
                 str(tmp_path / "store"), "--no-progress", "--workers", "0"]) == 0
    from deepclust.store import open_store

    store = open_store(tmp_path / "store")
    # the small convnet's trunk at 8 px: 128 channels of 1 x 1
    assert store.X.shape == (1797, 128)
    assert main(["deepcluster", "digits", "--k", "10", "--epochs", "1", "--limit", "200",
                 "--out", str(out), "--lr", "0.1", "--no-progress", "--threads", "1",
                 "--pca-dim", "16"]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_torchrun_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "deepclust", "deepcluster", "digits", "--k", "10", "--epochs", "2", "--limit", "256",
         "--batch-size", "64", "--out", str(out), "--no-progress", "--precision", "fp32",
         "--pca-dim", "16"],
        env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("epoch   2/2") == 1, proc.stdout  # only rank 0 reports
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["epochs_done"] == 2
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["world_size"] == 2 and state["history"][1]["n_samples"] == 256
    assert state["history"][1]["nmi_labels"] > 0.3, state["history"]
