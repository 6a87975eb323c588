"""How well does each label-free criterion choose the reducer, the method and k? (issue 14)

A suite of labelled feature sets that exist offline here, varied in k, balance, granularity,
encoder and feature space. On each, a grid of candidates (reducer x method x k, a deep
clustering head included) is fitted on a seeded sample with :func:`deepclust.selection.select`
— the same code ``--method auto`` runs — and every candidate is scored with the labels (AMI,
ACC) and by every label-free criterion. Printed per criterion and per set: Spearman(score,
AMI) over the candidates, the pick, its k against the true k, and its regret (best AMI of the
grid minus the pick's AMI); then median and worst over the suite, over part A and over part
B. The default criterion (and the weights of ``combined``) are chosen on part A only and
reported on part B.

Run: ``python benchmarks/selection.py [--rows 3000] [--sets NAME ...] [--no-heads]``.
Each set's table is cached under ``cache_dir()/selection-bench`` as it completes (a re-run
prints from the cache; ``--fresh`` recomputes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time

import numpy as np
from scipy.stats import spearmanr

from deepclust.metrics import cluster_acc
from deepclust.selection import (
    AUTO_METHODS,
    CRITERIA,
    Candidate,
    ScoringSample,
    combine,
    default_candidates,
    select,
)
from deepclust.selection.auto import pca_reducer

K_GRID = (2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20)
HEAD_KS = (5, 10, 15)
LABEL_FREE = [n for n, c in CRITERIA.items() if not c.needs_labels]
#: criteria the combination may weigh (head_loss is only defined for heads)
COMBINABLE = ("modularity", "umap_silhouette", "silhouette", "density", "stability",
              "learnability")
PART_A = ("fmnist-lite0-test", "digits-pixels", "fmnist-lite0-k3", "fmnist-lite0-k7",
          "fmnist-pixels-k5", "fmnist-lite0-longtail")


# ----------------------------------------------------------------------------- the suite


def _sample(n: int, rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.arange(n) if n <= rows else np.sort(rng.choice(n, rows, replace=False))


def suite(rows: int) -> dict:
    """name -> loader returning (X float32, y, description)."""
    from deepclust.bench.builders import balanced_classes, granularity, long_tail
    from deepclust.data import load_dataset
    from deepclust.data.hierarchy import builtin_hierarchy
    from deepclust.embed import builtin_embeddings

    def lite0(split):
        fs = builtin_embeddings("fashion-mnist", split, "effnet-lite0", progress=False)
        return np.asarray(fs.X, np.float32), np.asarray(fs.y), list(fs.class_names)

    def pixels(split):
        ds = load_dataset("fashion-mnist", split, download=False)
        return np.asarray(ds.features(), np.float32), np.asarray(ds.labels), None

    def take(X, y, sel, seed, what):
        sel = np.asarray(sel)
        pick = sel[_sample(len(sel), rows, seed)]
        return X[pick], y[pick], what

    def full(loader, split, seed, what):
        def load():
            X, y, _ = loader(split)
            return take(X, y, np.arange(len(y)), seed, what)
        return load

    def classes(n, seed):
        def load():
            X, y, _ = lite0("test")
            sub = balanced_classes(y, n, seed=seed)
            _, y_new = np.unique(y[sub.indices], return_inverse=True)
            return take(X[sub.indices], y_new, np.arange(len(sub.indices)), seed,
                        f"{n} Fashion-MNIST classes {sub.params['classes']}, Lite0, test")
        return load

    def longtail():
        X, y, _ = lite0("train")
        sub = long_tail(y, 10.0, seed=0)
        Xs, ys = X[sub.indices], y[sub.indices]
        # keep the long tail's proportions in the sample
        return take(Xs, ys, np.arange(len(ys)), 3,
                    "Fashion-MNIST train, long tail (imbalance ratio 10), Lite0")

    def coarse():
        X, y, names = lite0("test")
        sub = granularity(y, builtin_hierarchy("fashion-mnist"), depth=0, class_names=names)
        return take(X[sub.indices], sub.labels, np.arange(len(sub.indices)), 4,
                    f"Fashion-MNIST test, {sub.n_clusters} coarse classes, Lite0")

    def digits_pixels():
        ds = load_dataset("digits")
        return np.asarray(ds.features(), np.float32), np.asarray(ds.labels), "digits, pixels"

    def digits_lite0():
        fs = builtin_embeddings("digits", "all", "effnet-lite0", progress=False)
        return np.asarray(fs.X, np.float32), np.asarray(fs.y), "digits, Lite0"

    def pixel_classes():
        X, y, _ = pixels("test")
        sub = balanced_classes(y, 5, seed=11)
        _, y_new = np.unique(y[sub.indices], return_inverse=True)
        return take(X[sub.indices], y_new, np.arange(len(sub.indices)), 5,
                    f"5 Fashion-MNIST classes {sub.params['classes']}, pixels, test")

    return {
        "fmnist-lite0-test": full(lite0, "test", 0, "Fashion-MNIST test, Lite0"),
        "fmnist-lite0-train": full(lite0, "train", 1, "Fashion-MNIST train, Lite0"),
        "fmnist-pixels-test": full(pixels, "test", 0, "Fashion-MNIST test, pixels"),
        "fmnist-pixels-train": full(pixels, "train", 1, "Fashion-MNIST train, pixels"),
        "digits-pixels": digits_pixels,
        "digits-lite0": digits_lite0,
        "fmnist-lite0-k3": classes(3, 1),
        "fmnist-lite0-k5": classes(5, 2),
        "fmnist-lite0-k7": classes(7, 3),
        "fmnist-pixels-k5": pixel_classes,
        "fmnist-lite0-longtail": longtail,
        "fmnist-lite0-coarse": coarse,
    }


# ----------------------------------------------------------------------------- one set


def run_set(name: str, load, *, heads: bool, seed: int = 0) -> dict:
    X, y, what = load()
    t0 = time.perf_counter()
    sample = ScoringSample(X, random_state=seed, y=y)
    cands, skipped = default_candidates(K_GRID, len(X), X.shape[1])
    if heads:
        red = pca_reducer(X.shape[1], len(X))
        cands += [Candidate(red, "temi", k) for k in HEAD_KS]
    sel = select(sample, cands, criterion="oracle_ami", also=LABEL_FREE, random_state=seed,
                 progress=True, skipped=skipped, keep_labels=True)
    table, kept = [], {}
    for i, row in enumerate(sel.candidates):
        labels = row.pop("labels", None)
        if labels is not None:
            row["acc"] = float(cluster_acc(y, labels))
            kept[f"c{i}"] = labels.astype(np.int16)
        row["ami"] = row["scores"].get("oracle_ami", math.nan)
        table.append(row)
    return {"name": name, "what": what, "n": len(X), "d": int(X.shape[1]),
            "true_k": int(np.unique(y).size), "seconds": time.perf_counter() - t0,
            "candidates": table, "skipped": skipped, "labels": kept, "y": y}


# ----------------------------------------------------------------------------- analysis


def _finite(a):
    return np.isfinite(np.asarray(a, dtype=np.float64))


def judge(result: dict, criterion: str, weights: dict | None = None) -> dict:
    """Spearman, pick, regret of ``criterion`` on one set's table."""
    table = [r for r in result["candidates"] if "error" not in r]
    ami = np.array([r["ami"] for r in table])
    if criterion == "combined":
        s = combine(table, weights)
        higher = True
    else:
        s = np.array([r["scores"].get(criterion, math.nan) for r in table], dtype=np.float64)
        higher = CRITERIA[criterion].higher_is_better
    ok = _finite(s)
    if ok.sum() < 3:
        return {"spearman": math.nan, "regret": math.nan, "k": None, "pick": None}
    sign = 1.0 if higher else -1.0
    rho = spearmanr(sign * s[ok], ami[ok])[0]
    i = int(np.flatnonzero(ok)[np.argmax(sign * s[ok])])
    return {"spearman": float(rho), "regret": float(np.nanmax(ami) - ami[i]),
            "k": table[i]["n_clusters"], "pick": table[i]["name"], "ami": float(ami[i])}


