"""Uniform sampling over pseudo-labels (DeepCluster, section 3.3).

k-means on convnet features tends to make a few huge clusters; trained on them as they are,
the network learns to predict the big clusters. DeepCluster instead samples images uniformly
over the clusters: each non-empty cluster supplies the same number of images per epoch
(up to one), drawn without replacement when it has enough images and with replacement only
for the shortfall of a cluster that is too small.
"""

from __future__ import annotations

import numpy as np
import torch

from deepclust.errors import InputError
from deepclust.validation import check_random_state

__all__ = ["UniformLabelSampler", "uniform_label_indices"]


def uniform_label_indices(labels, n_samples: int, random_state=None) -> np.ndarray:
    """Indices of ``n_samples`` items spread evenly over the non-empty pseudo-labels.

    Each of the ``c`` non-empty clusters gets ``n_samples // c`` items, and
    ``n_samples % c`` clusters chosen at random get one more, so the counts of any two
    clusters differ by at most one. A cluster with at least as many items as its quota is
    sampled without replacement. A smaller cluster gives every item ``quota // size`` times
    and ``quota % size`` distinct items once more: repetition only where it is needed, and
    spread as evenly as possible. The result is shuffled.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Pseudo-label of each item (cluster ids; any non-negative ints).
    n_samples : int
        Length of the result (DeepCluster: the number of items, once per epoch).
    random_state : None, int or numpy Generator

    Returns
    -------
    indices : ndarray of shape (n_samples,), int64

    Examples
    --------
    >>> labels = [0, 0, 0, 0, 0, 0, 1, 2, 2]
    >>> idx = uniform_label_indices(labels, 9, random_state=0)
    >>> np.bincount(np.asarray(labels)[idx]).tolist()
    [3, 3, 3]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise InputError("labels must be a non-empty 1-D array of pseudo-labels")
    if labels.min() < 0:
        raise InputError("pseudo-labels must be non-negative cluster ids")
    n_samples = int(n_samples)
    if n_samples < 0:
        raise InputError(f"n_samples must be non-negative, got {n_samples}")
    rng = check_random_state(random_state)
    order = np.argsort(labels, kind="stable")
    clusters, starts, sizes = np.unique(labels[order], return_index=True, return_counts=True)
    c = clusters.size
    quota = np.full(c, n_samples // c, dtype=np.int64)
    quota[rng.choice(c, n_samples % c, replace=False)] += 1
    out = np.empty(n_samples, dtype=np.int64)
    pos = 0
    for start, size, q in zip(starts, sizes, quota, strict=True):
        members = order[start : start + size]
        if q <= size:
            picked = rng.choice(members, q, replace=False)
        else:  # too small: every member q // size times, then distinct ones for the rest
            picked = np.concatenate([np.tile(members, q // size),
                                     rng.choice(members, q % size, replace=False)])
        out[pos : pos + q] = picked
        pos += q
    rng.shuffle(out)
    return out


class UniformLabelSampler(torch.utils.data.Sampler):
    """A ``torch.utils.data`` sampler over :func:`uniform_label_indices`.

    Parameters
    ----------
    labels : array-like of int
        Pseudo-label of each dataset item.
    n_samples : int, optional
        Items per epoch; default ``len(labels)``.
    seed : int
        With :meth:`set_epoch`, makes every epoch's draw reproducible.
    """

    def __init__(self, labels, n_samples: int | None = None, seed: int = 0):
        self.labels = np.asarray(labels)
        self.n_samples = len(self.labels) if n_samples is None else int(n_samples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        return iter(uniform_label_indices(self.labels, self.n_samples, rng).tolist())

    def __len__(self) -> int:
        return self.n_samples
