"""The built-in sections of a run's report (see :mod:`deepclust.report.core` for the contract).

==============  ==========================================================================
section         what it shows
==============  ==========================================================================
``overview``    what was run: input, reducer, method, parameters, seed, timings, versions
``missing``     a notice when the run's input or image files were not found (where it looked)
``pipelines``   demo runs only: the ranked pipelines, and AMI against the label-free proxy
``scores``      scores with labels (ACC, NMI, AMI, ...; per class) and without (UMAP-sil, ...)
                and a plain-language guide to them
``sizes``       cluster sizes
``k-selection`` the k sweep's curve, when ``--k auto`` chose k (:mod:`.actions`)
``embedding``   an interactive 2-D map (:mod:`.mapview`) and the same UMAP as a PNG
``confusion``   clusters × classes, Hungarian order; only with labels
``galleries``   every member of every cluster, paged, nearest the centre first, with
                cohesion and a flag on mixed clusters (:mod:`.gallery`)
``duplicates``  exact and near-duplicate groups from ``assignments.parquet``
``outliers``    the most isolated images by ``outlier_score``
``failed``      images the run could not read, with the reason
==============  ==========================================================================
"""

from __future__ import annotations

import numpy as np

from deepclust.report.actions import (
    duplicates_section,
    failed_section,
    kselection_section,
    missing_section,
    outliers_section,
    selection_section,
)
from deepclust.report.core import ReportContext, Section
from deepclust.report.data import NOISE, RunData
from deepclust.report.gallery import galleries_section
from deepclust.report.layout import cluster_name, layout, note
from deepclust.report.template import format_number, render

#: (key, name, meaning) of the scores that use labels, in table order.
LABEL_SCORES = (
    ("acc", "ACC", "clusters matched one-to-one to classes (Hungarian); points of unmatched "
                   "clusters count as wrong"),
    ("many_to_one_acc", "many-to-one ACC", "each cluster predicts its majority class (equals "
                                           "purity); fair when there are more clusters than classes"),
    ("nmi", "NMI", "normalised mutual information (arithmetic mean); 1 = identical partitions"),
    ("ami", "AMI", "NMI adjusted for chance: 0 = as good as random, 1 = identical"),
    ("ari", "ARI", "Rand index adjusted for chance"),
    ("homogeneity", "homogeneity", "each cluster holds a single class"),
    ("completeness", "completeness", "each class sits in a single cluster"),
)
#: (key, name, meaning) of the label-free scores.
LABEL_FREE_SCORES = (
    ("umap_silhouette", "UMAP-silhouette", "silhouette in a UMAP space: the label-free proxy "
                                           "for AMI (Lowe et al. 2024); higher is better"),
    ("silhouette", "silhouette", "in the feature space; higher is better"),
    ("davies_bouldin", "Davies–Bouldin", "lower is better"),
    ("calinski_harabasz", "Calinski–Harabasz", "higher is better"),
)
#: (name, plain-language meaning, needs labels) of every score the report shows.
SCORE_GUIDE = (
    ("ACC", "The share of images in the right group once each cluster is paired with one "
            "true class. 0.9 means 9 in 10 images sit with their class; it punishes splitting "
            "a class in two.", True),
    ("NMI", "How much knowing the cluster tells you about the true class, from 0 (nothing) "
            "to 1 (everything). It creeps up with more clusters even when they mean nothing.",
     True),
    ("AMI", "NMI corrected for chance: 0 is what random groups of the same sizes get, 1 is a "
            "perfect match. The fairest single number for comparing runs with different k.",
     True),
    ("ARI", "Agreement on which pairs of images belong together, corrected for chance (0 = "
            "random, 1 = identical). It drops hard when big classes are split or merged.",
     True),
    ("silhouette", "For each image: how much closer it is to its own cluster than to the next "
                   "one, from −1 to 1, averaged. Above 0.5 clusters are well apart; near 0 "
                   "they touch. Measured in the features, where distances are often flat.",
     False),
    ("UMAP-silhouette", "The same silhouette measured after UMAP, which makes groups stand out. "
                        "It needs no labels and tracks AMI well, so it is the score used to "
                        "choose k and compare runs without labels; higher is better.", False),
    ("cohesion", "Per cluster: the mean cosine similarity of its images to the cluster's "
                 "centre, 1 = all alike. A cluster much looser than the others (flagged "
                 "mixed?) often holds two kinds of image; look at its gallery first.", False),
    ("outlier score", "Per image: how far it is from its 10 nearest neighbours, as a rank "
                      "from 0 to 1 over the run; 1 = the most isolated image.", False),
)


