"""``open_clip:<architecture>[@<pretrained tag>]``: OpenCLIP image towers, when installed.

open_clip needs torchvision, so it is optional. Examples: ``open_clip:ViT-B-32@laion2b_s34b_b79k``,
``open_clip:hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K``. The embedding is
``model.encode_image`` (the projected image embedding). Preprocessing comes from the model's
``visual.preprocess_cfg`` (size, mean, std, interpolation, resize mode), reproduced with Pillow.
Weights are read offline from the local caches (``HF_HUB_OFFLINE`` is set while loading).

Not exercised against a real open_clip installation in deepclust's test suite (it is absent
there); the calls follow open_clip's documented API.
"""

from __future__ import annotations

import torch

from deepclust.encoders.base import Encoder, EncoderInfo, freeze
from deepclust.encoders.timm_models import hub_offline
from deepclust.encoders.transform import ImageTransform
from deepclust.errors import DataNotFoundError, InputError


def _require_open_clip():
    try:
        import open_clip
    except ImportError:
        raise InputError(
            "open_clip: encoders need the optional package open_clip_torch, which also installs "
            "torchvision: pip install open_clip_torch"
        ) from None
    return open_clip


class _ImageTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.clip = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(x)


class OpenCLIPEncoder(Encoder):
    """The projected image embedding of an OpenCLIP model.

    Parameters
    ----------
    spec : str
        ``ARCH@TAG`` (a pretrained tag of ``open_clip.list_pretrained()``) or ``hf-hub:org/repo``.
    """

    def __init__(self, spec: str):
        super().__init__()
        open_clip = _require_open_clip()
        arch, _, tag = spec.partition("@")
        try:
            with hub_offline():
                model = open_clip.create_model(arch, pretrained=tag or None)
        except RuntimeError as exc:
            raise InputError(f"open_clip:{spec}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise DataNotFoundError(
                f"open_clip:{spec}: weights are not available offline ({exc}); load the model "
                "once on a machine with network access and copy its cache "
                "(~/.cache/huggingface) here"
            ) from None
        cfg = getattr(model.visual, "preprocess_cfg", None) or {}
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        mode = cfg.get("resize_mode", "shortest")
        common = dict(
            interpolation=cfg.get("interpolation", "bicubic"),
            mean=tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
            std=tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        )
        if mode == "squash" or h != w:
            self.transform = ImageTransform(crop_size=(h, w), resize="exact", **common)
        else:
            self.transform = ImageTransform(crop_size=h, resize="shortest", resize_size=h, **common)
        self.model = freeze(_ImageTower(model))
        self.dim = int(model.visual.output_dim)
        self.name = f"open_clip:{spec}"
        self.config = {"architecture": arch, "pretrained": tag or None}

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def list_open_clip() -> list[EncoderInfo]:
    import importlib.util

    have = importlib.util.find_spec("open_clip") is not None
    return [EncoderInfo(
        name="open_clip:<arch>@<tag>", dim=None, available=have, family="open_clip",
        description="an OpenCLIP image tower, projected (optional: needs open_clip + torchvision)",
        how_to_get="" if have else "pip install open_clip_torch",
    )]
