"""Outlier scores from neighbour distances.

A row's outlier score is its mean cosine distance (1 - cosine similarity) to its
:data:`OUTLIER_NEIGHBORS` nearest rows, turned into a percentile rank over all rows: 0 for
the most crowded row, 1 for the most isolated. A rank rather than the raw distance, so the
score reads the same whatever the encoder's scale of distances ("in the top 5 % most
isolated"); the raw mean distance is returned too.
"""

from __future__ import annotations

import numpy as np

__all__ = ["OUTLIER_NEIGHBORS", "mean_neighbor_distance", "outlier_scores"]

#: Neighbours whose mean distance makes the outlier score.
OUTLIER_NEIGHBORS = 10


def mean_neighbor_distance(neighbors, k: int = OUTLIER_NEIGHBORS) -> np.ndarray:
    """Mean cosine distance of each row to its ``k`` nearest rows (fewer if the table holds
    fewer), float64."""
    sims = np.asarray(neighbors.similarities, dtype=np.float64)[:, :k]
    if sims.shape[1] == 0:
        return np.zeros(len(sims))
    return np.mean(1.0 - sims, axis=1)


def outlier_scores(neighbors, k: int = OUTLIER_NEIGHBORS) -> np.ndarray:
    """Percentile rank in [0, 1] of each row's mean distance to its ``k`` nearest rows.

    Parameters
    ----------
    neighbors : deepclust.neighbors.Neighbors
        Each row's nearest rows by cosine similarity (itself excluded).
    k : int
        Neighbours averaged.

    Returns
    -------
    ndarray of float64, shape (n,)
        1 = the most isolated row, 0 = the least; ties share their mean rank.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> table = SimpleNamespace(similarities=np.array([[0.9], [0.5], [0.1]]))
    >>> outlier_scores(table).tolist()
    [0.0, 0.5, 1.0]
    """
    from scipy.stats import rankdata

    distance = mean_neighbor_distance(neighbors, k)
    n = len(distance)
    if n < 2:
        return np.zeros(n)
    return (rankdata(distance, method="average") - 1.0) / (n - 1.0)
