"""Checkpoints of head training: tensors in safetensors, the rest in JSON.

A checkpoint folder holds ``checkpoint-<step>.safetensors`` (heads, teacher, optimiser
moments, the objective's state, the loss history) and ``checkpoint.json`` (the step, the
settings, a fingerprint of the data, and the name of its tensor file). The tensor file is
written first and ``checkpoint.json`` replaces the previous one atomically afterwards, so an
interruption at any moment leaves the last complete checkpoint readable; older tensor files
are removed only once the new JSON is in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from deepclust.errors import InputError
from deepclust.runinfo import write_bytes, write_json

__all__ = ["STATE_FILE", "load_checkpoint", "save_checkpoint"]

STATE_FILE = "checkpoint.json"
FORMAT = "deepclust-heads-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(folder: str | os.PathLike, tensors: dict[str, torch.Tensor],
                    state: dict) -> Path:
    """Write one checkpoint; returns the path of its JSON.

    Parameters
    ----------
    folder : path
        Created if needed.
    tensors : dict of str to tensor
        Contiguous CPU tensors.
    state : dict
        JSON-serialisable; must hold ``step``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"checkpoint-{int(state['step']):08d}.safetensors"
    write_bytes(folder / name, save(tensors))
    write_json(folder / STATE_FILE,
               {"format": FORMAT, "format_version": FORMAT_VERSION, **state, "tensors": name})
    for old in folder.glob("checkpoint-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder / STATE_FILE


def load_checkpoint(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The checkpoint in ``folder`` as ``(tensors, state)``, or None if there is none."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} cannot be read ({exc}); remove the folder to start over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path} is not a deepclust head checkpoint; remove the folder to "
                         "start over")
    step = state.get("step")
    if (isinstance(step, bool) or not isinstance(step, int) or step < 0
            or not isinstance(state.get("identity", {}), dict)):
        raise InputError(f"{path} is damaged (its step or identity is not what deepclust "
                         "writes); remove the folder to start over")
    name = state.get("tensors")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
        raise InputError(f"{path} does not name its tensor file ('tensors': {name!r}); remove "
                         "the folder to start over")
    tensor_path = path.parent / name
    if not tensor_path.is_file():
        raise InputError(f"{path} names {tensor_path.name}, which is missing; remove the "
                         "folder to start over")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise InputError(f"{tensor_path} is damaged ({str(exc).splitlines()[0][:120]}); "
                         "remove the folder to start over") from None
    return tensors, state
