"""``deepclust demo``: the zero-shot recipe on a built-in dataset, several ways, ranked.

By default a seeded, class-balanced subset of Fashion-MNIST test (:data:`DEMO_ROWS` images)
so that a first run, embeddings included, stays short (docs/demo.md has the figures); ``rows=None``
(``--full``) uses the whole split. Every pipeline is scored with the labels (ACC/NMI/AMI/ARI)
and with the label-free proxy (silhouette in one UMAP space per feature set, shared by that
set's pipelines); :func:`pick_without_labels` names the pipeline the proxy would choose, and
the demo prints its regret (best AMI minus the pick's AMI).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from deepclust.errors import DataNotFoundError, InputError
from deepclust.tables import format_table

#: Images of the default demo: 100 per Fashion-MNIST class (the table tells the same story
#: as 2 000 images at half the embedding time: docs/demo.md).
DEMO_ROWS = 1000
#: The encoder of the demo's pretrained features.
DEMO_ENCODER = "effnet-lite0"


class DemoPipeline(NamedTuple):
    """One pipeline of the demo: ``reducer`` ("raw", "pca:50" or "umap": the proxy's
    ``pca:50,umap:50`` space), a registered ``method`` with ``params``, run on the feature
    sets named in ``on`` ("pixels", "embeddings")."""

    reducer: str
    method: str
    params: dict
    on: tuple[str, ...] = ("pixels", "embeddings")


#: ``k`` is the dataset's number of classes for methods that take it — the demo compares
#: methods at the true k, as the papers do; ``--k auto`` in ``deepclust cluster`` is the
#: label-free way. TEMI, the deep clustering head, trains on the PCA-50 embeddings (as good
#: as the 1 280-d ones on this data and half the time) with 2 heads instead of its 4 below
#: 10 000 rows (about half the time again, AMI within the seeds' spread: docs/demo.md).
DEMO_PIPELINES = [
    DemoPipeline("pca:50", "kmeans", {"n_init": 3}),
    DemoPipeline("umap", "kmeans", {"n_init": 3}),
    DemoPipeline("umap", "hdbscan", {}),
    DemoPipeline("pca:50", "temi", {"n_heads": 2}, on=("embeddings",)),
]


def demo_rows(labels: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray | None:
    """A seeded subset of ``n`` rows, the classes as equal as the counts allow (sorted).

    None when ``n`` is None or covers every row. Classes smaller than their share give
    all their rows; the rest is shared evenly among the others (counts differ by one at most).
    """
    if n is None or n >= len(labels):
        return None
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    take, left = {}, n
    # smallest classes first: each takes its even share of what is left, or all it has
    for i, c in enumerate(sorted(classes, key=lambda c: (len(pools[c]), c))):
        take[c] = min(len(pools[c]), left // (len(classes) - i))
        left -= take[c]
    return np.sort(np.concatenate([pools[c][: take[c]] for c in classes]))


def pick_without_labels(rows: list[dict]) -> dict | None:
    """The pipeline the default label-free criterion picks (``selection.DEFAULT_CRITERION``,
    each row's score in ``label_free``, measured on its own feature set's rows).

    The one place the demo chooses without labels. None when no score is finite.
    """
    from deepclust.selection import DEFAULT_CRITERION, check_criterion

    sign = 1.0 if check_criterion(DEFAULT_CRITERION).higher_is_better else -1.0
    scored = [r for r in rows if r.get("label_free") is not None
              and np.isfinite(r["label_free"])]
    return max(scored, key=lambda r: sign * r["label_free"]) if scored else None


def _load(dataset: str, say) -> tuple:
    from deepclust.data import load_dataset

    if dataset in ("fashion-mnist", "fashion-mnist:test"):
        try:
            return load_dataset("fashion-mnist", "test", download=False)
        except DataNotFoundError:
            say("Fashion-MNIST is not on this machine (apt-get install dataset-fashion-mnist); "
                "using scikit-learn's digits instead.")
            return load_dataset("digits")
    return load_dataset(dataset)


def _embeddings(ds, rows, say) -> tuple[str, np.ndarray] | None:
    """The pretrained embeddings of ``rows`` (cached, or computed now), or None."""
    try:
        from deepclust.embed import builtin_embeddings
    except ImportError:
        return None
    try:
        fs = builtin_embeddings(ds.name, ds.split, DEMO_ENCODER, rows=rows)
    except (ImportError, DataNotFoundError) as exc:
        say(f"EfficientNet-Lite0 embeddings unavailable ({exc}); pixels only.")
        return None
    if not np.array_equal(fs.y, ds.labels if rows is None else ds.labels[rows]):
        raise RuntimeError("cached embeddings do not line up with the dataset's labels")
    return DEMO_ENCODER, fs.X


def _start_warm_up() -> threading.Thread:
    """:func:`deepclust.reduce.warm_umap` in a background thread. The modules that both threads need (numpy,
    scipy, scikit-learn: through :mod:`deepclust.reduce`) are imported here first; numba,
    pynndescent and umap-learn, which only the warm-up imports, are imported by the thread."""
    from deepclust.reduce import warm_umap

    def target() -> None:
        with contextlib.suppress(Exception):  # the real UMAP call reports any problem itself
            warm_umap()

    thread = threading.Thread(target=target, name="umap-warm-up", daemon=True)
    thread.start()
    return thread


def run_demo(dataset: str = "fashion-mnist", out: str | None = None, as_json: bool = False,
             seed: int = 0, report: bool = False, argv: list[str] | None = None,
             rows: int | None = DEMO_ROWS) -> int:
    """Run :data:`DEMO_PIPELINES` on ``dataset`` and print the ranked table.

    ``rows``: a seeded class-balanced subset of that many images (:func:`demo_rows`);
    None for every image. With ``out``, write ``run.json`` and one ``labels_XX.npy`` per
    pipeline (each row of ``run.json`` names its file in ``labels_file``; the dataset rows
    used in ``dataset_rows.npy`` when a subset); with ``report`` too, the HTML report of the
    best pipeline in ``out/report`` (see :mod:`deepclust.report`). ``run.json`` is a
    :class:`~deepclust.record.RunRecord`: ``k`` the class count, the ranked pipelines in
    ``rows``, the label-free pick in ``proxy_pick`` and its ``regret``; ``argv`` is
    recorded in it.
    """
    from deepclust import metrics as M
    from deepclust.metrics import PROXY_UMAP
    from deepclust.pipeline import run_clustering
    from deepclust.record import RunRecord
    from deepclust.reduce import reduce
    from deepclust.runinfo import now_iso, write_npy
    from deepclust.selection import DEFAULT_CRITERION, ScoringSample, parts, values
    from deepclust.selection import score as score_partition

    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, (int, np.integer))
                             or rows < 20):
        raise InputError(f"--rows must be an integer of at least 20, got {rows!r}")

    def say(msg: str) -> None:
        print(msg, file=sys.stderr if as_json else sys.stdout, flush=True)

    t_start = time.perf_counter()
    started = now_iso()
    warm_up = _start_warm_up()
    ds = _load(dataset, say)
    subset = demo_rows(ds.labels, rows, seed)
    y = ds.labels if subset is None else ds.labels[subset]
    k = ds.n_classes
    n = len(y)
    say(f"deepclust demo: {ds.name} ({ds.split}), {n} images"
        + (f" (a seeded class-balanced subset of {len(ds)}; --full for all)" if subset is not None
           else "") + f", {k} classes")
    t = time.perf_counter()
    load_s = t - t_start
    pixels = ds.features() if subset is None else ds.features()[subset]
    feature_sets = [("pixels", "pixels", pixels)]
    emb = _embeddings(ds, subset, say)
    if emb is not None:
        feature_sets.insert(0, (emb[0], "embeddings", emb[1]))
    embed_s = time.perf_counter() - t
    umap_only = "umap:{n_components}:n_neighbors={n_neighbors}:min_dist={min_dist}" \
                ":n_epochs={n_epochs}".format(**PROXY_UMAP)
    warm_up.join()
    table, labels_by_name, features_by_name = [], {}, {}
    reduce_total = 0.0
    for feat_name, kind, X in feature_sets:
        if report:
            features_by_name[feat_name] = X  # the report's UMAP and galleries need them
        pca_dims = min(50, X.shape[1], len(X))
        specs = {"raw": None, "pca:50": f"pca:{pca_dims}",
                 "umap": f"pca:{pca_dims},{umap_only}"}
        t = time.perf_counter()
        say(f"[{feat_name}] {X.shape[1]}-d features; PCA to {pca_dims}, then UMAP "
            "(the UMAP space is also where the label-free proxy is measured) ...")
        reduced = {"raw": X, "pca:50": reduce(X, specs["pca:50"], random_state=seed)}
        reduced["umap"] = reduce(reduced["pca:50"], umap_only, random_state=seed)
        reduce_s = time.perf_counter() - t
        reduce_total += reduce_s
        say(f"[{feat_name}] reductions took {reduce_s:.1f} s")
        proxy = reduced["umap"]
        scoring = ScoringSample(np.asarray(X, dtype=np.float32), random_state=seed, proxy=proxy)
        for red_name, method, params, on in DEMO_PIPELINES:
            if kind not in on:
                continue
            params = dict(params)
            if method == "hdbscan":
                params.setdefault("min_cluster_size", max(10, n // 200))
            res = run_clustering(
                X, y, method=method, k=None if method == "hdbscan" else k,
                reducer=specs[red_name], reduced=reduced[red_name], params=params,
                random_state=seed, label_free=False,
            )
            t = time.perf_counter()
            score = M.umap_silhouette(None, res.labels, embedding=proxy, random_state=seed)
            chosen = {c: score_partition(c, res.labels, scoring)
                      for c in parts(DEFAULT_CRITERION)}
            label_free_s = time.perf_counter() - t
            m = res.metrics
            shown = "pca:50,umap:50" if red_name == "umap" else red_name
            name = f"{feat_name} | {shown} | {method}"
            labels_by_name[name] = res.labels
            table.append({
                "pipeline": name, "features": feat_name, "reducer": res.reducer,
                "method": method, "k": res.n_clusters, "noise": res.n_noise,
                "acc": m["acc"], "nmi": m["nmi"], "ami": m["ami"], "ari": m["ari"],
                "umap_silhouette": score, "scores": chosen,
                "seconds": res.timings["cluster_s"], "label_free_s": label_free_s,
                "labels_file": f"labels_{len(labels_by_name) - 1:02d}.npy",
            })
            say(f"  {name}: AMI {m['ami']:.3f}, "
                + ", ".join(f"{c} {v:.3f}" for c, v in chosen.items()) + ", "
                f"{res.timings['cluster_s']:.1f} s")
    for r, value in zip(table, values(table, DEFAULT_CRITERION), strict=True):
        r["label_free"] = float(value)
    table.sort(key=lambda r: -r["ami"])
    for i, r in enumerate(table, 1):
        r["rank"] = i
    proxy_order = sorted(table, key=lambda r: -(r["label_free"] if r["label_free"]
                                                is not None and np.isfinite(r["label_free"])
                                                else -np.inf))
    for i, r in enumerate(proxy_order, 1):
        r["proxy_rank"] = i
    pick = pick_without_labels(table)
    regret = None if pick is None else table[0]["ami"] - pick["ami"]
    for r in table:
        r["picked"] = pick is not None and r is pick
    from scipy.stats import spearmanr

    rho = float(spearmanr([r["ami"] for r in table],
                          [r["label_free"] for r in table]).statistic) \
        if len(table) > 2 else None
    total = time.perf_counter() - t_start
    record = RunRecord(
        command="demo", argv=list(argv or []), seed=seed,
        input={"path": ds.name, "source": f"{ds.name}:{ds.split}", "n_samples": n,
               "has_labels": True, "streamed": False, "out_of_core": False},
        k=k, k_requested="classes", noise="cluster", proxy_umap=PROXY_UMAP,
        timings={"load_s": load_s, "embed_s": embed_s, "reduce_s": reduce_total,
                 "total_s": total},
        started=started, finished=now_iso(),
        extra={"dataset": ds.name, "split": ds.split, "n_samples": n, "n_classes": k,
               "dataset_size": len(ds),
               "dataset_rows": None if subset is None else "dataset_rows.npy",
               "proxy": DEFAULT_CRITERION, "spearman_proxy_vs_ami": rho,
               "proxy_pick": None if pick is None else pick["pipeline"], "regret": regret,
               "rows": table})
    summary = record.to_dict()
    page = None
    if out:
        outdir = Path(out)
        record.write(outdir)
        for i, name in enumerate(labels_by_name):
            write_npy(outdir / f"labels_{i:02d}.npy", labels_by_name[name])
        if subset is not None:
            write_npy(outdir / "dataset_rows.npy", subset)
        if report:
            from deepclust.report import write_report

            page = write_report(outdir, features=features_by_name, log=say)
    if as_json:
        from deepclust.runinfo import to_json

        print(to_json(summary, indent=2))
        return 0
    for r in table:
        r["mark"] = "<- pick" if r["picked"] else ""
    print()
    print(format_table(
        table, ["rank", "pipeline", "k", "noise", "acc", "nmi", "ami", "ari", "label_free",
                "umap_silhouette", "proxy_rank", "seconds", "mark"],
        headers={"label_free": DEFAULT_CRITERION, "umap_silhouette": "UMAP-sil",
                 "proxy_rank": "by " + DEFAULT_CRITERION, "seconds": "fit s", "mark": ""},
        floatfmt=".3f"))
    print(f"\nRanked by AMI (uses labels). '{DEFAULT_CRITERION}' is the default label-free "
          "criterion (docs/selection.md), 'UMAP-sil' the zero-shot study's proxy, both measured "
          "on each feature set's own rows (comparable within a set, only roughly across sets).")
    if pick is not None:
        print(f"Without labels, the label-free criterion picks: {pick['pipeline']} "
              f"(AMI {pick['ami']:.3f}, rank {pick['rank']} by AMI); regret {regret:.3f} "
              f"(best AMI {table[0]['ami']:.3f} minus the pick's).")
    if rho is not None:
        print(f"Spearman correlation of {DEFAULT_CRITERION} and AMI across pipelines: "
              f"{rho:.2f}.")
    print(f"Total time: {total:.0f} s (embeddings {embed_s:.0f} s, reductions "
          f"{reduce_total:.0f} s)." + (f" Results in {out}/run.json." if out else "")
          + (f"\nReport: {page}" if page else ""))
    return 0
