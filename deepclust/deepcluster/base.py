"""What DeepCluster and DeepCluster-v2 share: data, network, feature pass, checkpoints, logs.

:class:`DeepClusterBase` is the estimator both variants build on
(:class:`~deepclust.deepcluster.train.DeepCluster`,
:class:`~deepclust.deepcluster.v2.DeepClusterV2`): it loads and decodes the images, sets up
the device, precision, normalisation, augmentation and network, computes the features of the
whole dataset (each rank its share, gathered on rank 0), checkpoints every epoch, resumes,
and exports the trained network as an encoder. A variant says how it starts (``_start``) and
what one epoch does (``_epoch``).

Every random draw has its own stream (:class:`Stream`), seeded from the run seed, the epoch
and the stream (:func:`seed_for`), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import time
from enum import IntEnum
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from deepclust import runtime
from deepclust.data.sources import ArraySource, open_source
from deepclust.deepcluster.augment import Augmentation
from deepclust.deepcluster.checkpoint import (
    export_encoder,
    load_training_state,
    remove_training_state,
    save_training_state,
)
from deepclust.deepcluster.data import TrainingImages, load_training_images, pixel_statistics
from deepclust.deepcluster.features import network_features
from deepclust.deepcluster.models import NETWORKS, DeepClusterNet, build_network
from deepclust.encoders.transform import ImageTransform
from deepclust.errors import InputError
from deepclust.metrics import nmi
from deepclust.runinfo import write_bytes

__all__ = ["DeepClusterBase", "Stream", "features_of", "generator_for", "global_batches",
           "seed_for"]

LOG_FILE = "log.jsonl"
ENCODER_DIR = "encoder"
PLOT_FILE = "nmi.png"


def seed_for(*keys: int) -> int:
    """A 63-bit seed derived from integers (run seed, epoch, stream, rank)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> 1)


def generator_for(*keys: int) -> torch.Generator:
    """A torch generator seeded with :func:`seed_for` of ``keys``."""
    return torch.Generator().manual_seed(seed_for(*keys))


class Stream(IntEnum):
    """The random draws of an epoch, each from its own seed so it is reproducible alone."""

    K_MEANS = 0
    SAMPLER = 1
    HEAD = 2
    AUGMENT = 3
    ORDER = 4


def global_batches(order: np.ndarray, batch_size: int, world_size: int) -> list[np.ndarray]:
    """Global batches of ``order``; a last short batch is kept when every rank gets two
    items of it (batch norm needs two)."""
    out = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if out and len(out[-1]) < batch_size and len(out[-1]) < 2 * world_size:
        out.pop()
    return out