def summary(results: list[dict], criterion: str, weights=None) -> dict:
    js = [judge(r, criterion, weights) for r in results]
    rho = np.array([j["spearman"] for j in js])
    reg = np.array([j["regret"] for j in js])
    return {"spearman_median": float(np.nanmedian(rho)) if _finite(rho).any() else math.nan,
            "spearman_worst": float(np.nanmin(rho)) if _finite(rho).any() else math.nan,
            "regret_median": float(np.nanmedian(reg)) if _finite(reg).any() else math.nan,
            "regret_worst": float(np.nanmax(reg)) if _finite(reg).any() else math.nan,
            "sets": js}


def choose_weights(results: list[dict]) -> tuple[dict, dict]:
    """The weights of ``combined`` (each criterion 0, 0.5 or 1) with the lowest median regret
    on ``results`` (ties: lowest worst regret, then highest median Spearman)."""
    best, best_key = None, None
    for ws in itertools.product((0.0, 0.5, 1.0), repeat=len(COMBINABLE)):
        if not any(ws):
            continue
        weights = {n: w for n, w in zip(COMBINABLE, ws, strict=True) if w}
        s = summary(results, "combined", weights)
        key = (round(s["regret_median"], 4), round(s["regret_worst"], 4),
               -s["spearman_median"])
        if best_key is None or key < best_key:
            best, best_key = (weights, s), key
    return best


