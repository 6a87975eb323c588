"""Nearest-centroid assignment for k-means: exact float32, or bfloat16 with a float32 re-check.

k-means spends nearly all its time finding each row's nearest centroid: a ``(n, d) x (d, k)``
matrix product and a per-row minimum. Two ways to do it:

``"fp32"``
    faiss ``knn`` on the CPU (a float32 BLAS product, then a per-row minimum), or a float32
    torch product on a GPU.
``"bf16"``
    the product in bfloat16 (native on CPUs with AVX-512 BF16 or AMX and on GPUs), rows
    and centroids centred on the data mean first (distances do not change; the products,
    and their rounding, get smaller), and each row's two best taken from it. The best is
    **certified** when the gap to the second exceeds a rigorous bound on the rounding of
    both scores. Rows it cannot certify are re-checked exactly in float32: on a GPU by a
    float64 search, on a CPU against their few candidates only (the centroids whose score
    is within the bound of the best; :meth:`CentroidSearch._search_candidates`), where the
    bound uses the actual rounding of each row and of the centroids, not the worst case
    (a tenth to a seventh of the rows are re-checked on Lite0 embeddings at k = 100 to
    1 000, against a quarter to a half with the worst case). The labels are therefore the
    float32 ones, ties within float32 rounding aside.

``"auto"`` is ``bf16`` on CPUs with native bfloat16 and on GPUs with bfloat16 when ``k`` is
large enough for the product to dominate (``k >= 64``), else ``fp32`` (the ``kmeans`` row
of the table in :mod:`deepclust.runtime`; measurements in docs/scale.md).

:class:`CentroidSearch` holds one set of centroids prepared for either path; k-means makes
one per iteration.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

__all__ = ["CentroidSearch", "pair_distances2"]

#: Rows per product on the bf16 path: the (rows, k) score block stays in cache.
SUB_ROWS = 8192
#: Unsure rows with more candidates than this are searched again by faiss in full.
MAX_CANDIDATES = 32
#: Rows whose exact distance to their centroid is computed at once (their copies stay in
#: cache: 8 192 rows of 1 280 floats did not, and cost three times as much).
_PAIR_CHUNK = 512
#: Rows prepared at once (their float32 copies stay in cache).
_PREPARE_ROWS = 1024
#: Unit roundoff of bfloat16.
_U_BF16 = 2.0 ** -8


def pair_distances2(X: np.ndarray, rows: np.ndarray, C: np.ndarray,
                    cents: np.ndarray) -> np.ndarray:
    """``|X[rows[i]] - C[cents[i]]|^2`` for every pair, in float32 (faiss's
    ``pairwise_indexed_L2sqr``, straight from ``X`` and ``C``: no gather)."""
    out = np.empty(rows.size, dtype=np.float32)
    if rows.size:
        X = np.ascontiguousarray(X, dtype=np.float32)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        cents = np.ascontiguousarray(cents, dtype=np.int64)
        faiss.pairwise_indexed_L2sqr(X.shape[1], rows.size, faiss.swig_ptr(X),
                                     faiss.swig_ptr(rows), faiss.swig_ptr(C),
                                     faiss.swig_ptr(cents), faiss.swig_ptr(out))
    return out


class PreparedRows:
    """A block of rows ready for the bf16 product on the CPU.

    ``xb``: the rows centred on ``center`` (float32, ``x~``), rounded to bfloat16, with a
    column of ones (the centroids' squared norms ride on it), zero-padded to ``d_pad``
    columns; kept as int16 bits (numpy gathers rows several times faster than torch).
    Per row, in float64: ``xn2 = |x~|^2``, ``xn = |x~|`` and ``dxn = |bf16(x~) - x~|``, the
    actual rounding of the row, which bounds the product's error.

    Preparing costs about as much as one bf16 product at k = 100, so k-means prepares the
    rows of an in-memory array once per fit (:func:`deepclust.cluster.lloyd.lloyd`).
    """

    def __init__(self, X: np.ndarray, center: torch.Tensor, d_pad: int):
        n, d = X.shape
        self.bits = np.zeros((n, d_pad), dtype=np.int16)
        xb = self.xb
        xb[:, d] = 1.0
        self.xn2 = np.empty(n, dtype=np.float64)
        dxn2 = np.empty(n, dtype=np.float32)
        x = torch.from_numpy(X)
        for a in range(0, n, _PREPARE_ROWS):
            xc = x[a: a + _PREPARE_ROWS] - center
            r = xc.shape[0]
            xb[a: a + r, :d] = xc
            # float32 sums of squares, within gamma: |x~|^2 is covered by the error
            # bound's centring term; bf16(x) - x is exact in float32 (Sterbenz) and its
            # sum is covered by the 1 + 2 gamma below
            self.xn2[a: a + r] = (xc * xc).sum(1).numpy()
            res = xb[a: a + r, :d].float() - xc
            dxn2[a: a + r] = (res * res).sum(1).numpy()
        self.xn = np.sqrt(self.xn2)
        self.dxn = np.sqrt(dxn2.astype(np.float64) * (1.0 + 2.0 * (d + 2) * 2.0 ** -24))

    @property
    def xb(self) -> torch.Tensor:
        return torch.from_numpy(self.bits).view(torch.bfloat16)

    def take(self, rows: np.ndarray) -> PreparedRows:
        """The prepared rows ``rows`` (positions in this block)."""
        out = object.__new__(PreparedRows)
        out.bits = np.take(self.bits, rows, axis=0)
        out.xn2, out.xn, out.dxn = self.xn2[rows], self.xn[rows], self.dxn[rows]
        return out


class CentroidSearch:
    """One set of centroids, ready to assign blocks of rows.

    Parameters
    ----------
    centroids : ndarray of shape (k, d), float32
        Unit rows when ``spherical``.
    spherical : bool
        Rows and centroids are unit vectors: the nearest centroid by L2 distance is the
        most cosine-similar one, and the score reported by ``__call__`` is the cosine.
    precision : {"fp32", "bf16"}
        Resolved precision (see :func:`deepclust.runtime.resolve_precision`).
    device : torch.device
    center : ndarray of shape (d,), optional
        Subtracted from rows and centroids before the bf16 product (the data mean).
    """

    def __init__(self, centroids: np.ndarray, *, spherical: bool, precision: str,
                 device: torch.device, center: np.ndarray | None = None):
        self.C = np.ascontiguousarray(centroids, dtype=np.float32)
        self.k, self.d = self.C.shape
        self.spherical = spherical
        self.device = device
        # with two centroids or fewer there is nothing for a cheap first pass to prune
        self.precision = "fp32" if self.k <= 2 else precision
        self.torch_path = self.precision == "bf16" or device.type != "cpu"
        # on a CPU the bf16 path re-checks unsure rows against their few candidates only
        self.candidates_path = self.precision == "bf16" and device.type == "cpu"
        # relative rounding of a float32 sum of d + 2 products (a bound, not an estimate)
        self.gamma = (self.d + 2) * 2.0 ** -24
        if not self.torch_path:
            return
        self.Ct = torch.from_numpy(self.C).to(device)
        self.mu = (torch.zeros(self.d, device=device) if center is None
                   else torch.from_numpy(np.asarray(center, dtype=np.float32)).to(device))
        Cc = self.Ct - self.mu
        cn2 = (Cc * Cc).sum(1)
        self.cmax = float(cn2.max().sqrt())
        self.cn2max = float(cn2.max())
        if self.precision == "bf16":
            # approximate scores s_j = |c_j - mu|^2 - 2 <x - mu, c_j - mu>, smallest first
            # (|x - c_j|^2 = |x - mu|^2 + s_j), as one product: the rows get a column of
            # ones and the weights a row of |c_j - mu|^2 (a bias in addmm costs 2x here);
            # zero padding to a multiple of 32 keeps the product on its fast path
            self.d_pad = -(-(self.d + 1) // 32) * 32
            W = torch.zeros((self.d_pad, self.k), dtype=torch.float32, device=device)
            W[: self.d] = -2.0 * Cc.T
            W[self.d] = cn2
            self.W = W.to(torch.bfloat16)
            if self.candidates_path:
                # what the rounding of the weights actually was, for the error bound of
                # the CPU path (see _search_candidates)
                W64 = W.double()
                Wb64 = self.W.double()
                self.wmax = float(W64[: self.d].norm(dim=0).max())
                self.dwmax = float((Wb64[: self.d] - W64[: self.d]).norm(dim=0).max())
                self.wbmax = float(Wb64[: self.d].norm(dim=0).max())
                self.dcn2max = float((Wb64[self.d] - W64[self.d]).abs().max())
                self.cn2bmax = float(Wb64[self.d].abs().max())
        else:
            self.Wf = (-2.0 * Cc).T.contiguous()
            self.biasf = cn2

    # -- the public use: labels and scores

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid of each row of the float32 block ``X``.

        Returns
        -------
        labels : ndarray of shape (n,), int64
        scores : ndarray of shape (n,), float32
            Squared L2 distance to the chosen centroid, or its cosine when spherical.
        """
        labels, _, _ = self.search(X)
        d2 = self.exact_distances(X, labels).astype(np.float32) ** 2
        return labels, (1.0 - d2 / 2.0 if self.spherical else d2)

    def exact_distances(self, X: np.ndarray, labels: np.ndarray,
                        rows: np.ndarray | None = None) -> np.ndarray:
        """``|x - c_label|`` of each row (of ``X[rows]`` when given), computed directly in
        float32 (float64 result, the float32 sum of squares rounded up by its error bound),
        in cache-sized chunks."""
        out = np.empty(labels.shape[0], dtype=np.float64)
        for a in range(0, labels.shape[0], _PAIR_CHUNK):
            diff = np.take(self.C, labels[a: a + _PAIR_CHUNK], axis=0)
            diff -= (X[a: a + _PAIR_CHUNK] if rows is None
                     else np.take(X, rows[a: a + _PAIR_CHUNK], axis=0))
            out[a: a + diff.shape[0]] = np.einsum("ij,ij->i", diff, diff)
        return np.sqrt(out * (1.0 + self.gamma))

    def prepare(self, X: np.ndarray) -> PreparedRows | None:
        """``X`` prepared for :meth:`search` (None where this search does not use it)."""
        if not self.candidates_path:
            return None
        return PreparedRows(X, self.mu, self.d_pad)

    def search(self, X: np.ndarray, prepared: PreparedRows | None = None,
               rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest centroid of each row, with bounds for pruning later iterations.

        ``rows`` (positions in ``X``) searches those rows only; ``prepared`` (from
        :meth:`prepare`, of the searched rows) saves preparing them again.

        Returns
        -------
        labels : ndarray of shape (n,), int64
            The nearest centroid, as float32 arithmetic finds it (see the module docstring).
        nearest : ndarray of shape (n,), float64
            An upper bound on the distance to it: computed exactly in float32 and rounded
            up, or (bf16 on the CPU, rows certified by the product) from the product's
            score plus its error bound.
        second : ndarray of shape (n,), float64
            A lower bound on the distance to every other centroid (inf when k == 1).
        """
        if self.candidates_path:  # gathers only the few rows it re-checks
            if prepared is None:
                prepared = self.prepare(X if rows is None else np.ascontiguousarray(X[rows]))
            return self._search_candidates(X, prepared, rows)
        if rows is not None:
            X = np.ascontiguousarray(X[rows])
        n = X.shape[0]
        if self.k == 1:
            labels = np.zeros(n, dtype=np.int64)
            return labels, self._up(self.exact_distances(X, labels)), np.full(n, np.inf)
        if not self.torch_path:
            labels, second = self._search_faiss(X)
        else:
            labels, second, unsure = self._search_torch(X)
            if unsure.size:  # rows whose fast ranking is not certain: exact search
                exact = self._search_faiss if self.device.type == "cpu" else self._search_fp64
                labels[unsure], second[unsure] = exact(np.ascontiguousarray(X[unsure]))
        return labels, self._up(self.exact_distances(X, labels)), second

    # -- helpers

    def _up(self, d: np.ndarray) -> np.ndarray:
        return d * (1.0 + self.gamma)

    def _search_faiss(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """faiss float32 search of the two nearest; second as a rigorous lower bound."""
        D, ids = faiss.knn(X, self.C, 2)
        # faiss computes |x|^2 + |c|^2 - 2 <x, c>: its error is relative to those norms
        xn2 = np.einsum("ij,ij->i", X, X) * (1.0 + self.gamma)  # float32 sum, rounded up
        slack = 3.0 * self.gamma * (xn2 + float(np.einsum("ij,ij->i", self.C, self.C).max()))
        second = np.sqrt(np.maximum(D[:, 1].astype(np.float64) - slack, 0.0))
        return ids[:, 0].astype(np.int64), second

    def _search_fp64(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float64 search of the two nearest on the device (the GPU fallback: a few rows)."""
        C = self.Ct.double()
        cn2 = (C * C).sum(1)
        labels = np.empty(X.shape[0], dtype=np.int64)
        second = np.empty(X.shape[0], dtype=np.float64)
        for a in range(0, X.shape[0], 1 << 14):
            x = torch.from_numpy(X[a: a + (1 << 14)]).to(self.device).double()
            d2 = torch.addmm(cn2, x, C.T, alpha=-2.0) + (x * x).sum(1, keepdim=True)
            v, i = torch.topk(d2, 2, dim=1, largest=False, sorted=True)
            labels[a: a + len(x)] = i[:, 0].cpu().numpy()
            second[a: a + len(x)] = (v[:, 1] * (1 - 1e-12)).clamp_min(0).sqrt().cpu().numpy()
        return labels, second

    def _search_torch(self, X: np.ndarray):
        """Two best by the fast product; rows not certain of their best are returned in
        ``unsure`` for an exact search. Elementwise work is done once per block (not per
        product): on a busy CPU every small threaded operation waits for its threads."""
        x = torch.from_numpy(X).to(self.device)
        xc = x - self.mu
        xn2 = (xc * xc).sum(1).double()
        step = SUB_ROWS if self.device.type == "cpu" else 1 << 16
        n = X.shape[0]
        vals = torch.empty((n, 2), dtype=torch.float32, device=self.device)
        idx = torch.empty((n, 2), dtype=torch.int64, device=self.device)
        if self.precision == "bf16":
            buf = torch.zeros((min(step, n), self.d_pad), dtype=torch.bfloat16,
                              device=self.device)
            buf[:, self.d] = 1.0
            for a in range(0, n, step):
                r = min(step, n - a)
                buf[:r, : self.d] = xc[a: a + r]
                approx = buf[:r] @ self.W
                v, i = torch.topk(approx, 2, dim=1, largest=False, sorted=True)
                vals[a: a + r] = v
                idx[a: a + r] = i
            u = 2.0 ** -8
            # worst-case error of one approximate score: rows and weights rounded to bf16
            # (2u each on <x, c>, u on |c|^2), float32 accumulation (gamma), the result
            # rounded to bf16 (u, relative); see docs/scale.md
            lin, const, rel = 4 * u + 2 * self.gamma, (u + self.gamma) * self.cn2max, u
        else:  # float32 product on a GPU
            for a in range(0, n, step):
                approx = torch.addmm(self.biasf, xc[a: a + step], self.Wf)
                v, i = torch.topk(approx, 2, dim=1, largest=False, sorted=True)
                vals[a: a + step] = v
                idx[a: a + step] = i
            lin, const, rel = 4 * self.gamma, 4 * self.gamma * self.cn2max, self.gamma
        v = vals.cpu().numpy().astype(np.float64)
        xn2 = xn2.cpu().numpy()
        base = lin * np.sqrt(xn2) * self.cmax + const
        err = 1.01 * (base[:, None] + rel * np.abs(v))
        unsure = np.flatnonzero(v[:, 1] - err[:, 1] <= v[:, 0] + err[:, 0])
        second = np.sqrt(np.maximum(xn2 * (1 - self.gamma) + v[:, 1] - err[:, 1], 0.0))
        return idx[:, 0].cpu().numpy(), second, unsure

    def _search_candidates(self, X: np.ndarray, prep: PreparedRows, at: np.ndarray | None):
        """The bf16 product on the CPU, and an exact re-check of the rows it cannot certify
        against their few candidates.

        For each row the product gives approximate scores ``S_j`` of
        ``s_j = |c_j - mu|^2 - 2 <x - mu, c_j - mu>`` (``|x - c_j|^2 = |x - mu|^2 + s_j``)
        with a rigorous error bound ``E(S) = 1.01 (base + u |S|)``: ``base`` bounds
        ``<x~ + dx, w + dw> - <x~, w>`` by the actual rounding of the row (``|dx|``, from
        :class:`PreparedRows`) and of the weights (``max |dw_j|``), plus the float32 sum
        and the centring, and ``u |S|`` is the rounding of the bf16 result. ``S - E(S)``
        grows with ``S``, so the row's best ``v1`` is certain when its second ``v2`` has
        ``v2 - E(v2) > v1 + E(v1)``. For the other rows every
        centroid with ``S_j <= T = v1 + 2.5 E(v1)`` is a candidate (beyond ``T``,
        ``S_j - E(S_j) > v1 + 1.4 E(v1) > v1 + E(v1)``: it cannot be nearest, and its squared
        distance is at least ``|x - mu|^2 + v1 + 1.4 E(v1)``), and the candidates' distances
        are computed exactly in float32; rows with more than :data:`MAX_CANDIDATES`
        candidates are searched again by faiss.
        """
        n = prep.xn2.shape[0]
        u = _U_BF16
        labels = np.empty(n, dtype=np.int64)
        v = np.empty((n, 2), dtype=np.float64)  # each row's best and second score
        err = np.empty((n, 2), dtype=np.float64)  # and their error bounds E
        pairs_r: list[np.ndarray] = []
        pairs_c: list[np.ndarray] = []
        # the product's error before its own rounding: the rows' and weights' actual
        # rounding (Cauchy-Schwarz), the float32 sum, and the centring in float32
        base = (prep.dxn * self.wmax + (prep.xn + prep.dxn) * self.dwmax + self.dcn2max
                + self.gamma * ((prep.xn + prep.dxn) * self.wbmax + self.cn2bmax)
                + self.gamma * (prep.xn + self.cmax) ** 2)
        for a in range(0, n, SUB_ROWS):
            S = prep.xb[a: a + SUB_ROWS] @ self.W
            r = S.shape[0]
            m1, i1 = S.min(1)
            # the best is not its own second (a flat index_fill is 100x faster than scatter_)
            S.view(-1).index_fill_(0, i1 + torch.arange(r) * self.k, float("inf"))
            m2 = S.amin(1)
            sl = slice(a, a + r)
            labels[sl] = i1.numpy()
            v[sl, 0] = m1.double().numpy()
            v[sl, 1] = m2.double().numpy()
            err[sl] = 1.01 * (base[sl, None] + u * np.abs(v[sl]))
            unsure = np.flatnonzero(v[sl, 1] - err[sl, 1] <= v[sl, 0] + err[sl, 0])
            if unsure.size:
                T = torch.from_numpy((v[sl, 0] + 2.5 * err[sl, 0])[unsure]).to(torch.float32)
                rr, cc = torch.nonzero(S[torch.from_numpy(unsure)].float() <= T[:, None],
                                       as_tuple=True)
                rows = a + unsure
                pairs_r += [rows, rows[rr.numpy()]]
                pairs_c += [labels[rows], cc.numpy()]
        nearest = np.sqrt(np.maximum(prep.xn2 + v[:, 0] + err[:, 0], 0.0))
        second = np.sqrt(np.maximum(prep.xn2 + v[:, 1] - err[:, 1], 0.0))
        if pairs_r:
            self._recheck(X, np.concatenate(pairs_r), np.concatenate(pairs_c),
                          prep.xn2 + v[:, 0] + 1.4 * err[:, 0], labels, nearest, second, at)
        return labels, nearest, second

    def _recheck(self, X, rows, cands, beyond, labels, nearest, second, at) -> None:
        """Exact float32 distances of the (row, candidate) pairs; each row's nearest
        candidate becomes its label (in place). ``beyond`` is, per row, a lower bound on
        the squared distance to every centroid that is not a candidate; row ``r`` is
        ``X[at[r]]`` (``X[r]`` when ``at`` is None).

        faiss's ``pairwise_indexed_L2sqr`` computes the distances (``sum (x - c)^2`` in
        float32, straight from the block: several times faster than gathering the pairs
        in numpy)."""
        counts = np.bincount(rows)
        many = np.flatnonzero(counts > MAX_CANDIDATES)
        if many.size:
            keep = counts[rows] <= MAX_CANDIDATES
            rows, cands = rows[keep], cands[keep]
        if rows.size:
            d2 = pair_distances2(X, rows if at is None else at[rows], self.C, cands)
            # float32 sums of d squares: relative error below gamma
            order = np.lexsort((d2, rows))
            rows, cands, d2 = rows[order], cands[order], d2[order].astype(np.float64)
            first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            r = rows[first]
            labels[r] = cands[first]
            nearest[r] = np.sqrt(d2[first] * (1 + 2 * self.gamma))
            nxt = first + 1
            valid = nxt < rows.size
            has2 = np.zeros(first.size, dtype=bool)
            has2[valid] = rows[nxt[valid]] == r[valid]
            lower = beyond[r].copy()
            lower[has2] = np.minimum(lower[has2], d2[nxt[has2]] * (1 - 2 * self.gamma))
            second[r] = np.sqrt(np.maximum(lower, 0.0))
        if many.size:
            Xm = np.ascontiguousarray(np.take(X, many if at is None else at[many], axis=0))
            labels[many], second[many] = self._search_faiss(Xm)
            nearest[many] = self._up(self.exact_distances(Xm, labels[many]))
