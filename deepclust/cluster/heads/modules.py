"""Clustering heads, many at once: the parameters of ``H`` heads live in stacked tensors.

A head (TEMI's, after DINO's projection head) maps an embedding to ``C`` cluster logits::

    Linear(d, hidden) -> GELU -> Linear(hidden, bottleneck) -> L2-normalise
    -> weight-normalised Linear(bottleneck, C, no bias), unit-norm columns

so each logit is the cosine between the bottleneck vector and a learned cluster direction.

:class:`HeadBank` evaluates ``H`` such heads as three large matrix products instead of
``3 H`` small ones. Activations are kept feature-major, ``(H, features, n)``: the first
layers of all heads are one ``(H * hidden, d) @ (d, n)`` product, the next two are batched
over the head axis, and no activation is ever transposed or copied between layers, in the
forward or the backward pass (docs/heads.md has the profile that chose this layout).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HeadBank"]


class HeadBank(nn.Module):
    """``n_heads`` independent clustering heads evaluated together.

    Parameters
    ----------
    in_dim : int
        Embedding dimension ``d``.
    n_clusters : int
        Outputs per head ``C``.
    n_heads : int
        Number of heads ``H``.
    hidden_dim : int
        Width of the hidden layer.
    bottleneck_dim : int
        Width of the L2-normalised bottleneck.
    generator : torch.Generator, optional
        Source of the initial weights (each head gets its own draw).

    Notes
    -----
    ``forward(x)`` takes ``(n, d)`` and returns logits of shape ``(H, n, C)``; logits are
    cosines in ``[-1, 1]``, to be divided by a temperature. Weights are initialised as in
    DINO's head: truncated normal (std 0.02) for the two hidden layers, zero biases; the last
    layer's directions uniformly as ``nn.Linear`` does.
    """

    def __init__(
        self,
        in_dim: int,
        n_clusters: int,
        n_heads: int = 16,
        hidden_dim: int = 512,
        bottleneck_dim: int = 256,
        *,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.in_dim = int(in_dim)
        self.n_clusters = int(n_clusters)
        self.n_heads = int(n_heads)
        self.hidden_dim = int(hidden_dim)
        self.bottleneck_dim = int(bottleneck_dim)
        H, h, b = self.n_heads, self.hidden_dim, self.bottleneck_dim
        # weights stored as (out, in), like nn.Linear, stacked over the heads
        self.w1 = nn.Parameter(torch.empty(H * h, self.in_dim))
        self.b1 = nn.Parameter(torch.zeros(H * h, 1))
        self.w2 = nn.Parameter(torch.empty(H, b, h))
        self.b2 = nn.Parameter(torch.zeros(H, b, 1))
        self.v = nn.Parameter(torch.empty(H, self.n_clusters, b))
        with torch.no_grad():
            nn.init.trunc_normal_(self.w1, std=0.02, a=-2.0, b=2.0, generator=generator)
            nn.init.trunc_normal_(self.w2, std=0.02, a=-2.0, b=2.0, generator=generator)
            bound = 1.0 / math.sqrt(b)
            self.v.uniform_(-bound, bound, generator=generator)

    def config(self) -> dict:
        """The constructor arguments (for checkpoints)."""
        return {"in_dim": self.in_dim, "n_clusters": self.n_clusters, "n_heads": self.n_heads,
                "hidden_dim": self.hidden_dim, "bottleneck_dim": self.bottleneck_dim}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        hid = F.gelu(torch.addmm(self.b1, self.w1, x.T))  # (H * hidden, n): one product
        hid = hid.view(self.n_heads, self.hidden_dim, n)
        z = F.normalize(torch.baddbmm(self.b2, self.w2, hid), dim=1)  # (H, bottleneck, n)
        directions = F.normalize(self.v, dim=2)  # weight norm with the gain fixed at 1
        return torch.bmm(directions.to(z.dtype), z).transpose(1, 2)  # (H, n, C)

    def select(self, heads) -> HeadBank:
        """A new bank with copies of the heads ``heads`` (indices), in that order."""
        idx = torch.as_tensor(heads, dtype=torch.long).reshape(-1)
        out = HeadBank(self.in_dim, self.n_clusters, len(idx), self.hidden_dim,
                       self.bottleneck_dim)
        H, h = self.n_heads, self.hidden_dim
        with torch.no_grad():
            out.w1.copy_(self.w1.detach().view(H, h, -1)[idx].reshape(-1, self.in_dim))
            out.b1.copy_(self.b1.detach().view(H, h, 1)[idx].reshape(-1, 1))
            out.w2.copy_(self.w2.detach()[idx])
            out.b2.copy_(self.b2.detach()[idx])
            out.v.copy_(self.v.detach()[idx])
        return out.to(self.w1.device)
