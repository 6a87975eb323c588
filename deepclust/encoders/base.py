"""The :class:`Encoder` contract shared by every encoder family."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from deepclust.encoders.transform import ImageTransform


class Encoder:
    """A frozen image encoder with its own preprocessing.

    Subclasses set ``name``, ``dim``, ``transform`` and ``model`` (a :class:`torch.nn.Module`
    in eval mode) and implement :meth:`forward`.

    Attributes
    ----------
    name : str
        The registry name that recreates this encoder (``"effnet-lite0"``, ``"hf:..."``).
    dim : int
        Length of one embedding.
    transform : ImageTransform
        Preprocessing from the model's own configuration: ``transform(pil_rgb_image)`` gives
        the ``(3, H, W)`` float tensor the model expects.
    model : torch.nn.Module
        The underlying network (frozen; use it directly to fine-tune).
    config : dict
        Options that change the embedding (pooling, weights file), recorded in stores.
    """

    name: str = ""
    dim: int = 0
    transform: ImageTransform
    model: torch.nn.Module
    #: Whether the network is convolutional enough for channels-last memory to help.
    prefers_channels_last: bool = False
    #: Whether :func:`deepclust.encoders.engine.export_onnx` traces :meth:`forward` faithfully,
    #: so the CPU engine may run it (``engine="auto"``).
    exportable: bool = False

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.device = torch.device("cpu")
        self.channels_last = False

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Embed a preprocessed batch already on :attr:`device`; returns ``(B, dim)``."""
        raise NotImplementedError

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Embed a batch of preprocessed images.

        Parameters
        ----------
        batch : Tensor of shape (B, 3, H, W)
            Outputs of :attr:`transform`, stacked.

        Returns
        -------
        Tensor of shape (B, dim), float32
        """
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.forward(batch)
        return out.float()

    def to(self, device: str | torch.device) -> Encoder:
        """Move the model to ``device``; returns self."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def set_channels_last(self, enabled: bool = True) -> Encoder:
        """Store weights and inputs in channels-last (NHWC) memory order; returns self."""
        self.channels_last = bool(enabled)
        fmt = torch.channels_last if enabled else torch.contiguous_format
        self.model.to(memory_format=fmt)
        return self

    def describe(self) -> dict:
        """A JSON-ready description: name, dim, preprocessing and options."""
        return {
            "name": self.name,
            "dim": int(self.dim),
            "transform": self.transform.describe(),
            "config": dict(self.config),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Put ``model`` in eval mode with gradients off; returns it."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass
class EncoderInfo:
    """One row of :func:`deepclust.encoders.list_encoders`.

    Attributes
    ----------
    name : str
        Name to pass to :func:`~deepclust.encoders.get_encoder` (a pattern such as
        ``"timm:<name>"`` for open-ended families).
    dim : int or None
        Embedding length, None when it depends on the model chosen.
    available : bool
        Whether it can be built now without a network connection.
    family : str
    description : str
    how_to_get : str
        What to install or download when it is not available.
    """

    name: str
    dim: int | None
    available: bool
    family: str
    description: str = ""
    how_to_get: str = ""
    extra: dict = field(default_factory=dict)
