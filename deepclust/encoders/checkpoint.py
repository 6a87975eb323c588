"""Encoders trained by deepclust itself, saved as safetensors plus a JSON config.

Checkpoint format (a directory)
-------------------------------
``config.json``::

    {
      "format": "deepclust-encoder",
      "format_version": 1,
      "architecture": "convnet",             # a key of ARCHITECTURES
      "arch_kwargs": {"widths": [32, 64]},    # passed to the architecture's factory
      "dim": 64,                              # length of one embedding
      "transform": {...},                     # ImageTransform fields (crop_size, mean, ...)
      "name": "deepcluster-convnet",          # optional, for humans
      "extra": {...}                          # optional: training details, free-form
    }

``model.safetensors``: the ``state_dict()`` of the module the factory builds. The module's
``forward`` maps a ``(B, 3, H, W)`` batch to ``(B, dim)`` features.

Adding an architecture: decorate a factory with :func:`register_architecture`; it returns a
module whose forward gives ``(B, dim)``. ``convnet`` (a small VGG-style network for small
images) and the EfficientNet-Lite trunks (``effnet-lite0/1/2``, random initialisation, so
DeepCluster can train or fine-tune them) are defined here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepclust.encoders.base import Encoder, EncoderInfo, freeze
from deepclust.encoders.transform import ImageTransform
from deepclust.errors import DataNotFoundError, InputError

FORMAT = "deepclust-encoder"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

#: architecture name -> factory(**arch_kwargs) -> nn.Module with forward (B,3,H,W) -> (B, dim)
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str) -> Callable:
    """Decorator adding a module factory to :data:`ARCHITECTURES` under ``name``."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ARCHITECTURES[name] = factory
        return factory

    return decorate


class ConvNet(nn.Module):
    """A small VGG-style network: [conv3x3-BN-ReLU, max-pool] per width, then global pooling.

    Parameters
    ----------
    widths : sequence of int
        Channels of each stage (each stage halves the resolution).
    in_channels : int
    batch_norm : bool
    out_dim : int, optional
        A final linear projection to this many features; default: ``widths[-1]`` features.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128), in_channels: int = 3,
                 batch_norm: bool = True, out_dim: int | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(w))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, out_dim) if out_dim else nn.Identity()
        self.dim = out_dim or c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


@register_architecture("convnet")
def convnet(widths: Sequence[int] = (32, 64, 128), in_channels: int = 3, batch_norm: bool = True,
            out_dim: int | None = None) -> nn.Module:
    return ConvNet(tuple(widths), in_channels, batch_norm, out_dim)


def _effnet_trunk(variant: str) -> Callable[[], nn.Module]:
    def factory() -> nn.Module:
        from deepclust.encoders.efficientnet import EfficientNetLiteTrunk, build_efficientnet_lite

        return EfficientNetLiteTrunk(build_efficientnet_lite(variant, pretrained=False))

    return factory


for _v in ("lite0", "lite1", "lite2"):
    register_architecture(f"effnet-{_v}")(_effnet_trunk(_v))


def _atomic_write_bytes(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    architecture: str,
    transform: ImageTransform,
    *,
    arch_kwargs: dict[str, Any] | None = None,
    dim: int | None = None,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` as a deepclust encoder checkpoint directory.

    Parameters
    ----------
    path : path
        Directory to create (or overwrite the two files in).
    model : torch.nn.Module
        Built by ``ARCHITECTURES[architecture](**arch_kwargs)``; its forward returns (B, dim).
    architecture : str
        A key of :data:`ARCHITECTURES`.
    transform : ImageTransform
        The preprocessing the model was trained with.
    arch_kwargs : dict, optional
        JSON-serialisable arguments of the architecture factory.
    dim : int, optional
        Embedding length; measured with one forward pass when not given.
    name, extra : optional
        A human-readable name and free-form training details.

    Returns
    -------
    Path
        The checkpoint directory, loadable as ``get_encoder("checkpoint:<path>")``.
    """
    from safetensors.torch import save_file

    if architecture not in ARCHITECTURES:
        raise InputError(
            f"unknown architecture {architecture!r}; registered: {', '.join(sorted(ARCHITECTURES))}"
        )
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if dim is None:
        dim = _measure_dim(model, transform)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "arch_kwargs": dict(arch_kwargs or {}),
        "dim": int(dim),
        "transform": transform.describe(),
        "name": name or f"checkpoint-{architecture}",
        "extra": dict(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic_write_bytes(path / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    text = json.dumps(config, indent=2)
    _atomic_write_bytes(path / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text))
    return path


def _measure_dim(model: nn.Module, transform: ImageTransform) -> int:
    h, w = transform.output_size
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, h, w))
    model.train(was_training)
    if out.ndim != 2:
        raise InputError(f"the model's forward must return (batch, dim) features, got shape {tuple(out.shape)}")
    return int(out.shape[1])


