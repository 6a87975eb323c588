"""Data in: built-in datasets and feature files."""

from deepclust.data.builtin import (
    BUILTIN_DATASETS,
    Dataset,
    cache_dir,
    dataset_status,
    load_dataset,
    load_digits_dataset,
    load_fashion_mnist,
)
from deepclust.data.features import FeatureSet, load_features

__all__ = [
    "BUILTIN_DATASETS",
    "Dataset",
    "FeatureSet",
    "cache_dir",
    "dataset_status",
    "load_dataset",
    "load_digits_dataset",
    "load_fashion_mnist",
    "load_features",
]
