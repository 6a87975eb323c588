"""TURTLE: the labelling whose linear classifiers generalise best, in one or several spaces.

Gadetsky, Jiang and Brbić, "Let Go of Your Labels with Unsupervised Transfer", ICML 2024
(public code: mlbio-epfl/turtle, ``run_turtle.py``). On frozen representations
``z_1 .. z_S`` (one per space) TURTLE learns a **task encoder**: in each space a
weight-normalised linear map ``theta_s`` whose softmax labels every row; the labelling is
their mean, ``tau(x) = mean_s softmax(theta_s z_s(x))``. Its quality is how well *plain*
linear classifiers ``w_s`` trained on it in each space reproduce it. One outer step:

1. draw a batch of rows, compute ``tau`` on it;
2. **inner**: ``M`` Adam steps of each ``w_s`` on the cross-entropy to ``tau`` (held fixed),
   the ``w_s`` warm-started from the previous outer step;
3. **outer**: one Adam step of the ``theta_s`` on ::

       L = sum_s CE(softmax(w_s z_s), tau)  -  gamma * sum_s H(mean_batch softmax(theta_s z_s))

   -- the inner classifiers' error on the labelling (their logits held fixed) minus the
   entropy of each space's cluster marginal (without it, one cluster wins).

Several restarts (``n_init``) are trained at once as one batched product (independent
parameters, the same batches) and the restart with the lowest TURTLE objective ``L`` on
all training rows is kept: the choice uses no labels.

Differences from the public code, all documented in docs/heads.md: restarts with a label-free
choice (the public script trains one seed); warm start on by default (the script's flag,
``--warm_start``); each space's rows L2-normalised by default (the script feeds raw
features, which for CLIP and DINOv2 have comparable norms; our spaces -- an encoder and raw
pixels -- do not); a step budget that scales with the data.
"""

from __future__ import annotations

import math
import time
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F

from deepclust import runtime
from deepclust.cluster.base import BaseClusterer, register
from deepclust.data.rows import as_row_source
from deepclust.errors import InputError
from deepclust.validation import RANDOM_STATE, Boolean, Interval, Options, seed_from

__all__ = ["TURTLE", "parse_spaces", "turtle_objective"]

#: Rows per forward pass when labelling all rows (objective, prediction).
PREDICT_ROWS = 1 << 14


def parse_spaces(spaces, n_features: int) -> list[int]:
    """Column widths of the representation spaces side by side in ``X``.

    ``spaces`` is None (one space: every column), an int (one space of that width), a
    sequence of widths, or a string "w1,w2,..." (what ``--param spaces=1280,784`` gives).
    The widths must be positive and sum to ``n_features``.
    """
    if spaces is None:
        return [int(n_features)]
    if isinstance(spaces, str):
        try:
            widths = [int(s) for s in spaces.replace("+", ",").split(",") if s.strip()]
        except ValueError:
            raise InputError(f"spaces={spaces!r} is not a list of column counts; give e.g. "
                             "spaces=1280,784 (the widths of the spaces side by side in X)") from None
    elif isinstance(spaces, Integral) and not isinstance(spaces, bool):
        widths = [int(spaces)]
    else:
        try:
            widths = [int(s) for s in spaces]
        except (TypeError, ValueError):
            raise InputError(f"spaces={spaces!r} is not a list of column counts; give e.g. "
                             "spaces=[1280, 784]") from None
    if not widths or min(widths) < 1:
        raise InputError(f"spaces={spaces!r}: every space needs at least one column")
    if sum(widths) != n_features:
        raise InputError(f"spaces={spaces!r} sum to {sum(widths)} columns but X has {n_features}; "
                         "the widths must add up to X's columns (spaces side by side)")
    return widths


def turtle_objective(space_probs: list[torch.Tensor], inner_logits: list[torch.Tensor],
                     gamma: float) -> torch.Tensor:
    """TURTLE's objective per restart (Eq. 12 of the paper), lower is better.

    Parameters
    ----------
    space_probs : list of S tensors of shape (n, R, C)
        Each space's task-encoder probabilities ``softmax(theta_s z_s)`` for R restarts.
    inner_logits : list of S tensors of shape (n, R, C)
        Each space's inner linear classifier logits ``w_s z_s``.
    gamma : float
        Weight of the entropy of the cluster marginals.

    Returns
    -------
    tensor of shape (R,)
        ``sum_s mean_rows CE(softmax(inner_s), tau) - gamma * sum_s H(mean_rows probs_s)``
        with ``tau = mean_s probs_s``.
    """
    tau = sum(space_probs) / len(space_probs)
    error = sum(-(tau * log_softmax(lg)).sum(-1).mean(0) for lg in inner_logits)
    entropy = sum(torch.special.entr(p.mean(0)).sum(-1) for p in space_probs)
    return error - gamma * entropy