def _checkpoint_dir(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if p.is_file() and p.name in (CONFIG_FILE, WEIGHTS_FILE):
        p = p.parent
    if not p.exists():
        raise DataNotFoundError(f"encoder checkpoint {p} does not exist")
    if not (p / CONFIG_FILE).is_file() or not (p / WEIGHTS_FILE).is_file():
        raise InputError(
            f"{p} is not a deepclust encoder checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(written by deepclust.encoders.checkpoint.save_checkpoint)"
        )
    return p


#: Architectures registered by modules that ``import deepclust`` does not load: the module is
#: imported on first use of a checkpoint that names one (prefix -> module).
ARCHITECTURE_MODULES = {"deepcluster-": "deepclust.deepcluster.models"}


def _import_architecture_module(architecture: str) -> None:
    import importlib

    for prefix, module in ARCHITECTURE_MODULES.items():
        if architecture.startswith(prefix) and architecture not in ARCHITECTURES:
            importlib.import_module(module)


def read_checkpoint_config(path: str | os.PathLike) -> dict:
    """The validated ``config.json`` of a checkpoint directory."""
    p = _checkpoint_dir(path)
    try:
        config = json.loads((p / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{p / CONFIG_FILE} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"{p / CONFIG_FILE} is not a deepclust encoder config (format != {FORMAT!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(
            f"{p} was written by a newer deepclust (format version {config['format_version']}); "
            "upgrade deepclust to read it"
        )
    missing = [k for k in ("architecture", "dim", "transform") if k not in config]
    if missing:
        raise InputError(f"{p / CONFIG_FILE} lacks {', '.join(missing)}")
    _import_architecture_module(config["architecture"])
    if config["architecture"] not in ARCHITECTURES:
        raise InputError(
            f"{p} uses architecture {config['architecture']!r}, which this deepclust does not "
            f"define (known: {', '.join(sorted(ARCHITECTURES))}); register it with "
            "deepclust.encoders.checkpoint.register_architecture"
        )
    return config


class CheckpointEncoder(Encoder):
    """An encoder loaded from a deepclust checkpoint directory (see the module docstring).

    Parameters
    ----------
    path : path
        The checkpoint directory (or its ``config.json``).
    """

    prefers_channels_last = True
    exportable = True  # plain convnets; an export failure falls back to torch under engine auto

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        p = _checkpoint_dir(path)
        config = read_checkpoint_config(p)
        if not isinstance(config["transform"], dict):
            raise InputError(f"{p / CONFIG_FILE}: transform must be an object, got "
                             f"{type(config['transform']).__name__}")
        t = dict(config["transform"])
        for key in ("mean", "std"):
            if isinstance(t.get(key), list):
                t[key] = tuple(t[key])
        for key in ("crop_size", "resize_size"):
            if isinstance(t.get(key), list):
                t[key] = tuple(t[key])
        try:
            self.transform = ImageTransform(**t)
        except TypeError as exc:
            raise InputError(f"{p / CONFIG_FILE}: bad transform description ({exc})") from None
        try:
            model = ARCHITECTURES[config["architecture"]](**config.get("arch_kwargs", {}))
        except TypeError as exc:
            raise InputError(f"{p / CONFIG_FILE}: bad arch_kwargs for {config['architecture']!r} ({exc})") from None
        try:
            state = load_file(str(p / WEIGHTS_FILE))
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{p / WEIGHTS_FILE} is not a readable safetensors file: {exc}") from None
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)
            raise InputError(
                f"{p / WEIGHTS_FILE} does not fit architecture {config['architecture']!r} with "
                f"arch_kwargs {config.get('arch_kwargs', {})}: {first}"
            ) from None
        if result.missing_keys or result.unexpected_keys:
            raise InputError(
                f"{p / WEIGHTS_FILE} does not fit architecture {config['architecture']!r}: "
                f"missing {list(result.missing_keys)[:5]}, unexpected {list(result.unexpected_keys)[:5]}"
            )
        self.model = freeze(model)
        declared = config["dim"]
        measured = _measure_dim(self.model, self.transform)
        if isinstance(declared, bool) or not isinstance(declared, int) or declared != measured:
            raise InputError(f"{p / CONFIG_FILE} declares dim={declared!r}, but the model gives "
                             f"{measured} values per image; fix \"dim\" in config.json (or re-export "
                             "the checkpoint)")
        self.dim = measured
        self.path = p
        self.name = f"checkpoint:{p}"
        self.config = {
            "architecture": config["architecture"],
            "arch_kwargs": config.get("arch_kwargs", {}),
            "checkpoint_name": config.get("name"),
        }

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def list_checkpoint() -> list[EncoderInfo]:
    return [EncoderInfo(
        name="checkpoint:<path>", dim=None, available=True, family="checkpoint",
        description="an encoder trained by deepclust (safetensors + config.json directory)",
    )]
