"""What a clustering will cost, said before it starts.

Some methods grow with the square of the number of rows (a pairwise matrix, a minimum
spanning tree over all pairs, an affinity graph's eigenvectors) or with the square of the
dimension (a full covariance per component). :func:`estimate` gives the memory and time of
a fit from ``n`` and ``d`` alone; :func:`check_cost` (the pipeline calls it before any row is
read) refuses a fit whose memory would pass :data:`MEMORY_LIMIT_BYTES` and warns
(:class:`CostWarning`) when the time would pass :data:`WARN_SECONDS`, each time with the
estimate and what to do instead. The time coefficients were measured with
``benchmarks/cost.py`` on this project's 2-core CPU (see docs/architecture.md, "Cost
guards"); they are orders of magnitude, not promises.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from deepclust.errors import InputError

#: A fit whose estimated memory passes this is refused up front.
MEMORY_LIMIT_BYTES = 8 * 2**30
#: A fit whose estimated time passes this is announced up front (CostWarning).
WARN_SECONDS = 60.0

# Seconds per unit of each method's cost model, from benchmarks/cost.py (64 dims, 4 000 rows,
# a 2-core CPU under a load average of about 8): see docs/architecture.md, "Cost guards".
_SECONDS_PER = {
    "spectral": 4.4e-8,              # x n^2 (kNN graph and eigenvectors): 0.71 s
    "agglomerative": 1.1e-7,         # x n^2 (pairwise distances and merges): 1.79 s
    "hdbscan": 1.3e-9,               # x n^2 d (core distances, spanning tree): 1.31 s
    "affinity-propagation": 5.8e-8,  # x n^2 max_iter (messages over every pair): 184 s
    "gmm": 5.9e-10,                  # x n k d^2 max_iter n_init (full covariances): 9.6 s
}


class CostWarning(UserWarning):
    """A fit announced as slow before it starts (the message carries the estimate)."""


@dataclass
class CostEstimate:
    """The estimated cost of one fit: ``seconds`` and ``memory_bytes`` (None when not the
    concern), what dominates it, and what to do instead."""

    method: str
    n: int
    seconds: float | None
    memory_bytes: float | None
    what: str
    instead: str

    def describe(self) -> str:
        parts = []
        if self.memory_bytes is not None:
            parts.append(f"about {self.memory_bytes / 2**30:.1f} GiB")
        if self.seconds is not None:
            parts.append(f"about {_duration(self.seconds)} here")
        return f"{self.method} on {self.n} rows needs {' and '.join(parts)} ({self.what})"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _method_name(cls) -> str:
    from deepclust.cluster.base import available_methods, get_clusterer_class

    return next((n for n in available_methods() if get_clusterer_class(n) is cls),
                cls.__name__)


def estimate(cls, params: dict, n: int, d: int, *, k: int | str | None = None
             ) -> CostEstimate | None:
    """The cost of fitting clusterer class ``cls`` with ``params`` on ``n`` x ``d`` rows,
    or None for methods whose cost grows linearly in ``n`` (k-means and its kin, the heads)."""
    name = _method_name(cls)
    p = {**cls().get_params(deep=False), **params}
    n, d = int(n), int(d)
    rate = _SECONDS_PER.get(name)
    if rate is None:
        return None
    scale = "cluster a seeded subsample"
    if name == "spectral":
        return CostEstimate(name, n, rate * n * n, None,
                            "an affinity graph and its eigenvectors grow as n^2",
                            f"{scale}, or use kmeans (or minibatch-kmeans), which scale")
    if name == "agglomerative":
        return CostEstimate(name, n, rate * n * n, 8.0 * n * n / 2,
                            "a pairwise distance matrix", f"{scale}, or use kmeans or "
                            "hierarchical-kmeans, which scale")
    if name == "hdbscan":
        return CostEstimate(name, n, rate * n * n * d, None,
                            "a spanning tree over every pair of rows",
                            f"{scale}, reduce first (--reduce pca:50,umap:10), or use kmeans")
    if name == "affinity-propagation":
        return CostEstimate(name, n, rate * n * n * int(p.get("max_iter") or 200),
                            8.0 * n * n * 4, "four n x n message matrices",
                            f"{scale}, or use kmeans, or hdbscan on reduced rows")
    if name == "gmm":
        if p.get("covariance_type", "full") != "full":
            return None
        kk = k if isinstance(k, int) else int(p.get("n_clusters") or 8)
        if k == "auto":
            kk = 20  # the sweep's largest k by default
        return CostEstimate(name, n, rate * n * kk * d * d * int(p.get("max_iter") or 100)
                            * int(p.get("n_init") or 1), 8.0 * kk * d * d,
                            f"a full {d} x {d} covariance per component",
                            "pass --param covariance_type=diag, or reduce first "
                            "(--reduce pca:50)")
    return None


def check_cost(cls, params: dict, n: int, d: int, *, k: int | str | None = None) -> None:
    """Refuse a fit whose estimated memory passes :data:`MEMORY_LIMIT_BYTES`; warn
    (:class:`CostWarning`) when its estimated time passes :data:`WARN_SECONDS`."""
    est = estimate(cls, params, n, d, k=k)
    if est is None:
        return
    if est.memory_bytes is not None and est.memory_bytes > MEMORY_LIMIT_BYTES:
        raise InputError(f"{est.describe()}, over the {MEMORY_LIMIT_BYTES / 2**30:.0f} GiB "
                         f"limit; {est.instead}")
    if est.seconds is not None and est.seconds > WARN_SECONDS:
        warnings.warn(f"{est.describe()}; {est.instead}", CostWarning, stacklevel=2)