def fit_projection(z: torch.Tensor, normalize: bool, pca_dim) -> tuple | None:
    """The centred PCA basis ``(mean, components (d, p))`` of one space's rows (after
    L2-normalising them when ``normalize``), or None when ``pca_dim`` keeps every column.

    TURTLE's cost is ``inner_steps`` products of a batch with each space's classifier per
    outer step, linear in the width: the leading principal components keep what linear
    classifiers of a few classes need at a fraction of the cost (docs/heads.md).
    """
    d = z.shape[1]
    p = d if pca_dim is None else min(int(pca_dim), d)
    if p >= d:
        return None
    x = F.normalize(z.float(), dim=1) if normalize else z.float()
    mean = x.mean(0, dtype=torch.float64)
    cov = torch.zeros(d, d, dtype=torch.float64, device=z.device)
    for a in range(0, x.shape[0], PREDICT_ROWS):
        block = x[a: a + PREDICT_ROWS].double() - mean
        cov += block.T @ block
    _, vectors = torch.linalg.eigh(cov)
    return mean.float(), vectors[:, -p:].flip(1).float().contiguous()


def prepare_space(z: torch.Tensor, normalize: bool, projection) -> torch.Tensor:
    """One space's rows as TURTLE reads them: L2-normalised (``normalize``), projected on
    the fitted principal components (if any), then scaled by ``sqrt(width)`` (rows of norm
    at most ``sqrt(width)``, entries of unit mean square before centring): Adam moves each
    weight by about the learning rate per step, so this scale sets how fast logits can grow,
    the same for every space whatever its width (the public code's CLIP and DINOv2 features
    are of that order of norm)."""
    x = F.normalize(z.float(), dim=1) if normalize else z.float()
    if projection is not None:
        mean, components = projection
        x = (x - mean) @ components
    return x * math.sqrt(x.shape[1]) if normalize else x