# --------------------------------------------------------------------------- overview


def _params_text(params: dict | None) -> str:
    if not params:
        return "—"
    shown = {k: v for k, v in params.items() if v is not None and k != "random_state"}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "—"


def _overview_rows(data: RunData) -> list[tuple[str, str]]:
    run = data.run
    rows: list[tuple[str, str]] = []
    env = run.get("environment") or {}
    if data.command == "cluster":
        inp = run.get("input") or {}
        rows += [
            ("input", f"{inp.get('path')} ({inp.get('source')})"),
            ("rows × features", f"{format_number(inp.get('n_samples'))} × "
                                f"{format_number(inp.get('n_features'))}"),
            ("true labels", "yes" if inp.get("has_labels") else "no"),
            ("reducer", f"{run.get('reducer')}" + (
                f" → {run['reduced_shape'][1]} dims" if run.get("reduced_shape") else "")),
            ("method", f"{run.get('method')} ({_params_text(run.get('params'))})"),
            ("k", f"asked: {run['k'] if run.get('k') is not None else 'none (the method finds k)'}"
                  f"; found: {run.get('n_clusters')}"
                  + (f"; {run.get('n_noise')} noise points" if run.get("n_noise") else "")),
        ]
        auto = run.get("selection")
        if auto:
            tag = "ORACLE, uses true labels" if auto.get("oracle") else "label-free"
            rows.append(("chosen by", f"{auto.get('criterion')} ({tag}) among "
                                      f"{len(auto.get('candidates') or [])} candidates: "
                                      f"{(auto.get('best') or {}).get('name')}"))
        sel = run.get("k_selection")
        if sel:
            tag = "ORACLE, uses true labels" if sel.get("oracle") else "label-free"
            rows.append(("k chosen by", f"{sel.get('criterion')} ({tag}): {sel.get('best_k')}"))
        total = (run.get("timings") or {}).get("total_s")
        rows += [("seed", str(run.get("seed"))),
                 ("time", f"{total:.1f} s" if isinstance(total, (int, float)) else "—")]
        if run.get("argv"):
            rows.append(("command", "deepclust " + " ".join(map(str, run["argv"]))))
    else:
        row = data.pipeline or {}
        rows += [
            ("dataset", f"{run.get('dataset')} ({run.get('split')}), "
                        f"{format_number(run.get('n_samples'))} images, {run.get('n_classes')} classes"),
            ("pipelines", f"{len(run.get('rows') or [])}, ranked by AMI"),
            ("shown in detail", f"rank {row.get('rank')}: {row.get('pipeline')} "
                                f"(reducer {row.get('reducer')})"),
            ("k", f"{row.get('k')} clusters" + (f", {row.get('noise')} noise points"
                                                if row.get("noise") else "")
                  + " (the dataset's number of classes, as in the papers, for methods that take k)"),
            ("seed", str(run.get("seed"))),
            ("time", f"{run['total_s']:.0f} s for all pipelines"
                     if isinstance(run.get("total_s"), (int, float)) else "—"),
        ]
    rows.append(("run", f"{run.get('started', '?')} → {run.get('finished', '?')}, deepclust "
                        f"{env.get('deepclust', '?')}, Python {env.get('python', '?')}, "
                        f"{env.get('cpu_count', '?')} CPUs"))
    rows.append(("run folder", str(data.run_dir)))
    return rows


def overview_section(ctx: ReportContext) -> Section | None:
    """What was run, with which settings, when and with which versions."""
    if ctx.data is None:
        return None
    data = ctx.data
    notes = [f"{k.capitalize()}: {v}." for k, v in data.notes.items()]
    html = render("""
<table class="t">{% for k, v in rows %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% for n in notes %}<p class="note">{{ n }}</p>{% endfor %}""", rows=_overview_rows(data),
                  notes=notes)
    return Section("overview", "Run", html)


# --------------------------------------------------------------------------- demo pipelines


