"""Raw pixels: the zero-shot study's baseline encoder.

Each image is resized to ``size`` x ``size`` (default 32, the CIFAR resolution the baseline
is usually reported at) with Pillow's antialiased bilinear filter, its pixels scaled to
[0, 1] and flattened: ``3 * size * size`` numbers (3072 by default), or ``size * size`` with
``grey=True`` (ITU-R 601 luma, as Pillow's ``L`` mode). No normalisation: the clustering
pipeline's own z-score / PCA steps are where scaling belongs.
"""

from __future__ import annotations

import torch

from deepclust.encoders.base import Encoder, EncoderInfo
from deepclust.encoders.transform import ImageTransform
from deepclust.errors import InputError

DEFAULT_SIZE = 32
_LUMA = (0.299, 0.587, 0.114)


class _Flatten(torch.nn.Module):
    def __init__(self, grey: bool):
        super().__init__()
        self.grey = grey
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grey:
            x = (x * self.luma.to(x.dtype)).sum(dim=1)
        return x.reshape(len(x), -1)


class RawPixelEncoder(Encoder):
    """Resized, flattened pixels in [0, 1].

    Parameters
    ----------
    size : int
        Side of the square the image is resized to (aspect ratio not kept).
    grey : bool
        One luma channel instead of three.
    """

    def __init__(self, size: int = DEFAULT_SIZE, *, grey: bool = False):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InputError(f"raw encoder: size must be a positive integer, got {size!r}")
        self.size, self.grey = size, bool(grey)
        self.name = "raw"
        self.dim = size * size * (1 if grey else 3)
        self.transform = ImageTransform(
            crop_size=size, resize="exact", interpolation="bilinear",
            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        )
        self.model = _Flatten(self.grey)
        self.config = {"size": size, "grey": self.grey}

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def list_raw() -> list[EncoderInfo]:
    return [EncoderInfo(
        name="raw", dim=3 * DEFAULT_SIZE * DEFAULT_SIZE, available=True, family="raw",
        description=f"pixels resized to {DEFAULT_SIZE}x{DEFAULT_SIZE}, flattened (size=, grey= options)",
    )]
