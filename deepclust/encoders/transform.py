"""Image preprocessing that travels with an encoder: resize, centre crop, scale, normalise.

Implemented with Pillow and torch only (no torchvision). One :class:`ImageTransform` describes
every preprocessing recipe the encoder families need:

- ``resize="shortest"``: scale so the shorter side equals ``resize_size`` (aspect kept), then
  centre-crop ``crop_size`` (CLIP, DINOv2, timm-style ``crop_pct``);
- ``resize="exact"``: scale to ``resize_size`` x ``resize_size`` regardless of aspect, then
  crop (ViT, SigLIP, MAE: no crop because ``crop_size == resize_size``);
- ``resize="crop_then_resize"``: cut the central square of side ``crop_fraction * min(H, W)``
  first, then scale it to ``crop_size`` (the TensorFlow EfficientNet evaluation recipe).

The output is a float32 CHW tensor: ``(pixel / 255 - mean) / std``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image

from deepclust.errors import InputError

#: Interpolation names accepted by :class:`ImageTransform`, and their Pillow filters.
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
#: Pillow's integer resample codes (as stored in Hugging Face configs) to our names.
PIL_CODES = {int(v): k for k, v in INTERPOLATIONS.items()}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


@dataclass(frozen=True)
class ImageTransform:
    """Deterministic evaluation preprocessing: PIL RGB image -> normalised CHW float tensor.

    Parameters
    ----------
    crop_size : int or (int, int)
        Output height and width.
    resize_size : int or (int, int), optional
        For ``resize="shortest"`` the target of the shorter side (an int); for
        ``resize="exact"`` the (height, width) to scale to before cropping. Defaults to
        ``crop_size``.
    resize : {"shortest", "exact", "crop_then_resize", "none"}
        How the image is brought to ``crop_size`` (see the module docstring).
    crop_fraction : float
        For ``resize="crop_then_resize"``: the side of the central square cut first, as a
        fraction of the shorter side.
    interpolation : str
        One of :data:`INTERPOLATIONS`.
    mean, std : tuple of 3 floats
        Per-channel normalisation applied to pixels scaled to [0, 1].
    rescale : float
        Factor applied to 0-255 pixels before normalising (1/255 for every model here).
    crop_offset : {"round", "floor"}
        How the centre crop's offset ``(size - crop) / 2`` becomes an integer: rounded
        (torchvision, timm) or floored (Hugging Face image processors).

    Examples
    --------
    >>> from PIL import Image
    >>> t = ImageTransform(crop_size=8, resize="exact", mean=(0.5,) * 3, std=(0.5,) * 3)
    >>> t(Image.new("RGB", (20, 10), (255, 0, 0))).shape
    torch.Size([3, 8, 8])
    """

    crop_size: int | tuple[int, int]
    resize_size: int | tuple[int, int] | None = None
    resize: str = "shortest"
    crop_fraction: float = 1.0
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    rescale: float = 1.0 / 255.0
    crop_offset: str = "round"
    _offset: np.ndarray = field(init=False, repr=False, compare=False)
    _scale: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.resize not in ("shortest", "exact", "crop_then_resize", "none"):
            raise InputError(
                f"resize must be 'shortest', 'exact', 'crop_then_resize' or 'none', not {self.resize!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(
                f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}"
            )
        for key in ("mean", "std"):
            value = getattr(self, key)
            if (isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3
                    or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                               and math.isfinite(v) for v in value)
                    or (key == "std" and min(value) <= 0)):
                raise InputError(f"{key} is {value!r}; it must be 3 finite numbers"
                                 + (", all positive" if key == "std" else ""))
        if self.crop_offset not in ("round", "floor"):
            raise InputError(f"crop_offset must be 'round' or 'floor', not {self.crop_offset!r}")
        if (not isinstance(self.crop_fraction, numbers.Real) or isinstance(self.crop_fraction, bool)
                or not 0 < self.crop_fraction <= 1):
            raise InputError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        mean = np.asarray(self.mean, dtype=np.float64)
        std = np.asarray(self.std, dtype=np.float64)
        # (x * rescale - mean) / std  ==  x * (rescale / std) - mean / std, per channel (HWC)
        object.__setattr__(self, "_scale", (self.rescale / std).astype(np.float32))
        object.__setattr__(self, "_offset", (mean / std).astype(np.float32))

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the tensors this transform returns."""
        return _pair(self.crop_size)

    def describe(self) -> dict:
        """A JSON-ready description (stored in an embedding store's ``meta.json``)."""
        d = asdict(self)
        d.pop("_offset", None)
        d.pop("_scale", None)
        for key in ("crop_size", "resize_size"):
            if isinstance(d[key], tuple):
                d[key] = list(d[key])
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def resize_image(self, img: Image.Image) -> Image.Image:
        """Apply the geometric part (resize and crop) to a PIL image."""
        resample = INTERPOLATIONS[self.interpolation]
        ch, cw = _pair(self.crop_size)
        w, h = img.size
        if self.resize == "crop_then_resize":
            side = int(self.crop_fraction * min(h, w))
            side = max(side, 1)
            # TensorFlow's offsets: ((dim - crop) + 1) // 2
            top, left = ((h - side) + 1) // 2, ((w - side) + 1) // 2
            img = img.crop((left, top, left + side, top + side))
            return img.resize((cw, ch), resample=resample)
        if self.resize == "shortest":
            target = self.resize_size if self.resize_size is not None else min(ch, cw)
            if not isinstance(target, int):
                raise InputError("resize='shortest' needs an int resize_size (the shorter side)")
            if w <= h:
                nw, nh = target, int(target * h / w)
            else:
                nh, nw = target, int(target * w / h)
            if (nw, nh) != (w, h):
                img = img.resize((nw, nh), resample=resample)
        elif self.resize == "exact":
            rh, rw = _pair(self.resize_size if self.resize_size is not None else self.crop_size)
            if (rw, rh) != (w, h):
                img = img.resize((rw, rh), resample=resample)
        w, h = img.size
        if (w, h) != (cw, ch):
            if w < cw or h < ch:  # pad with black (as torchvision's CenterCrop does)
                canvas = Image.new("RGB", (max(w, cw), max(h, ch)))
                canvas.paste(img, ((max(w, cw) - w) // 2, (max(h, ch) - h) // 2))
                img, (w, h) = canvas, canvas.size
            if self.crop_offset == "floor":
                top, left = (h - ch) // 2, (w - cw) // 2
            else:
                top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
            img = img.crop((left, top, left + cw, top + ch))
        return img

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """Preprocess one RGB image into a float32 tensor of shape (3, H, W)."""
        if img.mode != "RGB":
            img = img.convert("RGB")
        img = self.resize_image(img)
        # numpy, not torch: single-threaded small ops are faster here, especially in the
        # main process where torch would spread each one over all intra-op threads.
        arr = np.asarray(img, dtype=np.float32)
        arr *= self._scale
        arr -= self._offset
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
