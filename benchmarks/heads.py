"""TEMI, SCAN, SCANv2, TURTLE, a consensus and k-means on EfficientNet-Lite0 embeddings of
Fashion-MNIST.

Protocol (issue 4): every method is fitted on the 60 000 training embeddings and scores the
10 000 test embeddings it has never seen (``predict``); three seeds; ACC (Hungarian), NMI and
ARI as mean ± std over the seeds. k-means is deepclust's faiss k-means with ``n_init=10``.
``turtle`` is TURTLE on the embeddings; ``turtle2`` TURTLE on two spaces, the embeddings and
the raw pixels side by side (``spaces=[1280, 784]``). ``consensus`` votes the train
partitions of its default members (``temi`` of seed s, ``scanv2`` of seed s, ``temi`` of seed
s + 1: ``Consensus``'s ``member_seed``), reused when those runs came before it in
``--methods`` or were saved by ``--save DIR`` and named by ``--reuse DIR``, else fitted by
the consensus itself, and trains its classifier; its fit time is its own plus its members'.

For the heads it also prints:

- fit time, split into neighbour mining (cached after the first fit: later seeds reuse the
  table) and training, and the wall time of one epoch (60 000 anchors) at the speed measured
  during the fit;
- the head chosen without labels (lowest training loss) beside the best head by test labels
  -- an oracle, printed only to show what label-free selection costs.

Run: ``python benchmarks/heads.py [--seeds 0 1 2] [--methods temi scan kmeans]``; extra
estimator parameters with ``--temi KEY=VALUE ...`` / ``--scan KEY=VALUE ...``. The embeddings
come from ``deepclust.embed.builtin_embeddings`` (computed once and cached).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from deepclust.cluster import TURTLE, Consensus, KMeans
from deepclust.cluster.consensus import member_seed, member_specs
from deepclust.cluster.heads import SCAN, TEMI, SCANv2
from deepclust.metrics import evaluate

METRICS = ("acc", "nmi", "ari")


def _parse(items: list[str] | None) -> dict:
    from deepclust.reduce import parse_value

    out = {}
    for item in items or []:
        key, value = item.split("=", 1)
        out[key.replace("-", "_")] = parse_value(value)
    return out


def load(encoder: str):
    from deepclust.embed import builtin_embeddings

    train = builtin_embeddings("fashion-mnist", "train", encoder)
    test = builtin_embeddings("fashion-mnist", "test", encoder)
    return train, test


HEADS = {"temi": TEMI, "scan": SCAN, "scanv2": SCANv2}
METHODS = ["temi", "scan", "scanv2", "turtle", "turtle2", "consensus", "kmeans"]
#: Consensus members (its defaults), in order; their train partitions are reused when they
#: were run (in this invocation, or saved by ``--save`` and named by ``--reuse``).
CONSENSUS_MEMBERS = tuple(name for name, _ in member_specs(Consensus().members))


def pixels(split: str) -> np.ndarray:
    from deepclust.data import load_dataset

    return load_dataset("fashion-mnist", split).features()


def run_turtle(params: dict, X_train, X_test, y_test, seed: int, **fixed) -> dict:
    t0 = time.perf_counter()
    model = TURTLE(n_clusters=10, random_state=seed, **fixed, **params).fit(X_train)
    fit_s = time.perf_counter() - t0
    pred = model.predict(X_test)
    scores = evaluate(y_test, pred)
    return {**{m: scores[m] for m in METRICS}, "fit_s": fit_s, "_test_pred": pred,
            "_test_proba": model.predict_proba(X_test),
            "_train_proba": model.predict_proba(X_train),
            "train_s": model.stats_["train_s"], "steps": model.n_steps_,
            "objective": model.objective_, "restart": model.restart_,
            "s_per_step": model.stats_["seconds_per_step"], "precision": model.precision_,
            "_train_labels": model.labels_}


def run_consensus(params: dict, train, test, seed: int, partitions, member_s: float) -> dict:
    t0 = time.perf_counter()
    model = Consensus(n_clusters=10, random_state=seed, **params).fit(train.X, partitions=partitions)
    fit_s = time.perf_counter() - t0 + member_s
    pred = model.predict(test.X)
    scores = evaluate(test.y, pred)
    return {**{m: scores[m] for m in METRICS}, "fit_s": fit_s, "_test_pred": pred,
            "confident": model.confident_fraction_, "reference": model.reference_,
            "consensus_train_acc": evaluate(train.y, model.consensus_)["acc"]}


def run_heads(cls, params: dict, train, test, seed: int) -> dict:
    t0 = time.perf_counter()
    model = cls(n_clusters=10, random_state=seed, **params).fit(train.X)
    fit_s = time.perf_counter() - t0
    pred = model.predict(test.X)
    scores = evaluate(test.y, pred)
    per_head = [evaluate(test.y, p)["acc"] for p in model.predict_all_heads(test.X)]
    timings = model.stats_["timings"]
    return {
        **{m: scores[m] for m in METRICS},
        "fit_s": fit_s,
        "neighbors_s": timings["neighbors_s"],
        "train_s": timings["train_s"],
        "epoch_s": timings["seconds_per_epoch"],
        "steps": model.n_steps_,
        "epochs": model.stats_["epochs"],
        "chosen_head": model.head_,
        "chosen_head_acc": per_head[model.head_],
        "best_head": int(np.argmax(per_head)),
        "best_head_acc": float(np.max(per_head)),
        "device": str(model.device_),
        "precision": model.precision_,
        "_train_labels": model.labels_,
        "_test_pred": pred,
        "_test_proba": model.predict_proba(test.X),
        "_train_proba": model.predict_proba(train.X),
    }


def run_kmeans(train, test, seed: int) -> dict:
    t0 = time.perf_counter()
    model = KMeans(n_clusters=10, n_init=10, random_state=seed).fit(train.X)
    fit_s = time.perf_counter() - t0
    pred = model.predict(test.X)
    scores = evaluate(test.y, pred)
    return {**{m: scores[m] for m in METRICS}, "fit_s": fit_s, "_train_labels": model.labels_,
            "_test_pred": pred}


def speed(train, steps: int) -> None:
    """Wall time of one epoch over ``train`` with 16 heads, measured over ``steps`` steps."""
    print(f"\nspeed: {steps} TEMI steps with 16 heads on {train.X.shape}; s/epoch = time per "
          f"step x {len(train.X)} / batch")
    for batch in (1024, 256):
        for precision in ("bf16", "fp32"):
            model = TEMI(n_clusters=10, n_heads=16, batch_size=batch, n_steps=steps,
                         warmup_steps=0, precision=precision, random_state=0).fit(train.X)
            t = model.stats_["timings"]
            print(f"  batch {batch:5d} {precision}: {t['train_s'] / steps:.3f} s/step, "
                  f"{t['seconds_per_epoch']:.1f} s/epoch (load average "
                  f"{os.getloadavg()[0]:.1f})", flush=True)


def _ms(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="effnet-lite0")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="*", default=["temi", "scan", "kmeans"],
                        choices=METHODS)
    for name in METHODS[:-1]:
        parser.add_argument(f"--{name}", nargs="*", metavar="KEY=VALUE",
                            help=f"{name} parameters")
    parser.add_argument("--json", help="also write every run's numbers to this file")
    parser.add_argument("--save", metavar="DIR",
                        help="also save each run's train labels and test predictions to "
                             "DIR/METHOD-seedS.npz (to study ensembles without refitting)")
    parser.add_argument("--reuse", metavar="DIR",
                        help="consensus members not run here are read from DIR (written by "
                             "--save) when there")
    parser.add_argument("--speed", type=int, metavar="STEPS", default=0,
                        help="also time STEPS steps of 16 heads (batch 1024 and 256, bf16 "
                             "and fp32) and report s/epoch")
    args = parser.parse_args(argv)

    train, test = load(args.encoder)
    print(f"Fashion-MNIST, {args.encoder}: fit on train {train.X.shape}, score on test "
          f"{test.X.shape}; seeds {args.seeds}; torch threads {_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    params = {name: _parse(getattr(args, name)) for name in METHODS[:-1]}
    runs: dict[str, list[dict]] = {}
    two = None
    # in the order given: list the consensus after its members to reuse their fits
    for method in args.methods:
        for seed in args.seeds:
            if method == "kmeans":
                r = run_kmeans(train, test, seed)
            elif method in HEADS:
                r = run_heads(HEADS[method], params[method], train, test, seed)
            elif method == "turtle":
                r = run_turtle(params[method], train.X, test.X, test.y, seed)
            elif method == "turtle2":
                if two is None:
                    two = (np.hstack([np.asarray(train.X, np.float32), pixels("train")]),
                           np.hstack([np.asarray(test.X, np.float32), pixels("test")]))
                r = run_turtle(params[method], two[0], two[1], test.y, seed,
                               spaces=[train.X.shape[1], 784])
            else:
                specs = member_specs(params[method].get("members", CONSENSUS_MEMBERS))
                done = [_member_run(runs, args.reuse, m, member_seed(specs, i, seed))
                        if not extra else None for i, (m, extra) in enumerate(specs)]
                if all(d is not None for d in done):
                    parts = np.stack([d["_train_labels"] for d in done])
                    member_s = sum(d["fit_s"] for d in done)
                else:
                    parts, member_s = None, 0.0
                r = run_consensus(params[method], train, test, seed, parts, member_s)
            runs.setdefault(method, []).append({"seed": seed, **r})
            if args.save:
                os.makedirs(args.save, exist_ok=True)
                np.savez(os.path.join(args.save, f"{method}-seed{seed}.npz"), fit_s=r["fit_s"],
                         **{k[1:]: v for k, v in r.items() if k.startswith("_")})
            extra = (f" epoch {r['epoch_s']:.1f} s, {r['steps']} steps, head {r['chosen_head']}"
                     if "epoch_s" in r else "")
            if "objective" in r:
                extra = (f" {r['steps']} steps, {r['s_per_step']:.3f} s/step, objective "
                         f"{r['objective']:.4f} (restart {r['restart']})")
            if "confident" in r:
                extra = (f" confident {r['confident']:.3f}, vote train ACC "
                         f"{r['consensus_train_acc']:.3f}, reference member {r['reference']}")
            print(f"  {method} seed {seed}: ACC {r['acc']:.3f} NMI {r['nmi']:.3f} "
                  f"ARI {r['ari']:.3f}  fit {r['fit_s']:.1f} s{extra}", flush=True)

    print()
    print(f"{'method':9s} {'ACC':>15s} {'NMI':>15s} {'ARI':>15s} {'fit s':>8s} "
          f"{'train s':>8s} {'s/epoch':>8s}")
    for method, rs in runs.items():
        row = [_ms([r[m] for r in rs]) for m in METRICS]
        fit = np.mean([r["fit_s"] for r in rs])
        train_s = (f"{np.mean([r['train_s'] for r in rs]):8.1f}" if "train_s" in rs[0]
                   else f"{'':8s}")
        epoch = (f"{np.mean([r['epoch_s'] for r in rs]):8.1f}" if "epoch_s" in rs[0]
                 else f"{'':8s}")
        print(f"{method:9s} {row[0]:>15s} {row[1]:>15s} {row[2]:>15s} {fit:8.1f} {train_s} "
              f"{epoch}")
    if "kmeans" in runs:
        base = np.mean([r["acc"] for r in runs["kmeans"]])
        for method in ("temi", "scan", "scanv2", "turtle", "turtle2", "consensus"):
            if method in runs:
                gain = np.mean([r["acc"] for r in runs[method]]) - base
                print(f"{method} - kmeans: {100 * gain:+.1f} ACC points")
    for method in HEADS:
        if method in runs:
            rs = runs[method]
            print(f"{method} head choice (test ACC): label-free "
                  f"{_ms([r['chosen_head_acc'] for r in rs])}, best by labels (oracle) "
                  f"{_ms([r['best_head_acc'] for r in rs])}; neighbour mining "
                  f"{rs[0]['neighbors_s']:.1f} s on the first fit (then cached)")
    if args.speed:
        speed(train, args.speed)
    if args.json:
        with open(args.json, "w") as f:
            clean = {m: [{k: v for k, v in r.items() if not k.startswith("_")} for r in rs]
                     for m, rs in runs.items()}
            json.dump({"argv": sys.argv[1:], "runs": clean}, f, indent=2, default=float)


def _member_run(runs: dict, reuse: str | None, method: str, seed: int) -> dict | None:
    """A consensus member's run of ``seed``: from this invocation, else saved in ``reuse``."""
    r = next((x for x in runs.get(method, []) if x["seed"] == seed), None)
    path = os.path.join(reuse, f"{method}-seed{seed}.npz") if reuse else None
    if r is None and path and os.path.exists(path):
        z = np.load(path)
        r = {"_train_labels": z["train_labels"], "fit_s": float(z["fit_s"])}
    return r


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