def log_softmax(x: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over the last axis, written out: torch's CPU kernel is slow when that
    axis is short (10 clusters: 25x the time of the exponentials it needs, torch 2.x)."""
    y = x - x.detach().amax(-1, keepdim=True)
    return y - y.exp().sum(-1, keepdim=True).log()


def inner_step(inner: _Linear, zb: list[torch.Tensor], tau: torch.Tensor) -> None:
    """Set the gradients of the inner classifiers' cross-entropy to the labelling ``tau``
    (mean over the batch, for each restart and space): ``d/dlogits = (softmax - tau) / b``,
    written out rather than taped (it is most of TURTLE's work)."""
    b = tau.shape[0]
    for s, z in enumerate(zb):
        g = (log_softmax(inner.logits(s, z)).exp() - tau) / b
        inner.W[s].grad = (z.T @ g.reshape(b, -1).to(z.dtype)).float()
        inner.b[s].grad = g.sum(0).reshape(-1)


class _Linear:
    """R x S linear maps ``(d_s -> C)`` for R restarts, kept as one ``(d_s, R*C)`` matrix
    per space; ``weight_norm`` gives each output unit its own length ``g`` (TURTLE's task
    encoder: "weight norm is crucial", the public code)."""

    def __init__(self, widths: list[int], n_restarts: int, k: int, *, weight_norm: bool,
                 generator: torch.Generator, device: torch.device):
        self.R, self.k, self.weight_norm = n_restarts, k, weight_norm
        self.W, self.b, self.g = [], [], []
        for d in widths:
            bound = 1.0 / math.sqrt(d)  # torch.nn.Linear's default initialisation
            w = (torch.rand(d, n_restarts * k, generator=generator) * 2 - 1) * bound
            b = (torch.rand(n_restarts * k, generator=generator) * 2 - 1) * bound
            if weight_norm:  # g starts at the initial row norms: the same map as without
                self.g.append(w.norm(dim=0).to(device).requires_grad_())
            self.W.append(w.to(device).requires_grad_())
            self.b.append(b.to(device).requires_grad_())

    def parameters(self) -> list[torch.Tensor]:
        return self.W + self.b + self.g

    def weights(self, s: int) -> torch.Tensor:
        if not self.weight_norm:
            return self.W[s]
        w = self.W[s]
        return w * (self.g[s] / w.norm(dim=0).clamp_min(1e-12))

    def logits(self, s: int, z: torch.Tensor) -> torch.Tensor:
        """``(n, R, C)`` logits of space ``s`` on its rows ``z``."""
        w = self.weights(s)
        out = z @ w.to(z.dtype)
        return (out.float() + self.b[s]).view(z.shape[0], self.R, self.k)

    def select(self, r: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Restart ``r``'s effective weights ``(d_s, C)`` and biases ``(C,)`` per space."""
        sl = slice(r * self.k, (r + 1) * self.k)
        with torch.no_grad():
            W = [self.weights(s)[:, sl].float().cpu().numpy().copy() for s in range(len(self.W))]
        return W, [b[sl].detach().float().cpu().numpy().copy() for b in self.b]


@register("turtle", "TURTLE: the labelling whose linear classifiers generalise best "
                    "(Gadetsky et al. 2024); one or several spaces")
class TURTLE(BaseClusterer):
    """TURTLE (Gadetsky et al., ICML 2024) on frozen embeddings, with the scikit-learn API.

    Searches for the labelling of the rows that linear classifiers in each representation
    space learn best: a linear task encoder per space (weight-normalised) labels the rows by
    the mean of its softmaxes; linear classifiers trained for ``inner_steps`` steps on that
    labelling measure how learnable it is; the task encoder is trained to make their error
    small and each space's cluster marginal spread (``gamma``). See the module docstring.

    Parameters
    ----------
    n_clusters : int
    spaces : None, int, sequence of int or str
        Several representation spaces given side by side as the columns of ``X``: their
        widths, in order (e.g. ``[1280, 784]`` for EfficientNet-Lite0 embeddings then raw
        Fashion-MNIST pixels; on the command line ``--param spaces=1280,784``). None: one
        space, all columns.
    gamma : float
        Weight of the entropy of each space's cluster marginal (10 in TURTLE).
    n_steps : int or "auto"
        Outer steps (task-encoder updates). "auto": 20 epochs of ``batch_size`` rows, at
        least 500 and at most 6 000 (TURTLE's ``T``).
    inner_steps : int
        Steps ``M`` of the inner classifiers per outer step (10 in TURTLE).
    batch_size : int
        Rows per outer step (10 000 in TURTLE; all rows when fewer).
    outer_lr, inner_lr : float
        Adam learning rates of the task encoder and of the inner classifiers (1e-3 each).
    warm_start : bool
        Keep the inner classifiers from one outer step to the next (True) or start them
        afresh each step (False, the public script's default; M steps from scratch).
    n_init : int
        Restarts trained together (as one batched product); the one with the lowest
        objective on all training rows is kept (no labels).
    normalize : bool
        L2-normalise each space's rows before anything else, and scale the prepared rows by
        ``sqrt(width)`` (see :func:`prepare_space`).
    pca_dim : int or None
        Keep each space's leading principal components (fitted on the training rows), at
        most this many; None keeps every column. TURTLE's cost is linear in the width.
    device : "auto", "cpu", "cuda" or "cuda:i"
    precision : {"auto", "bf16", "fp32"}
        Precision of the products (``deepclust.runtime``'s "heads" rule: bf16 where native).
    random_state : None, int or numpy Generator
        Seeds the initialisation and the batches.
    verbose : bool
        Print the objective every few hundred steps.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training row (the kept restart's labelling).
    objective_ : float
        TURTLE's objective of the kept restart on all training rows (lower is better):
        the label-free score that chose it; comparable across fits on the same rows.
    objectives_ : ndarray of shape (n_init,)
        Every restart's objective.
    restart_ : int
        Index of the kept restart.
    coef_, intercept_ : lists of ndarrays of shapes (width_s, n_clusters), (n_clusters,)
        The kept task encoder (weight norm folded in), one per space, acting on the
        prepared rows (:func:`prepare_space`).
    inner_coef_, inner_intercept_ : lists of ndarrays
        The kept restart's inner linear classifiers at the end of training (they enter
        ``objective_``).
    spaces_ : list of int
        Column widths of the spaces.
    loss_history_ : ndarray of shape (n_steps, n_init)
        The outer loss of each step (on its batch).
    n_steps_ : int
    stats_ : dict
        ``fit_s``, ``train_s``, ``seconds_per_step``, batch size, precision.

    Examples
    --------
    >>> from deepclust.cluster import TURTLE
    >>> model = TURTLE(n_clusters=10, random_state=0).fit(X_train)  # doctest: +SKIP
    >>> model.predict(X_test)  # doctest: +SKIP
    >>> two = TURTLE(n_clusters=10, spaces=[1280, 784]).fit(np.hstack([emb, pixels]))  # doctest: +SKIP
    """

    _parameter_constraints = {
        "gamma": [Interval(Real, 0, None)],
        "n_steps": [Interval(Integral, 1, None), Options("auto")],
        "inner_steps": [Interval(Integral, 1, None)],
        "batch_size": [Interval(Integral, 1, None)],
        "outer_lr": [Interval(Real, 0, None, closed="neither")],
        "inner_lr": [Interval(Real, 0, None, closed="neither")],
        "warm_start": [Boolean()],
        "n_init": [Interval(Integral, 1, None)],
        "normalize": [Boolean()],
        "pca_dim": [Interval(Integral, 1, None), None],
        "precision": [Options("auto", "bf16", "fp32")],
        "random_state": RANDOM_STATE,
        "verbose": [Boolean()],
    }

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        spaces=None,
        gamma: float = 10.0,
        n_steps: int | str = "auto",
        inner_steps: int = 10,
        batch_size: int = 10_000,
        outer_lr: float = 1e-3,
        inner_lr: float = 1e-3,
        warm_start: bool = True,
        n_init: int = 4,
        normalize: bool = True,
        pca_dim: int | None = 128,
        device: str = "auto",
        precision: str = "auto",
        random_state=None,
        verbose: bool = False,
    ):
        self.n_clusters = n_clusters
        self.spaces = spaces
        self.gamma = gamma
        self.n_steps = n_steps
        self.inner_steps = inner_steps
        self.batch_size = batch_size
        self.outer_lr = outer_lr
        self.inner_lr = inner_lr
        self.warm_start = warm_start
        self.n_init = n_init
        self.normalize = normalize
        self.pca_dim = pca_dim
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    # -- settings

    def _steps(self, n: int, batch: int) -> int:
        if self.n_steps != "auto":
            return int(self.n_steps)
        epochs = 20 * math.ceil(n / batch)
        return int(min(6000, max(500, epochs)))

    # -- rows

    def _rows(self, X, *, fitting: bool) -> list[torch.Tensor]:
        """X split into its spaces, each prepared as :func:`prepare_space` says, as tensors on
        the device (bf16 when that is the precision)."""
        rows = as_row_source(X).to_array(dtype=np.float32)
        if fitting:
            self.n_features_in_ = rows.shape[1]
            widths = parse_spaces(self.spaces, rows.shape[1])
            self.spaces_ = widths
            self._projections = []
        else:
            self._check_n_features(rows.shape[1])
            widths = self.spaces_
        dtype = torch.bfloat16 if self.precision_ == "bf16" else torch.float32
        out, at = [], 0
        for s, w in enumerate(widths):
            z = torch.from_numpy(np.ascontiguousarray(rows[:, at: at + w])).to(self.device_)
            if fitting:
                self._projections.append(fit_projection(z, self.normalize, self.pca_dim))
            out.append(prepare_space(z, self.normalize, self._projections[s]).to(dtype))
            at += w
        return out

    # -- fitting

    def fit(self, X, y=None):
        """Learn the labelling of ``X``; keep the restart with the lowest objective.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet, EmbeddingStore or path
            The spaces side by side (see ``spaces``).
        y : ignored

        Returns
        -------
        self
        """
        old_threads = torch.get_num_threads()
        try:
            return self._fit(X)
        finally:
            torch.set_num_threads(old_threads)

    def _fit(self, X):
        t0 = time.perf_counter()
        self._validate_params()
        self.device_ = runtime.resolve_device(self.device)
        if self.device_.type == "cpu":
            torch.set_num_threads(runtime.auto_threads())
        self.precision_ = runtime.resolve_precision("heads", self.precision, self.device_)
        Z = self._rows(X, fitting=True)
        self.widths_ = [z.shape[1] for z in Z]
        n = Z[0].shape[0]
        k = self._validate_k(n)
        R = int(self.n_init)
        batch = min(int(self.batch_size), n)
        n_steps = self._steps(n, batch)
        gamma = float(self.gamma)
        seed = seed_from(self.random_state)
        gen = torch.Generator().manual_seed(seed)

        task = _Linear(self.widths_, R, k, weight_norm=True, generator=gen, device=self.device_)
        outer = torch.optim.Adam(task.parameters(), lr=float(self.outer_lr))

        def new_inner():
            inner = _Linear(self.widths_, R, k, weight_norm=False, generator=gen,
                            device=self.device_)
            return inner, torch.optim.Adam(inner.parameters(), lr=float(self.inner_lr))

        inner, inner_opt = new_inner()
        losses = torch.zeros(n_steps, R)
        batch_gen = torch.Generator().manual_seed(seed + 1)
        t_train = time.perf_counter()
        for step in range(n_steps):
            idx = (torch.randperm(n, generator=batch_gen)[:batch] if batch < n
                   else torch.arange(n)).to(self.device_)
            zb = [z.index_select(0, idx) for z in Z]
            probs = [log_softmax(task.logits(s, z)).exp() for s, z in enumerate(zb)]
            tau = (sum(probs) / len(probs)).detach()
            if not self.warm_start:
                inner, inner_opt = new_inner()
            with torch.no_grad():
                for _ in range(int(self.inner_steps)):
                    inner_step(inner, zb, tau)
                    inner_opt.step()
            with torch.no_grad():
                inner_logits = [inner.logits(s, z) for s, z in enumerate(zb)]
            per_restart = turtle_objective(probs, inner_logits, gamma)
            outer.zero_grad(set_to_none=True)
            per_restart.sum().backward()
            outer.step()
            losses[step] = per_restart.detach().cpu()
            if self.verbose and runtime.is_main() and ((step + 1) % 500 == 0 or step + 1 == n_steps):
                print(f"  turtle step {step + 1}/{n_steps}: objective {losses[step].min():.4f} "
                      f"(best restart)", flush=True)
        train_s = time.perf_counter() - t_train

        objectives = self._full_objective(Z, task, inner, gamma)
        r = int(np.nanargmin(objectives))
        self.coef_, self.intercept_ = task.select(r)
        self.inner_coef_, self.inner_intercept_ = inner.select(r)
        self.objectives_ = objectives
        self.objective_ = float(objectives[r])
        self.restart_ = r
        self.loss_history_ = losses.numpy()
        self.n_steps_ = n_steps
        self.labels_ = self._predict_rows(Z).argmax(1).astype(np.int64)
        self.stats_ = {"fit_s": time.perf_counter() - t0, "train_s": train_s,
                       "seconds_per_step": train_s / n_steps, "batch_size": batch,
                       "n_steps": n_steps, "precision": self.precision_,
                       "device": str(self.device_)}
        return self

    @torch.no_grad()
    def _full_objective(self, Z: list[torch.Tensor], task: _Linear, inner: _Linear,
                        gamma: float) -> np.ndarray:
        """Every restart's objective on all rows, with the final inner classifiers."""
        n = Z[0].shape[0]
        S = len(Z)
        error = torch.zeros(task.R, dtype=torch.float64)
        sums = [torch.zeros(task.R, task.k, dtype=torch.float64) for _ in range(S)]
        for a in range(0, n, PREDICT_ROWS):
            zb = [z[a: a + PREDICT_ROWS] for z in Z]
            probs = [log_softmax(task.logits(s, z)).exp() for s, z in enumerate(zb)]
            tau = sum(probs) / S
            for s, z in enumerate(zb):
                lp = log_softmax(inner.logits(s, z))
                error += -(tau * lp).sum(-1).sum(0).double().cpu()
                sums[s] += probs[s].sum(0).double().cpu()
        entropy = sum(torch.special.entr(m / n).sum(-1) for m in sums)
        return (error / n - gamma * entropy).numpy()

    # -- using the fit

    @torch.no_grad()
    def _predict_rows(self, Z: list[torch.Tensor]) -> np.ndarray:
        n = Z[0].shape[0]
        out = np.empty((n, self.intercept_[0].shape[0]), dtype=np.float32)
        W = [torch.from_numpy(w).to(self.device_) for w in self.coef_]
        b = [torch.from_numpy(v).to(self.device_) for v in self.intercept_]
        for a in range(0, n, PREDICT_ROWS):
            p = 0
            for s, z in enumerate(Z):
                zb = z[a: a + PREDICT_ROWS]
                p = p + log_softmax((zb @ W[s].to(zb.dtype)).float() + b[s]).exp()
            out[a: a + PREDICT_ROWS] = (p / len(Z)).cpu().numpy()
        return out

    def predict_proba(self, X) -> np.ndarray:
        """The task encoder's labelling of each row: the mean over spaces of its softmaxes.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters), float32
        """
        self._check_fitted()
        return self._predict_rows(self._rows(X, fitting=False))

    def predict(self, X) -> np.ndarray:
        """Cluster of each row: the argmax of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet or EmbeddingStore
            The same spaces, side by side, as in ``fit``.

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        """
        return self.predict_proba(X).argmax(1).astype(np.int64)

    def __getstate__(self):
        state = self.__dict__.copy()
        if "_projections" in state:  # pickle on the CPU, whatever device trained it
            state["_projections"] = [None if p is None else tuple(t.cpu() for t in p)
                                     for p in state["_projections"]]
            state["device_"] = torch.device("cpu")
        return state
