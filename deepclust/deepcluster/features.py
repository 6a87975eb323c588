"""The deterministic feature pass: centre crop, normalise, forward in eval mode."""

from __future__ import annotations

import contextlib

import torch

from deepclust.deepcluster.augment import center_crop, normalise

__all__ = ["autocast", "network_features"]


def autocast(device: torch.device, precision: str):
    """bfloat16 autocast on ``device`` when ``precision == "bf16"``, else a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def network_features(network: torch.nn.Module, pixels: torch.Tensor, *, input_size: int,
                     mean: torch.Tensor, std: torch.Tensor, batch_size: int = 256,
                     precision: str = "fp32", channels_last: bool = False,
                     layer: str = "forward", progress=None) -> torch.Tensor:
    """Features of every image of ``pixels`` under the network in eval mode.

    Parameters
    ----------
    network : nn.Module
        Maps a normalised ``(B, 3, input_size, input_size)`` batch to ``(B, d)``.
    pixels : Tensor of shape (N, C, S, S), uint8
    input_size : int
        Side of the central crop the network sees.
    mean, std : Tensor of shape (3,)
    batch_size : int
    precision : {"fp32", "bf16"}
    channels_last : bool
    layer : {"forward", "embed", "trunk"}
        The network's method to call (:class:`~deepclust.deepcluster.models.DeepClusterNet`
        has ``embed``, the clustered features, and ``trunk``, the convolutional ones).
    progress : tqdm bar, optional
        Advanced by the number of images of each batch.

    Returns
    -------
    Tensor of shape (N, d), float32, on the CPU
    """
    device = next(network.parameters()).device
    fn = network if layer == "forward" else getattr(network, layer)
    was_training = network.training
    network.eval()
    out = []
    try:
        with torch.inference_mode(), autocast(device, precision):
            for start in range(0, pixels.shape[0], batch_size):
                batch = pixels[start : start + batch_size].to(device, non_blocking=True)
                x = normalise(center_crop(batch, input_size), mean, std)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                out.append(fn(x).float().cpu())
                if progress is not None:
                    progress.update(batch.shape[0])
    finally:
        network.train(was_training)
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)
