"""deepclust: cluster images — frozen encoders, classic and deep clustering, honest metrics.

>>> import deepclust
>>> run = deepclust.cluster_images("photos/", out="runs/photos")  # doctest: +SKIP
>>> run.assignments.column_names[:4]  # doctest: +SKIP
['row', 'id', 'path', 'cluster']
"""

from deepclust.version import __version__


def __getattr__(name: str):
    # the one-call API, imported on first use: `import deepclust` stays light (no torch)
    if name in ("cluster_images", "ImageClustering"):
        from deepclust import images

        return getattr(images, name)
    raise AttributeError(f"module 'deepclust' has no attribute {name!r}")


__all__ = ["ImageClustering", "__version__", "cluster_images"]
