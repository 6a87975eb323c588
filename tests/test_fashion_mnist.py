"""End-to-end checks on raw Fashion-MNIST test pixels (10 000 x 784).

- deepclust's k-means agrees with scikit-learn's (same k, n_init and seed) within 0.01 NMI;
- the zero-shot study's recipe, PCA to 50 then UMAP to 50, beats raw k-means.
"""

from __future__ import annotations

import pytest
from sklearn.cluster import KMeans as SklearnKMeans

from deepclust.cluster import KMeans
from deepclust.data import builtin, load_fashion_mnist
from deepclust.metrics import nmi
from deepclust.pipeline import run_clustering
from deepclust.reduce import reduce

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (builtin.DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
        reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
    ),
]

K = 10
N_INIT = 3
SEED = 0
UMAP_RECIPE = "pca:50,umap:50:n_epochs=200"


@pytest.fixture(scope="module")
def fmnist():
    ds = load_fashion_mnist("test", download=False)
    return ds.features(), ds.labels


@pytest.fixture(scope="module")
def raw_kmeans(fmnist):
    X, _ = fmnist
    return KMeans(K, n_init=N_INIT, random_state=SEED).fit(X)


@pytest.fixture(scope="module")
def umap_features(fmnist):
    X, _ = fmnist
    return reduce(X, UMAP_RECIPE, random_state=SEED)


def test_kmeans_agrees_with_scikit_learn(fmnist, raw_kmeans):
    X, y = fmnist
    ours = nmi(y, raw_kmeans.labels_)
    theirs_model = SklearnKMeans(K, n_init=N_INIT, random_state=SEED).fit(X)
    theirs = nmi(y, theirs_model.labels_)
    assert 0.45 < ours < 0.6  # raw-pixel k-means on Fashion-MNIST: about 0.51
    assert abs(ours - theirs) <= 0.01
    # the objective both minimise ends within 1 %
    assert raw_kmeans.inertia_ == pytest.approx(theirs_model.inertia_, rel=0.01)


@pytest.mark.parametrize("method, params", [("kmeans", {"n_init": N_INIT}),
                                            ("agglomerative", {"linkage": "ward"})])
def test_umap_recipe_beats_raw_kmeans(fmnist, raw_kmeans, umap_features, method, params):
    X, y = fmnist
    assert umap_features.shape == (10_000, 50)
    result = run_clustering(X, y, method=method, k=K, reducer=UMAP_RECIPE,
                            reduced=umap_features, params=params, random_state=SEED,
                            label_free=False)
    raw = nmi(y, raw_kmeans.labels_)
    assert result.metrics["nmi"] > raw + 0.05  # about 0.62 against 0.51
    assert result.n_clusters == K
