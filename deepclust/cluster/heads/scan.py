"""SCAN: clustering heads that make neighbours agree, with an entropy term.

Van Gansbeke, Vandenhende, Georgoulis, Proesmans and Van Gool, "SCAN: Learning to Classify
Images without Labels", ECCV 2020, on frozen embeddings: the clustering step
(:class:`.objectives.SCANObjective`) and, optionally, the self-labelling step
(:class:`.objectives.SelfLabelObjective`), both on the machinery TEMI uses.

:class:`SCANv2` ("scanv2") is the SCAN loss in TEMI's self-distillation frame, the variant
the TEMI paper compares with (Adaloglou et al. 2023): an EMA teacher predicts the pair
partner (:class:`.objectives.SCANv2Objective`).
"""

from __future__ import annotations

import time
from numbers import Real

import torch

from deepclust import runtime
from deepclust.cluster.base import register
from deepclust.cluster.heads.base import HeadClusterer
from deepclust.cluster.heads.objectives import SCANObjective, SCANv2Objective, SelfLabelObjective
from deepclust.cluster.heads.training import HeadTrainer, TrainConfig
from deepclust.validation import POSITIVE_INT, Boolean, Interval, Options, check_positive_int

__all__ = ["SCAN", "SCANv2"]


@register("scan", "SCAN deep clustering heads on frozen embeddings (Van Gansbeke et al. 2020)")
class SCAN(HeadClusterer):
    """SCAN clustering heads on frozen embeddings, with the scikit-learn API.

    The heads of :class:`~deepclust.cluster.heads.TEMI` are trained on pairs of an
    embedding and one of its ``n_neighbors`` nearest neighbours to minimise
    ``-log <p(x), p(x')> - entropy_weight * H(mean p)``; the head with the lowest loss
    over the last 10 % of steps is kept. With ``self_label=True`` that head is then
    fine-tuned on its own confident predictions (SCAN's self-labelling step).

    Parameters
    ----------
    n_clusters : int
    n_heads : int or "auto"
        As in :class:`~deepclust.cluster.heads.TEMI`.
    n_neighbors : int
        Neighbours the pair partner is drawn from (20 in SCAN).
    hidden_dim, bottleneck_dim : int or "auto", int
        As in :class:`~deepclust.cluster.heads.TEMI`.
    entropy_weight : float
        ``lambda`` of the entropy term (5 in SCAN).
    temperature : float
        Softmax temperature of the cosine logits.
    self_label : bool
        Run the self-labelling step after the clustering step.
    self_label_threshold : float
        Confidence that makes a pseudo-label (0.99 in SCAN).
    self_label_steps : int or "auto"
        Steps of the self-labelling step; "auto": a quarter of the clustering budget.
    batch_size, n_steps, base_lr, final_lr_ratio, weight_decay, warmup_steps, device,
    precision, neighbor_precision, cache_neighbors, checkpoint_dir, checkpoint_every,
    resume, random_state, verbose, progress
        As in :class:`~deepclust.cluster.heads.TEMI`.

    Attributes
    ----------
    labels_, head_, head_losses_, heads_, loss_history_, n_steps_, stats_
        As in :class:`~deepclust.cluster.heads.TEMI` (``heads_`` are the heads of the
        clustering step; prediction uses the self-labelled head when there is one).
    self_label_stats_ : dict
        Steps and the final share of confident anchors, when ``self_label``.
    """

    _predict_temperature_param = "temperature"
    _parameter_constraints = {
        **HeadClusterer._parameter_constraints,
        "entropy_weight": [Interval(Real, 0, None)],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "self_label": [Boolean()],
        "self_label_threshold": [Interval(Real, 0, 1, closed="right")],
        "self_label_steps": [Options("auto"), POSITIVE_INT],
    }

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        n_heads: int | str = "auto",
        n_neighbors: int = 20,
        hidden_dim: int | str = "auto",
        bottleneck_dim: int = 256,
        entropy_weight: float = 5.0,
        temperature: float = 0.1,
        self_label: bool = False,
        self_label_threshold: float = 0.99,
        self_label_steps: int | str = "auto",
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
        self.entropy_weight = entropy_weight
        self.temperature = temperature
        self.self_label = self_label
        self.self_label_threshold = self_label_threshold
        self.self_label_steps = self_label_steps
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

    def _objective(self, n_heads: int, n_clusters: int, device: torch.device) -> SCANObjective:
        return SCANObjective(entropy_weight=float(self.entropy_weight),
                             temperature=float(self.temperature))

    def _objective_params(self) -> dict:
        return {"entropy_weight": self.entropy_weight, "temperature": self.temperature}

    def _after_training(self, context: dict) -> None:
        if not self.self_label:
            return
        cfg: TrainConfig = context["config"]
        steps = (max(1, cfg.n_steps // 4) if self.self_label_steps == "auto"
                 else check_positive_int(self.self_label_steps, "self_label_steps"))
        config = TrainConfig(**{**cfg.as_dict(), "n_steps": steps,
                                "warmup_steps": 0, "seed": cfg.seed + 1})
        objective = SelfLabelObjective(threshold=float(self.self_label_threshold),
                                       temperature=float(self.temperature))
        head = self._selected.train()
        for p in head.parameters():
            p.requires_grad_(True)
        trainer = HeadTrainer(context["X"], context["neighbors"], head, objective, config,
                              context["mean"], context["inv_std"])
        identity = {**context["identity"], "phase": "selflabel",
                    "self_label_threshold": self.self_label_threshold, "steps": steps,
                    "head": self.head_} if context["identity"] else {}
        saver = self._resume(trainer, identity, phase="selflabel")
        t = time.perf_counter()
        trainer.run(checkpoint=saver, verbose=bool(self.verbose), progress=self.progress,
                    desc="scan self-labelling")
        context["timings"]["self_label_s"] = time.perf_counter() - t
        self._selected = trainer.student.eval()
        self.self_label_stats_ = {
            "n_steps": trainer.step,
            "confident_fraction": objective.last_confident_fraction,
            "loss": float(trainer.head_losses(max(1, steps // 10))[0]),
            "world_size": runtime.world_size(),
        }


@register("scanv2", "SCANv2: SCAN's loss with an EMA teacher (self-distillation, Adaloglou et al. 2023)")
class SCANv2(SCAN):
    """SCANv2: SCAN's loss with TEMI's self-distillation, with the scikit-learn API.

    As :class:`SCAN`, but each member of a pair is matched with the prediction of an
    exponential-moving-average **teacher** on the other member (the student's gradient only;
    :class:`~deepclust.cluster.heads.objectives.SCANv2Objective`); the teacher's heads are
    kept and predict, as in :class:`~deepclust.cluster.heads.TEMI`. This is the "SCANv2"
    of the TEMI paper; :class:`SCAN` with ``self_label=True`` is SCAN's own second step
    (pseudo-labels), a different thing (docs/heads.md, "SCAN and SCANv2").

    Parameters
    ----------
    student_temp, teacher_temp : float
        Softmax temperatures of the student and the teacher (0.1 and 0.1, TEMI's).
    teacher_momentum, teacher_momentum_final : float, "auto" or None
        As in :class:`~deepclust.cluster.heads.TEMI`.
    n_neighbors : int
        Neighbours the partner is drawn from (50, TEMI's).
    others
        As in :class:`SCAN` (``temperature`` there is ``student_temp`` here).
    """

    _predict_temperature_param = "teacher_temp"

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        n_heads: int | str = "auto",
        n_neighbors: int = 50,
        hidden_dim: int | str = "auto",
        bottleneck_dim: int = 256,
        entropy_weight: float = 5.0,
        student_temp: float = 0.1,
        teacher_temp: float = 0.1,
        teacher_momentum: float | str = "auto",
        teacher_momentum_final: float | None = None,
        self_label: bool = False,
        self_label_threshold: float = 0.99,
        self_label_steps: int | str = "auto",
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
        self.entropy_weight = entropy_weight
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.teacher_momentum = teacher_momentum
        self.teacher_momentum_final = teacher_momentum_final
        self.self_label = self_label
        self.self_label_threshold = self_label_threshold
        self.self_label_steps = self_label_steps
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

    @property
    def temperature(self) -> float:
        """The student's temperature (what SCAN's self-labelling step trains with)."""
        return self.student_temp

    def _objective(self, n_heads: int, n_clusters: int, device: torch.device) -> SCANv2Objective:
        return SCANv2Objective(entropy_weight=float(self.entropy_weight),
                               student_temp=float(self.student_temp),
                               teacher_temp=float(self.teacher_temp))

    def _objective_params(self) -> dict:
        return {"entropy_weight": self.entropy_weight, "student_temp": self.student_temp,
                "teacher_temp": self.teacher_temp}
