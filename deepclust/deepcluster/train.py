"""DeepCluster (Caron et al., ECCV 2018).

:class:`DeepCluster` alternates, every epoch,

1. the features of the whole dataset from the current network (deterministic centre crop,
   eval mode, the classifier's last ReLU removed);
2. PCA to 256 dimensions with whitening, then L2 normalisation;
3. k-means on them (faiss-backed :class:`~deepclust.cluster.kmeans.KMeans`, a fresh seed
   each epoch, empty clusters re-seeded by splitting a populated one);
4. one epoch of training the network to predict those pseudo-labels: images drawn
   uniformly over the clusters (:func:`~deepclust.deepcluster.sampling.uniform_label_indices`),
   random-resized crop and flip, a linear classifier head created afresh with its own SGD
   optimiser, the network's SGD optimiser kept across epochs.

:class:`~deepclust.deepcluster.v2.DeepClusterV2` replaces steps 1-3 by spherical k-means on
a memory bank of the previous epoch's 128-d projected features (several clusterings at once)
and step 4's head by the centroids themselves as frozen prototypes, with a temperature of 0.1.

Both build on :class:`~deepclust.deepcluster.base.DeepClusterBase` (data, network, feature
pass, checkpoints) and follow the scikit-learn estimator contract: ``__init__`` stores the settings, :meth:`fit`
does the work and sets the learned attributes (``network_``, ``labels_``, ``history_``).
With ``out=DIR`` every epoch is checkpointed there and an interrupted run resumes; the
trained network is exported as an encoder in ``DIR/encoder`` (``checkpoint:DIR/encoder``).
Under ``torchrun`` every process trains on its share of each batch (gradients all-reduced by
``DistributedDataParallel``) and computes the features of its share of the data; rank 0
gathers them, clusters, and broadcasts the pseudo-labels.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepclust import runtime
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
from deepclust.deepcluster.models import DeepClusterNet
from deepclust.deepcluster.sampling import uniform_label_indices

__all__ = ["DeepCluster"]


class _WithHead(nn.Module):
    """The network followed by DeepCluster's re-created linear classifier."""

    def __init__(self, network: DeepClusterNet, head: nn.Linear):
        super().__init__()
        self.network, self.head = network, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.network.activate(self.network.embed(x)))


