"""The value every loader returns: rows to cluster, with optional labels and ids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FeatureSet:
    """Rows to cluster, with optional labels (−1 = unknown) and ids."""

    X: np.ndarray
    y: np.ndarray | None = None
    ids: np.ndarray | None = None
    class_names: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.X)

    @property
    def has_labels(self) -> bool:
        return self.y is not None and bool(np.any(self.y >= 0))
