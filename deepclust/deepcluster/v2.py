"""DeepCluster-v2 (Caron et al., NeurIPS 2020, appendix of the SwAV paper).

Each epoch, the 128-d L2-normalised projections that the previous epoch computed for every
image's crops (the memory bank; a first pass fills it) are clustered by spherical k-means,
``n_heads`` times from different seeds. The centroids become the frozen prototypes of
``n_heads`` heads, and the network with its projection head learns to give each crop of an
image a high cosine (over a temperature of 0.1) with its image's centroid: the cross-entropy
over the prototypes, averaged over the heads and the crops. Compared with DeepCluster there
is no PCA, no uniform sampler and no re-created classifier: the classifier is the centroids.
"""

from __future__ import annotations

import math
import time
from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepclust import runtime
from deepclust.deepcluster.augment import Augmentation
from deepclust.deepcluster.base import (
    DeepClusterBase,
    Stream,
    generator_for,
    global_batches,
    seed_for,
)
from deepclust.deepcluster.checkpoint import load_optimizer_tensors, optimizer_tensors
from deepclust.deepcluster.clustering import cluster_features
from deepclust.deepcluster.data import TrainingImages
from deepclust.deepcluster.features import autocast
from deepclust.deepcluster.models import NETWORKS, DeepClusterNet
from deepclust.errors import InputError
from deepclust.metrics import nmi

__all__ = ["DeepClusterV2", "ProjectionHead"]


