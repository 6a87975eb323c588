"""Training images for DeepCluster: decoded once, held as one uint8 tensor.

Every epoch reads the whole dataset twice (features, then training), so the images are
decoded once into a ``(N, C, S, S)`` uint8 array: in memory for small data, or a memory-mapped
file in the run folder for large data (an interrupted decode starts again; a finished one
is reused by a resumed run). Grey images keep one channel (``C = 1``) and are repeated to
three at normalisation, so the network and the exported encoder always see RGB.

Geometry: each image is scaled so that its shorter side is ``S`` and centre-cropped to a
square (the ``resize="shortest"`` rule of :class:`deepclust.encoders.ImageTransform`); the
random-resized crops of training are cut from that square, and the feature pass takes its
central ``input_size`` window -- the paper's ``Resize(256), CenterCrop(224)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepclust.data.sources import ArraySource, ImageSource, open_source
from deepclust.encoders.transform import ImageTransform
from deepclust.errors import InputError

__all__ = ["TrainingImages", "load_training_images", "pixel_statistics"]

#: Decoded images larger than this go to a memory-mapped file in the run folder.
IN_MEMORY_MAX_BYTES = 2 << 30


@dataclass
class TrainingImages:
    """Decoded training images and what is known about them.

    Attributes
    ----------
    pixels : Tensor of shape (N, C, S, S), uint8
        C is 1 (grey) or 3 (RGB).
    labels : ndarray of shape (N,), int64
        -1 where unknown (used only for logging NMI against labels).
    ids : list of str
    fingerprint : str
        Of the source and the selection (``limit``), to refuse resuming on other data.
    description : dict
        The source's description.
    class_names : list of str or None
    failed : list of dict
        Items that could not be decoded (``id``, ``reason``); they are left out.
    """

    pixels: torch.Tensor
    labels: np.ndarray
    ids: list[str]
    fingerprint: str
    description: dict = field(default_factory=dict)
    class_names: list[str] | None = None
    failed: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def side(self) -> int:
        return int(self.pixels.shape[-1])

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())


def pixel_statistics(pixels: torch.Tensor, max_images: int = 10_000,
                     seed: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of pixels scaled to [0, 1] (3 values each).

    Measured on a uniform sample of at most ``max_images`` images; grey statistics are
    repeated for the three channels the network sees.
    """
    n = pixels.shape[0]
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[:max_images].sort().values if n > max_images else None
    x = (pixels if idx is None else pixels[idx]).double() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    if mean.numel() == 1:
        mean, std = mean.repeat(3), std.repeat(3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _square(pixels: torch.Tensor, side: int) -> torch.Tensor:
    """Shorter side to ``side`` (bilinear, antialiased), then a centred square crop."""
    h, w = pixels.shape[-2:]
    if (h, w) != (side, side):
        if min(h, w) != side:
            scale = side / min(h, w)
            size = (max(side, round(h * scale)), max(side, round(w * scale)))
            pixels = F.interpolate(pixels.float(), size=size, mode="bilinear",
                                   antialias=True, align_corners=False)
            pixels = pixels.round().clamp(0, 255).to(torch.uint8)
        h, w = pixels.shape[-2:]
        top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
        pixels = pixels[..., top : top + side, left : left + side]
    return pixels.contiguous()


def _from_arrays(src: ArraySource, n: int, side: int | None) -> torch.Tensor:
    images = np.asarray(src.images[:n])
    if images.dtype != np.uint8:
        raise InputError(
            f"in-memory images must be uint8 for DeepCluster, got {images.dtype}; "
            "scale them to 0..255 first"
        )
    if images.ndim == 3:
        images = images[:, None]
    elif images.shape[3] == 4:
        raise InputError("RGBA arrays are not supported here; drop or composite the alpha channel")
    else:
        images = images.transpose(0, 3, 1, 2)
    pixels = torch.from_numpy(np.array(images, order="C"))  # a writable copy
    if side is None:
        side = min(pixels.shape[-2:])
    return _square(pixels, side)


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, source: ImageSource, transform: ImageTransform):
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        item = self.source.load(i)
        if item.image is None:
            return i, None, item.label, item.id, item.error or "unreadable"
        try:
            arr = np.asarray(self.transform.resize_image(item.image.convert("RGB")), dtype=np.uint8)
        except Exception as exc:  # a bad file must not stop a long decode
            return i, None, item.label, item.id, f"resize failed: {type(exc).__name__}: {exc}"
        return i, arr, item.label, item.id, None


