"""Batched image augmentation in torch: random-resized crop, horizontal flip, normalisation.

The crop boxes follow torchvision's ``RandomResizedCrop`` (area fraction drawn uniformly in
``scale``, log-uniform aspect ratio in ``ratio``, ten tries then a centre crop), and the
whole batch is cropped, resized and flipped by one ``grid_sample`` call, on whatever device
the images are. Bilinear, without antialiasing: crops are mostly enlarged (always, on 28 px
images); when one is shrunk (a large crop of a 256 px image to 224) the aliasing is mild.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["Augmentation", "center_crop", "normalise", "random_resized_crop_boxes", "resized_crops"]


def random_resized_crop_boxes(n: int, height: int, width: int, *,
                              scale: tuple[float, float] = (0.08, 1.0),
                              ratio: tuple[float, float] = (3 / 4, 4 / 3),
                              generator: torch.Generator | None = None,
                              attempts: int = 10) -> torch.Tensor:
    """Crop boxes ``(top, left, h, w)`` in pixels, one per image, as torchvision draws them.

    Parameters
    ----------
    n : int
        Number of boxes.
    height, width : int
        Image size.
    scale : (float, float)
        Range of the crop's area as a fraction of the image's.
    ratio : (float, float)
        Range of the crop's aspect ratio (width / height), drawn log-uniformly.
    generator : torch.Generator, optional
    attempts : int
        Draws per box before falling back to the largest centred crop within ``ratio``.

    Returns
    -------
    Tensor of shape (n, 4), float32
    """
    area = height * width
    u = torch.rand(n, attempts, 4, generator=generator)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1]
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    pick = first.clamp(min=0)
    h, w = h[rows, pick], w[rows, pick]
    top = torch.floor(u[rows, pick, 2] * (height - h + 1))
    left = torch.floor(u[rows, pick, 3] * (width - w + 1))
    boxes = torch.stack([top, left, h, w], dim=1)
    failed = first < 0
    if failed.any():  # torchvision's fallback: the whole image, cut to the ratio range
        in_ratio = width / height
        if in_ratio < ratio[0]:
            fw, fh = width, round(width / ratio[0])
        elif in_ratio > ratio[1]:
            fh, fw = height, round(height * ratio[1])
        else:
            fw, fh = width, height
        boxes[failed] = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw],
                                     dtype=boxes.dtype)
    return boxes


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: int,
                  flip: torch.Tensor | None = None) -> torch.Tensor:
    """Cut ``boxes`` out of ``images`` and resize each to ``size x size`` (bilinear).

    Parameters
    ----------
    images : Tensor of shape (B, C, H, W)
        Any dtype; converted to float32 (values unchanged).
    boxes : Tensor of shape (B, 4)
        ``(top, left, h, w)`` in pixels (:func:`random_resized_crop_boxes`).
    size : int
        Output side.
    flip : bool Tensor of shape (B,), optional
        Mirror these crops horizontally.

    Returns
    -------
    Tensor of shape (B, C, size, size), float32
    """
    b, _, height, width = images.shape
    boxes = boxes.to(device=images.device, dtype=torch.float32)
    top, left, h, w = boxes.unbind(1)
    # affine map from output coordinates in [-1, 1] to input coordinates (align_corners=False)
    sx, sy = w / width, h / height
    cx = (2 * left + w) / width - 1
    cy = (2 * top + h) / height - 1
    if flip is not None:
        sx = torch.where(flip.to(images.device), -sx, sx)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, sy, cy], 1)], 1)
    grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window (offsets rounded as torchvision does)."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return images[..., top : top + size, left : left + size]


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel; grey ``(B, 1, H, W)`` is repeated to 3 channels.

    Parameters
    ----------
    images : Tensor of shape (B, 1 or 3, H, W)
        Pixel values in 0..255 (uint8 or float).
    mean, std : Tensor of shape (3,)
    """
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    scale = (1.0 / (255.0 * std)).to(x.device).view(1, 3, 1, 1)
    shift = (mean / std).to(x.device).view(1, 3, 1, 1)
    return x * scale - shift


class Augmentation:
    """DeepCluster's training augmentation: random-resized crop, horizontal flip, normalise.

    Parameters
    ----------
    size : int
        Output side.
    mean, std : sequence of 3 floats
        Normalisation of pixels scaled to [0, 1].
    scale, ratio : (float, float)
        Of the random-resized crop (torchvision's defaults: (0.08, 1), (3/4, 4/3)).
    flip : bool
        Mirror half of the crops.

    Examples
    --------
    >>> import torch
    >>> aug = Augmentation(8, mean=(0.5,) * 3, std=(0.5,) * 3)
    >>> aug(torch.zeros(4, 1, 12, 12, dtype=torch.uint8), torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 8, 8])
    """

    def __init__(self, size: int, mean, std, *, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True):
        self.size = int(size)
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.flip = bool(flip)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a ``(B, C, H, W)`` batch of 0..255 pixels into ``(B, 3, size, size)``."""
        b, _, h, w = images.shape
        boxes = random_resized_crop_boxes(b, h, w, scale=self.scale, ratio=self.ratio,
                                          generator=generator)
        flip = torch.rand(b, generator=generator) < 0.5 if self.flip else None
        crops = resized_crops(images, boxes, self.size, flip)
        return normalise(crops, self.mean, self.std)

    def describe(self) -> dict:
        return {"random_resized_crop": {"size": self.size, "scale": list(self.scale),
                                        "ratio": list(self.ratio)},
                "horizontal_flip": self.flip, "mean": self.mean.tolist(), "std": self.std.tolist()}