def pipelines_section(ctx: ReportContext) -> Section | None:
    """Demo runs: every pipeline ranked by AMI, with the label-free proxy's rank beside it."""
    if ctx.data is None or ctx.data.command != "demo":
        return None
    from deepclust.report.figures import pipelines_figure

    run, row = ctx.data.run, ctx.data.pipeline or {}
    rows = sorted(run.get("rows") or [], key=lambda r: r.get("rank", 0))
    fig = ctx.figure(pipelines_figure(rows, highlight=row.get("pipeline")), "pipelines")
    cols = [("rank", "rank"), ("pipeline", "pipeline"), ("k", "k"), ("noise", "noise"),
            ("acc", "ACC"), ("nmi", "NMI"), ("ami", "AMI"), ("ari", "ARI"),
            ("label_free", run.get("proxy") or "label-free"), ("umap_silhouette", "UMAP-sil"),
            ("proxy_rank", "by label-free"), ("seconds", "fit s")]
    rho = run.get("spearman_proxy_vs_ami")
    html = render("""
<div class="two"><div>
<table class="t"><tr>{% for k, h in cols %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in rows %}<tr{% if r.pipeline == shown %} class="hl"{% endif %}>{% for k, h in cols %}
<td{% if k != 'pipeline' %} class="num"{% endif %}>{{ r[k] | num if k != 'pipeline' else r[k] }}</td>
{% endfor %}</tr>{% endfor %}</table>
<p class="note">Ranked by AMI (uses labels). <b>{{ crit }}</b> is the default label-free
criterion and <b>UMAP-sil</b> the zero-shot study's proxy, each measured on the pipeline's own
feature set; <b>by label-free</b> is the rank {{ crit }} gives.
{% if rho is not none %}Spearman correlation of {{ crit }} and AMI: {{ rho | num(2) }}. {% endif %}
Without labels it would pick <b>{{ pick }}</b>.</p>
<p class="note">The highlighted row (rank {{ rank }}) is the one detailed below; for another,
run <code>deepclust report {{ run_dir }} --pipeline RANK</code>.</p>
</div>
<div>{{ img }}</div>
</div>""", cols=cols, rows=rows, shown=row.get("pipeline"), rho=rho,
                  crit=run.get("proxy") or "label-free",
                  pick=run.get("proxy_pick", "—"), rank=row.get("rank"),
                  run_dir=str(ctx.data.run_dir),
                  img=fig.img("AMI against UMAP-silhouette, one point per pipeline"))
    return Section("pipelines", "Ranked pipelines", html, [fig.link])


# --------------------------------------------------------------------------- scores


