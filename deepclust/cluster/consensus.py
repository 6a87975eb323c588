"""A consensus head: several methods' partitions combined, a classifier on the agreement.

In the spirit of ensemble-then-distil clustering (e.g. ICCE, 2025): each member clusters the
rows; the member partitions are **aligned** to a reference by the Hungarian matching of
their contingency tables and **vote** row by row; rows where at least ``min_agreement`` of
the members agree are the *confident consensus*; a linear classifier (multinomial logistic
regression on the standardised rows) trained on them labels every row and predicts unseen
ones. No labels are used anywhere: the reference is the member that agrees most with the
others (highest mean NMI to them).
"""

from __future__ import annotations

import time
from numbers import Integral, Real

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import normalized_mutual_info_score

from deepclust.cluster.base import BaseClusterer, get_clusterer_class, make_clusterer, register
from deepclust.data.rows import as_row_source
from deepclust.errors import InputError
from deepclust.validation import RANDOM_STATE, Interval, seed_from

__all__ = ["Consensus", "align_partitions", "member_seed", "member_specs", "vote"]


def align_partitions(partitions: np.ndarray, reference: int, n_clusters: int) -> np.ndarray:
    """Relabel each partition so its clusters match the reference's (Hungarian matching).

    Parameters
    ----------
    partitions : ndarray of shape (m, n), int
        Labels in ``[0, n_clusters)`` (a partition with other labels is relabelled by rank).
    reference : int
        Row of ``partitions`` the others are aligned to.
    n_clusters : int

    Returns
    -------
    ndarray of shape (m, n), int64
        Each partition's cluster ``c`` renamed to the reference cluster it overlaps most
        under a one-to-one matching.
    """
    P = np.asarray(partitions)
    out = np.empty(P.shape, dtype=np.int64)
    ref = P[reference]
    for i, p in enumerate(P):
        table = np.zeros((n_clusters, n_clusters), dtype=np.int64)
        np.add.at(table, (p, ref), 1)
        rows, cols = linear_sum_assignment(-table)
        mapping = np.arange(n_clusters)
        mapping[rows] = cols
        out[i] = mapping[p]
    return out