#: Sets that hold the same rows in two feature spaces: choosing the space is choosing the
#: encoder (pixels vs EfficientNet-Lite0), measured by pooling their candidates.
SAME_ROWS = (("fmnist-lite0-test", "fmnist-pixels-test"),
             ("fmnist-lite0-train", "fmnist-pixels-train"),
             ("digits-lite0", "digits-pixels"))


def pooled(results: list[dict], criterion: str, weights=None) -> list[dict]:
    """For each pair of :data:`SAME_ROWS` present, the pick of ``criterion`` over both sets'
    candidates pooled (each scored in its own space), and its regret against the best AMI of
    either space."""
    by_name = {r["name"]: r for r in results}
    out = []
    for a, b in SAME_ROWS:
        if a not in by_name or b not in by_name:
            continue
        both = {**by_name[a], "name": f"{a} + {b}",
                "candidates": [{**c, "name": f"{space}: {c['name']}"}
                               for space, r in ((a, by_name[a]), (b, by_name[b]))
                               for c in r["candidates"]]}
        j = judge(both, criterion, weights)
        j["set"] = both["name"]
        out.append(j)
    return out


def fmt(v, digits=3):
    return "  nan" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def print_table(title: str, results: list[dict], criteria: list[str], weights) -> dict:
    print(f"\n## {title} ({len(results)} sets: {', '.join(r['name'] for r in results)})")
    print(f"{'criterion':<18} {'Spearman med':>12} {'worst':>6} {'regret med':>10} "
          f"{'worst':>6}")
    out = {}
    for c in criteria:
        s = summary(results, c, weights)
        out[c] = s
        print(f"{c:<18} {fmt(s['spearman_median']):>12} {fmt(s['spearman_worst']):>6} "
              f"{fmt(s['regret_median']):>10} {fmt(s['regret_worst']):>6}")
    return out


