"""How good a clustering is: against true labels, and without them.

==========================  ==================================================================
module                      what it owns
==========================  ==================================================================
:mod:`.noise`               the rules for ``-1`` (unknown label in ``y_true``, noise in
                            ``y_pred``) and the ``noise`` modes every label-based score obeys
:mod:`.external`            label-based scores: ACC (Hungarian), many-to-one ACC, purity,
                            NMI / AMI / ARI / homogeneity / completeness, :func:`evaluate`
:mod:`.internal`            label-free scores: silhouette, UMAP-silhouette, Davies–Bouldin,
                            Calinski–Harabasz, :func:`label_free`
:mod:`.proxy`               the one UMAP space of the label-free proxy (:data:`PROXY_UMAP`,
                            :func:`proxy_space`)
:mod:`.tables`              contingency table, cluster → class mappings, per-class and
                            per-cluster tables
==========================  ==================================================================

Everything public is importable from here: ``from deepclust import metrics as M;
M.evaluate(y_true, y_pred)``, ``M.label_free(X, y_pred)``.

Examples
--------
>>> evaluate([0, 0, 1, 1], [1, 1, 0, 0])["ami"]
1.0
"""

from deepclust.metrics.external import (
    AverageMethod,
    ami,
    ari,
    cluster_acc,
    completeness,
    evaluate,
    homogeneity,
    many_to_one_acc,
    nmi,
    purity,
)
from deepclust.metrics.internal import (
    DEFAULT_SAMPLE_SIZE,
    calinski_harabasz,
    davies_bouldin,
    label_free,
    silhouette,
    umap_silhouette,
)
from deepclust.metrics.noise import NOISE, NoiseMode
from deepclust.metrics.proxy import PROXY_UMAP, proxy_space
from deepclust.metrics.tables import (
    Contingency,
    contingency,
    hungarian_mapping,
    many_to_one_mapping,
    per_class_table,
    per_cluster_table,
)

__all__ = [
    "DEFAULT_SAMPLE_SIZE",
    "NOISE",
    "PROXY_UMAP",
    "AverageMethod",
    "Contingency",
    "NoiseMode",
    "ami",
    "ari",
    "calinski_harabasz",
    "cluster_acc",
    "completeness",
    "contingency",
    "davies_bouldin",
    "evaluate",
    "homogeneity",
    "hungarian_mapping",
    "label_free",
    "many_to_one_acc",
    "many_to_one_mapping",
    "nmi",
    "per_class_table",
    "per_cluster_table",
    "proxy_space",
    "purity",
    "silhouette",
    "umap_silhouette",
]
