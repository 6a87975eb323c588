"""The networks DeepCluster trains, written in plain torch (no torchvision).

Every network is a :class:`DeepClusterNet`: an optional fixed :class:`SobelFilter`, a
convolutional trunk, then either a flattened MLP ``classifier`` (AlexNet, VGG-16, the small
convnet) or global average pooling (ResNets). ``forward`` returns the features that
DeepCluster clusters and that the exported encoder gives: the classifier's output *without
its last ReLU*, as in the paper. The training heads (the re-created linear classifier of
DeepCluster, the projection head and prototypes of DeepCluster-v2) live in
:mod:`deepclust.deepcluster.train`, apart from the network, so the network alone is what is
saved and exported.

=============  ======  =====  =====  ======  ==============================================
name           input   Sobel  embed  trunk   what
=============  ======  =====  =====  ======  ==============================================
``alexnet``    224     yes    4096   9216    AlexNet with batch norm (DeepCluster's)
``vgg16``      224     yes    4096   25088   VGG-16 with batch norm (DeepCluster's)
``resnet18``   224     no     512    512     ResNet-18 (He et al. 2016), pooled
``resnet50``   224     no     2048   2048    ResNet-50 (DeepCluster-v2 / SwAV's), pooled
``small``      28-32   no     256    2048    3 conv stages + 2 FC layers, 28-32 px images
=============  ======  =====  =====  ======  ==============================================

``embed`` is what DeepCluster clusters, ``trunk`` the convolutional features (flattened),
which the paper's linear probes use and the exported encoder gives by default.

Each name is also registered with :func:`deepclust.encoders.checkpoint.register_architecture`
as ``deepcluster-<name>``, so a trained network loads back as ``checkpoint:<folder>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepclust.encoders.checkpoint import register_architecture
from deepclust.errors import InputError

__all__ = [
    "NETWORKS",
    "DeepClusterNet",
    "NetworkSpec",
    "SobelFilter",
    "alexnet",
    "build_network",
    "export_architecture",
    "resnet18",
    "resnet50",
    "small_convnet",
    "vgg16",
]


class SobelFilter(nn.Module):
    """The fixed input layer of DeepCluster: grey level, then two Sobel filters.

    ``(B, 3, H, W)`` RGB becomes ``(B, 2, H, W)``: horizontal and vertical gradients of the
    channel mean. The weights are buffers (saved with the network, never trained).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("grey", torch.full((1, 3, 1, 1), 1.0 / 3.0))
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("sobel", torch.stack([gx, gx.t()]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.grey.to(x.dtype))
        return F.conv2d(x, self.sobel.to(x.dtype), padding=1)


class DeepClusterNet(nn.Module):
    """A trunk and a classifier whose output (last ReLU removed) is the feature vector.

    Parameters
    ----------
    features : nn.Module
        Convolutional trunk: ``(B, C, H, W) -> (B, c, h, w)``.
    classifier : nn.Module or None
        MLP on the flattened trunk output, ending in a ``Linear`` (its ReLU is
        :meth:`activate`); None for global average pooling (ResNets).
    feature_dim : int
        Length of :meth:`embed`'s output.
    trunk_dim : int
        Length of :meth:`trunk`'s output.
    sobel : bool
        Put a :class:`SobelFilter` in front.
    arch : str
        The name in :data:`NETWORKS`.
    arch_kwargs : dict
        The arguments that rebuild this network through its factory (for export).
    output : {"embed", "trunk"}
        What :meth:`forward` returns (the exported encoder's features).
    """

    def __init__(self, features: nn.Module, classifier: nn.Module | None, feature_dim: int,
                 trunk_dim: int, *, sobel: bool, arch: str, arch_kwargs: dict[str, Any],
                 output: str = "embed"):
        super().__init__()
        if output not in ("embed", "trunk"):
            raise InputError(f"output must be 'embed' or 'trunk', got {output!r}")
        self.sobel = SobelFilter() if sobel else None
        self.features = features
        self.classifier = classifier
        self.feature_dim = int(feature_dim)
        self.trunk_dim = int(trunk_dim)
        self.arch = arch
        self.arch_kwargs = dict(arch_kwargs)
        self.output = output

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutional trunk's output, flattened (or average-pooled for ResNets)."""
        if self.sobel is not None:
            x = self.sobel(x)
        x = self.features(x)
        if self.classifier is None:
            return x.mean(dim=(2, 3))
        return torch.flatten(x, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features DeepCluster clusters: the classifier's output without its last ReLU
        (the pooled trunk for ResNets), ``(B, feature_dim)``."""
        t = self.trunk(x)
        return t if self.classifier is None else self.classifier(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`embed` or :meth:`trunk` of a normalised ``(B, 3, H, W)`` batch, as
        ``output`` says."""
        return self.embed(x) if self.output == "embed" else self.trunk(x)

    @property
    def out_dim(self) -> int:
        """Length of :meth:`forward`'s output."""
        return self.feature_dim if self.output == "embed" else self.trunk_dim

    def activate(self, f: torch.Tensor) -> torch.Tensor:
        """The non-linearity between :meth:`embed` and a training head.

        The ReLU that ends the classifier in training and is removed for clustering; the
        identity for pooled (ResNet) features, which already follow a ReLU.
        """
        return f if self.classifier is None else F.relu(f)


def init_deepcluster_weights(module: nn.Module) -> None:
    """DeepCluster's initialisation: He-normal convolutions (fan-out), unit batch norm,
    ``N(0, 0.01)`` linear weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _in_channels(sobel: bool) -> int:
    return 2 if sobel else 3


# ----------------------------------------------------------------------------- AlexNet, VGG

#: (out channels, kernel, stride, padding) or "M" (3x3 max-pool, stride 2): DeepCluster's AlexNet.
_ALEXNET_CFG: list[Any] = [(96, 11, 4, 2), "M", (256, 5, 1, 2), "M", (384, 3, 1, 1),
                           (384, 3, 1, 1), (256, 3, 1, 1), "M"]
_VGG16_CFG: list[Any] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                         512, 512, 512, "M", 512, 512, 512, "M"]


def alexnet(sobel: bool = True, input_size: int = 224, output: str = "embed") -> DeepClusterNet:
    """AlexNet with batch norm, as DeepCluster trains it (Krizhevsky et al. 2012 layout).

    Five convolutions (96, 256, 384, 384, 256 channels) with batch norm, three max-pools,
    then ``Dropout-FC4096-ReLU-Dropout-FC4096``; features are the last FC's output.
    """
    layers: list[nn.Module] = []
    c = _in_channels(sobel)
    for v in _ALEXNET_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        else:
            out, k, s, p = v
            layers += [nn.Conv2d(c, out, k, stride=s, padding=p), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            c = out
    features = nn.Sequential(*layers)
    flat = _flat_size(features, _in_channels(sobel), input_size)
    classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(flat, 4096), nn.ReLU(inplace=True),
                               nn.Dropout(0.5), nn.Linear(4096, 4096))
    net = DeepClusterNet(features, classifier, 4096, flat, sobel=sobel, arch="alexnet",
                         arch_kwargs={"sobel": sobel, "input_size": input_size}, output=output)
    init_deepcluster_weights(net)
    return net


def vgg16(sobel: bool = True, input_size: int = 224, output: str = "embed") -> DeepClusterNet:
    """VGG-16 with batch norm, as DeepCluster trains it (Simonyan & Zisserman 2015).

    Thirteen 3x3 convolutions with batch norm in five max-pooled stages, then
    ``FC4096-ReLU-Dropout-FC4096``; features are the last FC's output.
    """
    layers: list[nn.Module] = []
    c = _in_channels(sobel)
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c = v
    features = nn.Sequential(*layers)
    flat = _flat_size(features, _in_channels(sobel), input_size)
    classifier = nn.Sequential(nn.Linear(flat, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                               nn.Linear(4096, 4096))
    net = DeepClusterNet(features, classifier, 4096, flat, sobel=sobel, arch="vgg16",
                         arch_kwargs={"sobel": sobel, "input_size": input_size}, output=output)
    init_deepcluster_weights(net)
    return net


def small_convnet(sobel: bool = False, input_size: int = 28,
                  widths: Sequence[int] = (32, 64, 128), hidden: int = 256,
                  dropout: float = 0.0, output: str = "embed") -> DeepClusterNet:
    """A small VGG-style network for 28-32 px images (MNIST, Fashion-MNIST, CIFAR).

    One ``conv3x3-BN-ReLU`` and a 2x2 max-pool per width (28 px: 28 -> 14 -> 7 -> 4), then
    ``[Dropout]-FC-ReLU-[Dropout]-FC`` like AlexNet's classifier, ``hidden`` wide; the
    features are the last FC's output. The default (32, 64, 128) trains at 1 000-1 500
    images/s on one busy CPU core with bfloat16 (docs/deepcluster.md).
    """
    layers: list[nn.Module] = []
    c = _in_channels(sobel)
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
        c = w
    features = nn.Sequential(*layers)
    flat = _flat_size(features, _in_channels(sobel), input_size)
    mlp: list[nn.Module] = []
    if dropout:
        mlp.append(nn.Dropout(dropout))
    mlp += [nn.Linear(flat, hidden), nn.ReLU(inplace=True)]
    if dropout:
        mlp.append(nn.Dropout(dropout))
    mlp.append(nn.Linear(hidden, hidden))
    net = DeepClusterNet(features, nn.Sequential(*mlp), hidden, flat, sobel=sobel, arch="small",
                         output=output,
                         arch_kwargs={"sobel": sobel, "input_size": input_size,
                                      "widths": [int(w) for w in widths], "hidden": int(hidden),
                                      "dropout": float(dropout)})
    init_deepcluster_weights(net)
    return net


def _flat_size(features: nn.Module, in_channels: int, input_size: int) -> int:
    with torch.no_grad():
        out = features(torch.zeros(1, in_channels, input_size, input_size))
    if out.shape[-1] < 1:
        raise InputError(f"input size {input_size} is too small for this network")
    return int(out.numel())


# ----------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity, inplace=True)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 convolutions with a shortcut (ResNet-50; stride on the 3x3)."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.downsample = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity, inplace=True)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))


def _resnet_trunk(block: type[BasicBlock] | type[Bottleneck], depths: Sequence[int],
                  in_channels: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
                               nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                               nn.MaxPool2d(3, stride=2, padding=1)]
    c = 64
    for stage, n_blocks in enumerate(depths):
        width = 64 * 2**stage
        blocks = []
        for i in range(n_blocks):
            blocks.append(block(c, width, stride=2 if (i == 0 and stage > 0) else 1))
            c = width * block.expansion
        layers.append(nn.Sequential(*blocks))
    return nn.Sequential(*layers), c


def _resnet(name: str, block, depths, sobel: bool, input_size: int, output: str) -> DeepClusterNet:
    features, c = _resnet_trunk(block, depths, _in_channels(sobel))
    net = DeepClusterNet(features, None, c, c, sobel=sobel, arch=name,
                         arch_kwargs={"sobel": sobel, "input_size": input_size}, output=output)
    for m in net.modules():  # torchvision's ResNet initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def resnet18(sobel: bool = False, input_size: int = 224, output: str = "embed") -> DeepClusterNet:
    """ResNet-18 trunk with global average pooling: 512 features (any input size)."""
    return _resnet("resnet18", BasicBlock, (2, 2, 2, 2), sobel, input_size, output)


def resnet50(sobel: bool = False, input_size: int = 224, output: str = "embed") -> DeepClusterNet:
    """ResNet-50 trunk with global average pooling: 2048 features (any input size)."""
    return _resnet("resnet50", Bottleneck, (3, 4, 6, 3), sobel, input_size, output)


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class NetworkSpec:
    """A network family and the training defaults that go with it.

    Attributes
    ----------
    factory : callable
        ``factory(sobel=..., input_size=..., **kwargs) -> DeepClusterNet``.
    input_size : int or None
        Crop side the network is built for; None: the images' own side (small convnet).
    resize_size : int or None
        Side the images are brought to before the centre crop of the feature pass (256
        for 224, the paper's ``Resize(256), CenterCrop(224)``); None: ``input_size``.
    sobel : bool
        Whether the paper's recipe puts the Sobel layer in front.
    crop_scale : (float, float)
        Area range of the random-resized crop.
    description : str
    """

    factory: Callable[..., DeepClusterNet]
    input_size: int | None
    resize_size: int | None
    sobel: bool
    crop_scale: tuple[float, float] = (0.08, 1.0)
    description: str = ""


NETWORKS: dict[str, NetworkSpec] = {
    "alexnet": NetworkSpec(alexnet, 224, 256, True,
                           description="AlexNet with batch norm (DeepCluster), 4096-d features"),
    "vgg16": NetworkSpec(vgg16, 224, 256, True,
                         description="VGG-16 with batch norm (DeepCluster), 4096-d features"),
    "resnet18": NetworkSpec(resnet18, 224, 256, False,
                            description="ResNet-18, 512-d pooled features"),
    "resnet50": NetworkSpec(resnet50, 224, 256, False,
                            description="ResNet-50, 2048-d pooled features"),
    "small": NetworkSpec(small_convnet, None, None, False, crop_scale=(0.2, 1.0),
                         description="small convnet for 28-32 px images, 256-d features"),
}


def build_network(arch: str, *, sobel: bool | None = None, input_size: int | None = None,
                  **kwargs: Any) -> DeepClusterNet:
    """A freshly initialised network by name (see :data:`NETWORKS`).

    Parameters
    ----------
    arch : str
        A key of :data:`NETWORKS`.
    sobel : bool, optional
        Default: the architecture's (on for AlexNet and VGG-16, as in the paper).
    input_size : int, optional
        Crop side; default: the architecture's (224), or 28 for the small convnet.
    **kwargs
        Further arguments of the factory (``widths=``, ``hidden=`` for ``small``).
    """
    if arch not in NETWORKS:
        raise InputError(f"unknown architecture {arch!r}; choose one of {', '.join(NETWORKS)}")
    spec = NETWORKS[arch]
    size = input_size or spec.input_size or 28
    try:
        return spec.factory(sobel=spec.sobel if sobel is None else bool(sobel),
                            input_size=int(size), **kwargs)
    except TypeError as exc:
        raise InputError(f"bad option for architecture {arch!r}: {exc}") from None


def export_architecture(arch: str) -> str:
    """The name under which ``arch`` is registered for ``checkpoint:`` encoders."""
    return f"deepcluster-{arch}"


def _register(arch: str) -> None:
    def factory(**kwargs: Any) -> nn.Module:
        return build_network(arch, **kwargs)

    factory.__doc__ = f"DeepCluster {arch} network (see deepclust.deepcluster.models)."
    register_architecture(export_architecture(arch))(factory)


for _arch in NETWORKS:
    _register(_arch)