def main(argv=None) -> int:
    from deepclust.data.builtin import cache_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000, help="sample rows per set")
    ap.add_argument("--sets", nargs="*", default=None)
    ap.add_argument("--no-heads", action="store_true", help="leave TEMI out of the grid")
    ap.add_argument("--fresh", action="store_true", help="recompute cached sets")
    ap.add_argument("--json", default=None, help="write every table here")
    args = ap.parse_args(argv)

    all_sets = suite(args.rows)
    names = args.sets or list(all_sets)
    folder = cache_dir() / "selection-bench"
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        path = folder / f"{name}-{args.rows}{'-noheads' if args.no_heads else ''}.json"
        if path.exists() and not args.fresh:
            results.append(json.loads(path.read_text()))
            continue
        print(f"[{name}] fitting the grid ...", file=sys.stderr, flush=True)
        res = run_set(name, all_sets[name], heads=not args.no_heads)
        # each candidate's labels on the sample, to study new criteria without refitting
        np.savez_compressed(path.with_suffix(".npz"), y=res.pop("y"), **res.pop("labels"))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res))
        tmp.replace(path)
        results.append(res)
        print(f"[{name}] {len(res['candidates'])} candidates in {res['seconds']:.0f} s",
              file=sys.stderr, flush=True)

    print(f"# Label-free selection benchmark: {len(results)} sets, grid reducer x method x k "
          f"({', '.join(m for m, _ in AUTO_METHODS)}"
          f"{', temi' if not args.no_heads else ''}; k in {K_GRID[0]}..{K_GRID[-1]}), "
          f"{args.rows} sampled rows per set")
    print(f"\n{'set':<24} {'n':>5} {'d':>5} {'true k':>6} {'cands':>5} {'best AMI':>8} "
          f"{'best candidate'}")
    for r in results:
        ok = [c for c in r["candidates"] if "error" not in c]
        b = max(ok, key=lambda c: c["ami"])
        print(f"{r['name']:<24} {r['n']:>5} {r['d']:>5} {r['true_k']:>6} {len(ok):>5} "
              f"{b['ami']:>8.3f} {b['name']}")

    part_a = [r for r in results if r["name"] in PART_A]
    part_b = [r for r in results if r["name"] not in PART_A]
    weights, _ = choose_weights(part_a) if part_a else ({"modularity": 1.0}, None)
    criteria = [*LABEL_FREE, "combined"]
    print(f"\ncombined: weights chosen on part A = {weights}")
    a = print_table("Part A (choose)", part_a, criteria, weights) if part_a else {}
    if a:
        ranked = sorted((c for c in a if np.isfinite(a[c]["regret_median"])),
                        key=lambda c: (a[c]["regret_median"], a[c]["regret_worst"]))
        default = ranked[0]
        print(f"\ndefault chosen on part A (lowest median regret, then worst): {default}")
    else:
        default = "modularity"
    b = print_table("Part B (report)", part_b, criteria, weights) if part_b else {}
    allr = print_table("Whole suite", results, criteria, weights)

    print(f"\n## Per set, the default ({default}) and the UMAP-silhouette (Lowe et al.)")
    print(f"{'set':<24} {'true k':>6} | {'pick (' + default + ')':<44} {'k':>3} {'regret':>6} "
          f"{'rho':>6} | {'umap_silhouette pick':<40} {'k':>3} {'regret':>6} {'rho':>6}")
    for r in results:
        d = judge(r, default, weights)
        u = judge(r, "umap_silhouette")
        print(f"{r['name']:<24} {r['true_k']:>6} | {str(d['pick']):<44} {str(d['k']):>3} "
              f"{fmt(d['regret']):>6} {fmt(d['spearman']):>6} | {str(u['pick']):<40} "
              f"{str(u['k']):>3} {fmt(u['regret']):>6} {fmt(u['spearman']):>6}")
    pairs = pooled(results, default, weights)
    if pairs:
        print(f"\n## Choosing the feature space (the encoder): {default} over the pooled "
              "candidates of the same rows in two spaces")
        for j in pairs:
            print(f"{j['set']:<44} pick {j['pick']:<52} regret {fmt(j['regret'])} "
                  f"rho {fmt(j['spearman'])}")
    if b:
        s = b[default]
        print(f"\nDEFAULT {default} on part B: Spearman median {fmt(s['spearman_median'])}, "
              f"regret median {fmt(s['regret_median'])}, worst {fmt(s['regret_worst'])} "
              "(targets: Spearman >= 0.8, regret median <= 0.02, worst <= 0.05)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"results": results, "weights": weights, "default": default,
                       "part_a": a, "part_b": b, "all": allr}, fh, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
