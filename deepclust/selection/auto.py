"""Choosing the reducer, the method and k without labels: fit every candidate on one sample,
score each with one criterion, keep the best.

A :class:`Candidate` is a reducer chain, a registered method and k (None for methods that
find k themselves). :func:`default_candidates` builds the grid of ``--method auto``
(:data:`AUTO_METHODS` x :data:`AUTO_REDUCERS` x k), leaving out, with the reason, what would
be too slow or too large on the whole input (:mod:`deepclust.cluster.cost`, and UMAP above
:data:`UMAP_MAX_ROWS` rows). :func:`select` fits each candidate on a :class:`ScoringSample`,
scores it with the criterion (and any others asked for), and returns a :class:`Selection`:
every candidate with its scores, the pick, the runner-up and the margin between them (the
confidence), and a warning when the pick's k is at the edge of the range.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings as warnings_module
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from deepclust.cluster import get_clusterer_class, make_clusterer
from deepclust.errors import InputError
from deepclust.metrics.proxy import PROXY_UMAP
from deepclust.selection.criteria import (
    DEFAULT_CRITERION,
    ScoringSample,
    check_criterion,
    parts,
    score,
    values,
)

#: The reducer whose output on the scoring sample is the proxy UMAP space itself (so it is
#: computed once); applied to every row when picked.
UMAP_REDUCER = ("umap:{n_components}:n_neighbors={n_neighbors}:min_dist={min_dist}:"
                "n_epochs={n_epochs}").format(**PROXY_UMAP)
#: Reducers ``--method auto`` tries: none (PCA to 50 dimensions when there are more) and the
#: proxy UMAP space.
AUTO_REDUCERS = ("pca", UMAP_REDUCER)
#: Methods ``--method auto`` tries (with their parameters).
AUTO_METHODS = (("kmeans", {"n_init": 3}), ("agglomerative", {"linkage": "ward"}),
                ("gmm", {"covariance_type": "diag"}), ("hdbscan", {}))
#: Above this many rows UMAP reducers are left out of ``--method auto`` (fitting UMAP on every
#: row would cost minutes; see docs/selection.md).
UMAP_MAX_ROWS = 100_000
#: Rows of the sample ``--method auto`` fits its candidates on.
AUTO_ROWS = 3_000
#: Samples up to this many rows are fitted one thread per fit (``runtime.single_threaded``):
#: many small fits run about twice as fast so (docs/selection.md, "Cost").
SINGLE_THREAD_ROWS = 20_000
#: Criteria cheap enough to compute beside the chosen one for every candidate.
CHEAP_CRITERIA = ("modularity", "learnability")


@dataclass(frozen=True)
class Candidate:
    """One pipeline to try: reducer chain ("" for none), registered method, k, parameters."""

    reducer: str
    method: str
    k: int | None
    params: tuple = ()

    @property
    def name(self) -> str:
        reducer = "umap:50 (proxy)" if self.reducer == UMAP_REDUCER else self.reducer
        return f"{reducer or 'none'} | {self.method}" + (
            f" | k={self.k}" if self.k is not None else "")

    def as_dict(self) -> dict:
        return {"reducer": self.reducer, "method": self.method, "k": self.k,
                "params": dict(self.params)}


@dataclass
class Selection:
    """The outcome of :func:`select`: every candidate scored, and the pick."""

    criterion: str
    candidates: list[dict]
    pick: int
    #: the best candidate whose partition differs from the pick's (ARI < 0.99), and how far
    #: below the pick it scores: the confidence of the choice
    runner_up: int | None
    margin: float
    rows: int
    of_rows: int
    oracle: bool = False
    skipped: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best(self) -> dict:
        return self.candidates[self.pick]

    def as_dict(self) -> dict:
        return {"criterion": self.criterion, "oracle": self.oracle, "rows": self.rows,
                "of_rows": self.of_rows, "pick": self.pick, "runner_up": self.runner_up,
                "margin": self.margin, "best": self.best, "candidates": self.candidates,
                "skipped": self.skipped, "warnings": self.warnings, "seconds": self.seconds}


def pca_reducer(n_features: int, n_rows: int) -> str:
    """``pca:50`` when the rows have more than 50 features (and rows), else no reducer."""
    width = min(50, n_rows - 1)
    return f"pca:{width}" if n_features > width >= 1 else ""


def default_candidates(k_values: Sequence[int], n_rows: int, n_features: int, *,
                       methods=AUTO_METHODS, reducers=AUTO_REDUCERS,
                       fit_rows: int | None = None) -> tuple[list[Candidate], list[dict]]:
    """The ``--method auto`` grid for an input of ``n_rows`` x ``n_features``, and what was
    left out of it (each with its reason). ``fit_rows``: rows of the sample the candidates
    are fitted on, when fewer than ``min(n_rows, AUTO_ROWS)`` (sizes the PCA)."""
    from deepclust.cluster.cost import WARN_SECONDS, estimate

    cands, skipped = [], []
    for reducer in reducers:
        if reducer == "pca":
            reducer = pca_reducer(n_features, fit_rows or min(n_rows, AUTO_ROWS))
        if reducer.startswith("umap") and n_rows > UMAP_MAX_ROWS:
            skipped.append({"reducer": reducer, "reason": f"UMAP on {n_rows} rows (more than "
                                                          f"{UMAP_MAX_ROWS}) would take minutes"})
            continue
        width = 50 if reducer else n_features
        for item in methods:
            method, params = (item, {}) if isinstance(item, str) else item
            cls = get_clusterer_class(method)
            est = estimate(cls, dict(params), n_rows, width, k=max(k_values))
            if est is not None and ((est.seconds or 0) > WARN_SECONDS or (
                    est.memory_bytes or 0) > 2 * 2**30):
                skipped.append({"reducer": reducer, "method": method,
                                "reason": est.describe()})
                continue
            frozen = tuple(sorted(params.items()))
            if cls.takes_n_clusters:
                cands += [Candidate(reducer, method, int(k), frozen) for k in k_values]
            else:
                cands.append(Candidate(reducer, method, None, frozen))
    return cands, skipped


def _reduce(reducer: str, sample: ScoringSample, random_state) -> np.ndarray:
    if not reducer:
        return sample.X
    if reducer == UMAP_REDUCER:
        return sample.proxy_space()
    from deepclust.reduce import build_reducer

    pipe = build_reducer(reducer, random_state=random_state)
    return np.ascontiguousarray(pipe.fit_transform(sample.X), dtype=np.float32)


def fit_candidate(cand: Candidate, Z: np.ndarray, random_state=0):
    """The fitted estimator of ``cand`` on the reduced rows ``Z``, and its labels."""
    extra = {} if cand.k is None else {"n_clusters": min(int(cand.k), len(Z))}
    est = make_clusterer(cand.method, random_state=random_state, **dict(cand.params), **extra)
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("ignore")
        labels = np.asarray(est.fit_predict(Z), dtype=np.int64)
    return est, labels


def _fit_or_cut(cand: Candidate, Z, candidates, trees: dict, random_state):
    """Fit ``cand``; for a method with ``fit_predict_ks`` (a tree cut at each k), build its
    tree once for all of this reducer's and parameters' k and cut it."""
    cls = get_clusterer_class(cand.method)
    if cand.k is None or not hasattr(cls, "fit_predict_ks"):
        return fit_candidate(cand, Z, random_state)
    key = (cand.reducer, cand.method, cand.params)
    if key not in trees:
        ks = sorted({min(int(c.k), len(Z)) for c in candidates
                     if (c.reducer, c.method, c.params) == key})
        est = make_clusterer(cand.method, random_state=random_state, **dict(cand.params))
        trees[key] = est.fit_predict_ks(Z, ks)
    return None, trees[key][min(int(cand.k), len(Z))]


def select(sample: ScoringSample, candidates: Sequence[Candidate], *,
           criterion: str = DEFAULT_CRITERION, also: Sequence[str] = CHEAP_CRITERIA,
           of_rows: int | None = None, random_state=0, progress: bool = False,
           skipped: list[dict] | None = None,
           reduced: dict[str, np.ndarray] | None = None,
           keep_labels: bool = False) -> Selection:
    """Fit every candidate on ``sample``, score it, and pick the best by ``criterion``.

    Parameters
    ----------
    sample : ScoringSample
        The rows (original features) every candidate is fitted and scored on.
    candidates : sequence of Candidate
    criterion : str
        A name in :data:`~deepclust.selection.criteria.CRITERIA`, or ``combined``.
    also : sequence of str
        Further criteria recorded for every candidate (not used for the pick).
    of_rows : int, optional
        Rows of the whole input (recorded; default the sample's).
    reduced : dict, optional
        Reducer spec -> the sample's rows already reduced by it (reused, not refitted).
    keep_labels : bool
        Keep each candidate's labels on the sample in its row (``"labels"``, an array).
    """
    crit = check_criterion(criterion)
    if crit.needs_labels and (sample.y is None or not np.any(sample.y >= 0)):
        raise InputError(f"criterion {criterion} is an oracle and needs true labels")
    if not candidates:
        raise InputError("no candidate to choose from: every method was left out "
                         + "(" + "; ".join(s["reason"] for s in (skipped or [])) + ")"
                         if skipped else "no candidate to choose from")
    names = parts(criterion)
    names += [n for n in also if n not in names and n != "combined"]
    t0 = time.perf_counter()
    from deepclust.runtime import single_threaded

    with single_threaded() if len(sample) <= SINGLE_THREAD_ROWS else contextlib.nullcontext():
        table = _fit_and_score(sample, candidates, names, reduced, random_state, progress,
                               criterion)
    return _pick(table, sample, criterion, crit, of_rows, skipped, keep_labels, t0)


def _fit_and_score(sample, candidates, names, reduced, random_state, progress,
                   criterion) -> list[dict]:
    reduced = dict(reduced or {})
    trees: dict[tuple, dict] = {}  # (reducer, method, params) -> {k: labels} of one tree
    table: list[dict] = []
    iterator = candidates
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(candidates, desc=f"choosing without labels ({criterion})",
                        unit="candidate", leave=False)
    for cand in iterator:
        if cand.reducer not in reduced:
            reduced[cand.reducer] = _reduce(cand.reducer, sample, random_state)
        Z = reduced[cand.reducer]
        row = {**cand.as_dict(), "name": cand.name}
        t = time.perf_counter()
        try:
            est, labels = _fit_or_cut(cand, Z, candidates, trees, random_state)
        except (InputError, ValueError, MemoryError) as exc:
            row.update(error=str(exc).splitlines()[0], scores={}, score=math.nan)
            table.append(row)
            continue
        row["fit_s"] = time.perf_counter() - t

        def refit(positions, seed, cand=cand, Z=Z):
            return fit_candidate(cand, Z[positions], seed)[1]

        if est is not None and hasattr(est, "head_losses_"):
            refit = None  # a head's refits cost minutes: no stability for heads

        found = labels[labels >= 0]
        row.update(n_clusters=int(np.unique(found).size),
                   n_noise=int(np.count_nonzero(labels < 0)))
        row["scores"] = {n: score(n, labels, sample, refit=refit, estimator=est,
                                  features=Z) for n in names}
        row["labels"] = labels
        table.append(row)
    return table


def _pick(table, sample, criterion, crit, of_rows, skipped, keep_labels, t0) -> Selection:
    for row, value in zip(table, values(table, criterion), strict=True):
        row["score"] = float(value)
        if criterion == "combined" and "scores" in row:
            row["scores"]["combined"] = float(value)
    sign = 1.0 if crit.higher_is_better else -1.0
    order = sorted((i for i, r in enumerate(table) if np.isfinite(r["score"])),
                   key=lambda i: -sign * table[i]["score"])
    if not order:
        raise InputError(f"{criterion} is undefined for every candidate (e.g. each found one "
                         "cluster); widen the k range or try other methods")
    pick = order[0]
    runner = _runner_up(table, order)
    margin = (abs(table[pick]["score"] - table[runner]["score"]) if runner is not None
              else math.nan)
    if not keep_labels:
        for row in table:
            row.pop("labels", None)
    sel = Selection(criterion, table, pick, runner, margin, len(sample),
                    of_rows if of_rows is not None else len(sample),
                    oracle=crit.needs_labels, skipped=list(skipped or []),
                    seconds=time.perf_counter() - t0)
    warning = edge_warning(sel)
    if warning:
        sel.warnings.append(warning)
    return sel


def _runner_up(table: list[dict], order: list[int]) -> int | None:
    """The best candidate after the pick whose partition differs from the pick's (ARI below
    0.99): candidates that found the same clusters are the same answer, not a rival."""
    from sklearn.metrics import adjusted_rand_score

    best = table[order[0]].get("labels")
    for i in order[1:]:
        other = table[i].get("labels")
        if best is None or other is None or adjusted_rand_score(best, other) < 0.99:
            return i
    return None


def edge_warning(sel: Selection) -> str | None:
    """A warning when the pick's k is the smallest or largest k its method was tried with
    (the best k may lie outside the range), else None."""
    best = sel.best
    if best["k"] is None:
        return None
    ks = [c["k"] for c in sel.candidates if c["method"] == best["method"]
          and c["reducer"] == best["reducer"] and c["k"] is not None]
    if len(set(ks)) < 2 or best["k"] not in (min(ks), max(ks)):
        return None
    side = "smallest" if best["k"] == min(ks) else "largest"
    return (f"the label-free choice is k={best['k']}, the {side} k of the range "
            f"{min(ks)}:{max(ks)}; the best k may lie outside it: widen --k-range")