class DeepClusterBase(BaseEstimator):
    """The machinery both variants share: data, network, feature pass, checkpoints, logs."""

    _variant = ""
    #: settings that may change when a run is resumed
    _RESUMABLE = frozenset({"epochs", "progress", "verbose", "threads", "device",
                            "keep_checkpoints", "feature_batch_size", "precision",
                            "channels_last", "export_layer"})

    # ------------------------------------------------------------------ checks

    def _check_params(self) -> None:
        if self.arch not in NETWORKS:
            raise InputError(f"unknown architecture {self.arch!r}; choose one of {', '.join(NETWORKS)}")
        for name in ("n_clusters", "epochs", "batch_size", "feature_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        if self.n_clusters < 2:
            raise InputError(f"n_clusters must be at least 2, got {self.n_clusters}")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Real) or not v >= 0:
                raise InputError(f"{name} must be a non-negative number, got {v!r}")
        if self.export_layer not in ("trunk", "embed"):
            raise InputError(f"export_layer must be 'trunk' or 'embed', got {self.export_layer!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise InputError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        lo, hi = self.crop_scale or NETWORKS[self.arch].crop_scale
        if not 0 < lo <= hi <= 1:
            raise InputError(f"crop_scale must satisfy 0 < low <= high <= 1, got {(lo, hi)}")

    # ------------------------------------------------------------------ set-up

    def _sizes(self, native: int | None) -> tuple[int, int]:
        """(input_size, stored side) for images whose own side is ``native``."""
        spec = NETWORKS[self.arch]
        input_size = int(self.input_size or spec.input_size or native or 32)
        if self.resize_size:
            side = int(self.resize_size)
        elif spec.input_size and spec.resize_size:
            side = int(round(input_size * spec.resize_size / spec.input_size))
        else:
            side = input_size
        if side < input_size:
            raise InputError(f"resize_size {side} is smaller than input_size {input_size}")
        return input_size, side

    def make_network(self, input_size: int | None = None) -> DeepClusterNet:
        """The network exactly as :meth:`fit` initialises it (same seed): the random-init
        baseline of an evaluation.

        Parameters
        ----------
        input_size : int, optional
            Default: the fitted ``input_size_``, else the architecture's.
        """
        size = input_size or getattr(self, "input_size_", None) or self._sizes(None)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(self.seed, 0, 99))
            return build_network(self.arch, sobel=self.sobel, input_size=size,
                                 **dict(self.arch_options or {}))

    def _load(self, X, y, out: Path | None, limit: int | None, num_workers: int,
              source_options: dict | None) -> TrainingImages:
        di = runtime.info()
        if isinstance(X, TrainingImages):
            images = X
            if limit is not None:
                raise InputError("limit applies to a source, not to already decoded images")
            self.input_size_, self.resize_size_ = self._sizes(images.side)
            if images.side != self.resize_size_:
                raise InputError(f"decoded images have side {images.side}, expected {self.resize_size_}")
        else:
            src = X if not isinstance(X, np.ndarray) else ArraySource(X)
            src = open_source(src, **dict(source_options or {}))
            native = None
            if isinstance(src, ArraySource):
                native = int(min(np.asarray(src.images).shape[1:3]))
            self.input_size_, self.resize_size_ = self._sizes(native)
            cache = out if out is not None else None
            if di.distributed and cache is not None and not di.is_main:
                runtime.barrier()  # rank 0 decodes into the shared cache first
            images = load_training_images(src, side=self.resize_size_, limit=limit,
                                          cache_dir=cache, num_workers=num_workers,
                                          progress=self.progress and di.is_main)
            if di.distributed and cache is not None and di.is_main:
                runtime.barrier()
        if y is not None:
            y = np.asarray(y).astype(np.int64).reshape(-1)
            if y.shape[0] != len(images):
                raise InputError(f"{y.shape[0]} labels for {len(images)} images")
            images.labels = y
        if len(images) < self.n_clusters:
            raise InputError(f"{len(images)} images cannot make {self.n_clusters} clusters")
        return images

    def _setup(self, images: TrainingImages) -> None:
        """Device, precision, normalisation, augmentation, network."""
        self.device_ = runtime.resolve_device(self.device or None)
        self.precision_ = runtime.resolve_precision("deepcluster", self.precision, self.device_)
        self.channels_last_ = True if self.channels_last is None else bool(self.channels_last)
        mean, std = pixel_statistics(images.pixels, seed=self.seed)
        self.mean_, self.std_ = mean, std
        self._mean_t = torch.tensor(mean, dtype=torch.float32)
        self._std_t = torch.tensor(std, dtype=torch.float32)
        self.preprocessing_ = ImageTransform(crop_size=self.input_size_, resize_size=self.resize_size_,
                                             resize="shortest", interpolation="bilinear",
                                             mean=mean, std=std)
        scale = tuple(self.crop_scale or self._default_crop_scale())
        self._augment = Augmentation(self.input_size_, mean, std, scale=scale,
                                     ratio=tuple(self.crop_ratio), flip=self.flip)
        net = self.make_network(self.input_size_).to(self.device_)
        if self.channels_last_:
            net = net.to(memory_format=torch.channels_last)
        self.network_ = net

    def _default_crop_scale(self) -> tuple[float, float]:
        return NETWORKS[self.arch].crop_scale

    # ------------------------------------------------------------------ shared steps

    def _features(self, images: TrainingImages, *, desc: str) -> np.ndarray | None:
        """Features of all images, gathered on rank 0 (None on the other ranks)."""
        part = runtime.local_slice(len(images))
        bar = self._bar(part.stop - part.start, desc)
        try:
            local = network_features(self.network_, images.pixels[part], input_size=self.input_size_,
                                     mean=self._mean_t, std=self._std_t,
                                     batch_size=self.feature_batch_size,
                                     precision=self.precision_, channels_last=self.channels_last_,
                                     layer="embed", progress=bar)
        finally:
            if bar is not None:
                bar.close()
        full = runtime.gather_rows(local)
        return None if full is None else full.numpy()

    def _input_batch(self, images: TrainingImages, idx: np.ndarray,
                     gen: torch.Generator) -> torch.Tensor:
        x = self._augment(images.pixels[torch.from_numpy(idx)].to(self.device_), gen)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last_ else x

    def _bar(self, total: int, desc: str):
        if not (self.progress and runtime.is_main()):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True)

    def _nmi_scores(self, labels: np.ndarray, previous: np.ndarray | None,
                    truth: np.ndarray) -> tuple[float | None, float | None]:
        prev = None if previous is None else float(nmi(previous, labels))
        vs_labels = float(nmi(truth, labels)) if (truth >= 0).any() else None
        return prev, vs_labels

    # ------------------------------------------------------------------ checkpoints

    def _params_for_resume(self) -> dict:
        return {k: v for k, v in self.get_params().items() if k not in self._RESUMABLE}

    def _resume(self, out: Path, images: TrainingImages) -> dict[str, torch.Tensor] | None:
        loaded = load_training_state(out)
        if loaded is None:
            return None
        tensors, state = loaded
        if state.get("variant") != self._variant:
            raise InputError(f"{out} holds a {state.get('variant')} run, not {self._variant}; "
                             "use another --out or --overwrite")
        mine = _json_roundtrip(self._params_for_resume())
        theirs = {k: v for k, v in state.get("params", {}).items() if k not in self._RESUMABLE}
        changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if changed:
            details = ", ".join(f"{k}: {theirs.get(k)!r} -> {mine.get(k)!r}" for k in changed)
            raise InputError(f"{out} was trained with other settings ({details}); resume with "
                             "the same settings, use another --out, or --overwrite")
        if state.get("fingerprint") != images.fingerprint or state.get("n_images") != len(images):
            raise InputError(f"{out} was trained on other images; use another --out or --overwrite")
        self.network_.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self.history_ = list(state.get("history", []))
        self.epochs_done_ = int(state["epoch"])
        return tensors

    def _state(self, images: TrainingImages) -> dict[str, Any]:
        return {"variant": self._variant, "epoch": self.epochs_done_,
                "params": _json_roundtrip(self.get_params()), "fingerprint": images.fingerprint,
                "n_images": len(images), "world_size": runtime.world_size(),
                "input_size": self.input_size_, "resize_size": self.resize_size_,
                "mean": list(self.mean_), "std": list(self.std_), "history": self.history_}

    def _write_epoch(self, out: Path | None, images: TrainingImages,
                     tensors: dict[str, torch.Tensor]) -> None:
        if out is None or not runtime.is_main():
            return
        net = {f"net.{k}": v for k, v in self.network_.state_dict().items()}
        save_training_state(out, {**net, **tensors}, self._state(images),
                            keep_all=self.keep_checkpoints)
        from deepclust.runinfo import to_json

        text = "".join(to_json(r) + "\n" for r in self.history_)
        write_bytes(out / LOG_FILE, text.encode())

    def _finish(self, out: Path | None, images: TrainingImages) -> None:
        self.network_.eval()
        self.encoder_path_ = None
        if out is None:
            return
        if runtime.is_main():
            last = self.history_[-1] if self.history_ else {}
            self.encoder_path_ = export_encoder(
                self.network_, out / ENCODER_DIR, self.preprocessing_, layer=self.export_layer,
                name=f"deepcluster{'-v2' if self._variant == 'v2' else ''}-{self.arch}",
                extra={"trained_by": f"deepclust DeepCluster {self._variant}",
                       "epochs": self.epochs_done_, "n_clusters": self.n_clusters,
                       "source": images.description, "fingerprint": images.fingerprint,
                       "n_images": len(images), "last_epoch": last})
            try:
                from deepclust.deepcluster.evaluate import plot_nmi_curves

                plot_nmi_curves(self.history_, out / PLOT_FILE, title=f"DeepCluster {self._variant} "
                                f"({self.arch}, k={self.n_clusters})")
            except ImportError:  # matplotlib is optional
                pass
        runtime.barrier()

    def _print_epoch(self, rec: dict) -> None:
        if not (self.verbose and runtime.is_main()):
            return
        fmt = lambda v: "  -  " if v is None else f"{v:.3f}"  # noqa: E731
        c = rec["clusters"]
        print(f"epoch {rec['epoch']:3d}/{self.epochs}  loss {rec['loss']:.3f}  "
              f"NMI(t,t-1) {fmt(rec['nmi_prev'])}  NMI(labels) {fmt(rec['nmi_labels'])}  "
              f"clusters: {c['n_empty']} empty, sizes {c['min']}..{c['max']}  "
              f"{rec['seconds']['total']:.0f} s", flush=True)

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, *, out: str | Path | None = None, limit: int | None = None,
            resume: bool = True, overwrite: bool = False, num_workers: int = 0,
            source_options: dict | None = None):
        """Train the network on the images of ``X``.

        Parameters
        ----------
        X : ImageSource, Dataset, str, path, uint8 ndarray or TrainingImages
            A built-in dataset name (``"fashion-mnist:train"``), an image folder, manifest
            or tar shards (anything :func:`~deepclust.data.sources.open_source` accepts), or
            images ``(N, H, W[, 3])``.
        y : array-like of int, optional
            True labels, only to log NMI against them; default: the source's (-1 unknown).
        out : path, optional
            Run folder: per-epoch checkpoints, ``log.jsonl``, ``encoder/``, ``nmi.png``.
        limit : int, optional
            Train on the first ``limit`` images only.
        resume : bool
            Continue the run checkpointed in ``out`` (same settings and data; ``epochs``
            may be raised).
        overwrite : bool
            Discard a checkpoint in ``out`` and start over.
        num_workers : int
            Image-decoding processes (image folders, manifests, shards).
        source_options : dict, optional
            Passed to :func:`~deepclust.data.sources.open_source`.

        Returns
        -------
        self
        """
        from threadpoolctl import threadpool_limits

        self._check_params()
        old_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            # BLAS threads too (PCA): OpenBLAS's pool next to torch's OpenMP pool
            # oversubscribes the cores and both wait (docs/deepcluster.md)
            with threadpool_limits(limits=int(self.threads) if self.threads else None):
                return self._fit(X, y, Path(out) if out is not None else None, limit, resume,
                                 overwrite, num_workers, source_options)
        finally:
            torch.set_num_threads(old_threads)

    def _fit(self, X, y, out, limit, resume, overwrite, num_workers, source_options):
        t_start = time.perf_counter()
        images = self._load(X, y, out, limit, num_workers, source_options)
        self._setup(images)
        self.history_: list[dict] = []
        self.epochs_done_ = 0
        self.n_images_ = len(images)
        self.class_names_ = images.class_names
        tensors = None
        if out is not None:
            if overwrite and runtime.is_main():
                remove_training_state(out)
            runtime.barrier()
            if resume:
                tensors = self._resume(out, images)
            elif load_training_state(out) is not None:
                raise InputError(f"{out} already holds a DeepCluster run; resume it, use another "
                                 "--out, or --overwrite")
        self._start(images, tensors)
        for epoch in range(self.epochs_done_, self.epochs):
            t0 = time.perf_counter()
            rec, extra = self._epoch(images, epoch)
            rec["seconds"]["total"] = time.perf_counter() - t0
            self.history_.append(rec)
            self.epochs_done_ = epoch + 1
            self._write_epoch(out, images, extra)
            self._print_epoch(rec)
        self._finish(out, images)
        self.fit_seconds_ = time.perf_counter() - t_start
        return self

    # ------------------------------------------------------------------ using the fit

    def transform(self, X, *, limit: int | None = None, layer: str | None = None) -> np.ndarray:
        """Features of the images of ``X`` from the trained network.

        Parameters
        ----------
        X : same as :meth:`fit`
        limit : int, optional
        layer : {"trunk", "embed"}, optional
            Default ``export_layer``: what the exported encoder computes.

        Returns
        -------
        ndarray of shape (n_images, dim), float32
        """
        if not hasattr(self, "network_"):
            raise InputError("this DeepCluster is not fitted yet; call fit first")
        images = X if isinstance(X, TrainingImages) else load_training_images(
            X, side=self.resize_size_, limit=limit)
        return features_of(self.network_, images, self, layer=layer or self.export_layer).numpy()

    # subclasses
    def _start(self, images: TrainingImages, tensors: dict | None) -> None:
        raise NotImplementedError

    def _epoch(self, images: TrainingImages, epoch: int) -> tuple[dict, dict]:
        raise NotImplementedError


def features_of(network: nn.Module, images: TrainingImages, fitted: DeepClusterBase, *,
                layer: str = "trunk") -> torch.Tensor:
    """Features of ``images`` under ``network`` with the preprocessing of a fitted run
    (input size, normalisation, precision), e.g. to compare with a random network.

    Parameters
    ----------
    network : DeepClusterNet
    images : TrainingImages
        Decoded at the fitted ``resize_size_``.
    fitted : DeepCluster or DeepClusterV2
    layer : {"trunk", "embed"}

    Returns
    -------
    Tensor of shape (n_images, dim), float32
    """
    return network_features(network, images.pixels, input_size=fitted.input_size_,
                            mean=fitted._mean_t, std=fitted._std_t,
                            batch_size=fitted.feature_batch_size, precision=fitted.precision_,
                            channels_last=fitted.channels_last_, layer=layer)


def _json_roundtrip(obj: Any) -> Any:
    import json

    from deepclust.runinfo import to_json

    return json.loads(to_json(obj))