def scores_section(ctx: ReportContext) -> Section | None:
    """Scores against the true labels (and per class), and the label-free scores."""
    if ctx.data is None:
        return None
    data = ctx.data
    m, lf = data.metrics or {}, data.label_free or {}
    with_labels = [(name, m[k], help_) for k, name, help_ in LABEL_SCORES if k in m]
    without = [(name, lf[k], help_) for k, name, help_ in LABEL_FREE_SCORES
               if lf.get(k) is not None]
    per_class = []
    if data.has_labels:
        from deepclust.metrics import per_class_table

        for r in per_class_table(data.y, data.labels):
            per_class.append({**r, "name": data.class_name(r["class"]),
                              "matched": "—" if r["matched_cluster"] is None
                              else cluster_name(r["matched_cluster"]),
                              "top": cluster_name(r["top_cluster"])})
    counts = []
    if m:
        counts.append(f"{format_number(m.get('n_scored'))} of {format_number(m.get('n_samples'))} "
                      f"rows scored; noise rule: {m.get('noise')}")
        if m.get("n_noise"):
            counts.append(f"{format_number(m['n_noise'])} noise points "
                          f"({100 * m.get('noise_fraction', 0):.1f} %)")
    if data.command == "demo":
        lf_note = ("The demo measures the proxy in one UMAP space shared by all pipelines "
                   "(PCA-50 then UMAP-50), so that pipelines can be compared.")
    else:
        lf_note = lf.get("nan_reason") or ""
    html = render("""
<div class="cols">
{% if with_labels %}<div><h3>With labels</h3>
<table class="t"><tr><th>score</th><th>value</th><th>meaning</th></tr>
{% for n, v, h in with_labels %}<tr><td>{{ n }}</td><td class="num">{{ v | num }}</td><td>{{ h }}</td></tr>{% endfor %}
</table>{% for c in counts %}<p class="note">{{ c }}</p>{% endfor %}
</div>{% endif %}
<div><h3>Without labels</h3>
{% if without %}<table class="t"><tr><th>score</th><th>value</th><th>meaning</th></tr>
{% for n, v, h in without %}<tr><td>{{ n }}</td><td class="num">{{ v | num }}</td><td>{{ h }}</td></tr>{% endfor %}
</table>{% if lf_note %}<p class="note">{{ lf_note }}</p>{% endif %}
{% else %}<p class="note">The run recorded no label-free scores (it ran with --no-label-free).</p>{% endif %}
</div></div>
{% if per_class %}<details><summary>Per class: where each class went</summary>
<table class="t"><tr><th>class</th><th>size</th><th>matched cluster</th><th>recall</th>
<th>precision</th><th>largest share in</th><th>clusters holding it</th></tr>
{% for r in per_class %}<tr><td>{{ r.name }}</td><td class="num">{{ r.size | num }}</td>
<td>{{ r.matched }}</td><td class="num">{{ r.recall | pct }}</td><td class="num">{{ r.precision | pct }}</td>
<td>{{ r.top }} ({{ r.top_cluster_fraction | pct }})</td><td class="num">{{ r.n_clusters }}</td></tr>
{% endfor %}</table>
<p class="note">Recall: share of the class inside its matched cluster; precision: share of that
cluster which is the class.</p></details>{% endif %}
<details class="guide"><summary>How to read these scores</summary><dl>
{% for name, text, _ in guide %}<dt>{{ name }}</dt><dd>{{ text }}</dd>{% endfor %}</dl></details>""",
                  with_labels=with_labels, without=without, counts=counts,
                  lf_note=lf_note, per_class=per_class,
                  guide=[g for g in SCORE_GUIDE if with_labels or not g[2]])
    return Section("scores", "Scores", html)


# --------------------------------------------------------------------------- sizes


def sizes_section(ctx: ReportContext) -> Section | None:
    """Bar chart of the cluster sizes, in the report's cluster order."""
    if ctx.data is None:
        return None
    from deepclust.report.figures import size_figure

    lay = layout(ctx)
    sizes = [lay.summaries[c].size for c in lay.order]
    fig = ctx.figure(size_figure(lay.order, sizes, lay.colours), "cluster-sizes")
    real = [(c, lay.summaries[c].size) for c in lay.order if c != NOISE]
    facts = []
    if real:
        big = max(real, key=lambda t: t[1])
        small = min(real, key=lambda t: t[1])
        facts.append(f"{len(real)} clusters; largest: cluster {big[0]} ({format_number(big[1])}), "
                     f"smallest: cluster {small[0]} ({format_number(small[1])}), ratio "
                     f"{big[1] / max(small[1], 1):.1f}.")
    if NOISE in lay.summaries:
        s = lay.summaries[NOISE]
        facts.append(f"Noise: {format_number(s.size)} points ({100 * s.share:.1f} %), the grey bar.")
    order_note = ("Clusters in Hungarian order (matched to classes 1, 2, ...; unmatched after)."
                  if lay.class_order else "Clusters by size.")
    html = render("""{{ img }}
{% for f in facts %}<p class="note">{{ f }}</p>{% endfor %}<p class="note">{{ order_note }}
The dashed line is the size every cluster would have if all were equal.</p>""",
                  img=fig.img("cluster sizes"), facts=facts, order_note=order_note)
    return Section("sizes", "Cluster sizes", html, [fig.link])


# --------------------------------------------------------------------------- embedding


