"""Tests of deepclust.cluster.heads: losses, EMA, prior, selection, prediction, resume, DDP."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs

from deepclust import runtime
from deepclust.cluster import make_clusterer
from deepclust.cluster.heads import SCAN, TEMI, HeadBank
from deepclust.cluster.heads import training as training_mod
from deepclust.cluster.heads.objectives import (
    SCANObjective,
    SelfLabelObjective,
    TEMIObjective,
    update_prior,
)
from deepclust.cluster.heads.training import (
    PairSampler,
    auto_teacher_momentum,
    cosine_schedule,
    ema_update_,
)
from deepclust.errors import InputError
from deepclust.metrics import cluster_acc

# small heads, fp32 on the CPU: fast and deterministic
SMALL = dict(n_heads=3, hidden_dim=32, bottleneck_dim=16, n_neighbors=5, batch_size=64,
             n_steps=40, base_lr=2e-3, precision="fp32", device="cpu", cache_neighbors=False)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=900, centers=4, n_features=12, cluster_std=1.0,
                      random_state=3)
    return X.astype(np.float32), y


def _log(p):
    return torch.tensor([[list(map(math.log, p))]], dtype=torch.float64)


# ----------------------------------------------------------------------------- losses


def test_temi_loss_matches_hand_computation():
    # one head, one pair, two clusters, temperatures 1 so the logits are log-probabilities
    qs_x, qs_xp = [0.75, 0.25], [0.5, 0.5]
    qt_x, qt_xp = [0.8, 0.2], [0.4, 0.6]
    obj = TEMIObjective(1, 2, beta=0.6, student_temp=1.0, teacher_temp=1.0,
                        prior_momentum=0.5)
    obj.prior = obj.prior.double()
    student = torch.cat([_log(qs_x), _log(qs_xp)], dim=1).requires_grad_(True)
    teacher = torch.cat([_log(qt_x), _log(qt_xp)], dim=1)
    total, per_head = obj(student, teacher)

    prior = [0.5 * 0.5 + 0.5 * (0.8 + 0.4) / 2, 0.5 * 0.5 + 0.5 * (0.2 + 0.6) / 2]  # [.55, .45]
    weight = 0.8 * 0.4 + 0.2 * 0.6
    a = sum((qs_xp[c] * qt_x[c]) ** 0.6 / prior[c] for c in range(2))
    b = sum((qs_x[c] * qt_xp[c]) ** 0.6 / prior[c] for c in range(2))
    expected = weight * (-math.log(a) - math.log(b)) / 2
    assert per_head.item() == pytest.approx(expected, rel=1e-9)
    assert total.item() == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(obj.prior.numpy(), [prior], rtol=1e-12)
    total.backward()
    assert student.grad.abs().sum() > 0


def test_scan_loss_matches_hand_computation():
    p = [[0.75, 0.25], [0.9, 0.1]]  # anchors
    q = [[0.5, 0.5], [0.6, 0.4]]  # their neighbours
    logits = torch.cat([_log(p[0]), _log(p[1]), _log(q[0]), _log(q[1])], dim=1)
    total, per_head = SCANObjective(entropy_weight=5.0, temperature=1.0)(logits)
    consistency = -(math.log(0.75 * 0.5 + 0.25 * 0.5) + math.log(0.9 * 0.6 + 0.1 * 0.4)) / 2

    def entropy(rows):
        m = [sum(r[c] for r in rows) / len(rows) for c in range(2)]
        return -sum(v * math.log(v) for v in m)

    expected = consistency - 5.0 * (entropy(p) + entropy(q)) / 2
    assert per_head.item() == pytest.approx(expected, rel=1e-9)
    assert total.item() == pytest.approx(expected, rel=1e-9)


def test_self_label_balances_confident_classes():
    # anchors: three confident of class 0, one confident of class 1, one unsure
    anchors = [[0.995, 0.005], [0.999, 0.001], [0.992, 0.008], [0.004, 0.996], [0.6, 0.4]]
    views = [[0.7, 0.3], [0.8, 0.2], [0.9, 0.1], [0.3, 0.7], [0.5, 0.5]]
    logits = torch.cat([_log(r) for r in anchors + views], dim=1)
    _, per_head = SelfLabelObjective(threshold=0.99, temperature=1.0)(logits)
    w0, w1 = 4 / 3, 4 / 1  # inverse share of each class among the 4 confident anchors
    nll = [-math.log(0.7), -math.log(0.8), -math.log(0.9), -math.log(0.7)]
    expected = (w0 * sum(nll[:3]) + w1 * nll[3]) / (3 * w0 + w1)
    assert per_head.item() == pytest.approx(expected, rel=1e-9)


# ----------------------------------------------------------------------------- EMA, prior


def test_ema_update_is_the_exponential_average():
    torch.manual_seed(0)
    student, teacher = HeadBank(6, 3, 2, 8, 4), HeadBank(6, 3, 2, 8, 4)
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update_(teacher, student, 0.9)
    for t0, t1, s in zip(before, teacher.parameters(), student.parameters(), strict=True):
        torch.testing.assert_close(t1, 0.9 * t0 + 0.1 * s.detach(), rtol=1e-6, atol=1e-7)


def test_prior_update_is_the_ema_of_batch_means():
    prior = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]],
                          [[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]]])
    update_prior(prior, probs, 0.9)
    mean = probs.mean(dim=1)
    torch.testing.assert_close(prior, 0.9 * torch.tensor([[0.5, 0.5], [0.25, 0.75]]) + 0.1 * mean)


def test_schedules_and_sampler():
    assert cosine_schedule(0, 100, 1.0, 0.0, warmup=10) == pytest.approx(0.1)
    assert cosine_schedule(10, 100, 1.0, 0.0, warmup=10) == pytest.approx(1.0)
    assert cosine_schedule(100, 100, 1.0, 0.0, warmup=10) == pytest.approx(0.0)
    nb = torch.arange(50).roll(1)[:, None].repeat(1, 3)  # row i's neighbours: i - 1
    sampler = PairSampler(nb, batch_size=10, seed=0)
    anchors = torch.cat([sampler.batch(s)[0] for s in range(5)])  # one epoch
    assert sorted(anchors.tolist()) == list(range(50))  # every row once
    a, b = sampler.batch(7)
    assert torch.equal(b, (a - 1) % 50)
    assert torch.equal(sampler.batch(7)[1], PairSampler(nb, 10, 0).batch(7)[1])  # stateless


def test_teacher_momentum_follows_the_budget():
    assert auto_teacher_momentum(40) == pytest.approx(0.9)  # a short run: a quick teacher
    assert auto_teacher_momentum(2000) == pytest.approx(0.95)
    assert auto_teacher_momentum(10**6) == pytest.approx(0.996)  # TEMI's, for long runs


def test_budget_heads_and_batch_scale_with_the_data():
    from deepclust.cluster.heads.training import (
        default_batch_size,
        default_hidden_dim,
        default_n_heads,
        default_n_steps,
    )

    assert default_n_steps(1797, 256) == 320  # digits: 40 epochs of 8 steps
    assert default_n_steps(300, 256) == 200  # tiny data: the floor
    assert default_n_steps(9_000, 256) == 1000  # 40 epochs would be 1 440: the cap
    assert default_n_steps(60_000, 256) == default_n_steps(10**7, 1024) == 1000
    assert default_n_steps(60_000, 256, min_epochs=10) == 2350
    assert default_n_heads(1797) == 4 and default_n_heads(10_000) == 16
    assert default_batch_size(60_000) == 256 and default_batch_size(10**6) == 1024
    assert default_hidden_dim(1797) == 256 and default_hidden_dim(10_000) == 512
    small = TEMI(n_clusters=3, **{**SMALL, "n_heads": "auto", "n_steps": "auto",
                                  "batch_size": "auto", "hidden_dim": "auto", "bottleneck_dim": 4})
    X = np.random.default_rng(0).standard_normal((300, 6)).astype(np.float32)
    small.fit(X)
    assert small.heads_.n_heads == 4 and small.n_steps_ == 200
    assert small.heads_.hidden_dim == 256
    assert small.stats_["batch_size"] == 256


def test_fit_uses_fewer_threads_on_a_busy_machine_and_restores_them(blobs, monkeypatch):
    seen = []
    real = training_mod.HeadTrainer.run

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(training_mod.HeadTrainer, "run", spy)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "busy_cores", lambda: 50.0)
    before = torch.get_num_threads()
    TEMI(n_clusters=4, random_state=0, **{**SMALL, "n_steps": 5}).fit(blobs[0])
    assert seen == [1]
    assert torch.get_num_threads() == before


def test_progress_bar_shows_steps_and_time_left(blobs, capsys):
    TEMI(n_clusters=4, random_state=0, progress=True, **{**SMALL, "n_steps": 30}).fit(blobs[0])
    err = capsys.readouterr().err
    assert "TEMI 3 heads" in err and "/30 [" in err and "step/s" in err and "<00:" in err
    TEMI(n_clusters=4, random_state=0, progress=False, **{**SMALL, "n_steps": 30}).fit(blobs[0])
    assert "TEMI" not in capsys.readouterr().err
    TEMI(n_clusters=4, random_state=0, **{**SMALL, "n_steps": 30}).fit(blobs[0])  # None
    assert "TEMI" not in capsys.readouterr().err  # stderr is not a terminal here


def test_quiet_hides_the_bars_of_both_heads(blobs, capsys, monkeypatch):
    SCAN(n_clusters=4, random_state=0, progress=True, **{**SMALL, "n_steps": 20}).fit(blobs[0])
    err = capsys.readouterr().err
    assert "/20 [" in err and "<00:" in err  # SCAN's bar: steps and the time left
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what --quiet sets
    TEMI(n_clusters=4, random_state=0, progress=True, **{**SMALL, "n_steps": 20}).fit(blobs[0])
    SCAN(n_clusters=4, random_state=0, progress=True, **{**SMALL, "n_steps": 20}).fit(blobs[0])
    err = capsys.readouterr().err
    assert "/20 [" not in err and "step/s" not in err


def test_head_bank_select_copies_heads():
    torch.manual_seed(0)
    bank = HeadBank(6, 3, n_heads=4, hidden_dim=8, bottleneck_dim=4)
    x = torch.randn(5, 6)
    sub = bank.select([2, 0])
    torch.testing.assert_close(sub(x), bank(x)[[2, 0]])


# ----------------------------------------------------------------------------- estimators


def test_temi_clusters_blobs_and_predicts_unseen_points(blobs):
    X, y = blobs
    model = TEMI(n_clusters=4, random_state=0, **SMALL).fit(X[:600])
    assert cluster_acc(y[:600], model.labels_) > 0.95
    pred = model.predict(X[600:])  # points never seen in training
    assert cluster_acc(y[600:], pred) > 0.95
    proba = model.predict_proba(X[600:])
    assert proba.shape == (300, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(proba.argmax(axis=1), pred)


def test_head_selection_is_the_lowest_recent_training_loss(blobs):
    X, _ = blobs
    model = TEMI(n_clusters=4, random_state=1, **SMALL).fit(X)
    window = max(1, model.n_steps_ // 10)
    recent = model.loss_history_[-window:].mean(axis=0)
    np.testing.assert_allclose(model.head_losses_, recent, rtol=1e-6)
    assert model.head_ == int(np.argmin(recent))
    assert np.array_equal(model.predict(X), model.predict_all_heads(X)[model.head_])
    assert np.array_equal(model.labels_, model.predict(X))


def test_scan_and_self_labelling(blobs):
    X, y = blobs
    model = SCAN(n_clusters=4, self_label=True, self_label_steps=10, random_state=0,
                 **SMALL).fit(X)
    assert cluster_acc(y, model.labels_) > 0.95
    assert model.self_label_stats_["n_steps"] == 10
    assert model.self_label_stats_["confident_fraction"] > 0.5


def test_estimator_contract(blobs):
    X, _ = blobs
    model = make_clusterer("temi", n_clusters=4, random_state=0, **SMALL)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(InputError, match="not fitted"):
        model.predict(X)
    with pytest.raises(InputError, match="n_clusters"):
        TEMI(n_clusters=0, **SMALL).fit(X)
    fitted = model.fit(X)
    with pytest.raises(InputError, match="features"):
        fitted.predict(X[:, :5])
    again = make_clusterer("temi", n_clusters=4, random_state=0, **SMALL).fit(X)
    assert np.array_equal(again.labels_, fitted.labels_)  # random_state makes it repeatable


def test_resume_after_interruption_gives_the_uninterrupted_result(blobs, tmp_path, monkeypatch):
    X, _ = blobs
    params = dict(SMALL, n_steps=20, checkpoint_every=5, random_state=0)
    straight = TEMI(n_clusters=4, **params).fit(X)

    original = training_mod.HeadTrainer.train_step

    def crash_at_12(self, step):
        if step == 12:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(training_mod.HeadTrainer, "train_step", crash_at_12)
    with pytest.raises(KeyboardInterrupt):
        TEMI(n_clusters=4, checkpoint_dir=str(tmp_path), **params).fit(X)
    monkeypatch.setattr(training_mod.HeadTrainer, "train_step", original)
    resumed = TEMI(n_clusters=4, checkpoint_dir=str(tmp_path), **params).fit(X)
    assert resumed.stats_["resumed_from"] == 10
    for a, b in zip(straight.heads_.parameters(), resumed.heads_.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_array_equal(straight.loss_history_, resumed.loss_history_)
    # a checkpoint of other settings is refused, not silently mixed in
    with pytest.raises(InputError, match="other data or settings"):
        TEMI(n_clusters=4, checkpoint_dir=str(tmp_path), **dict(params, beta=0.5)).fit(X)


def test_cli_cluster_with_temi(blobs, tmp_path):
    from deepclust.cli import main

    X, y = blobs
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    argv = ["cluster", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy"),
            "--method", "temi", "--k", "4", "--out", str(tmp_path / "out"), "--no-label-free",
            "--json"]
    for key, value in SMALL.items():
        argv += ["--param", f"{key}={value}"]
    assert main(argv) == 0
    labels = np.load(tmp_path / "out" / "labels.npy")
    assert cluster_acc(y, labels) > 0.95


# ----------------------------------------------------------------------------- torchrun

_WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    from sklearn.datasets import make_blobs
    from deepclust import runtime
    from deepclust.cluster.heads import SCAN, TEMI

    def fit_both(params):
        X, _ = make_blobs(n_samples=480, centers=4, n_features=12, random_state=3)
        X = X.astype(np.float32)
        out = {}
        for name, cls, extra in [("temi", TEMI, {}),
                                 ("scan", SCAN, {"self_label": True, "self_label_steps": 8})]:
            model = cls(n_clusters=4, random_state=0, **params, **extra).fit(X)
            for key, value in model.heads_.state_dict().items():
                out[f"{name}.{key}"] = value.numpy()
            out[f"{name}.labels"] = model.labels_
            out[f"{name}.losses"] = model.loss_history_
            out[f"{name}.world"] = np.array(model.stats_["world_size"])
        return out

    if __name__ == "__main__":
        out = fit_both(eval(sys.argv[2]))
        if runtime.info().is_main:
            np.savez(sys.argv[1], **out)
        runtime.shutdown()
""")


def test_two_process_torchrun_matches_one_process(tmp_path):
    params = dict(SMALL, n_steps=20)
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path / "two.npz"), repr(params)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = np.load(tmp_path / "two.npz")
    namespace: dict = {}
    exec(compile(_WORKER, "worker", "exec"), namespace)  # the same code, one process
    one = namespace["fit_both"](params)
    assert int(two["temi.world"]) == 2 and int(one["temi.world"]) == 1
    for key, value in one.items():
        if key.endswith(".world"):
            continue
        if key.endswith(".labels"):
            assert np.array_equal(value, two[key]), key
        else:  # the same computation up to the order of floating-point sums
            np.testing.assert_allclose(two[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
