"""DeepCluster: learn an image encoder by clustering its own features (Caron et al., ECCV 2018),
and DeepCluster-v2 (Caron et al., NeurIPS 2020, appendix).

>>> from deepclust.deepcluster import DeepCluster                      # doctest: +SKIP
>>> dc = DeepCluster("small", n_clusters=100, epochs=10).fit("fashion-mnist:train", out="runs/dc")  # doctest: +SKIP
>>> # the trained network is now the encoder "checkpoint:runs/dc/encoder"

Importing this package registers its networks (``deepcluster-<arch>``) with
:func:`deepclust.encoders.checkpoint.register_architecture`.
"""

from deepclust.deepcluster.base import DeepClusterBase, features_of
from deepclust.deepcluster.clustering import ClusteringStep, cluster_features, pca_whiten_l2
from deepclust.deepcluster.data import TrainingImages, load_training_images
from deepclust.deepcluster.evaluate import (
    kmeans_scores,
    linear_probe,
    plot_nmi_curves,
    read_history,
)
from deepclust.deepcluster.models import NETWORKS, DeepClusterNet, SobelFilter, build_network
from deepclust.deepcluster.sampling import UniformLabelSampler, uniform_label_indices
from deepclust.deepcluster.train import DeepCluster
from deepclust.deepcluster.v2 import DeepClusterV2, ProjectionHead

__all__ = [
    "NETWORKS",
    "ClusteringStep",
    "DeepCluster",
    "DeepClusterBase",
    "DeepClusterNet",
    "DeepClusterV2",
    "ProjectionHead",
    "SobelFilter",
    "TrainingImages",
    "UniformLabelSampler",
    "build_network",
    "cluster_features",
    "features_of",
    "kmeans_scores",
    "linear_probe",
    "load_training_images",
    "pca_whiten_l2",
    "plot_nmi_curves",
    "read_history",
    "uniform_label_indices",
]
