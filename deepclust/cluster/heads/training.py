"""The training loop shared by every head objective: pairs, schedules, EMA teacher, budget.

One step:

1. the global batch of anchors and one neighbour each, a pure function of
   ``(seed, step)`` (:class:`PairSampler`): the same on every process, and the same after a
   resume, with no sampler state to save;
2. this process's slice of it is gathered, standardised and cast (bf16 when enabled);
3. student heads (and, for TEMI, the teacher) evaluate the ``2 b`` rows at once;
4. the objective's loss is back-propagated, gradients averaged over the processes, AdamW
   steps at the scheduled learning rate, and the teacher follows the student by EMA.

Training lasts a number of optimiser **steps** (:func:`default_n_steps`): fixed from 10 000
rows on, where what a head needs to converge was measured to depend on how many updates it
gets, not on how many embeddings there are; on smaller data a number of epochs, fewer steps
(see docs/heads.md for the evidence).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from deepclust import runtime
from deepclust.cluster.heads.modules import HeadBank
from deepclust.progress import progress_disabled

__all__ = [
    "PairSampler",
    "TrainConfig",
    "HeadTrainer",
    "cosine_schedule",
    "auto_teacher_momentum",
    "default_batch_size",
    "default_hidden_dim",
    "default_n_heads",
    "default_n_steps",
    "ema_update_",
]


@dataclass
class TrainConfig:
    """Settings of one training run (all steps are optimiser steps).

    ``batch_size`` is the global batch (pairs per step, over all processes).
    """

    n_steps: int
    batch_size: int
    lr: float
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    final_lr_ratio: float = 1.0
    teacher_momentum: float = 0.996
    teacher_momentum_final: float = 0.996
    seed: int = 0
    bf16: bool = False
    checkpoint_every: int = 0
    log_every: int = 100

    def as_dict(self) -> dict:
        return asdict(self)


#: Below this many rows the heads' budget shrinks with the data (docs/heads.md, "Budget").
SMALL_DATA_ROWS = 10_000
#: Passes over the data (as anchors) that a small data set gets, within [MIN_STEPS, steps].
SMALL_DATA_EPOCHS = 40
#: The fewest steps "auto" gives, however small the data.
MIN_STEPS = 200
#: Heads trained on small data ("auto"); 16 (TEMI's) from SMALL_DATA_ROWS on.
SMALL_DATA_HEADS = 4
#: Hidden width of the heads on small data ("auto"); TEMI's 512 from SMALL_DATA_ROWS on.
SMALL_DATA_HIDDEN, HIDDEN = 256, 512
#: From this many rows the "auto" batch is LARGE_BATCH pairs, below it BATCH pairs.
LARGE_DATA_ROWS = 200_000
BATCH, LARGE_BATCH = 256, 1024


def default_n_steps(n_samples: int, batch_size: int, *, steps: int = 1000,
                    min_epochs: float = 0.0) -> int:
    """The step budget of ``n_steps="auto"``; see docs/heads.md ("Budget").

    ``steps`` from :data:`SMALL_DATA_ROWS` rows on (where convergence was measured to depend
    on steps, not epochs); below, :data:`SMALL_DATA_EPOCHS` epochs, at least
    :data:`MIN_STEPS` and at most ``steps``. ``min_epochs`` > 0 raises the budget so each
    row is an anchor at least that often.
    """
    per_epoch = max(1, math.ceil(n_samples / batch_size))
    budget = steps
    if n_samples < SMALL_DATA_ROWS:
        budget = min(steps, max(MIN_STEPS, SMALL_DATA_EPOCHS * per_epoch))
    return int(max(budget, math.ceil(min_epochs * per_epoch)))


def default_n_heads(n_samples: int) -> int:
    """Heads of ``n_heads="auto"``: :data:`SMALL_DATA_HEADS` below :data:`SMALL_DATA_ROWS`
    rows, else 16 (TEMI's)."""
    return SMALL_DATA_HEADS if n_samples < SMALL_DATA_ROWS else 16


def default_hidden_dim(n_samples: int) -> int:
    """Hidden width of ``hidden_dim="auto"``: :data:`SMALL_DATA_HIDDEN` below
    :data:`SMALL_DATA_ROWS` rows, else TEMI's 512. On digits (1 797 rows) the narrower head
    trained in 0.6x the time and clustered better (ACC 0.902 against 0.879, mean of five
    seeds; docs/heads.md, "Budget")."""
    return SMALL_DATA_HIDDEN if n_samples < SMALL_DATA_ROWS else HIDDEN


def default_batch_size(n_samples: int) -> int:
    """Pairs per step of ``batch_size="auto"``: :data:`BATCH`, :data:`LARGE_BATCH` from
    :data:`LARGE_DATA_ROWS` rows on (more pairs per step where 1 000 steps of 256 would see
    each row a quarter of a time or less; a step of 1 024 costs about 3x one of 256)."""
    return LARGE_BATCH if n_samples >= LARGE_DATA_ROWS else BATCH


def auto_teacher_momentum(n_steps: int) -> float:
    """The teacher's EMA momentum for a budget of ``n_steps``: ``1 - 1 / horizon``.

    The teacher averages the student over about ``horizon = n_steps / 100`` steps (at least
    10, at most 250 -- TEMI's 0.996 -- for runs of 25 000 steps and more). TEMI's fixed
    0.996 averages over 250 steps, a quarter of a 1 000-step run: the teacher then lags the
    student for most of the run, which is why the published recipe under-trains small data
    (docs/heads.md).
    """
    horizon = min(250.0, max(10.0, n_steps / 100.0))
    return 1.0 - 1.0 / horizon


def cosine_schedule(step: int, total: int, start: float, end: float, warmup: int = 0) -> float:
    """Linear warm-up from 0 to ``start`` over ``warmup`` steps, then cosine to ``end``."""
    if step < warmup:
        return start * (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def ema_update_(teacher: torch.nn.Module, student: torch.nn.Module, momentum: float) -> None:
    """``teacher <- momentum * teacher + (1 - momentum) * student``, in place."""
    t = [p for p in teacher.parameters()]
    s = [p.detach() for p in student.parameters()]
    torch._foreach_lerp_(t, s, 1.0 - momentum)


def _generator(seed: int, stream: int, index: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    # distinct, deterministic seeds per (seed, stream, index); 2**61 - 1 is prime
    g.manual_seed((seed * 1_000_003 + stream * 7_919 + index * 104_729) % (2**61 - 1))
    return g


def _fastest_adamw() -> dict:
    """AdamW's fused kernel (one pass over each tensor) where this torch has it for the CPU
    and GPU (torch >= 2.4), else the multi-tensor one."""
    try:
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {"foreach": True}
    return {"fused": True}


class PairSampler:
    """The global batch of step ``s``: anchors and one random neighbour of each.

    Anchors run through a fresh random permutation of the rows every epoch (an epoch's
    permutation depends only on the seed and the epoch number); each anchor's neighbour is
    drawn uniformly from its ``k`` nearest, anew every time.

    Parameters
    ----------
    neighbors : tensor of shape (n, k), int64
    batch_size : int
    seed : int
    """

    def __init__(self, neighbors: torch.Tensor, batch_size: int, seed: int):
        self.neighbors = neighbors
        self.n, self.k = neighbors.shape
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = neighbors.device
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = _generator(self.seed, 1, epoch, torch.device("cpu"))
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = torch.randperm(self.n, generator=g).to(self.device)
        return self._perms[epoch]

    def anchors(self, step: int) -> torch.Tensor:
        start = step * self.batch_size
        parts, need = [], self.batch_size
        while need > 0:
            epoch, offset = divmod(start, self.n)
            take = min(need, self.n - offset)
            parts.append(self._perm(epoch)[offset : offset + take])
            start += take
            need -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.anchors(step)
        g = _generator(self.seed, 2, step, torch.device("cpu"))
        pick = torch.randint(self.k, (a.shape[0],), generator=g).to(self.device)
        return a, self.neighbors[a, pick]


class HeadTrainer:
    """Trains a :class:`HeadBank` (and its EMA teacher) with an objective.

    Parameters
    ----------
    X : tensor of shape (n, d)
        Embeddings on the training device (float32 or float16).
    neighbors : tensor of shape (n, k), int64, same device
    student : HeadBank
    objective : TEMIObjective, SCANObjective or SelfLabelObjective
    config : TrainConfig
    mean, inv_std : tensors of shape (d,)
        Standardisation applied to each gathered row.
    """

    def __init__(self, X, neighbors, student: HeadBank, objective, config: TrainConfig,
                 mean: torch.Tensor, inv_std: torch.Tensor):
        self.X = X
        self.device = X.device
        self.config = config
        self.objective = objective
        self.student = student
        self.teacher = None
        if objective.uses_teacher:
            self.teacher = copy.deepcopy(student)
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.mean = mean
        self.inv_std = inv_std
        self.sampler = PairSampler(neighbors, config.batch_size, config.seed)
        # weight decay on the weights, not the biases (as DINO and TEMI do)
        named = dict(student.named_parameters())
        no_decay = [p for n, p in named.items() if n.startswith("b")]
        decay = [p for n, p in named.items() if not n.startswith("b")]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=(0.9, 0.999), **_fastest_adamw(),
        )
        self.step = 0
        self.start_step = 0  # where this run began (> 0 after a resume)
        self.losses = torch.zeros(config.n_steps, student.n_heads, device=self.device)
        self.seconds = 0.0
        self.local = runtime.local_slice(config.batch_size, even=True)
        runtime.broadcast_(list(student.parameters()))
        if self.teacher is not None:
            runtime.broadcast_(list(self.teacher.parameters()))

    # -- one step

    def _inputs(self, step: int) -> torch.Tensor:
        a, nb = self.sampler.batch(step)
        idx = torch.cat([a[self.local], nb[self.local]])
        x = self.X.index_select(0, idx).float()
        x.sub_(self.mean).mul_(self.inv_std)
        return x.to(torch.bfloat16) if self.config.bf16 else x

    def train_step(self, step: int) -> torch.Tensor:
        """One optimiser step; returns the per-head losses (averaged over processes)."""
        cfg = self.config
        x = self._inputs(step)
        lr = cosine_schedule(step, cfg.n_steps, cfg.lr, cfg.lr * cfg.final_lr_ratio,
                             cfg.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            s = self.student(x)
            t = None
            if self.teacher is not None:
                with torch.no_grad():
                    t = self.teacher(x)
        loss, per_head = self.objective(s.float(), None if t is None else t.float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._average_gradients()
        self.optimizer.step()
        if self.teacher is not None:
            m = cosine_schedule(step, cfg.n_steps, cfg.teacher_momentum,
                                cfg.teacher_momentum_final)
            ema_update_(self.teacher, self.student, m)
        return per_head

    def _average_gradients(self) -> None:
        if runtime.world_size() == 1:
            return
        grads = [p.grad for p in self.student.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        runtime.all_reduce_mean_(flat)
        at = 0
        for g in grads:
            g.copy_(flat[at : at + g.numel()].view_as(g))
            at += g.numel()

    # -- the loop

    def run(self, *, until: int | None = None, checkpoint=None, verbose: bool = False,
            progress: bool | None = False, desc: str = "heads") -> None:
        """Train from ``self.step`` to ``until`` (default: the whole budget).

        ``checkpoint(trainer)`` is called every ``config.checkpoint_every`` steps and at
        the end. ``progress``: a tqdm bar on stderr with steps/s and the time left (True),
        none (False), or one only when stderr is a terminal (None); rank 0 only, and never
        with ``verbose``, which prints lines instead.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        end = cfg.n_steps if until is None else min(until, cfg.n_steps)
        t_last = time.perf_counter()
        self.student.train()
        # --quiet sets TQDM_DISABLE, which tqdm ignores when disable= is passed
        hide = verbose or not runtime.is_main() or progress is False or progress_disabled()
        # tqdm's disable=None: shown only when stderr is a terminal
        disable = True if hide else (None if progress is None else False)
        bar = tqdm(total=end, initial=self.step, unit="step", desc=desc, leave=True,
                   dynamic_ncols=True, disable=disable)
        try:
            self._loop(end, checkpoint, verbose, bar, t_last)
        finally:
            bar.close()

    def _loop(self, end: int, checkpoint, verbose: bool, bar, t_last: float) -> None:
        cfg = self.config
        while self.step < end:
            self.losses[self.step] = self.train_step(self.step)
            self.step += 1
            bar.update(1)
            now = time.perf_counter()
            self.seconds += now - t_last
            t_last = now
            if verbose and runtime.is_main() and (self.step % cfg.log_every == 0 or self.step == end):
                recent = self.losses[max(0, self.step - cfg.log_every) : self.step].mean(0)
                print(f"  step {self.step:6d}/{cfg.n_steps}  loss {recent.mean().item():.4f} "
                      f"(best head {recent.min().item():.4f})  {self.seconds:.1f} s", flush=True)
            if checkpoint is not None and cfg.checkpoint_every and (
                    self.step % cfg.checkpoint_every == 0 or self.step == cfg.n_steps):
                checkpoint(self)
                t_last = time.perf_counter()

    # -- state for checkpoints

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue, as named tensors (safetensors-ready)."""
        out = {f"student.{k}": v for k, v in self.student.state_dict().items()}
        if self.teacher is not None:
            out.update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})
        names = {id(p): n for n, p in self.student.named_parameters()}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                st = self.optimizer.state.get(p, {})
                for key in ("exp_avg", "exp_avg_sq", "step"):
                    if key in st:
                        out[f"optim.{names[id(p)]}.{key}"] = torch.as_tensor(st[key]).reshape(-1)
        out.update({f"objective.{k}": v for k, v in self.objective.state_tensors().items()})
        out["losses"] = self.losses[: self.step]
        return {k: v.detach().contiguous().cpu() for k, v in out.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], step: int) -> None:
        dev = self.device

        def sub(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v.to(dev) for k, v in tensors.items() if k.startswith(prefix)}

        self.student.load_state_dict(sub("student."))
        if self.teacher is not None:
            self.teacher.load_state_dict(sub("teacher."))
        # the fused kernel keeps its step counter beside the parameter, the others on the CPU
        step_dev = dev if self.optimizer.defaults.get("fused") else torch.device("cpu")
        for name, p in self.student.named_parameters():
            if f"optim.{name}.exp_avg" in tensors:
                self.optimizer.state[p] = {
                    "step": tensors[f"optim.{name}.step"].reshape(()).to(step_dev, torch.float32),
                    "exp_avg": tensors[f"optim.{name}.exp_avg"].to(dev).view_as(p).clone(),
                    "exp_avg_sq": tensors[f"optim.{name}.exp_avg_sq"].to(dev).view_as(p).clone(),
                }
        self.objective.load_state_tensors(sub("objective."))
        losses = tensors["losses"]
        self.losses[: losses.shape[0]] = losses.to(dev)
        self.step = int(step)

    def head_losses(self, window: int | None = None) -> np.ndarray:
        """Each head's mean training loss over the last ``window`` steps done."""
        done = self.step
        if done == 0:
            return np.full(self.student.n_heads, np.nan)
        window = max(1, window or done)
        return self.losses[max(0, done - window) : done].mean(0).cpu().numpy().astype(np.float64)