def embedding_section(ctx: ReportContext) -> Section | None:
    """2-D UMAP of the run's features, coloured by cluster and, with labels, by class."""
    if ctx.data is None:
        return None
    data = ctx.data
    if data.X is None:
        return Section("embedding", "2-D map (UMAP)", note(
            "No scatter plot: the run's features are not available ("
            + data.notes.get("features", "unknown reason") + ")."))
    from deepclust.report.figures import scatter_figure

    lay = layout(ctx)
    cached = data.umap_cache.is_file()
    if not cached:
        ctx.log(f"report: 2-D UMAP of {data.X.shape[0]} x {data.X.shape[1]} features "
                f"(cached in {data.umap_cache.name}) ...")
    xy = data.umap2d()
    rows = data.umap_rows()
    pick = slice(None) if rows is None else rows
    classes = None
    names = None
    if data.has_labels:
        classes = np.asarray(data.y)[pick]
        names = {c: data.class_name(c) for c in lay.class_order}
    fig = scatter_figure(xy, data.labels[pick], lay.colours, classes,
                         lay.class_colours if classes is not None else None, names)
    saved = ctx.figure(fig, "umap")
    from deepclust.report.mapview import map_html

    html = render("""{{ live }}
<details><summary>The same map as a figure (PNG, for papers){% if labels %}, coloured by cluster
and by class{% endif %}</summary>{{ img }}</details>
<p class="note">UMAP of the run's {{ feats }} ({{ n }} × {{ d }}) to 2 dimensions (n_neighbors=30,
min_dist=0, 200 epochs, seed {{ seed }}){% if sampled %}, fit on and showing a random
{{ sampled }} of the rows{% endif %}, for display only: the clustering ran in its own space.
{% if labels %}A matched cluster and its class share a colour, so the panels agree where the
clustering agrees with the labels.{% endif %} Grey: noise or unknown label.</p>""",
                  img=saved.img("2-D UMAP scatter"), feats="pixels" if data.features_name == "pixels" else
                  ("features" if data.features_name == "features" else
                   f"{data.features_name} embeddings"),
                  n=format_number(data.n_samples), d=data.X.shape[1], seed=data.seed,
                  labels=classes is not None, live=map_html(ctx, xy, rows),
                  sampled=None if rows is None else format_number(len(rows)))
    return Section("embedding", "2-D map (UMAP)", html, [saved.link])


# --------------------------------------------------------------------------- confusion


def confusion_section(ctx: ReportContext) -> Section | None:
    """Clusters × classes counts in Hungarian order (matched pairs on the diagonal)."""
    if ctx.data is None:
        return None
    data = ctx.data
    if not data.has_labels:
        return None  # a label-only section: hidden, not left empty
    from deepclust.report.figures import confusion_figure

    lay = layout(ctx)
    known = data.y != NOISE
    y, p = data.y[known], data.labels[known]
    rows = [c for c in lay.order if np.any(p == c)]
    row_pos = {c: i for i, c in enumerate(rows)}
    col_pos = {c: j for j, c in enumerate(lay.class_order)}
    table = np.zeros((len(rows), len(lay.class_order)), dtype=np.int64)
    np.add.at(table, (np.array([row_pos[c] for c in p], dtype=np.int64),
                      np.array([col_pos[c] for c in y], dtype=np.int64)), 1)
    col_names = [data.class_name(c) for c in lay.class_order]
    fig = ctx.figure(confusion_figure(table, rows, col_names), "confusion")
    show_table = table.shape[0] <= 60 and table.shape[1] <= 60
    html = render("""{{ img }}
<p class="note">Rows: clusters; columns: classes; both in Hungarian order, so each matched
cluster–class pair is on the diagonal and off-diagonal counts are errors. Shade: share of the
cluster. Points with an unknown label are left out.</p>
{% if show %}<details><summary>Counts as a table</summary><table class="t">
<tr><th></th>{% for c in cols %}<th>{{ c }}</th>{% endfor %}<th>total</th></tr>
{% for i in range(table | length) %}<tr><th>{{ names[i] }}</th>{% for v in table[i] %}
<td class="num">{{ v if v else '' }}</td>{% endfor %}<td class="num">{{ table[i] | sum }}</td></tr>
{% endfor %}</table></details>{% endif %}""",
                  img=fig.img("clusters by classes"), show=show_table, cols=col_names, table=table.tolist(),
                  names=[cluster_name(c) for c in rows])
    return Section("confusion", "Clusters × classes", html, [fig.link])


#: The sections of a run's report, in page order.
DEFAULT_SECTIONS = (
    overview_section,
    missing_section,
    pipelines_section,
    scores_section,
    sizes_section,
    kselection_section,
    selection_section,
    embedding_section,
    confusion_section,
    galleries_section,
    duplicates_section,
    outliers_section,
    failed_section,
)
