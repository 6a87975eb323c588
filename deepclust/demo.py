"""``deepclust demo``: the zero-shot recipe on a built-in dataset, several ways, ranked.

Every pipeline is scored with the labels (ACC/NMI/AMI/ARI) and with the label-free proxy
(silhouette in one UMAP space per feature set, shared by that set's pipelines), so the table also shows how well the proxy would
have picked the best pipeline without labels.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from deepclust.errors import DataNotFoundError
from deepclust.tables import format_table

#: (reducer, method, params). ``k`` is the dataset's number of classes for methods that take
#: it — the demo compares methods at the true k, as the papers do; ``--k auto`` in
#: ``deepclust cluster`` is the label-free way.
DEMO_PIPELINES = [
    ("raw", "kmeans", {"n_init": 3}),
    ("pca:50", "kmeans", {"n_init": 3}),
    ("pca:50", "agglomerative", {"linkage": "ward"}),
    ("umap", "kmeans", {"n_init": 3}),
    ("umap", "agglomerative", {"linkage": "ward"}),
    ("umap", "gmm", {"covariance_type": "diag"}),
    ("umap", "hdbscan", {}),
]


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


def _feature_sets(ds, say) -> list[tuple[str, np.ndarray]]:
    """Raw pixels, plus pretrained embeddings when the embedding module can provide them."""
    sets = [("pixels", ds.features())]
    try:
        from deepclust.embed import builtin_embeddings
    except ImportError:
        return sets
    try:
        fs = builtin_embeddings(ds.name, ds.split, "effnet-lite0")
    except (ImportError, DataNotFoundError) as exc:
        say(f"EfficientNet-Lite0 embeddings unavailable ({exc}); pixels only.")
        return sets
    if not np.array_equal(fs.y, ds.labels):
        raise RuntimeError("cached embeddings do not line up with the dataset's labels")
    return [("effnet-lite0", fs.X)] + sets


def run_demo(dataset: str = "fashion-mnist", out: str | None = None, as_json: bool = False,
             seed: int = 0, report: bool = False, argv: list[str] | None = None) -> int:
    """Run :data:`DEMO_PIPELINES` on ``dataset`` and print the ranked table.

    With ``out``, write ``run.json`` and one ``labels_XX.npy`` per pipeline (each row of
    ``run.json`` names its file in ``labels_file``); with ``report`` too, the HTML report of
    the best pipeline in ``out/report`` (see :mod:`deepclust.report`). ``run.json`` is a
    :class:`~deepclust.record.RunRecord`: ``k`` the class count, the ranked pipelines in
    ``rows``; ``argv`` is recorded in it.
    """
    from tqdm.auto import tqdm

    from deepclust.metrics import PROXY_UMAP
    from deepclust.pipeline import run_clustering
    from deepclust.record import RunRecord
    from deepclust.reduce import reduce
    from deepclust.runinfo import now_iso, write_npy

    def say(msg: str) -> None:
        print(msg, file=sys.stderr if as_json else sys.stdout, flush=True)

    t_start = time.perf_counter()
    started = now_iso()
    ds = _load(dataset, say)
    y, k = ds.labels, ds.n_classes
    say(f"deepclust demo: {ds.name} ({ds.split}), {len(ds)} images, {k} classes")
    umap_spec = "pca:50,umap:{n_components}:n_neighbors={n_neighbors}:min_dist={min_dist}" \
                ":n_epochs={n_epochs}".format(**PROXY_UMAP)
    rows, labels_by_name, features_by_name = [], {}, {}
    reduce_total = 0.0
    for feat_name, X in _feature_sets(ds, say):
        if report:
            features_by_name[feat_name] = X  # the report's UMAP and galleries need them
        pca_dims = min(50, X.shape[1], len(X))
        specs = {"raw": None, "pca:50": f"pca:{pca_dims}",
                 "umap": umap_spec.replace("pca:50", f"pca:{pca_dims}")}
        reduced = {}
        t = time.perf_counter()
        say(f"[{feat_name}] {X.shape[1]}-d features; computing PCA and UMAP "
            "(the UMAP space is also where the label-free proxy is measured) ...")
        for name, spec in specs.items():
            reduced[name] = X if spec is None else reduce(X, spec, random_state=seed)
        reduce_s = time.perf_counter() - t
        reduce_total += reduce_s
        proxy = reduced["umap"]
        bar = tqdm(DEMO_PIPELINES, desc=f"{feat_name} pipelines", unit="run",
                   disable=None if not as_json else True, leave=False)
        for red_name, method, params in bar:
            params = dict(params)
            if method == "hdbscan":
                params.setdefault("min_cluster_size", max(10, len(X) // 200))
            res = run_clustering(
                X, y, method=method, k=None if method == "hdbscan" else k,
                reducer=specs[red_name], reduced=reduced[red_name], params=params,
                random_state=seed, proxy_embedding=proxy,
            )
            m, lf = res.metrics, res.label_free
            name = f"{feat_name} | {red_name if red_name != 'umap' else 'pca:50,umap:50'} | {method}"
            labels_by_name[name] = res.labels
            rows.append({
                "pipeline": name, "features": feat_name, "reducer": res.reducer,
                "method": method, "k": res.n_clusters, "noise": res.n_noise,
                "acc": m["acc"], "nmi": m["nmi"], "ami": m["ami"], "ari": m["ari"],
                "umap_silhouette": lf["umap_silhouette"],
                "seconds": res.timings["cluster_s"],
                "labels_file": f"labels_{len(labels_by_name) - 1:02d}.npy",
            })
        say(f"[{feat_name}] reductions took {reduce_s:.1f} s")
    rows.sort(key=lambda r: -r["ami"])
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    proxy_order = sorted(rows, key=lambda r: -(r["umap_silhouette"] if r["umap_silhouette"]
                                               is not None and np.isfinite(r["umap_silhouette"])
                                               else -np.inf))
    for i, r in enumerate(proxy_order, 1):
        r["proxy_rank"] = i
    from scipy.stats import spearmanr

    rho = float(spearmanr([r["ami"] for r in rows],
                          [r["umap_silhouette"] for r in rows]).statistic) if len(rows) > 2 else None
    total = time.perf_counter() - t_start
    record = RunRecord(
        command="demo", argv=list(argv or []), seed=seed,
        input={"path": ds.name, "source": f"{ds.name}:{ds.split}", "n_samples": len(ds),
               "has_labels": True, "streamed": False, "out_of_core": False},
        k=k, k_requested="classes", noise="cluster", proxy_umap=PROXY_UMAP,
        timings={"reduce_s": reduce_total, "total_s": total}, started=started,
        finished=now_iso(),
        extra={"dataset": ds.name, "split": ds.split, "n_samples": len(ds), "n_classes": k,
               "proxy": "umap_silhouette", "spearman_proxy_vs_ami": rho,
               "proxy_pick": proxy_order[0]["pipeline"], "rows": rows})
    summary = record.to_dict()
    page = None
    if out:
        outdir = Path(out)
        record.write(outdir)
        for i, name in enumerate(labels_by_name):
            write_npy(outdir / f"labels_{i:02d}.npy", labels_by_name[name])
        if report:
            from deepclust.report import write_report

            page = write_report(outdir, features=features_by_name, log=say)
    if as_json:
        from deepclust.runinfo import to_json

        print(to_json(summary, indent=2))
        return 0
    print()
    print(format_table(
        rows, ["rank", "pipeline", "k", "noise", "acc", "nmi", "ami", "ari", "umap_silhouette",
               "proxy_rank", "seconds"],
        headers={"umap_silhouette": "UMAP-sil", "proxy_rank": "by proxy", "seconds": "fit s"},
        floatfmt=".3f"))
    print("\nRanked by AMI (uses labels). 'UMAP-sil' is the label-free proxy, measured in one "
          "UMAP space per feature set (comparable within a set, only roughly across sets); "
          "its rank is 'by proxy'.")
    if rho is not None:
        print(f"Spearman correlation of proxy and AMI across pipelines: {rho:.2f}; "
              f"without labels the proxy would pick: {proxy_order[0]['pipeline']} "
              f"(AMI rank {proxy_order[0]['rank']}).")
    print(f"Total time: {total:.0f} s." + (f" Results in {out}/run.json." if out else "")
          + (f"\nReport: {page}" if page else ""))
    return 0
