"""Training objectives of the heads: TEMI, SCAN and SCAN's self-labelling step.

Every objective takes the logits of a batch of pairs laid out as ``(H, 2b, C)``: rows
``[0, b)`` are the anchors ``x``, rows ``[b, 2b)`` their drawn neighbours ``x'``. It returns
the scalar to back-propagate and each head's loss (detached, averaged over all processes),
which head selection reads.

Probabilities are handled as log-probabilities throughout: ``(q_s q_t)^beta / p`` summed
over clusters is a ``logsumexp`` of ``beta (log q_s + log q_t) - log p``, which stays finite
where the products underflow.

Under ``torchrun`` each process holds a slice of the global batch and the gradients are
averaged over the processes (:mod:`deepclust.runtime`); quantities defined on the whole batch (TEMI's
cluster prior, SCAN's mean prediction, the self-label class weights) are all-reduced, so the
result is that of one process on the whole batch, up to floating-point order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepclust import runtime

__all__ = [
    "SCANObjective",
    "SCANv2Objective",
    "SelfLabelObjective",
    "TEMIObjective",
    "scan_consistency",
    "temi_pair_loss",
    "update_prior",
]


def _split(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b = t.shape[1] // 2
    return t[:, :b], t[:, b:]


# ----------------------------------------------------------------------------- TEMI


def temi_pair_loss(
    student_logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    log_prior: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """``-log sum_c (q_s(c) q_t(c))^beta / p(c)`` for each pair and head.

    Parameters
    ----------
    student_logp, teacher_logp : tensor of shape (H, b, C)
        Log-probabilities of the student on one view and of the teacher on the other.
    log_prior : tensor of shape (H, C)
        Log of the cluster prior ``p``.
    beta : float

    Returns
    -------
    tensor of shape (H, b)
    """
    return -torch.logsumexp(beta * (student_logp + teacher_logp) - log_prior[:, None, :], dim=-1)


@torch.no_grad()
def update_prior(prior: torch.Tensor, teacher_probs: torch.Tensor, momentum: float) -> None:
    """EMA of the teacher's batch-mean probabilities, in place: ``p <- m p + (1 - m) mean``.

    Parameters
    ----------
    prior : tensor of shape (H, C)
    teacher_probs : tensor of shape (H, n, C)
        This process's rows; the mean is taken over the rows of all processes.
    momentum : float
    """
    sums = teacher_probs.sum(dim=1, dtype=torch.float64)
    count = torch.tensor([float(teacher_probs.shape[1])], dtype=torch.float64,
                         device=sums.device)
    runtime.all_reduce_sum_(sums)
    runtime.all_reduce_sum_(count)
    prior.mul_(momentum).add_((sums / count).to(prior.dtype), alpha=1.0 - momentum)


class TEMIObjective:
    """TEMI's weighted, symmetrised, ``beta``-PMI loss with a teacher (Adaloglou et al. 2023).

    For each head ``h`` and pair ``(x, x')``::

        loss_h = w * ( -log sum_c (q_s(c|x') q_t(c|x))^beta / p_h(c)
                       -log sum_c (q_s(c|x) q_t(c|x'))^beta / p_h(c) ) / 2

    where ``q_s``, ``q_t`` are the student's and teacher's softmax at their temperatures,
    ``p_h`` an EMA (``prior_momentum``) of the teacher's batch-mean probabilities, updated
    with the current batch before the loss (as in the authors' code), and
    ``w = mean_h sum_c q_t(c|x) q_t(c|x')`` the teacher ensemble's agreement on the pair.

    Parameters
    ----------
    n_heads, n_clusters : int
    beta : float
    student_temp, teacher_temp : float
    prior_momentum : float
    device : torch.device
    """

    name = "temi"
    uses_teacher = True

    def __init__(self, n_heads: int, n_clusters: int, *, beta: float = 0.6,
                 student_temp: float = 0.1, teacher_temp: float = 0.1,
                 prior_momentum: float = 0.9, device: torch.device | None = None):
        self.beta = float(beta)
        self.student_temp = float(student_temp)
        self.teacher_temp = float(teacher_temp)
        self.prior_momentum = float(prior_momentum)
        self.prior = torch.full((n_heads, n_clusters), 1.0 / n_clusters, device=device)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"prior": self.prior}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.prior.copy_(tensors["prior"])

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor):
        s_logp = F.log_softmax(student_logits / self.student_temp, dim=-1)
        with torch.no_grad():
            t_logp = F.log_softmax(teacher_logits / self.teacher_temp, dim=-1)
            update_prior(self.prior, t_logp.exp(), self.prior_momentum)
            t1, t2 = _split(t_logp)
            weight = torch.logsumexp(t1 + t2, dim=-1).exp().mean(dim=0)  # (b,)
            log_prior = self.prior.log()
        s1, s2 = _split(s_logp)
        pair = (temi_pair_loss(s2, t1, log_prior, self.beta)
                + temi_pair_loss(s1, t2, log_prior, self.beta)) / 2
        per_head = (weight * pair).mean(dim=1)  # (H,)
        return per_head.sum(), runtime.all_reduce_mean_(per_head.detach().clone())


# ----------------------------------------------------------------------------- SCAN


def scan_consistency(logp: torch.Tensor) -> torch.Tensor:
    """``-log <p(x), p(x')>`` per head and pair; ``logp`` is (H, 2b, C) as above."""
    a, b = _split(logp)
    return -torch.logsumexp(a + b, dim=-1)


def _global_mean_probs(probs: torch.Tensor) -> torch.Tensor:
    """Mean of ``probs`` (H, n, C) over the rows of all processes.

    The other processes' rows enter as constants, so the gradient reaching this process is
    that of its own rows (the processes' gradients are summed by the averaging, see
    :class:`SCANObjective`).
    """
    local = probs.sum(dim=1)
    total = local.detach().clone()
    count = torch.tensor([float(probs.shape[1])], device=probs.device)
    runtime.all_reduce_sum_(total)
    runtime.all_reduce_sum_(count)
    return (local + (total - local.detach())) / count


class SCANObjective:
    """SCAN's loss (Van Gansbeke et al. 2020): consistency with neighbours plus entropy.

    For each head: ``-mean log <p(x), p(x')> - entropy_weight * H(mean p)``, the mean
    prediction taken over the batch, and the entropy term averaged over the two views. As in
    SCAN, both members of a pair are predicted by the trained heads (no teacher) and the
    gradient flows through both.

    Parameters
    ----------
    entropy_weight : float
        ``lambda`` (5 in SCAN).
    temperature : float
        Softmax temperature of the cosine logits.
    """

    name = "scan"
    uses_teacher = False

    def __init__(self, *, entropy_weight: float = 5.0, temperature: float = 0.1):
        self.entropy_weight = float(entropy_weight)
        self.temperature = float(temperature)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def __call__(self, student_logits: torch.Tensor, teacher_logits=None):
        logp = F.log_softmax(student_logits / self.temperature, dim=-1)
        consistency = scan_consistency(logp).mean(dim=1)  # (H,)
        return self._with_entropy(consistency, logp.exp())

    def _with_entropy(self, consistency: torch.Tensor, probs: torch.Tensor):
        """The loss to back-propagate and each head's loss, from the consistency ``(H,)``
        and the student's probabilities ``(H, 2b, C)``."""
        entropy = 0.0
        for view in _split(probs):
            mean = _global_mean_probs(view).clamp_min(1e-8)
            entropy = entropy + (-(mean * mean.log()).sum(dim=-1)) / 2
        # the gradients are averaged over W processes, but each holds only its own rows'
        # share of the entropy's gradient: scale it by W so the average is the whole of it
        w = runtime.world_size()
        total = consistency.sum() - self.entropy_weight * w * entropy.sum()
        reported = consistency.detach().clone()
        runtime.all_reduce_mean_(reported)
        return total, reported - self.entropy_weight * entropy.detach()


class SCANv2Objective(SCANObjective):
    """SCAN's loss in TEMI's self-distillation frame ("SCANv2", Adaloglou et al. 2023).

    As :class:`SCANObjective`, except that each member of a pair is matched with the
    **teacher's** prediction (an EMA of the student, no gradient) on the other member::

        loss_h = ( -log <q_s(x'), q_t(x)> - log <q_s(x), q_t(x')> ) / 2
                 - entropy_weight * H(mean q_s)

    with ``q_s``, ``q_t`` the softmaxes at ``student_temp`` and ``teacher_temp``; the
    entropy is the student's, averaged over the two views (the TEMI authors' ``SCAN``
    loss, losses/mi.py of their public code).

    Parameters
    ----------
    entropy_weight : float
    student_temp, teacher_temp : float
    """

    name = "scanv2"
    uses_teacher = True

    def __init__(self, *, entropy_weight: float = 5.0, student_temp: float = 0.1,
                 teacher_temp: float = 0.1):
        super().__init__(entropy_weight=entropy_weight, temperature=student_temp)
        self.teacher_temp = float(teacher_temp)

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor):
        logp = F.log_softmax(student_logits / self.temperature, dim=-1)
        with torch.no_grad():
            t_logp = F.log_softmax(teacher_logits / self.teacher_temp, dim=-1)
        s1, s2 = _split(logp)
        t1, t2 = _split(t_logp)
        consistency = ((-torch.logsumexp(s2 + t1, dim=-1) - torch.logsumexp(s1 + t2, dim=-1))
                       / 2).mean(dim=1)  # (H,)
        return self._with_entropy(consistency, logp.exp())


class SelfLabelObjective:
    """SCAN's self-labelling step on embeddings.

    Anchors whose predicted probability reaches ``threshold`` become pseudo-labelled; the
    head is trained with class-balanced cross-entropy (each class weighted by the inverse of
    its share among the batch's confident anchors) to predict that label on the anchor's
    drawn neighbour, which plays the part of SCAN's strong augmentation.

    Parameters
    ----------
    threshold : float
        Confidence for a pseudo-label (0.99 in SCAN).
    temperature : float
    """

    name = "selflabel"
    uses_teacher = False

    def __init__(self, *, threshold: float = 0.99, temperature: float = 0.1):
        self.threshold = float(threshold)
        self.temperature = float(temperature)
        self.last_confident_fraction = 0.0

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def __call__(self, student_logits: torch.Tensor, teacher_logits=None):
        logp = F.log_softmax(student_logits / self.temperature, dim=-1)
        anchors, views = _split(logp)
        H, b, C = anchors.shape
        with torch.no_grad():
            conf, target = anchors.max(dim=-1)
            mask = conf.exp() >= self.threshold  # (H, b)
            counts = torch.zeros(H, C, dtype=logp.dtype, device=logp.device)
            counts.scatter_add_(1, target, mask.to(logp.dtype))
            n = torch.tensor([float(b)], dtype=logp.dtype, device=logp.device)
            runtime.all_reduce_sum_(counts)
            runtime.all_reduce_sum_(n)
            n_conf = counts.sum(dim=1, keepdim=True)
            class_w = torch.where(counts > 0, n_conf / counts.clamp_min(1.0), torch.zeros_like(counts))
            w = class_w.gather(1, target) * mask  # (H, b)
            denom = w.sum(dim=1)
            runtime.all_reduce_sum_(denom)
            self.last_confident_fraction = float((n_conf.sum() / (n * H)).item())
        nll = -views.gather(-1, target[..., None])[..., 0]  # (H, b)
        per_head = (w * nll).sum(dim=1) / denom.clamp_min(1e-12)
        reported = per_head.detach().clone()
        runtime.all_reduce_sum_(reported)
        # the weighted mean is over the whole batch: this process holds its rows' share
        return runtime.world_size() * per_head.sum(), reported
