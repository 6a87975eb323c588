"""``timm:<model name>``: a timm model's pooled features, when the optional ``timm`` is installed.

timm needs torchvision, so it is not a dependency of deepclust. The preprocessing comes from
the model's own pretrained configuration (``timm.data.resolve_data_config``): input size,
``crop_pct``, interpolation, mean and std, reproduced with Pillow (resize the shorter side to
``floor(size / crop_pct)``, then centre-crop ``size``, as timm's evaluation transform does).

Pretrained weights are read from the local Hugging Face cache only (``HF_HUB_OFFLINE`` is set
while the model is created), or from a local file given as ``weights=``.

This module has not been exercised against a real timm installation in deepclust's test
suite (timm is absent there); its calls follow timm's documented API.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager

import torch

from deepclust.encoders.base import Encoder, EncoderInfo, freeze
from deepclust.encoders.transform import ImageTransform
from deepclust.errors import DataNotFoundError, InputError


def _require_timm():
    try:
        import timm
        import timm.data
    except ImportError:
        raise InputError(
            "timm: encoders need the optional package timm, which also installs torchvision: "
            "pip install timm"
        ) from None
    return timm


@contextmanager
def hub_offline():
    """Make huggingface_hub refuse network access while the block runs."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hc

        old_const = hc.HF_HUB_OFFLINE
        hc.HF_HUB_OFFLINE = True
    except Exception:  # pragma: no cover - hub missing or restructured
        hc, old_const = None, None
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
        if hc is not None:
            hc.HF_HUB_OFFLINE = old_const


def timm_transform(data_config: dict) -> ImageTransform:
    """An :class:`ImageTransform` equal to timm's evaluation transform for ``data_config``."""
    _, h, w = data_config["input_size"]
    crop_pct = float(data_config.get("crop_pct") or 1.0)
    mode = data_config.get("crop_mode", "center")
    interpolation = data_config.get("interpolation", "bilinear")
    if interpolation not in ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"):
        interpolation = "bicubic"
    common = dict(interpolation=interpolation, mean=tuple(data_config["mean"]),
                  std=tuple(data_config["std"]), crop_offset="round")
    if mode == "squash" or h != w:
        return ImageTransform(crop_size=(h, w), resize="exact",
                              resize_size=(math.floor(h / crop_pct), math.floor(w / crop_pct)), **common)
    return ImageTransform(crop_size=h, resize="shortest", resize_size=math.floor(h / crop_pct), **common)


class TimmEncoder(Encoder):
    """Pooled, pre-classifier features of a timm model.

    Parameters
    ----------
    model_name : str
        A timm model name, e.g. ``"vit_small_patch14_dinov2.lvd142m"``.
    weights : path, optional
        A local checkpoint file instead of the hub cache.
    """

    def __init__(self, model_name: str, *, weights: str | None = None):
        super().__init__()
        timm = _require_timm()
        kwargs = {"num_classes": 0}
        if weights:
            kwargs["pretrained_cfg_overlay"] = {"file": os.fspath(weights)}
        try:
            with hub_offline():
                model = timm.create_model(model_name, pretrained=True, **kwargs)
        except RuntimeError as exc:
            if "Unknown model" in str(exc):
                raise InputError(f"timm has no model {model_name!r}") from None
            raise DataNotFoundError(self._missing(model_name, exc)) from None
        except (OSError, ValueError) as exc:
            raise DataNotFoundError(self._missing(model_name, exc)) from None
        self.transform = timm_transform(timm.data.resolve_data_config({}, model=model))
        self.model = freeze(model)
        self.dim = int(model.num_features)
        self.name = f"timm:{model_name}"
        self.config = {"weights": os.fspath(weights) if weights else "hub-cache"}
        self.prefers_channels_last = True

    @staticmethod
    def _missing(name: str, exc: Exception) -> str:
        return (
            f"timm:{name}: pretrained weights are not available offline ({exc}). Download them "
            "on a machine with network access (python -c \"import timm; "
            f"timm.create_model('{name}', pretrained=True)\"), copy the Hugging Face cache "
            "(~/.cache/huggingface) here, or pass weights=/path/to/file."
        )

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def list_timm() -> list[EncoderInfo]:
    import importlib.util

    have = importlib.util.find_spec("timm") is not None
    return [EncoderInfo(
        name="timm:<name>", dim=None, available=have, family="timm",
        description="a timm model's pooled features (optional: needs timm + torchvision)",
        how_to_get="" if have else "pip install timm",
    )]
