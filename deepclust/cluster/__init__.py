"""Clusterers with the scikit-learn estimator API, reachable by name.

>>> from deepclust.cluster import make_clusterer
>>> km = make_clusterer("kmeans", n_clusters=10, random_state=0)
"""

from deepclust.cluster.base import (
    BaseClusterer,
    available_methods,
    get_clusterer_class,
    make_clusterer,
    register,
)
from deepclust.cluster.classic import (  # noqa: F401  (registers the classic methods)
    HDBSCAN,
    AffinityPropagation,
    Agglomerative,
    GaussianMixture,
    Spectral,
)
from deepclust.cluster.consensus import Consensus  # noqa: F401  (registers "consensus")
from deepclust.cluster.heads import (  # noqa: F401  (registers "temi", "scan", "scanv2", "turtle")
    SCAN,
    TEMI,
    TURTLE,
    SCANv2,
)
from deepclust.cluster.hierarchical import HierarchicalKMeans  # noqa: F401  (registers "hkmeans")
from deepclust.cluster.kmeans import KMeans  # noqa: F401  (registers "kmeans")
from deepclust.cluster.minibatch import MiniBatchKMeans  # noqa: F401  (registers "minibatch-kmeans")

__all__ = [
    "BaseClusterer",
    "Consensus",
    "HierarchicalKMeans",
    "KMeans",
    "MiniBatchKMeans",
    "Agglomerative",
    "AffinityPropagation",
    "GaussianMixture",
    "HDBSCAN",
    "Spectral",
    "TURTLE",
    "available_methods",
    "get_clusterer_class",
    "make_clusterer",
    "register",
]