class ProjectionHead(nn.Module):
    """DeepCluster-v2's projection: ``Linear-BN-ReLU-Linear`` to ``out_dim``, then L2.

    Parameters
    ----------
    in_dim, hidden_dim, out_dim : int
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim),
                                 nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=1)


class _Projected(nn.Module):
    def __init__(self, network: DeepClusterNet, projection: ProjectionHead):
        super().__init__()
        self.network, self.projection = network, projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.network.activate(self.network.embed(x)))


class DeepClusterV2(DeepClusterBase):
    """DeepCluster-v2 (SwAV paper, appendix): spherical k-means on a memory bank, frozen
    centroids as prototypes.

    Each epoch, the 128-d L2-normalised projections of every image's crops from the previous
    epoch (the memory bank; a first pass fills it) are clustered by spherical k-means,
    ``n_heads`` times from different seeds (clustering ``h`` uses crop ``h mod n_crops``).
    The centroids become the frozen prototypes of ``n_heads`` heads; the network and the
    projection head are trained with the cross-entropy between ``z @ prototypes.T /
    temperature`` and each image's cluster, for every crop, averaged over the heads.

    Parameters
    ----------
    arch, n_clusters, epochs, batch_size : as :class:`DeepCluster`
        ``n_clusters`` is the number of prototypes of each head.
    n_heads : int, default=3
        Clusterings at once (SwAV's code: 3 x 3000 prototypes).
    proj_dim : int, default=128
        Projection (and prototype) dimension.
    proj_hidden : int, optional
        Hidden width of the projection; default: the network's feature dimension.
    temperature : float, default=0.1
    n_crops : int, default=2
        Random-resized crops per image at ``input_size`` (the first two fill the memory bank).
    small_crops : int, default=0
        Extra low-resolution crops (SwAV's multi-crop), only for pooled networks (ResNets).
    small_crop_size : int, default=96
    small_crop_scale : (float, float), default=(0.05, 0.14)
    lr : float, default=0.05
        Peak learning rate of SGD, reached after ``warmup_epochs`` and decayed along a
        cosine to ``final_lr`` (SwAV uses LARS with 4.8 at batch 4096; not implemented).
    final_lr : float, default=0.0
    warmup_epochs : int, default=0
    momentum, weight_decay : float, default=0.9, 1e-6
    kmeans_iter : int, default=10
    crop_scale : (float, float), optional
        Default (0.14, 1), SwAV's large crops.
    (other parameters as :class:`DeepCluster`)

    Attributes
    ----------
    network_, history_, preprocessing_, encoder_path_ : as :class:`DeepCluster`
    projection_ : ProjectionHead
    prototypes_ : Tensor of shape (n_heads, n_clusters, proj_dim)
        The last centroids.
    assignments_ : ndarray of shape (n_heads, n_images)
        The last pseudo-labels of every head; ``labels_`` is head 0's.
    """

    _variant = "v2"

    def __init__(self, arch: str = "small", n_clusters: int = 100, epochs: int = 20, *,
                 n_heads: int = 3, proj_dim: int = 128, proj_hidden: int | None = None,
                 temperature: float = 0.1, n_crops: int = 2, small_crops: int = 0,
                 small_crop_size: int = 96, small_crop_scale: tuple = (0.05, 0.14),
                 batch_size: int = 256, lr: float = 0.05, final_lr: float = 0.0,
                 warmup_epochs: int = 0, momentum: float = 0.9, weight_decay: float = 1e-6,
                 kmeans_iter: int = 10, sobel: bool | None = None,
                 input_size: int | None = None, resize_size: int | None = None,
                 arch_options: dict | None = None, crop_scale: tuple | None = None,
                 crop_ratio: tuple = (3 / 4, 4 / 3), flip: bool = True,
                 feature_batch_size: int = 256, precision: str = "auto",
                 channels_last: bool | None = None, device: str | None = None,
                 threads: int | None = None, seed: int = 31, keep_checkpoints: bool = False,
                 export_layer: str = "trunk", progress: bool = True, verbose: bool = True):
        self.arch = arch
        self.n_clusters = n_clusters
        self.epochs = epochs
        self.n_heads = n_heads
        self.proj_dim = proj_dim
        self.proj_hidden = proj_hidden
        self.temperature = temperature
        self.n_crops = n_crops
        self.small_crops = small_crops
        self.small_crop_size = small_crop_size
        self.small_crop_scale = small_crop_scale
        self.batch_size = batch_size
        self.lr = lr
        self.final_lr = final_lr
        self.warmup_epochs = warmup_epochs
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.kmeans_iter = kmeans_iter
        self.sobel = sobel
        self.input_size = input_size
        self.resize_size = resize_size
        self.arch_options = arch_options
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        self.flip = flip
        self.feature_batch_size = feature_batch_size
        self.precision = precision
        self.channels_last = channels_last
        self.device = device
        self.threads = threads
        self.seed = seed
        self.keep_checkpoints = keep_checkpoints
        self.export_layer = export_layer
        self.progress = progress
        self.verbose = verbose

    def _default_crop_scale(self) -> tuple[float, float]:
        return (0.14, 1.0)

    def _check_params(self) -> None:
        super()._check_params()
        for name in ("n_heads", "proj_dim", "n_crops", "kmeans_iter"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        if not self.temperature > 0:
            raise InputError(f"temperature must be positive, got {self.temperature!r}")
        if self.small_crops and NETWORKS[self.arch].input_size is None:
            raise InputError("small crops need a network with global pooling (resnet18/50)")
        if self.small_crops and self.arch in ("alexnet", "vgg16"):
            raise InputError(f"{self.arch} has fully connected layers sized for one input size; "
                             "small crops need resnet18 or resnet50")

    @property
    def _n_assign(self) -> int:
        return min(2, self.n_crops)

    def _start(self, images: TrainingImages, tensors: dict | None) -> None:
        d = self.network_.feature_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(self.seed, 0, 98))
            self.projection_ = ProjectionHead(d, int(self.proj_hidden or d), self.proj_dim)
        self.projection_.to(self.device_)
        self._model = _Projected(self.network_, self.projection_)
        self._named = dict(self._model.named_parameters())
        self.optimizer_ = torch.optim.SGD([p for p in self._named.values() if p.requires_grad],
                                          lr=self.lr, momentum=self.momentum,
                                          weight_decay=self.weight_decay)
        self._small_augment = None
        if self.small_crops:
            self._small_augment = Augmentation(self.small_crop_size, self.mean_, self.std_,
                                               scale=tuple(self.small_crop_scale),
                                               ratio=tuple(self.crop_ratio), flip=self.flip)
        self.memory_ = None  # held by rank 0 only
        self._memory_ready = False
        self.assignments_ = None
        self.labels_ = None
        if tensors is not None:
            self.projection_.load_state_dict(
                {k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
            load_optimizer_tensors(self.optimizer_, self._named, tensors)
            if "memory" in tensors:
                self._memory_ready = True
                if runtime.is_main():
                    self.memory_ = tensors["memory"].clone()
            if "assignments" in tensors:
                self.assignments_ = tensors["assignments"].numpy().astype(np.int64)
                self.labels_ = self.assignments_[0]

    def _lr_at(self, step: int, steps_per_epoch: int) -> float:
        warm = self.warmup_epochs * steps_per_epoch
        total = max(self.epochs * steps_per_epoch, 1)
        if step < warm:
            return self.lr * (step + 1) / warm
        t = (step - warm) / max(total - warm, 1)
        return self.final_lr + 0.5 * (self.lr - self.final_lr) * (1 + math.cos(math.pi * min(t, 1.0)))

    def _crops(self, images: TrainingImages, idx: np.ndarray,
               gen: torch.Generator) -> list[torch.Tensor]:
        crops = [self._input_batch(images, idx, gen) for _ in range(self.n_crops)]
        for _ in range(self.small_crops):
            x = self._small_augment(images.pixels[torch.from_numpy(idx)].to(self.device_), gen)
            crops.append(x.contiguous(memory_format=torch.channels_last) if self.channels_last_ else x)
        return crops

    def _fill_memory(self, images: TrainingImages, epoch: int) -> torch.Tensor | None:
        """The first memory bank: every image's assignment crops, no gradient (as SwAV)."""
        di = runtime.info()
        part = np.arange(len(images))[runtime.local_slice(len(images))]
        gen = generator_for(self.seed, epoch, Stream.AUGMENT, di.rank, 1)
        starts = list(range(0, len(part), self.feature_batch_size))
        if len(starts) > 1 and len(part) - starts[-1] < 2:  # batch norm needs two images
            starts.pop()
        rows = []
        bar = self._bar(len(part), "filling the memory bank")
        self._model.train()
        with torch.no_grad():
            for s, e in zip(starts, starts[1:] + [len(part)], strict=True):
                idx = part[s:e]
                with autocast(self.device_, self.precision_):
                    z = [self._model(self._input_batch(images, idx, gen)).float()
                         for _ in range(self._n_assign)]
                rows.append(F.normalize(torch.stack(z, 1), dim=2).cpu())
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        full = runtime.gather_rows(torch.cat(rows))
        return None if full is None else full.transpose(0, 1).contiguous()

    def _epoch(self, images: TrainingImages, epoch: int) -> tuple[dict, dict]:
        di = runtime.info()
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        if not self._memory_ready:
            self.memory_ = self._fill_memory(images, epoch)
            self._memory_ready = True
        seconds["memory"] = time.perf_counter() - t0

        # spherical k-means on the memory bank, one clustering per head
        t1 = time.perf_counter()
        steps = []
        if di.is_main:
            for h in range(self.n_heads):
                steps.append(cluster_features(
                    self.memory_[h % self._n_assign].numpy(), self.n_clusters, pca=None,
                    spherical=True, init="random", max_iter=self.kmeans_iter,
                    random_state=seed_for(self.seed, epoch, Stream.K_MEANS, h)))
        assignments = runtime.broadcast_array(np.stack([s.labels for s in steps]) if steps else None)
        prototypes = runtime.broadcast_array(np.stack([s.centroids for s in steps]) if steps else None)
        info = runtime.broadcast_object(None if not steps else {
            "sizes": steps[0].sizes, "objective": [s.objective for s in steps],
            "n_reseeded": sum(s.n_reseeded for s in steps)})
        seconds["kmeans"] = time.perf_counter() - t1
        nmi_prev, nmi_labels = self._nmi_scores(assignments[0], self.labels_, images.labels)
        nmi_heads = ([float(nmi(images.labels, a)) for a in assignments]
                     if nmi_labels is not None else None)

        # train against the frozen prototypes
        t2 = time.perf_counter()
        protos = torch.from_numpy(prototypes).to(self.device_)
        targets = torch.from_numpy(assignments)
        model: nn.Module = self._model
        if di.distributed:
            model = nn.parallel.DistributedDataParallel(self._model)
        model.train()
        order = np.random.default_rng(seed_for(self.seed, epoch, Stream.ORDER)).permutation(len(images))
        batches = global_batches(order, self.batch_size, di.world_size)
        gen = generator_for(self.seed, epoch, Stream.AUGMENT, di.rank)
        seen_idx, seen_z = [], []
        total, count = 0.0, 0
        bar = self._bar(sum(len(b) for b in batches), f"epoch {epoch + 1}/{self.epochs} train")
        lrs = []
        for it, batch in enumerate(batches):
            lr = self._lr_at(epoch * len(batches) + it, len(batches))
            for group in self.optimizer_.param_groups:
                group["lr"] = lr
            lrs.append(lr)
            idx = batch[runtime.local_slice(len(batch))]
            crops = self._crops(images, idx, gen)
            with autocast(self.device_, self.precision_):
                z = torch.cat([model(c) for c in self._crop_groups(crops)]).float()
            z = F.normalize(z, dim=1)
            y = targets[:, torch.from_numpy(idx)].to(self.device_)
            n_views = len(crops)
            loss = sum(F.cross_entropy(z @ protos[h].T / self.temperature, y[h].repeat(n_views))
                       for h in range(self.n_heads)) / self.n_heads
            self.optimizer_.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer_.step()
            b = len(idx)
            seen_idx.append(torch.from_numpy(idx))
            seen_z.append(torch.stack([z[i * b : (i + 1) * b].detach() for i in range(self._n_assign)], 1).cpu())
            total += float(loss.detach()) * b
            count += b
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix(loss=f"{total / max(count, 1):.3f}")
        if bar is not None:
            bar.close()
        seconds["train"] = time.perf_counter() - t2

        # this epoch's projections become the memory bank of the next clustering
        d = self.proj_dim
        local = torch.cat([torch.cat(seen_idx).unsqueeze(1).double(),
                           torch.cat(seen_z).reshape(-1, self._n_assign * d).double()], 1)
        gathered = runtime.gather_rows(local)
        if gathered is not None:
            rows = gathered[:, 0].long()
            self.memory_[:, rows] = gathered[:, 1:].reshape(-1, self._n_assign, d).transpose(0, 1).float()
        self.assignments_ = assignments
        self.labels_ = assignments[0]
        self.prototypes_ = protos.cpu()
        rec = {"epoch": epoch + 1, "loss": runtime.mean_over_ranks(total, count), "nmi_prev": nmi_prev,
               "nmi_labels": nmi_labels, "nmi_labels_heads": nmi_heads, "clusters": info["sizes"],
               "n_reseeded": info["n_reseeded"], "kmeans_objective": info["objective"],
               "n_samples": int(sum(len(b) for b in batches)),
               "lr": [lrs[0], lrs[-1]] if lrs else None, "seconds": seconds}
        extra = {"assignments": torch.from_numpy(assignments),
                 **{f"head.{k}": v for k, v in self.projection_.state_dict().items()},
                 **optimizer_tensors(self.optimizer_, self._named)}
        if self.memory_ is not None:
            extra["memory"] = self.memory_
        return rec, extra

    def _crop_groups(self, crops: list[torch.Tensor]) -> list[torch.Tensor]:
        """Crops of one resolution concatenated, so each size is one forward pass."""
        groups = [torch.cat(crops[: self.n_crops])]
        if len(crops) > self.n_crops:
            groups.append(torch.cat(crops[self.n_crops :]))
        return groups
