"""TEMI: clustering heads trained by self-distillation on nearest-neighbour pairs.

Adaloglou, Michels, Kalisch and Kollmann, "Exploring the Limits of Deep Image Clustering
using Pretrained Models", BMVC 2023. The loss is :class:`.objectives.TEMIObjective`; the
recipe defaults are discussed in docs/heads.md.
"""

from __future__ import annotations

from numbers import Real

import torch

from deepclust.cluster.base import register
from deepclust.cluster.heads.base import HeadClusterer
from deepclust.cluster.heads.objectives import TEMIObjective
from deepclust.validation import Interval, Options

__all__ = ["TEMI"]


@register("temi", "TEMI deep clustering heads on frozen embeddings (Adaloglou et al. 2023)")
class TEMI(HeadClusterer):
    """TEMI clustering heads on frozen embeddings, with the scikit-learn API.

    ``n_heads`` heads (Linear → GELU → Linear → L2-normalise → weight-normalised Linear,
    :class:`~deepclust.cluster.heads.modules.HeadBank`) are trained as students of their
    own exponential moving average on pairs of each embedding and one of its
    ``n_neighbors`` cosine nearest neighbours, with TEMI's weighted ``beta``-PMI loss. The
    head with the lowest training loss over the last 10 % of steps is kept (no labels are
    used); prediction uses its teacher.

    Parameters
    ----------
    n_clusters : int
        Clusters per head (may exceed the number of classes: over-clustering).
    n_heads : int or "auto"
        Heads trained together (16 in TEMI); "auto": 16 from 10 000 rows on, 4 below
        (:func:`~deepclust.cluster.heads.training.default_n_heads`).
    n_neighbors : int
        Neighbours each pair partner is drawn from (50 in TEMI).
    hidden_dim : int or "auto"
        Width of the head's hidden layer; "auto": 512 (TEMI's) from 10 000 rows on, 256
        below (:func:`~deepclust.cluster.heads.training.default_hidden_dim`).
    bottleneck_dim : int
        Width of its L2-normalised bottleneck.
    beta : float
        Exponent of TEMI's PMI (0.6).
    student_temp, teacher_temp : float
        Softmax temperatures of the cosine logits (0.1 and 0.1).
    teacher_momentum : float or "auto"
        EMA momentum of the teacher (at the start of training, if it changes). "auto":
        ``1 - 1 / clip(n_steps / 100, 10, 250)``: the teacher averages the student over a
        hundredth of the budget (0.9 for 1 000 steps; TEMI's 0.996 from 25 000 steps on);
        see :func:`~deepclust.cluster.heads.training.auto_teacher_momentum`.
    teacher_momentum_final : float or None
        Momentum at the end (cosine schedule from ``teacher_momentum``); None keeps it
        constant.
    prior_momentum : float
        EMA momentum of the cluster prior (0.9).
    batch_size : int or "auto"
        Pairs per optimiser step over all processes; "auto": 256, 1 024 from 200 000 rows
        on (:func:`~deepclust.cluster.heads.training.default_batch_size`).
    n_steps : int or "auto"
        Training budget in optimiser steps; "auto" is
        :func:`~deepclust.cluster.heads.training.default_n_steps`: 1 000 from 10 000 rows
        on, 40 epochs (at least 200 steps) below.
    base_lr : float
        Learning rate for a batch of 256; the rate used is ``base_lr * batch_size / 256``.
    final_lr_ratio : float
        The learning rate decays along a cosine to ``final_lr_ratio`` times its peak
        (1.0: constant after warm-up, as TEMI).
    weight_decay : float
        AdamW weight decay of the weights (not the biases).
    warmup_steps : int or "auto"
        Linear warm-up; "auto": 10 % of the budget, at most 500.
    device : "auto", "cpu", "cuda" or "cuda:i"
        "auto": this process's GPU if CUDA is available, else the CPU.
    precision : {"auto", "bf16", "fp32"}
        bf16 autocast of the head products; "auto" uses it on GPUs and CPUs with native
        bfloat16.
    neighbor_precision : {"auto", "bf16", "fp32"}
        How neighbours are mined (:func:`deepclust.neighbors.mine_neighbors`).
    cache_neighbors : bool or path
        Cache the neighbour table (inside a store, or in deepclust's cache for arrays).
    checkpoint_dir : path, optional
        Write checkpoints here every ``checkpoint_every`` steps, and resume from them.
    checkpoint_every : int
        Steps between checkpoints.
    resume : bool
        Continue from a checkpoint in ``checkpoint_dir`` made with the same data and
        settings (a different one is an error); False starts over and overwrites it.
    random_state : None, int or numpy Generator
        Seeds the heads' initialisation, the batches and the neighbour draws.
    verbose : bool
        Print progress (a line every 100 steps).
    progress : bool or None
        A progress bar on stderr with the time left: None (default) when stderr is a
        terminal, True always, False never; off when ``verbose``.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training row by the selected head.
    head_ : int
        Index of the selected head.
    head_losses_ : ndarray of shape (n_heads,)
        Each head's training loss over the last 10 % of steps (the selection criterion).
    heads_ : HeadBank
        The teacher heads, all of them (see :meth:`predict_all_heads`).
    loss_history_ : ndarray of shape (n_steps, n_heads)
    n_steps_ : int
    stats_ : dict
        Timings (``neighbors_s``, ``train_s``, ``seconds_per_epoch``, ...), epochs, batch.

    Examples
    --------
    >>> from deepclust.cluster import TEMI
    >>> model = TEMI(n_clusters=10, random_state=0).fit(X_train)  # doctest: +SKIP
    >>> model.predict(X_test)  # doctest: +SKIP
    """

    _parameter_constraints = {
        **HeadClusterer._parameter_constraints,
        "beta": [Interval(Real, 0, 1, closed="right")],
        "student_temp": [Interval(Real, 0, None, closed="neither")],
        "teacher_temp": [Interval(Real, 0, None, closed="neither")],
        "teacher_momentum": [Options("auto"), Interval(Real, 0, 1, closed="left")],
        "teacher_momentum_final": [None, Interval(Real, 0, 1)],
        "prior_momentum": [Interval(Real, 0, 1)],
    }

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        n_heads: int | str = "auto",
        n_neighbors: int = 50,
        hidden_dim: int | str = "auto",
        bottleneck_dim: int = 256,
        beta: float = 0.6,
        student_temp: float = 0.1,
        teacher_temp: float = 0.1,
        teacher_momentum: float | str = "auto",
        teacher_momentum_final: float | None = None,
        prior_momentum: float = 0.9,
        batch_size: int | str = "auto",
        n_steps: int | str = "auto",
        base_lr: float = 1e-3,
        final_lr_ratio: float = 1.0,
        weight_decay: float = 1e-4,
        warmup_steps: int | str = "auto",
        device: str = "auto",
        precision: str = "auto",
        neighbor_precision: str = "auto",
        cache_neighbors: bool | str = True,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 500,
        resume: bool = True,
        random_state=None,
        verbose: bool = False,
        progress: bool | None = None,
    ):
        self.n_clusters = n_clusters
        self.n_heads = n_heads
        self.n_neighbors = n_neighbors
        self.hidden_dim = hidden_dim
        self.bottleneck_dim = bottleneck_dim
        self.beta = beta
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.teacher_momentum = teacher_momentum
        self.teacher_momentum_final = teacher_momentum_final
        self.prior_momentum = prior_momentum
        self.batch_size = batch_size
        self.n_steps = n_steps
        self.base_lr = base_lr
        self.final_lr_ratio = final_lr_ratio
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.device = device
        self.precision = precision
        self.neighbor_precision = neighbor_precision
        self.cache_neighbors = cache_neighbors
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.random_state = random_state
        self.verbose = verbose
        self.progress = progress

    def _objective(self, n_heads: int, n_clusters: int, device: torch.device) -> TEMIObjective:
        return TEMIObjective(n_heads, n_clusters, beta=float(self.beta),
                             student_temp=float(self.student_temp),
                             teacher_temp=float(self.teacher_temp),
                             prior_momentum=float(self.prior_momentum), device=device)

    def _objective_params(self) -> dict:
        return {"beta": self.beta, "student_temp": self.student_temp,
                "teacher_temp": self.teacher_temp, "prior_momentum": self.prior_momentum}