class DeepCluster(DeepClusterBase):
    """DeepCluster: learn a convnet by predicting the k-means clusters of its own features.

    Parameters
    ----------
    arch : str, default="small"
        ``alexnet``, ``vgg16``, ``resnet18``, ``resnet50`` or ``small`` (28-32 px images);
        see :data:`deepclust.deepcluster.models.NETWORKS`.
    n_clusters : int, default=100
        k of the k-means (the paper: 10 000 for ImageNet's 1 000 classes; over-clustering
        helps). Never taken from the labels.
    epochs : int, default=20
        Training epochs (each preceded by a clustering).
    batch_size : int, default=256
        Global batch, shared out over the processes under ``torchrun``.
    lr, momentum, weight_decay : float, default=0.05, 0.9, 1e-5
        SGD of the network (constant learning rate, as in the paper).
    head_momentum : float, default=0.0
        Momentum of the re-created head's own SGD (the published code uses none); its
        learning rate and weight decay are the network's.
    pca_dim : int, default=256
        PCA-whitening dimensions before L2 and k-means.
    kmeans_iter : int, default=20
        Lloyd iterations per clustering (faiss's default in the paper's code).
    kmeans_init : {"random", "k-means++"}, default="random"
        k-means seeding (the paper's faiss k-means picks random rows).
    samples_per_epoch : int, optional
        Images drawn by the uniform sampler per epoch; default: the dataset size.
    sobel : bool, optional
        Fixed Sobel input layer; default: the architecture's (on for AlexNet/VGG-16).
    input_size : int, optional
        Crop side the network sees; default 224, or the images' side for ``small``.
    resize_size : int, optional
        Side images are brought to before cropping; default ``input_size * 256 / 224`` for
        the 224-px networks, ``input_size`` for ``small``.
    arch_options : dict, optional
        More arguments of the network factory (``{"widths": [64, 128, 256]}``).
    crop_scale : (float, float), optional
        Area range of the random-resized crop; default (0.08, 1), or (0.2, 1) for ``small``.
    crop_ratio : (float, float), default=(3/4, 4/3)
    flip : bool, default=True
        Random horizontal flips.
    feature_batch_size : int, default=256
        Batch of the feature pass.
    precision : {"auto", "bf16", "fp32"}, default="auto"
        bfloat16 autocast on GPUs and on CPUs with native bfloat16 (see
        :func:`deepclust.runtime.resolve_precision`).
    channels_last : bool, optional
        NHWC memory layout; default on.
    device : str, optional
        Default: the local GPU under ``torchrun``/CUDA, else the CPU.
    threads : int, optional
        torch CPU threads during :meth:`fit` (1 is fastest on a busy machine).
    seed : int, default=31
        Seeds the network, k-means, the sampler and the augmentation (each epoch has its
        own streams, so a resumed run draws what an uninterrupted one would).
    keep_checkpoints : bool, default=False
        Keep every epoch's tensor file, not only the last.
    export_layer : {"trunk", "embed"}, default="trunk"
        Features of the exported encoder and of :meth:`transform`: the convolutional trunk
        (flattened: 9216-d AlexNet, 25088-d VGG-16, 2048-d small; pooled for ResNets), which
        the paper evaluates, or the clustered features (``embed``).
    progress, verbose : bool, default=True
        Progress bars; one line per epoch.

    Attributes
    ----------
    network_ : DeepClusterNet
        The trained network (features without the last ReLU).
    labels_ : ndarray of shape (n_images,)
        The pseudo-labels of the last epoch.
    history_ : list of dict
        Per epoch: ``loss``, ``nmi_prev`` (NMI with the previous epoch's pseudo-labels),
        ``nmi_labels`` (NMI with the true labels, None without them), ``clusters`` (size
        statistics), ``n_reseeded``, ``kmeans_objective``, ``seconds``.
    preprocessing_ : ImageTransform
        The feature pass's preprocessing, saved with the exported encoder.
    encoder_path_ : Path or None
        ``out/encoder`` when ``out`` was given.

    Examples
    --------
    >>> dc = DeepCluster("small", n_clusters=100, epochs=10)            # doctest: +SKIP
    >>> dc.fit("fashion-mnist:train", out="runs/dc")                    # doctest: +SKIP
    >>> dc.history_[-1]["nmi_labels"]                                   # doctest: +SKIP
    """

    _variant = "v1"

    def __init__(self, arch: str = "small", n_clusters: int = 100, epochs: int = 20, *,
                 batch_size: int = 256, lr: float = 0.05, momentum: float = 0.9,
                 weight_decay: float = 1e-5, head_momentum: float = 0.0, pca_dim: int = 256,
                 kmeans_iter: int = 20, kmeans_init: str = "random",
                 samples_per_epoch: int | None = None, sobel: bool | None = None,
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
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.head_momentum = head_momentum
        self.pca_dim = pca_dim
        self.kmeans_iter = kmeans_iter
        self.kmeans_init = kmeans_init
        self.samples_per_epoch = samples_per_epoch
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

    def _start(self, images: TrainingImages, tensors: dict | None) -> None:
        self._named = dict(self.network_.named_parameters())
        self.optimizer_ = torch.optim.SGD([p for p in self._named.values() if p.requires_grad],
                                          lr=self.lr, momentum=self.momentum,
                                          weight_decay=self.weight_decay)
        self.labels_ = None
        if tensors is not None:
            load_optimizer_tensors(self.optimizer_, self._named, tensors)
            if "assignments" in tensors:
                self.labels_ = tensors["assignments"].numpy().astype(np.int64)

    def make_head(self, epoch: int) -> nn.Linear:
        """The classifier head of ``epoch``: a new ``Linear(feature_dim, n_clusters)`` with
        ``N(0, 0.01)`` weights and zero bias, drawn from the epoch's own seed."""
        head = nn.Linear(self.network_.feature_dim, self.n_clusters)
        with torch.no_grad():
            head.weight.normal_(0.0, 0.01, generator=generator_for(self.seed, epoch, Stream.HEAD))
            head.bias.zero_()
        return head.to(self.device_)

    def _epoch(self, images: TrainingImages, epoch: int) -> tuple[dict, dict]:
        di = runtime.info()
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        feats = self._features(images, desc=f"epoch {epoch + 1}/{self.epochs} features")
        seconds["features"] = time.perf_counter() - t0
        step = None
        if di.is_main:
            step = cluster_features(feats, self.n_clusters, pca=self.pca_dim,
                                    init=self.kmeans_init, max_iter=self.kmeans_iter,
                                    random_state=seed_for(self.seed, epoch, Stream.K_MEANS))
            seconds.update(step.seconds)
            del feats
        labels = runtime.broadcast_array(step.labels if step is not None else None)
        info = runtime.broadcast_object(None if step is None else
                                    {"sizes": step.sizes, "objective": step.objective,
                                     "n_reseeded": step.n_reseeded})
        nmi_prev, nmi_labels = self._nmi_scores(labels, self.labels_, images.labels)

        # pseudo-labels -> uniform sampling -> one epoch with a new head
        t1 = time.perf_counter()
        n_samples = self.samples_per_epoch or len(images)
        order = uniform_label_indices(labels, n_samples, seed_for(self.seed, epoch, Stream.SAMPLER))
        head = self.make_head(epoch)
        head_opt = torch.optim.SGD(head.parameters(), lr=self.lr, momentum=self.head_momentum,
                                   weight_decay=self.weight_decay)
        model: nn.Module = _WithHead(self.network_, head)
        if di.distributed:
            model = nn.parallel.DistributedDataParallel(model)
        model.train()
        targets = torch.from_numpy(labels)
        gen = generator_for(self.seed, epoch, Stream.AUGMENT, di.rank)
        total, count = 0.0, 0
        batches = global_batches(order, self.batch_size, di.world_size)
        bar = self._bar(sum(len(b) for b in batches), f"epoch {epoch + 1}/{self.epochs} train")
        for batch in batches:
            idx = batch[runtime.local_slice(len(batch))]
            x = self._input_batch(images, idx, gen)
            y = targets[torch.from_numpy(idx)].to(self.device_)
            with autocast(self.device_, self.precision_):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            self.optimizer_.zero_grad(set_to_none=True)
            head_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer_.step()
            head_opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix(loss=f"{total / max(count, 1):.3f}")
        if bar is not None:
            bar.close()
        seconds["train"] = time.perf_counter() - t1
        self.labels_ = labels
        rec = {"epoch": epoch + 1, "loss": runtime.mean_over_ranks(total, count), "nmi_prev": nmi_prev,
               "nmi_labels": nmi_labels, "clusters": info["sizes"],
               "n_reseeded": info["n_reseeded"], "kmeans_objective": info["objective"],
               "n_samples": int(sum(len(b) for b in batches)), "lr": self.lr, "seconds": seconds}
        extra = {"assignments": torch.from_numpy(labels),
                 **optimizer_tensors(self.optimizer_, self._named)}
        return rec, extra
