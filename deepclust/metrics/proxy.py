"""The one UMAP space in which the label-free proxy (the UMAP-silhouette) is measured.

The zero-shot study (Lowe et al. 2024) found the silhouette in a UMAP-reduced space to track
AMI closely, so it chooses settings and the number of clusters when there are no labels.
Scores are only comparable when measured in the same space, so every caller that needs one
(the pipeline, ``--k auto``, the demo, :func:`~deepclust.metrics.umap_silhouette` and
:func:`~deepclust.metrics.label_free` when given no embedding) builds it here, with
:data:`PROXY_UMAP`; a pipeline that ends in UMAP uses its own output instead. Why these
settings: ``docs/architecture.md``, "Label-free proxy space" and "UMAP epochs".
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from deepclust.validation import seed_from

PROXY_UMAP = {"n_components": 50, "n_neighbors": 30, "min_dist": 0.0, "n_epochs": 200}
"""UMAP settings of the proxy space: the study's reduction for clustering (50 dimensions,
``n_neighbors=30``, ``min_dist=0``), with 200 epochs."""


def proxy_space(
    X: ArrayLike,
    *,
    random_state: int | np.random.Generator | None = 0,
    n_components: int = PROXY_UMAP["n_components"],
    n_neighbors: int = PROXY_UMAP["n_neighbors"],
) -> np.ndarray:
    """The UMAP embedding of ``X`` where the label-free proxy is measured.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The features that were clustered (UMAP is fit on every row).
    random_state : int, numpy Generator or None
        Seeds UMAP; None leaves it unseeded (faster, not reproducible).
    n_components, n_neighbors : int
        Only to study the proxy itself; leave the defaults (:data:`PROXY_UMAP`) so that
        scores stay comparable. ``n_components`` is capped at ``n_samples - 3`` (at least
        2), so that tiny inputs can be embedded.

    Returns
    -------
    ndarray of shape (n_samples, n_components), float32
    """
    # Imported here so that `import deepclust.metrics` does not pay for umap and numba.
    from deepclust.reduce import umap_embedding

    settings = dict(PROXY_UMAP, n_components=n_components, n_neighbors=n_neighbors)
    settings["n_components"] = min(settings["n_components"], max(2, len(X) - 3))
    seed = None if random_state is None else seed_from(random_state)
    return umap_embedding(X, random_state=seed, **settings)
