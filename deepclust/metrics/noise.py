"""The two special label values, and how every score in :mod:`deepclust.metrics` treats them.

* ``-1`` in ``y_true`` means **unknown label** (the ``ImageSource`` contract). Those rows are
  dropped before any score is computed; :func:`~deepclust.metrics.evaluate` reports how many
  as ``n_unknown``. They are never a class.
* ``-1`` in ``y_pred`` means **noise**: a point the clusterer declined to assign (HDBSCAN).
  The ``noise`` argument of the label-based scores says how noise is scored:

  ``"cluster"`` (default)
      All noise points together form one extra cluster. A method that discards points pays
      for it, and the numbers are comparable with the zero-shot study (Lowe et al. 2024),
      which scores HDBSCAN this way. It is also what scikit-learn does with a ``-1`` label.
  ``"singletons"``
      Each noise point is a cluster of its own. Harsher on NMI and ACC than ``"cluster"``
      when there is much noise, but every singleton is pure, so **purity and many-to-one
      accuracy rise with the amount of noise**; do not compare those two under this mode.
  ``"exclude"``
      Only non-noise points are scored. The scores then describe the points the method
      chose to keep, so :func:`~deepclust.metrics.evaluate` always reports ``coverage``
      (scored / labelled) and ``noise_fraction`` beside them: a score of 0.99 at coverage
      0.2 is not a good result. If every point is noise, every score is NaN.

  Any other negative label is an error.

The label-free scores (:mod:`deepclust.metrics.internal`) always leave noise points out.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from deepclust.errors import InputError
from deepclust.validation import check_labels

NOISE = -1
"""The label of a noise point in ``y_pred`` and of an unknown label in ``y_true``."""

NoiseMode = Literal["cluster", "singletons", "exclude"]
NOISE_MODES = ("cluster", "singletons", "exclude")


def check_label_values(labels: np.ndarray, name: str) -> np.ndarray:
    """``labels``, refusing negative values other than :data:`NOISE`."""
    if labels.size and labels.min() < NOISE:
        bad = np.unique(labels[labels < NOISE])[:5]
        raise InputError(
            f"{name} has negative labels other than -1 ({', '.join(map(str, bad))}); "
            "-1 is the only special value (noise in y_pred, unknown in y_true): "
            "relabel the others"
        )
    return labels


def check_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` and ``y_pred`` as checked integer arrays of the same, non-zero length."""
    t = check_labels(y_true, name="y_true")
    if t.size == 0:
        raise InputError("y_true is empty; there is nothing to score")
    p = check_labels(y_pred, n_samples=t.shape[0], name="y_pred")
    return check_label_values(t, "y_true"), check_label_values(p, "y_pred")


def check_noise(noise: str, allowed: tuple[str, ...] = NOISE_MODES) -> str:
    """``noise``, refusing a mode not in ``allowed``."""
    if noise not in allowed:
        raise InputError(f"noise must be one of {', '.join(map(repr, allowed))}, got {noise!r}")
    return noise


def apply_noise(t: np.ndarray, p: np.ndarray, noise: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows and labels to score, after the unknown-label and noise rules.

    Examples
    --------
    >>> t, p = np.array([0, 0, 1, -1]), np.array([3, -1, -1, 4])
    >>> apply_noise(t, p, "singletons")  # the two noise points become clusters 4 and 5
    (array([0, 0, 1]), array([3, 4, 5]))
    >>> apply_noise(t, p, "exclude")
    (array([0]), array([3]))
    """
    known = t != NOISE
    if not known.any():
        raise InputError(
            "every row of y_true is -1 (unknown label); there is nothing to score. "
            "Use label_free() to judge a clustering without labels"
        )
    t, p = t[known], p[known]
    is_noise = p == NOISE
    if not is_noise.any() or noise == "cluster":
        return t, p  # -1 is then an ordinary label value: one cluster
    if noise == "exclude":
        return t[~is_noise], p[~is_noise]
    # singletons: fresh labels above every real cluster
    p = p.copy()
    start = int(p[~is_noise].max()) + 1 if (~is_noise).any() else 0
    p[is_noise] = np.arange(start, start + int(is_noise.sum()))
    return t, p


def scored(y_true: ArrayLike, y_pred: ArrayLike, noise: str) -> tuple[np.ndarray, np.ndarray]:
    """Check a pair of label arrays and apply the rules: the labels a score sees."""
    t, p = check_pair(y_true, y_pred)
    return apply_noise(t, p, check_noise(noise))
