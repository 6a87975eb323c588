"""The exact float32 k-means search on the CPU, pruned by bounds from a low-rank projection.

For an orthonormal basis ``P`` (``d x m``, the data's top principal directions), its
complement ``Q`` and any centre ``mu``, every distance splits into its part inside the span
of ``P`` and its part outside, and the outside part is at least the difference of the two
vectors' outside norms:

    |x - c|^2  =  |P'(x - c)|^2 + |Q(x - c)|^2  >=  |x_p - c_p|^2 + (q_x - q_c)^2

with ``x_p = P'(x - mu)`` and ``q_x = |Q(x - mu)|``: the distance between
``x~ = (x_p, q_x)`` and ``c~``, ``m + 1`` numbers each, computed once per fit for the rows.
So one faiss product per chunk of rows bounds every (row, centroid) distance from below; a
row's distance to its last centroid is computed exactly (unless the bounds settle it), and
only the centroids whose bound is below it are candidates, each computed exactly. The
last exact distances to a few other centroids are kept per row as Elkan bounds. On
Fashion-MNIST train with EfficientNet-Lite0 (1 280 dimensions, 64 in ``P``) a fit of 21
passes at k = 100 computes 0.44 n k distances, against faiss's 21 n k (docs/scale.md).
It needs ``4 (m + 2) + 40`` bytes per row (:func:`fits`); k-means keeps Hamerly's bounds
where they do not fit :data:`PROJECTION_BYTES` or the data has too few dimensions.

The labels are float32 Lloyd's: a pair's distance is ``sum (x - c)^2`` in float32 (faiss
``pairwise_indexed_L2sqr``, relative error below ``gamma``), and the bounds are rounded the
safe way (the product's rounding, float32 storage, the residual norms' cancellation).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import torch

from deepclust.cluster.assign import pair_distances2

__all__ = ["KEPT_PAIRS", "PROJECTION_BYTES", "PROJECTION_DIMS", "ProjectedSearch", "fits",
           "projection_dims"]

#: Dimensions of the projection (at most a quarter of the data's).
PROJECTION_DIMS = 64
#: Most memory for the rows' projections, kept pairs and bounds (``4 (m + 2) + 8 KEPT_PAIRS
#: + 8`` bytes per row).
PROJECTION_BYTES = 1 << 30
#: Exact distances kept per row as bounds for later passes.
KEPT_PAIRS = 4
#: Rows sampled to find the principal directions.
SAMPLE_ROWS = 2048
#: A chunk computes every distance by one product (as faiss does) when its bounds leave
#: more than this share of its pairs: a pair computed on its own costs about twice its
#: share of the product.
DENSE_FRACTION = 0.4
#: Bounds computed at once (rows x centroids): a few MB, and the rows they need again for
#: their candidates are still in cache.
_BOUND_ENTRIES = 1 << 21
#: Rows projected at once.
_PROJECT_ROWS = 8192
#: Relative rounding allowed for a float32 bound (its few float32 operations).
_DOWN = np.float32(1.0 - 2.0 ** -18)
_UP = np.float32(1.0 + 2.0 ** -18)


def projection_dims(d: int) -> int:
    """The projection's dimension for ``d``-dimensional data (0: too few to project)."""
    m = min(PROJECTION_DIMS, d // 4)
    return m if m >= 8 else 0


def fits(n: int, d: int, k: int) -> bool:
    """Whether ``n`` rows of ``d`` dimensions take the projected search for ``k`` clusters."""
    m = projection_dims(d)
    return k > 2 and m > 0 and n * ((m + 2) * 4 + 8 * KEPT_PAIRS + 8) <= PROJECTION_BYTES


class ProjectedSearch:
    """The rows' projections (made once per fit) and the pass that uses them.

    Each row is kept as ``x~ = (x_p, q_x)`` (``m + 1`` numbers: ``|x~ - c~| <= |x - c|``)
    with two more columns, so that one float32 product gives every bound at once:
    ``[x~, 1, a_x] . [-2 c~, a_c, 1] = a_x + a_c - 2 <x~, c~>``, where ``a = |x~|^2``
    rounded down by the product's error bound and by what float32 storage of ``x~`` and
    the residual norm's cancellation can cost.

    Parameters
    ----------
    sample : ndarray of shape (s, d), float32
        Rows to find the principal directions from (any rows give valid bounds; the
        data's own give tight ones).
    n : int
        Rows to keep projections for (positions ``0 .. n - 1`` of the passes).
    """

    def __init__(self, sample: np.ndarray, n: int):
        s, d = sample.shape
        m = projection_dims(d)
        self.mu = sample.astype(np.float64).mean(0)
        A = torch.from_numpy((sample - self.mu).astype(np.float32))
        # the top m directions (a randomised SVD: a sketch is enough, any basis is valid)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _, _, V = torch.svd_lowrank(A, q=min(m + 8, s, d), niter=1)
        # orthonormal to float64 rounding: the split of |x - c|^2 relies on it
        P = np.linalg.qr(V[:, :m].double().numpy())[0]
        # one float64 product gives P'x and <x, mu>: P'(x - mu) = P'x - P'mu and
        # |x - mu|^2 = |x|^2 - 2 <x, mu> + |mu|^2
        self.Pm = torch.from_numpy(np.ascontiguousarray(np.c_[P, self.mu]))
        self.Pmu = self.mu @ P
        self.mu2 = float(self.mu @ self.mu)
        self.m = m
        self.threads = faiss.omp_get_max_threads()
        self.rows = np.empty((n, m + 1), dtype=np.float32)  # x~
        self.slack = np.empty(n, dtype=np.float32)        # s_x
        # per row, the last exact distances to a few centroids other than its own, kept as
        # lower bounds that drop by how far those centroids move (Elkan's, for the pairs
        # the projection cannot settle; -1: an empty slot)
        self.kept = np.full((n, KEPT_PAIRS), -1, dtype=np.int32)
        self.kept_low = np.zeros((n, KEPT_PAIRS), dtype=np.float32)
        # per row, a lower bound on the distance to every centroid but its own (Hamerly's):
        # a row it settles is not looked at, not even by the projection
        self.second = np.zeros(n, dtype=np.float64)
        self.gamma = (d + 2) * 2.0 ** -24  # a pair's float32 sum of squares
        # faiss's |x~|^2 + |c~|^2 - 2 <x~, c~> errs by at most 3 gamma (|x~|^2 + |c~|^2);
        # float32 storage and the residual's cancellation cost 2^-20 of the same (_augment)
        self.rel = 3.0 * (m + 3) * 2.0 ** -24 + 2.0 ** -20

    def _augment(self, X: np.ndarray, n2: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``x~`` (float32) of the float32 rows ``X`` (``n2``: their ``|x|^2`` in float64,
        when known), and its slack ``s_x``.

        Computed in float64, ``x~`` stored in float32 and the residual norm computed from a
        difference of squares are each within ``2^-22 |x - mu|`` of the exact value, so the
        stored vectors' distance is within ``2^-22 (|x~| + |c~|)`` of the exact one, and its
        square within ``2^-20 (|x~|^2 + |c~|^2)``. With faiss's rounding, the squared
        bound loses at most ``s_x + s_c``, ``s = rel |x~|^2`` (rounded up)."""
        X64 = torch.from_numpy(X).double()  # torch's threads: numpy's BLAS has one here
        G = (X64 @ self.Pm).numpy()
        p = G[:, : self.m] - self.Pmu
        if n2 is None:
            n2 = (X64 * X64).sum(1).numpy()
        n2 = n2 - 2.0 * G[:, self.m] + self.mu2
        t = np.empty((X.shape[0], self.m + 1), dtype=np.float32)
        t[:, : self.m] = p
        t[:, self.m] = np.sqrt(np.maximum(n2 - np.einsum("ij,ij->i", p, p), 0.0))
        s = np.einsum("ij,ij->i", t, t, dtype=np.float64) * self.rel * (1.0 + 2.0 ** -20)
        return t, s.astype(np.float32)

    def project(self, X: np.ndarray, off: int, n2: np.ndarray) -> None:
        """Keep the projections of block ``X`` (rows ``off...``, ``n2``: their ``|x|^2``
        in float64); once per fit."""
        for a in range(0, X.shape[0], _PROJECT_ROWS):
            t, s = self._augment(X[a: a + _PROJECT_ROWS], n2[a: a + _PROJECT_ROWS])
            self.rows[off + a: off + a + t.shape[0]] = t
            self.slack[off + a: off + a + t.shape[0]] = s

    def centroids(self, C: np.ndarray, moved: np.ndarray | None = None) -> None:
        """The centroids of the next pass (float32); ``moved``: how far each moved since
        the last pass (an upper bound; None in the first)."""
        if moved is not None:  # the kept bounds drop by their centroid's move
            has = self.kept >= 0
            low = self.kept_low.astype(np.float64) - moved[np.maximum(self.kept, 0)]
            self.kept_low[...] = np.where(has, np.maximum(low, 0.0) * _DOWN, 0.0)
            # a row's other centroids moved at most this far: the largest move, or the
            # second largest for the rows of the centroid that made the largest
            order = np.argsort(moved)
            self.top = order[-1]
            self.top_moves = (moved[order[-1]], moved[order[-2]] if moved.size > 1 else 0.0)
        self.C = np.ascontiguousarray(C, dtype=np.float32)
        self.Ct, Cs = self._augment(self.C)
        self.cs = np.float32(Cs.max() * _UP)
        k = self.C.shape[0]
        # rows bounded at once: their (rows, k) bounds stay a few MB
        self.chunk = min(4096, max(256, _BOUND_ENTRIES // k))

    def search(self, X: np.ndarray, off: int, labels: np.ndarray | None = None,
               upper: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Nearest centroid of every row of block ``X`` (rows ``off...``).

        ``labels`` (the rows' centroids in the last pass; None in the first) are the first
        guesses, and ``upper`` (float64) bounds the rows' distances to them from above: a
        row whose bounds to every other centroid exceed it is not read at all. Returns the
        labels, an upper bound on each row's distance to its centroid (float64), the rows
        searched beyond their guess and the pairs computed.
        """
        n = X.shape[0]
        out = np.empty(n, dtype=np.int64)
        up = np.empty(n, dtype=np.float64)
        second = self.second[off: off + n]
        if labels is None:
            todo = np.arange(n)
        else:  # Hamerly's test first: rows it settles keep their label, unread
            second -= np.where(labels == self.top, self.top_moves[1], self.top_moves[0])
            settled = upper <= second
            out[settled], up[settled] = labels[settled], upper[settled]
            todo = np.flatnonzero(~settled)

        def run(a: int) -> tuple[int, int]:
            at = todo[a: a + self.chunk]
            out[at], up[at], second[at], s, p = self._chunk(
                X, off, at, None if labels is None else labels[at],
                None if upper is None else upper[at])
            return s, p

        # chunks side by side, one thread each (numpy and faiss release the GIL): the
        # chunk's numpy steps are single-threaded, so threads inside faiss alone leave
        # cores idle between its calls
        starts = range(0, todo.size, self.chunk)
        workers = min(len(starts), self.threads)
        if workers <= 1:
            done = [run(a) for a in starts]
        else:
            before = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                with ThreadPoolExecutor(workers) as pool:
                    done = list(pool.map(run, starts))
            finally:
                faiss.omp_set_num_threads(before)
        return out, up, sum(s for s, _ in done), sum(p for _, p in done)

    # -- helpers

    def _chunk(self, X, off, at, guess, upper):
        """Rows ``at`` (ascending positions) of block ``X`` (rows ``off...``): their labels,
        upper bounds, lower bounds to their other centroids, rows searched and pairs."""
        k = self.C.shape[0]
        # faiss's distances of the projections (its threads only: a second pool of
        # threads in the loop would wait on this one's): |x - c|^2 >= B - s_x - s_c, and
        # every s_c <= cs (one number, not a pass over B)
        g = off + at
        B = faiss.pairwise_distances(np.take(self.rows, g, axis=0), self.Ct)
        sx = self.slack[g] + self.cs
        r = B.shape[0]
        if guess is None:  # the first pass: the nearest by the bound
            guess = B.argmin(1)
        # the kept exact bounds, where tighter
        kept = self.kept[g]
        has = np.nonzero(kept >= 0)
        if has[0].size:
            ids = kept[has]
            kl = self.kept_low[g][has]
            B[has[0], ids] = np.maximum(B[has[0], ids], kl * kl * _DOWN + sx[has[0]])
        B[np.arange(r), guess] = np.inf
        labels = guess.copy()
        up = np.empty(r, dtype=np.float64)
        others = B.min(1)  # bound^2 + s_x to every centroid but the guess
        if upper is None:
            rows = np.arange(r)
        else:  # rows whose guess is certain from the bounds alone are not read
            sure = others - sx > upper * upper * (1.0 + 2.0 ** -20)
            up[sure] = upper[sure]
            rows = np.flatnonzero(~sure)
        d2 = pair_distances2(X, at[rows], self.C, guess[rows])
        # candidates: the centroids whose bound is below the guess's distance (rounded up)
        u2 = np.full(r, -np.inf, dtype=np.float32)
        u2[rows] = d2 * np.float32(1.0 + self.gamma + 2.0 ** -20) + sx[rows] * _UP
        flat = np.flatnonzero(B < u2[:, None])  # row by row: rr ascends
        rr = flat // k
        cc = flat - rr * k
        if rr.size > DENSE_FRACTION * rows.size * k:  # as faiss: one product
            _, ids = faiss.knn(np.ascontiguousarray(X[at[rows]]), self.C, 1)
            labels[rows] = ids[:, 0]
            up[rows] = self._up(pair_distances2(X, at[rows], self.C, labels[rows]))
            second = np.zeros(r)  # no bound kept: the next pass looks at these rows again
            return labels, up, second, rows.size, rows.size * (k + 1)
        full = np.zeros(r, dtype=np.float32)
        full[rows] = d2
        searched = 0
        if rr.size:
            cd2 = pair_distances2(X, at[rr], self.C, cc)
            # each row's nearest candidate (the first of equals), against its guess
            starts = np.flatnonzero(np.r_[True, rr[1:] != rr[:-1]])
            best = np.minimum.reduceat(cd2, starts)
            seg = np.cumsum(np.r_[False, rr[1:] != rr[:-1]])  # each pair's row segment
            at_best = np.flatnonzero(cd2 == best[seg])
            first = at_best[np.r_[True, seg[at_best[1:]] != seg[at_best[:-1]]]]
            who = rr[first]
            better = cd2[first] < full[who]
            moves = who[better]
            old_d2 = full[moves]
            labels[moves] = cc[first[better]]
            full[moves] = cd2[first[better]]
            searched = first.size
            # keep the exact distances just computed (and the movers' old centroids) as
            # bounds for the next passes
            self._keep(off + at[np.r_[rr, moves]], np.r_[cc, guess[moves]],
                       np.r_[cd2, old_d2])
            if moves.size:  # the movers' other centroids now include the old one
                B[moves, labels[moves]] = np.inf
                B[moves, guess[moves]] = old_d2 * np.float32(1.0 - self.gamma) * _DOWN + sx[moves]
                others[moves] = B[moves].min(1)
        up[rows] = self._up(full[rows])
        second = np.sqrt(np.maximum(others.astype(np.float64) - sx, 0.0)) * (1.0 - 2.0 ** -20)
        return labels, up, second, searched, rows.size + int(rr.size)

    def _keep(self, rows: np.ndarray, cents: np.ndarray, d2: np.ndarray) -> None:
        """Keep exact squared distances ``d2`` of pairs (``rows``: positions in the
        passes) as bounds, each in its centroid's slot (``cents % KEPT_PAIRS``): a newer
        pair takes the slot of an older one (a bound lost costs only pruning)."""
        slot = cents % KEPT_PAIRS
        self.kept[rows, slot] = cents
        self.kept_low[rows, slot] = np.sqrt(d2 * (1.0 - self.gamma)) * _DOWN

    def _up(self, d2: np.ndarray) -> np.ndarray:
        return np.sqrt(d2.astype(np.float64) * (1.0 + self.gamma))