def vote(aligned: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """The most voted cluster of each row and the share of members that voted for it.

    Ties go to the lowest cluster index among the tied (the reference's order).
    """
    m, n = aligned.shape
    counts = np.zeros((n, n_clusters), dtype=np.int64)
    for p in aligned:
        counts[np.arange(n), p] += 1
    labels = counts.argmax(1)
    return labels.astype(np.int64), counts[np.arange(n), labels] / m


def member_specs(members) -> list[tuple[str, dict]]:
    """``members`` (names, ``(name, params)`` pairs or "a,b,c") as ``(name, params)`` pairs,
    checked: at least 2, none a consensus, each told ``n_clusters``."""
    if isinstance(members, str):
        members = [s for s in members.split(",") if s.strip()]
    specs = []
    for spec in members:
        if isinstance(spec, str):
            specs.append((spec.strip(), {}))
        elif isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
            specs.append((spec[0], dict(spec[1])))
        else:
            raise InputError(f"members must be method names or (name, params) pairs, got {spec!r}")
    if len(specs) < 2:
        raise InputError(f"a consensus needs at least 2 members, got {len(specs)}; give e.g. "
                         "members=temi,scanv2,temi")
    for name, _ in specs:
        if name == "consensus":
            raise InputError("a consensus cannot be its own member")
        if not getattr(get_clusterer_class(name), "takes_n_clusters", True):
            raise InputError(f"member {name!r} finds k itself; consensus members must be told "
                             "n_clusters (kmeans, turtle, temi, scan, ...)")
    return specs


def member_seed(specs, i: int, seed: int) -> int:
    """Seed of member ``i``: ``seed`` plus the number of earlier members of the same method,
    so different methods share the consensus's seed and repeats of one method differ."""
    return seed + sum(1 for name, _ in specs[:i] if name == specs[i][0])


@register("consensus", "consensus of several methods' partitions (Hungarian-aligned vote), "
                       "a classifier trained on the confident rows")
class Consensus(BaseClusterer):
    """A consensus head over several clusterers, with the scikit-learn API.

    Parameters
    ----------
    n_clusters : int
    members : sequence or str
        The member methods: registered names (each with its defaults, ``n_clusters`` and a
        seed: ``random_state`` plus the number of earlier members of the same method,
        :func:`member_seed`), ``(name, params)`` pairs, or a string "temi,scanv2,temi"
        (``--param members=temi,scanv2,temi``). Members must be told k (not HDBSCAN or
        affinity propagation). Default: two TEMI fits (seeds ``random_state`` and
        ``random_state + 1``) and one SCANv2 -- strong, diverse members; a weak member
        (k-means) drags the consensus below its best member (docs/heads.md, "Consensus").
    min_agreement : float
        Share of the members that must vote for a row's consensus cluster for the row to
        train the classifier (1.0: all of them).
    C : float
        Inverse L2 penalty of the logistic regression (scikit-learn's ``C``).
    max_iter : int
        Iterations of the logistic regression's solver.
    random_state : None, int or numpy Generator

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        The classifier's cluster for each training row.
    consensus_ : ndarray of shape (n_samples,)
        The vote of the aligned members.
    agreement_ : ndarray of shape (n_samples,)
        Share of members agreeing with the vote, per row.
    confident_fraction_ : float
        Share of rows that reached ``min_agreement`` and trained the classifier (when
        those rows hold fewer than 2 clusters, every row trains it and this is 1.0).
    member_partitions_ : ndarray of shape (n_members, n_samples)
        The members' partitions, aligned to the reference.
    reference_ : int
        The member the others were aligned to (highest mean NMI to the others).
    member_agreement_ : ndarray of shape (n_members,)
        Each member's mean NMI to the others (label-free).
    classifier_ : sklearn Pipeline (StandardScaler, LogisticRegression)
        A constant classifier when the vote has a single cluster.
    n_iter_ : int
        Iterations the logistic regression's solver ran.
    stats_ : dict
        Each member's fit time, the classifier's, the total.
    """

    _parameter_constraints = {
        "min_agreement": [Interval(Real, 0, 1, closed="right")],
        "C": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None)],
        "random_state": RANDOM_STATE,
    }

    def __init__(self, n_clusters: int = 10, *, members=("temi", "scanv2", "temi"),
                 min_agreement: float = 1.0, C: float = 1.0, max_iter: int = 300,
                 random_state=None):
        self.n_clusters = n_clusters
        self.members = members
        self.min_agreement = min_agreement
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y=None, *, partitions=None):
        """Fit the members (or take their ``partitions``), vote, train the classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet, EmbeddingStore or path
        y : ignored
        partitions : array-like of shape (n_members, n_samples), optional
            The members' labels of ``X``, already computed (e.g. by a benchmark that fitted
            them anyway); then ``members`` only names them and nothing is refitted.

        Returns
        -------
        self
        """
        t0 = time.perf_counter()
        self._validate_params()
        specs = member_specs(self.members)
        rows = as_row_source(X).to_array(dtype=np.float32)
        n, d = rows.shape
        k = self._validate_k(n)
        seed = seed_from(self.random_state)
        timings = {}
        if partitions is None:
            parts = []
            for i, (name, params) in enumerate(specs):
                est = make_clusterer(name, **{"n_clusters": k,
                                              "random_state": member_seed(specs, i, seed),
                                              **params})
                t = time.perf_counter()
                parts.append(np.asarray(est.fit_predict(rows), dtype=np.int64))
                timings[f"{i}:{name}_s"] = time.perf_counter() - t
            P = np.stack(parts)
        else:
            P = np.asarray(partitions)
            if P.ndim != 2 or P.shape != (len(specs), n):
                raise InputError(f"partitions must have shape ({len(specs)}, {n}) (one row per "
                                 f"member, one column per row of X), got {P.shape}")
        if P.dtype.kind not in "iu" or P.min() < 0 or P.max() >= k:
            raise InputError(f"member partitions must hold cluster ids in [0, {k}); a member "
                             "that marks noise (-1) cannot vote")
        m = len(P)
        nmi = np.ones((m, m))
        for i in range(m):
            for j in range(i + 1, m):
                nmi[i, j] = nmi[j, i] = normalized_mutual_info_score(P[i], P[j])
        agreement = (nmi.sum(1) - 1) / (m - 1)
        ref = int(np.argmax(agreement))
        aligned = align_partitions(P, ref, k)
        consensus, share = vote(aligned, k)
        confident = share >= float(self.min_agreement) - 1e-12
        if len(np.unique(consensus[confident])) < 2:
            # too few agreed rows to learn from: the classifier learns the whole vote
            confident = np.ones(n, dtype=bool)

        from sklearn.dummy import DummyClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        t = time.perf_counter()
        if len(np.unique(consensus)) < 2:  # one cluster: nothing to learn
            clf = DummyClassifier(strategy="most_frequent")
        else:
            clf = make_pipeline(StandardScaler(),
                                LogisticRegression(C=float(self.C), max_iter=int(self.max_iter)))
        clf.fit(rows[confident], consensus[confident])
        timings["classifier_s"] = time.perf_counter() - t
        self.n_iter_ = int(np.max(getattr(clf[-1], "n_iter_", [0]))) if hasattr(clf, "steps") else 0
        self.n_features_in_ = d
        self.classifier_ = clf
        self.member_partitions_ = aligned
        self.member_agreement_ = agreement
        self.reference_ = ref
        self.consensus_ = consensus
        self.agreement_ = share
        self.confident_fraction_ = float(confident.mean())
        self.labels_ = self._predict_rows(rows)
        timings["fit_s"] = time.perf_counter() - t0
        self.stats_ = {"timings": timings, "members": [name for name, _ in specs]}
        return self

    def _predict_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.classifier_.predict(rows), dtype=np.int64)

    def predict(self, X) -> np.ndarray:
        """Cluster of each row by the classifier trained on the confident consensus."""
        self._check_fitted()
        rows = as_row_source(X).to_array(dtype=np.float32)
        self._check_n_features(rows.shape[1])
        return self._predict_rows(rows)

    def predict_proba(self, X) -> np.ndarray:
        """The classifier's probabilities, shape ``(n_samples, n_classes)`` over the
        consensus clusters it saw (columns: ``classifier_.classes_``)."""
        self._check_fitted()
        rows = as_row_source(X).to_array(dtype=np.float32)
        self._check_n_features(rows.shape[1])
        return self.classifier_.predict_proba(rows)
