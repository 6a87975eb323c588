"""Checkpoints of a DeepCluster run, and the export of its network as an encoder.

A run folder holds, after every epoch:

- ``checkpoint-epoch<NNNN>.safetensors``: the network (``net.*``), the trained heads
  (``head.*``, DeepCluster-v2's projection), the optimiser's momentum buffers
  (``optim.<parameter>``), the last pseudo-labels (``assignments``) and, for v2, the memory
  bank (``memory``);
- ``checkpoint.json``: the finished epoch count, the settings, the data fingerprint, the
  per-epoch history and the name of the tensor file.

The tensor file is written first and ``checkpoint.json`` replaces the previous one
atomically afterwards, so an interruption at any moment leaves the last complete epoch
readable; older tensor files are removed once the new JSON is in place (unless every epoch
is kept). DeepCluster's linear head is re-created every epoch, so it is never saved.

:func:`export_encoder` writes the network in the format of
:mod:`deepclust.encoders.checkpoint`, loadable as ``checkpoint:<folder>``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from deepclust.encoders.checkpoint import save_checkpoint
from deepclust.encoders.transform import ImageTransform
from deepclust.errors import InputError
from deepclust.runinfo import write_bytes, write_json

__all__ = [
    "STATE_FILE",
    "export_encoder",
    "load_optimizer_tensors",
    "load_training_state",
    "optimizer_tensors",
    "remove_training_state",
    "save_training_state",
]

STATE_FILE = "checkpoint.json"
FORMAT = "deepclust-deepcluster-checkpoint"
FORMAT_VERSION = 1


def save_training_state(folder: str | os.PathLike, tensors: dict[str, torch.Tensor],
                        state: dict[str, Any], *, keep_all: bool = False) -> Path:
    """Write one checkpoint; returns the path of its JSON.

    Parameters
    ----------
    folder : path
        The run folder (created if needed).
    tensors : dict of str to Tensor
        Written to safetensors (moved to the CPU, made contiguous).
    state : dict
        JSON-serialisable; must hold ``epoch`` (epochs finished).
    keep_all : bool
        Keep the tensor files of earlier epochs.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"checkpoint-epoch{int(state['epoch']):04d}.safetensors"
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_bytes(folder / name, save(cpu, metadata={"format": FORMAT, "epoch": str(state["epoch"])}))
    write_json(folder / STATE_FILE,
               {"format": FORMAT, "format_version": FORMAT_VERSION, **state, "tensors": name})
    if not keep_all:
        for old in folder.glob("checkpoint-epoch*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)
    return folder / STATE_FILE


def load_training_state(folder: str | os.PathLike
                        ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The last checkpoint in ``folder`` as ``(tensors, state)``, or None if there is none."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} cannot be read ({exc}); remove it to start over") from None
    if state.get("format") != FORMAT:
        raise InputError(f"{path} is not a DeepCluster checkpoint")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"{path} was written by a newer deepclust; upgrade to resume it")
    tensor_path = path.parent / state["tensors"]
    if not tensor_path.is_file():
        raise InputError(f"{path} names {tensor_path.name}, which is missing; remove "
                         f"{STATE_FILE} to start over")
    return load_file(str(tensor_path)), state


def remove_training_state(folder: str | os.PathLike) -> None:
    """Delete the checkpoint files of ``folder`` (to start a run over)."""
    folder = Path(folder)
    (folder / STATE_FILE).unlink(missing_ok=True)
    for old in folder.glob("checkpoint-epoch*.safetensors"):
        old.unlink(missing_ok=True)


def optimizer_tensors(optimizer: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter],
                      prefix: str = "optim.") -> dict[str, torch.Tensor]:
    """The optimiser's per-parameter state (SGD: momentum buffers), keyed by parameter name."""
    out = {}
    for name, p in named.items():
        for key, value in optimizer.state.get(p, {}).items():
            if isinstance(value, torch.Tensor):
                out[f"{prefix}{name}.{key}"] = value
    return out


def load_optimizer_tensors(optimizer: torch.optim.Optimizer,
                           named: dict[str, torch.nn.Parameter],
                           tensors: dict[str, torch.Tensor], prefix: str = "optim.") -> int:
    """Put the buffers of :func:`optimizer_tensors` back; returns how many were restored."""
    n = 0
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        name, _, buffer = key[len(prefix):].rpartition(".")
        if name not in named:
            raise InputError(f"checkpoint holds optimiser state for unknown parameter {name!r}")
        p = named[name]
        optimizer.state[p][buffer] = value.to(device=p.device, dtype=p.dtype).clone()
        n += 1
    return n


def export_encoder(network: torch.nn.Module, path: str | os.PathLike, transform: ImageTransform,
                   *, layer: str = "trunk", name: str | None = None,
                   extra: dict | None = None) -> Path:
    """Save a trained :class:`~deepclust.deepcluster.models.DeepClusterNet` as an encoder.

    The folder (``config.json`` + ``model.safetensors``) loads with
    ``deepclust.encoders.get_encoder("checkpoint:<path>")`` and ``deepclust embed
    --encoder checkpoint:<path>``.

    Parameters
    ----------
    network : DeepClusterNet
    path : path
    transform : ImageTransform
        The deterministic preprocessing of the feature pass.
    layer : {"trunk", "embed"}
        The encoder's features: the convolutional trunk (flattened; pooled for ResNets),
        or the clustered features (the classifier's output without its last ReLU).
    name : str, optional
    extra : dict, optional
        Training details stored in the config.
    """
    from deepclust.deepcluster.models import export_architecture

    if layer not in ("trunk", "embed"):
        raise InputError(f"layer must be 'trunk' or 'embed', got {layer!r}")
    was_training, output = network.training, network.output
    network.eval()
    network.output = layer
    try:
        return save_checkpoint(path, network, export_architecture(network.arch), transform,
                               arch_kwargs={**network.arch_kwargs, "output": layer},
                               dim=network.out_dim, name=name or f"deepcluster-{network.arch}",
                               extra=extra)
    finally:
        network.train(was_training)
        network.output = output