def _decode(source: ImageSource, n: int, side: int, cache: Path | None, *, num_workers: int,
            progress: bool) -> tuple[torch.Tensor, np.ndarray, list[str], list[dict]]:
    t = ImageTransform(crop_size=side, resize_size=side, resize="shortest")
    subset = torch.utils.data.Subset(_Decoded(source, t), range(n))
    nbytes = n * 3 * side * side
    use_file = cache is not None and nbytes > IN_MEMORY_MAX_BYTES
    if use_file:
        cache.parent.mkdir(parents=True, exist_ok=True)
        buf = np.lib.format.open_memmap(cache, mode="w+", dtype=np.uint8, shape=(n, 3, side, side))
    else:
        buf = np.empty((n, 3, side, side), dtype=np.uint8)
    loader = torch.utils.data.DataLoader(subset, batch_size=64, num_workers=num_workers,
                                         collate_fn=list)
    ok = np.zeros(n, dtype=bool)
    labels = np.full(n, -1, dtype=np.int64)
    ids = [""] * n
    failed = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="decoding images", unit="img", leave=False)
    for batch in loader:
        for i, arr, label, id_, error in batch:
            ids[i], labels[i] = id_, label
            if arr is None:
                failed.append({"id": id_, "reason": error})
                continue
            buf[i] = arr.transpose(2, 0, 1)
            ok[i] = True
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    if not ok.any():
        raise InputError("no image of the source could be decoded")
    keep = np.flatnonzero(ok)
    if use_file:
        buf.flush()
        if keep.size < n:  # failures leave holes: compact into a second file
            compact = np.lib.format.open_memmap(str(cache) + ".tmp", mode="w+", dtype=np.uint8,
                                                shape=(keep.size, 3, side, side))
            for s in range(0, keep.size, 4096):
                compact[s : s + 4096] = buf[keep[s : s + 4096]]
            compact.flush()
            del buf, compact
            os.replace(str(cache) + ".tmp", cache)
        buf = np.load(cache, mmap_mode="c")
    elif keep.size < n:
        buf = buf[keep]
    return torch.from_numpy(np.asarray(buf)), labels[keep], [ids[i] for i in keep], failed


def load_training_images(source, *, side: int | None = None, limit: int | None = None,
                         cache_dir: str | os.PathLike | None = None, num_workers: int = 0,
                         progress: bool = False, **source_options) -> TrainingImages:
    """Decode ``source`` (the first ``limit`` items) into square uint8 images of side ``side``.

    Parameters
    ----------
    source : ImageSource, Dataset, path, str or uint8 ndarray
        Anything :func:`deepclust.data.sources.open_source` accepts (``"fashion-mnist"``, an
        image folder, a manifest, tar shards), or images ``(N, H, W[, 3])``.
    side : int, optional
        Side of the stored squares; default: the images' own (in-memory arrays) or 256.
    limit : int, optional
        Keep only the first ``limit`` items.
    cache_dir : path, optional
        Where large decoded data is memory-mapped (``images-<fingerprint>-<side>.npy``);
        a finished file is reused.
    num_workers : int
        Decoding worker processes.
    progress : bool
    **source_options
        Passed to :func:`~deepclust.data.sources.open_source`.

    Returns
    -------
    TrainingImages
    """
    if isinstance(source, np.ndarray):
        source = ArraySource(source)
    src = open_source(source, **source_options)
    n = len(src) if limit is None else min(int(limit), len(src))
    if limit is not None and int(limit) < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    fingerprint = src.fingerprint() + (f":first{n}" if n < len(src) else "")
    failed: list[dict] = []
    if isinstance(src, ArraySource):
        pixels = _from_arrays(src, n, side)
        labels = src.labels[:n].astype(np.int64)
        ids = src.ids[:n] if src.ids is not None else [str(i) for i in range(n)]
    else:
        side = int(side or 256)
        cache = None
        if cache_dir is not None:
            cache = Path(cache_dir) / f"images-{fingerprint.replace(':', '-')[:40]}-{side}.npy"
            meta_path = cache.with_suffix(".json")
            if cache.is_file() and meta_path.is_file():
                meta = json.loads(meta_path.read_text())
                if meta.get("fingerprint") == fingerprint and meta.get("side") == side:
                    return TrainingImages(
                        torch.from_numpy(np.asarray(np.load(cache, mmap_mode="c"))),
                        np.asarray(meta["labels"], dtype=np.int64), meta["ids"], fingerprint,
                        src.describe(), src.class_names, meta.get("failed", []))
        pixels, labels, ids, failed = _decode(src, n, side, cache, num_workers=num_workers,
                                              progress=progress)
        if cache is not None and cache.is_file():
            from deepclust.runinfo import write_json

            write_json(cache.with_suffix(".json"), {"fingerprint": fingerprint, "side": side,
                                                    "labels": labels, "ids": ids, "failed": failed})
    return TrainingImages(pixels, labels, list(ids), fingerprint, src.describe(),
                          src.class_names, failed)
