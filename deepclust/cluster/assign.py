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
    **certified** when the gap to the second exceeds a worst-case bound on the rounding
    of both scores; rows it cannot certify are searched again by faiss in float32. The
    labels are therefore the float32 ones, ties within float32 rounding aside. The
    distance to the chosen centroid is then computed directly in float32.

``"auto"`` is ``bf16`` on GPUs with bfloat16 when ``k`` is large enough for the product to
dominate (``k >= 64``), else ``fp32`` -- including on CPUs with native bfloat16, where the
top-2 selection and the float32 re-check ate the faster product (the ``kmeans`` row of the
table in :mod:`deepclust.runtime`; measurements in docs/scale.md).

:class:`CentroidSearch` holds one set of centroids prepared for either path; k-means makes
one per iteration.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

__all__ = ["CentroidSearch"]

#: Rows per product on the bf16 path: the (rows, k) score block stays in cache.
SUB_ROWS = 8192


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
        labels, d1, _ = self.search(X)
        d2 = d1.astype(np.float32) ** 2
        return labels, (1.0 - d2 / 2.0 if self.spherical else d2)

    def exact_distances(self, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``|x - c_label|`` of each row, computed directly in float32 (float64 result)."""
        diff = self.C[labels]
        diff -= X
        return np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64))

    def search(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest centroid of each row, with bounds for pruning later iterations.

        Returns
        -------
        labels : ndarray of shape (n,), int64
            The nearest centroid, as float32 arithmetic finds it (see the module docstring).
        nearest : ndarray of shape (n,), float64
            Distance to it, computed exactly in float32 and rounded up.
        second : ndarray of shape (n,), float64
            A lower bound on the distance to every other centroid (inf when k == 1).
        """
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
        xn2 = np.einsum("ij,ij->i", X, X, dtype=np.float64)
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
