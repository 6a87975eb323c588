"""Choosing the number of clusters of one method without labels (``--k auto``).

A sweep fits the clusterer for each k (:func:`deepclust.selection.auto.select` with one
candidate per k) and scores it with a label-free criterion
(:mod:`deepclust.selection.criteria`; the default is the one ``benchmarks/selection.py``
measured best). ``oracle_ami`` exists for research comparisons only: it reads the true
labels, and every output that used it says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from deepclust.cluster import get_clusterer_class
from deepclust.errors import InputError
from deepclust.selection.auto import Candidate, Selection, select
from deepclust.selection.criteria import DEFAULT_CRITERION, ScoringSample, check_criterion


@dataclass
class KSelection:
    """Outcome of a k sweep: the chosen k and the whole curve."""

    criterion: str
    best_k: int
    curve: list[dict] = field(default_factory=list)
    oracle: bool = False
    #: rows the sweep was run on, and how many the input has (equal unless it was sampled)
    rows: int | None = None
    of_rows: int | None = None
    #: every candidate with all its scores (see :class:`~deepclust.selection.auto.Selection`)
    selection: Selection | None = None

    def as_dict(self) -> dict:
        return {"criterion": self.criterion, "best_k": self.best_k, "oracle": self.oracle,
                "rows": self.rows, "of_rows": self.of_rows, "curve": self.curve}


def parse_k_range(text: str | Sequence[int]) -> list[int]:
    """``"2:20"`` (inclusive), ``"2:40:2"`` or ``"5,10,20"`` -> a sorted list of k values.

    Examples
    --------
    >>> parse_k_range("2:6"), parse_k_range("2:10:4"), parse_k_range("20,5,10")
    ([2, 3, 4, 5, 6], [2, 6, 10], [5, 10, 20])
    """
    if not isinstance(text, str):
        try:
            values = [int(v) for v in text]
        except (TypeError, ValueError):
            raise InputError(f"k values must be positive integers, got {text!r}") from None
    elif ":" in text:
        parts = text.split(":")
        try:
            lo, hi = int(parts[0]), int(parts[1])
            step = int(parts[2]) if len(parts) > 2 else 1
        except (ValueError, IndexError):
            raise InputError(f"cannot read k range {text!r}; write LO:HI[:STEP], e.g. 2:20") from None
        if step < 1 or hi < lo:
            raise InputError(f"k range {text!r} is empty; write LO:HI[:STEP] with LO <= HI")
        values = list(range(lo, hi + 1, step))
    else:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"cannot read k values {text!r}; write 2:20 or 5,10,20") from None
    values = sorted(set(values))
    if not values or values[0] < 1:
        raise InputError(f"k values must be positive integers, got {text!r}")
    return values


def check_clusterer_params(params: dict | None) -> dict:
    """A copy of ``params``, refusing the two that the caller sets itself."""
    params = dict(params or {})
    clash = sorted({"n_clusters", "random_state"} & set(params))
    if clash:
        raise InputError(
            f"do not pass {' or '.join(clash)} among the clusterer parameters: give the number "
            "of clusters as k (--k) and the seed as random_state (--seed)"
        )
    return params


def select_k(
    X: np.ndarray,
    method: str,
    k_values: Iterable[int],
    *,
    criterion: str = DEFAULT_CRITERION,
    proxy_embedding: np.ndarray | None = None,
    y_true: np.ndarray | None = None,
    params: dict | None = None,
    random_state=0,
    progress: bool = False,
    sample: ScoringSample | None = None,
) -> KSelection:
    """Fit ``method`` for each k in ``k_values`` on ``X`` and keep the best by ``criterion``.

    Parameters
    ----------
    X : ndarray (n_samples, n_features)
        Features the clusterer sees (already reduced).
    method : str
        A registered clusterer that takes ``n_clusters``.
    k_values : iterable of int
        Candidates; values above the number of samples are dropped.
    criterion : str
        One of :data:`~deepclust.selection.criteria.CRITERIA` (or ``combined``).
        ``umap_silhouette`` uses ``proxy_embedding`` (computed when not given);
        ``oracle_ami`` needs ``y_true`` and is labelled an oracle.
    sample : ScoringSample, optional
        The rows in their original space (the kNN graph and proxy are built from them); by
        default ``X`` itself.
    """
    crit = check_criterion(criterion)
    cls = get_clusterer_class(method)
    if not cls.takes_n_clusters:
        raise InputError(
            f"{method} finds the number of clusters itself; it cannot sweep k "
            "(drop --k, or tune its own parameters)"
        )
    if crit.needs_labels and (y_true is None or not np.any(np.asarray(y_true) >= 0)):
        raise InputError(f"criterion {criterion} is an oracle and needs true labels")
    ks = [k for k in k_values if k <= len(X)]
    if not ks:
        raise InputError(f"no k in the range is at most the number of samples ({len(X)})")
    params = check_clusterer_params(params)
    if sample is None:
        sample = ScoringSample(np.asarray(X, dtype=np.float32), random_state=random_state,
                               proxy=proxy_embedding,
                               y=None if y_true is None else np.asarray(y_true))
    frozen = tuple(sorted(params.items()))
    cands = [Candidate("", method, int(k), frozen) for k in ks]
    try:
        sel = select(sample, cands, criterion=criterion, also=(), random_state=random_state,
                     progress=progress, reduced={"": np.asarray(X, dtype=np.float32)})
    except InputError as exc:
        if "undefined for every candidate" in str(exc):
            raise InputError(f"{criterion} is undefined for every k tried; widen the k range"
                             ) from None
        raise
    curve = [{"k": c["k"], "score": float(c["score"]), "n_clusters": c.get("n_clusters", 0)}
             for c in sel.candidates]
    return KSelection(criterion, sel.best["k"], curve, oracle=crit.needs_labels,
                      rows=len(X), of_rows=len(X), selection=sel)
