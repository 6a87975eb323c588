"""What TEMI and SCAN share as estimators: input, neighbours, device, budget, fit, predict.

Subclasses say which objective they train (``_objective``) and may add a second phase
(``_after_training``); everything else -- reading an array, a FeatureSet or a store, the
neighbour table, standardisation, the step budget, checkpoints and resume, label-free head
selection, prediction -- lives here once.
"""

from __future__ import annotations

import os
import time
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch

from deepclust import runtime
from deepclust.cluster.base import BaseClusterer
from deepclust.cluster.heads.checkpoint import load_checkpoint, save_checkpoint
from deepclust.cluster.heads.modules import HeadBank
from deepclust.cluster.heads.training import (
    HeadTrainer,
    TrainConfig,
    auto_teacher_momentum,
    default_batch_size,
    default_hidden_dim,
    default_n_heads,
    default_n_steps,
)
from deepclust.data.rows import as_row_source
from deepclust.errors import InputError
from deepclust.validation import (
    POSITIVE_INT,
    RANDOM_STATE,
    Boolean,
    Interval,
    Options,
    check_positive_float,
    check_positive_int,
    seed_from,
)

__all__ = ["HeadClusterer"]

#: Rows per forward pass at prediction time.
PREDICT_ROWS = 1 << 14
#: The base learning rate is for a batch of this many pairs (lr = base * batch / 256).
LR_REFERENCE_BATCH = 256




class HeadClusterer(BaseClusterer):
    """Base of the clustering heads (TEMI, SCAN); see :class:`deepclust.cluster.heads.TEMI`.

    Subclasses define ``__init__`` (scikit-learn introspects its parameters) and
    ``_objective(n_heads, n_clusters, device)``.
    """

    #: Fitted heads are evaluated with the teacher when the objective has one.
    _predict_temperature_param = "teacher_temp"
    #: Parameters every head has (subclasses add theirs: ``{**HeadClusterer.
    #: _parameter_constraints, ...}``); checked by ``make_clusterer`` and at the start of fit.
    _parameter_constraints = {
        "n_heads": [Options("auto"), POSITIVE_INT],
        "n_neighbors": [POSITIVE_INT],
        "hidden_dim": [Options("auto"), POSITIVE_INT],
        "bottleneck_dim": [POSITIVE_INT],
        "batch_size": [Options("auto"), POSITIVE_INT],
        "n_steps": [Options("auto"), POSITIVE_INT],
        "base_lr": [Interval(Real, 0, None, closed="neither")],
        "final_lr_ratio": [Interval(Real, 0, None)],
        "weight_decay": [Interval(Real, 0, None)],
        "warmup_steps": [Options("auto"), Interval(Integral, 0, None)],
        "device": [str, torch.device],
        "precision": [Options(*runtime.PRECISIONS)],
        "neighbor_precision": [Options(*runtime.PRECISIONS)],
        "cache_neighbors": [Boolean(), str, os.PathLike],
        "checkpoint_dir": [None, str, os.PathLike],
        "checkpoint_every": [Interval(Integral, 0, None)],
        "resume": [Boolean()],
        "random_state": RANDOM_STATE,
        "verbose": [Boolean(), Interval(Integral, 0, None)],
        "progress": [None, Boolean()],
    }

    # -- hooks

    def _objective(self, n_heads: int, n_clusters: int, device: torch.device):
        raise NotImplementedError

    def _after_training(self, context: dict) -> None:
        """A second training phase on the selected head (SCAN's self-labelling)."""

    def _predict_temperature(self) -> float:
        return float(getattr(self, self._predict_temperature_param))

    # -- settings

    def _batch_size(self, n: int) -> int:
        b = default_batch_size(n) if self.batch_size == "auto" else self.batch_size
        b = min(check_positive_int(b, "batch_size"), n)
        w = runtime.world_size()
        return max(w, b - b % w)

    def _n_steps(self, n: int, batch: int) -> int:
        if self.n_steps == "auto":
            return default_n_steps(n, batch)
        return check_positive_int(self.n_steps, "n_steps")

    def _lr(self, batch: int) -> float:
        base = check_positive_float(self.base_lr, "base_lr")
        return base * batch / LR_REFERENCE_BATCH

    def _momentum(self, n_steps: int) -> tuple[float, float]:
        """Teacher EMA momentum at the start and at the end of training."""
        start = getattr(self, "teacher_momentum", "auto")
        start = auto_teacher_momentum(n_steps) if start == "auto" else float(start)
        if not 0.0 <= start < 1.0:
            raise InputError(f"teacher_momentum must be 'auto' or in [0, 1), got {start!r}")
        end = getattr(self, "teacher_momentum_final", None)
        return start, start if end is None else float(end)

    def _warmup(self, n_steps: int) -> int:
        if self.warmup_steps == "auto":
            return min(n_steps // 10, 500)
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, Integral) \
                or self.warmup_steps < 0:
            raise InputError(f"warmup_steps must be 'auto' or an integer >= 0, got "
                             f"{self.warmup_steps!r}")
        return int(min(self.warmup_steps, n_steps))

    # -- fitting

    def fit(self, X, y=None, *, neighbors=None):
        """Train the heads on ``X`` and keep the one with the lowest training loss.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet, EmbeddingStore or path
            Embeddings (a store's neighbour table is cached inside the store).
        y : ignored
            Labels are never used for training or for choosing the head.
        neighbors : array-like of shape (n_samples, k), optional
            Precomputed neighbour indices (nearest first; at least ``n_neighbors`` columns);
            default: mined by cosine similarity (:func:`deepclust.neighbors.neighbors_for`).

        Returns
        -------
        self
        """
        old_threads = torch.get_num_threads()
        try:
            return self._fit(X, neighbors)
        finally:
            torch.set_num_threads(old_threads)

    def _fit(self, X, neighbors):
        t_start = time.perf_counter()
        self._validate_params()
        runtime.init_from_env()
        data = as_row_source(X)
        rows = data.to_array(dtype=None)
        n, d = rows.shape
        k = self._validate_k(n)
        n_heads = default_n_heads(n) if self.n_heads == "auto" else self.n_heads
        n_heads = check_positive_int(n_heads, "n_heads")
        hidden = default_hidden_dim(n) if self.hidden_dim == "auto" else self.hidden_dim
        hidden = check_positive_int(hidden, "hidden_dim")
        n_nb = check_positive_int(self.n_neighbors, "n_neighbors")
        if n_nb > n - 1:
            raise InputError(f"n_neighbors={n_nb} needs more than {n} samples")
        device = runtime.resolve_device(self.device)
        if device.type == "cpu":
            # small products: oversubscribed threads cost 5x under load (docs/heads.md)
            torch.set_num_threads(runtime.auto_threads())
        precision = runtime.resolve_precision("heads", self.precision, device)
        seed = seed_from(self.random_state)
        batch = self._batch_size(n)
        n_steps = self._n_steps(n, batch)
        timings: dict[str, float] = {}

        t = time.perf_counter()
        nb_table, nb_info = self._neighbors(data, rows, neighbors, n_nb, device)
        timings["neighbors_s"] = time.perf_counter() - t

        X_t = self._to_device(rows, device)
        mean, inv_std = _moments(X_t)
        gen = torch.Generator().manual_seed(seed)
        student = HeadBank(d, k, n_heads, hidden, int(self.bottleneck_dim),
                           generator=gen).to(device)
        objective = self._objective(n_heads, k, device)
        momentum = self._momentum(n_steps)
        config = TrainConfig(
            n_steps=n_steps, batch_size=batch, lr=self._lr(batch),
            weight_decay=float(self.weight_decay), warmup_steps=self._warmup(n_steps),
            final_lr_ratio=float(self.final_lr_ratio),
            teacher_momentum=momentum[0], teacher_momentum_final=momentum[1],
            seed=seed, bf16=precision == "bf16",
            checkpoint_every=int(self.checkpoint_every or 0) if self.checkpoint_dir else 0,
        )
        trainer = HeadTrainer(X_t, nb_table, student, objective, config, mean, inv_std)
        identity = self._identity(rows, data, config, nb_info, n_heads, hidden, k, d)
        saver = self._resume(trainer, identity, phase="heads")

        t = time.perf_counter()
        trainer.run(checkpoint=saver, verbose=bool(self.verbose), progress=self.progress,
                    desc=f"{type(self).__name__} {n_heads} heads")
        timings["train_s"] = time.perf_counter() - t

        window = max(1, n_steps // 10)
        losses = trainer.head_losses(window)
        head = int(np.nanargmin(losses))
        bank = trainer.teacher if trainer.teacher is not None else trainer.student
        self.n_features_in_ = d
        self.device_ = device
        self.precision_ = precision
        self.mean_ = mean
        self.inv_std_ = inv_std
        self.heads_ = bank.eval()
        self.head_losses_ = losses
        self.head_ = head
        self.n_steps_ = trainer.step
        self.loss_history_ = trainer.losses[: trainer.step].cpu().numpy()
        self.train_config_ = config.as_dict()
        self.neighbors_info_ = nb_info
        self._selected = bank.select([head]).eval()
        context = {"X": X_t, "neighbors": nb_table, "config": config, "identity": identity,
                   "timings": timings, "mean": mean, "inv_std": inv_std}
        self._after_training(context)

        t = time.perf_counter()
        self.labels_ = self._predict_tensor(X_t)
        timings["labels_s"] = time.perf_counter() - t
        timings["fit_s"] = time.perf_counter() - t_start
        ran = trainer.step - trainer.start_step
        # wall time of an epoch (n anchors) at the measured speed of this fit's steps
        timings["seconds_per_epoch"] = timings["train_s"] / ran * (n / batch) if ran else float("nan")
        self.stats_ = {"timings": timings, "n_steps": trainer.step, "batch_size": batch,
                       "epochs": trainer.step * batch / n, "resumed_from": trainer.start_step,
                       "world_size": runtime.world_size()}
        return self

    # -- pieces of fit

    def _neighbors(self, data, rows, neighbors, n_nb: int, device: torch.device):
        n = rows.shape[0]
        if neighbors is not None:
            table = np.asarray(neighbors)
            if table.ndim != 2 or table.shape[0] != n or table.shape[1] < n_nb:
                raise InputError(f"neighbors must have shape ({n}, >= {n_nb}), got {table.shape}")
            if table.dtype.kind not in "iu" or table.min() < 0 or table.max() >= n:
                raise InputError(f"neighbors must hold row indices in [0, {n})")
            info = {"k": n_nb, "given": True}
            ids = table[:, :n_nb]
        else:
            from deepclust.neighbors import neighbors_for

            if runtime.world_size() > 1 and not runtime.is_main():
                ids, info = None, {}
            else:
                found = neighbors_for(data, n_nb, cache=self.cache_neighbors,
                                      precision=self.neighbor_precision, device=device,
                                      verbose=bool(self.verbose))
                ids, info = found.indices, found.info
            info = runtime.broadcast_object(info)
        out = torch.empty((n, n_nb), dtype=torch.int64, device=device)
        if ids is not None:
            out.copy_(torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)))
        runtime.broadcast_([out])
        return out, dict(info)

    @staticmethod
    def _to_device(rows: np.ndarray, device: torch.device) -> torch.Tensor:
        dtype = np.float16 if rows.dtype == np.float16 else np.float32
        arr = np.asarray(rows, dtype=dtype)
        if not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = np.array(arr, dtype=dtype, order="C")
        return torch.from_numpy(arr).to(device)

    def _identity(self, rows, data, config: TrainConfig, nb_info: dict, n_heads: int,
                  hidden: int, k: int, d: int) -> dict:
        """What a checkpoint must agree with to be resumed."""
        if not self.checkpoint_dir:
            return {}
        return {"estimator": type(self).__name__, "data": data.fingerprint(), "n": int(rows.shape[0]),
                "d": d, "n_clusters": k, "n_heads": n_heads,
                "hidden_dim": hidden, "bottleneck_dim": int(self.bottleneck_dim),
                "n_neighbors": int(self.n_neighbors), "config": config.as_dict(),
                "objective": self._objective_params()}

    def _objective_params(self) -> dict:
        return {}

    def _resume(self, trainer: HeadTrainer, identity: dict, *, phase: str):
        """Load a matching checkpoint into ``trainer``; return the saver for the loop."""
        if not self.checkpoint_dir:
            return None
        folder = Path(self.checkpoint_dir) / phase
        found = load_checkpoint(folder) if self.resume else None
        if found is not None:
            tensors, state = found
            if state.get("identity") != identity:
                diff = sorted(k for k in set(identity) | set(state.get("identity", {}))
                              if identity.get(k) != state.get("identity", {}).get(k))
                raise InputError(
                    f"the checkpoint in {folder} was made with other data or settings "
                    f"(differs in: {', '.join(diff)}); remove it, choose another "
                    "checkpoint_dir, or pass resume=False to start over")
            try:
                trainer.load_state_tensors(tensors, int(state["step"]))
            except (KeyError, RuntimeError, ValueError) as exc:
                raise InputError(f"the checkpoint in {folder} does not fit these heads "
                                 f"({str(exc).splitlines()[0][:120]}); remove the folder to "
                                 "start over") from None
            trainer.seconds = float(state.get("seconds", 0.0))
            trainer.start_step = trainer.step
            if self.verbose and runtime.is_main():
                print(f"  resumed {phase} at step {trainer.step} from {folder}", flush=True)

        def saver(tr: HeadTrainer) -> None:
            tensors = tr.state_tensors()  # every rank takes part in nothing here: no collectives
            if runtime.is_main():
                save_checkpoint(folder, tensors, {"step": tr.step, "seconds": tr.seconds,
                                                  "identity": identity})
            runtime.barrier()

        return saver

    # -- using the fit

    def _check_X(self, X) -> torch.Tensor:
        self._check_fitted()
        rows = as_row_source(X).to_array(dtype=None)
        self._check_n_features(rows.shape[1])
        return self._to_device(rows, self.device_)

    @torch.no_grad()
    def _logits(self, X_t: torch.Tensor, bank: HeadBank) -> torch.Tensor:
        """Cosine logits ``(H, n, C)`` of ``bank`` on rows ``X_t`` (float32, in chunks)."""
        out = []
        for s in range(0, X_t.shape[0], PREDICT_ROWS):
            x = X_t[s : s + PREDICT_ROWS].float()
            x = (x - self.mean_) * self.inv_std_
            out.append(bank(x).float())
        return torch.cat(out, dim=1)

    def _predict_tensor(self, X_t: torch.Tensor) -> np.ndarray:
        return self._logits(X_t, self._selected)[0].argmax(dim=-1).cpu().numpy().astype(np.int64)

    def predict(self, X) -> np.ndarray:
        """Cluster of each row by the selected head.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureSet or EmbeddingStore

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        """
        return self._predict_tensor(self._check_X(X))

    def predict_proba(self, X) -> np.ndarray:
        """Cluster probabilities of each row by the selected head.

        The softmax of the head's cosine logits at the temperature the head was trained
        with (the teacher's for TEMI).

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters), float32
        """
        logits = self._logits(self._check_X(X), self._selected)[0]
        return torch.softmax(logits / self._predict_temperature(), dim=-1).cpu().numpy()

    def predict_all_heads(self, X) -> np.ndarray:
        """Cluster of each row by every head: shape ``(n_heads, n_samples)``.

        For studying the heads (e.g. what label-free selection costs against the best head
        by labels); :meth:`predict` uses the selected head ``head_``.
        """
        logits = self._logits(self._check_X(X), self.heads_)
        return logits.argmax(dim=-1).cpu().numpy().astype(np.int64)

    def __getstate__(self):
        state = self.__dict__.copy()
        for key, value in state.items():  # pickle on the CPU, whatever device trained it
            if isinstance(value, (torch.Tensor, torch.nn.Module)):
                state[key] = value.cpu() if isinstance(value, torch.Tensor) else copy_cpu(value)
        if "device_" in state:
            state["device_"] = torch.device("cpu")
        return state


def copy_cpu(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).cpu()


def _moments(X_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and 1 / std of the rows (float64 sums), as float32 tensors."""
    n, d = X_t.shape
    s = torch.zeros(d, dtype=torch.float64, device=X_t.device)
    s2 = torch.zeros(d, dtype=torch.float64, device=X_t.device)
    for start in range(0, n, 1 << 16):
        block = X_t[start : start + (1 << 16)].double()
        s += block.sum(0)
        s2 += (block * block).sum(0)
    mean = s / n
    var = (s2 / n - mean * mean).clamp_min(0)
    inv_std = torch.where(var > 0, var.rsqrt(), torch.ones_like(var))
    return mean.float(), inv_std.float()
