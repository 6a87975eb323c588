"""The built-in sections of a run's report (see :mod:`deepclust.report.core` for the contract).

==============  ==========================================================================
section         what it shows
==============  ==========================================================================
``overview``    what was run: input, reducer, method, parameters, seed, timings, versions
``pipelines``   demo runs only: the ranked pipelines, and AMI against the label-free proxy
``scores``      scores with labels (ACC, NMI, AMI, ...; per class) and without (UMAP-sil, ...)
``sizes``       cluster sizes
``embedding``   2-D UMAP of the features, coloured by cluster and by class
``confusion``   clusters × classes, Hungarian order (matched pairs on the diagonal)
``galleries``   per cluster: thumbnails nearest its centre and a random sample, majority
                class and purity
==============  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepclust.report.core import ReportContext, Section
from deepclust.report.data import NOISE, ClusterSummary, RunData, cluster_order, cluster_summaries
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


def _share(fraction: float) -> str:
    """A share of a cluster, rounded to whole percents; "<1 %" rather than "0 %"."""
    return "<1 %" if 0 < fraction < 0.005 else f"{100 * fraction:.0f} %"


def _cluster_name(c: int) -> str:
    return "noise" if c == NOISE else f"cluster {c}"


@dataclass
class Layout:
    """Order and colours shared by every section, so a cluster looks the same everywhere.

    A matched cluster and its class share a colour, so the two scatter panels look alike
    exactly where the clustering agrees with the labels.
    """

    order: list[int]
    class_order: list[int]
    colours: dict[int, str]
    class_colours: dict[int, str]
    summaries: dict[int, ClusterSummary]


def layout(ctx: ReportContext) -> Layout:
    """The run's :class:`Layout`, computed once per report."""
    if "layout" not in ctx.cache:
        from deepclust.report.figures import NOISE_COLOUR, palette

        data = _need_data(ctx)
        y = data.y if data.has_labels else None
        order, class_order = cluster_order(y, data.labels)
        real = [c for c in order if c != NOISE]
        pal = palette(max(len(real), len(class_order), 1))
        colours = {c: pal[i] for i, c in enumerate(real)}
        if NOISE in order:
            colours[NOISE] = NOISE_COLOUR
        class_colours = {c: pal[i] for i, c in enumerate(class_order)}
        ctx.cache["layout"] = Layout(order, class_order, colours, class_colours,
                                     cluster_summaries(y, data.labels))
    return ctx.cache["layout"]


def _need_data(ctx: ReportContext) -> RunData:
    if ctx.data is None:
        raise ValueError("this section reports on a clustering run; the context has no run data")
    return ctx.data


def _note(text: str) -> str:
    return render('<p class="note">{{ t }}</p>', t=text)


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
            ("umap_silhouette", "UMAP-sil"), ("proxy_rank", "by proxy"), ("seconds", "fit s")]
    rho = run.get("spearman_proxy_vs_ami")
    html = render("""
<div class="two"><div>
<table class="t"><tr>{% for k, h in cols %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in rows %}<tr{% if r.pipeline == shown %} class="hl"{% endif %}>{% for k, h in cols %}
<td{% if k != 'pipeline' %} class="num"{% endif %}>{{ r[k] | num if k != 'pipeline' else r[k] }}</td>
{% endfor %}</tr>{% endfor %}</table>
<p class="note">Ranked by AMI (uses labels). <b>UMAP-sil</b> is the label-free proxy, measured in
one UMAP space shared by all pipelines; <b>by proxy</b> is the rank it gives.
{% if rho is not none %}Spearman correlation of proxy and AMI: {{ rho | num(2) }}. {% endif %}
Without labels the proxy would pick <b>{{ pick }}</b>.</p>
<p class="note">The highlighted row (rank {{ rank }}) is the one detailed below; for another,
run <code>deepclust report {{ run_dir }} --pipeline RANK</code>.</p>
</div>
<div>{{ img }}</div>
</div>""", cols=cols, rows=rows, shown=row.get("pipeline"), rho=rho,
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
                              else _cluster_name(r["matched_cluster"]),
                              "top": _cluster_name(r["top_cluster"])})
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
<div><h3>With labels</h3>
{% if with_labels %}<table class="t"><tr><th>score</th><th>value</th><th>meaning</th></tr>
{% for n, v, h in with_labels %}<tr><td>{{ n }}</td><td class="num">{{ v | num }}</td><td>{{ h }}</td></tr>{% endfor %}
</table>{% for c in counts %}<p class="note">{{ c }}</p>{% endfor %}
{% else %}<p class="note">No scores with labels: {{ why }}.</p>{% endif %}
</div>
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
cluster which is the class.</p></details>{% endif %}""",
                  with_labels=with_labels, without=without, counts=counts,
                  why=data.notes.get("labels", "the input has no true labels"),
                  lf_note=lf_note, per_class=per_class)
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
        return Section("embedding", "2-D UMAP", _note(
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
    html = render("""{{ img }}
<p class="note">UMAP of the run's {{ feats }} ({{ n }} × {{ d }}) to 2 dimensions (n_neighbors=30,
min_dist=0, 200 epochs, seed {{ seed }}){% if sampled %}, fit on and showing a random
{{ sampled }} of the rows{% endif %}, for display only: the clustering ran in its own space.
{% if labels %}A matched cluster and its class share a colour, so the panels agree where the
clustering agrees with the labels.{% endif %} Grey: noise or unknown label.</p>""",
                  img=saved.img("2-D UMAP scatter"), feats="pixels" if data.features_name == "pixels" else
                  ("features" if data.features_name == "features" else
                   f"{data.features_name} embeddings"),
                  n=format_number(data.n_samples), d=data.X.shape[1], seed=data.seed,
                  labels=classes is not None,
                  sampled=None if rows is None else format_number(len(rows)))
    return Section("embedding", "2-D UMAP", html, [saved.link])


# --------------------------------------------------------------------------- confusion


def confusion_section(ctx: ReportContext) -> Section | None:
    """Clusters × classes counts in Hungarian order (matched pairs on the diagonal)."""
    if ctx.data is None:
        return None
    data = ctx.data
    if not data.has_labels:
        return Section("confusion", "Clusters × classes", _note(
            "No confusion matrix: " + data.notes.get("labels", "the input has no true labels")
            + "."))
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
                  names=[_cluster_name(c) for c in rows])
    return Section("confusion", "Clusters × classes", html, [fig.link])


# --------------------------------------------------------------------------- galleries


def _gallery_members(data: RunData, c: int, n_centre: int, n_random: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows nearest the cluster's mean (in the feature space) and a random sample of the rest."""
    members = np.flatnonzero(data.labels == c)
    centre = np.empty(0, dtype=np.int64)
    if data.X is None or c == NOISE:  # no centre to be near: a larger random sample instead
        n_random += n_centre
    elif n_centre > 0:
        near, at = members, members
        if data.x_rows is not None:  # X is a sample: the centre of the members it holds
            at = np.searchsorted(data.x_rows, members)
            held = at < len(data.x_rows)
            held[held] = data.x_rows[at[held]] == members[held]
            near, at = members[held], at[held]
        if len(near):
            Xm = np.asarray(data.X[at], dtype=np.float32)
            d = ((Xm - Xm.mean(axis=0)) ** 2).sum(axis=1)
            k = min(n_centre, len(near))
            centre = near[np.argsort(d, kind="stable")[:k]]
    rest = np.setdiff1d(members, centre, assume_unique=True)
    k = min(n_random, len(rest))
    random = rng.choice(rest, size=k, replace=False) if k else np.empty(0, dtype=np.int64)
    return centre, random


def galleries_section(ctx: ReportContext) -> Section | None:
    """Per cluster: thumbnails nearest its centre and a random sample, majority class, purity."""
    if ctx.data is None or ctx.options.n_centre + ctx.options.n_random == 0:
        return None
    data = ctx.data
    if data.images is None:
        return Section("galleries", "Cluster galleries", _note(
            "No images are available for this run: " + data.notes.get(
                "images", "its input holds no images") + "."))
    from deepclust.report.images import sprite_sheet, tile_size_for

    opts, lay = ctx.options, layout(ctx)
    shown = list(lay.order)
    truncated = len(shown) > opts.max_galleries
    if truncated:
        biggest = set(sorted(shown, key=lambda c: -lay.summaries[c].size)[: opts.max_galleries])
        shown = [c for c in shown if c in biggest]
    first = None
    for i in range(min(len(data.images), 50)):  # the tile size follows the images' size
        first = data.images.image(i)
        if first is not None:
            break
    tile = tile_size_for(first.shape if first is not None else (opts.thumb_max,) * 2,
                         opts.thumb_target, opts.thumb_max)
    gap = 2
    rng = np.random.default_rng(data.seed)
    cards, files = [], []
    for c in shown:
        centre, random = _gallery_members(data, c, opts.n_centre, opts.n_random, rng)
        groups = [(cap, idx) for cap, idx in (("nearest the centre", centre),
                                              ("random sample", random)) if len(idx)]
        sheet = sprite_sheet([[data.images.image(int(i)) for i in idx] for _, idx in groups],
                             tile, gap=gap)
        path, link = ctx.asset("thumbs", f"cluster-{'noise' if c == NOISE else f'{c:04d}'}.png")
        sheet.save(path)
        files.append(link)
        s = lay.summaries[c]
        cells = []
        for (_, idx), boxes in zip(groups, sheet.boxes, strict=True):
            for i, (x, y0) in zip(idx, boxes, strict=True):
                cls = int(data.y[i]) if data.has_labels else None
                label = f"row {int(i)}" + (f" · {data.class_name(cls)}" if cls is not None else "")
                cells.append({
                    "left": 100 * x / sheet.width, "top": 100 * y0 / sheet.height,
                    "w": 100 * tile / sheet.width, "h": 100 * tile / sheet.height,
                    "title": label,
                    "off": c != NOISE and cls is not None and s.majority_class is not None
                    and cls != NOISE and cls != s.majority_class,
                })
        n_rows = len(groups)
        caps_rows = " ".join(f"{tile}fr" if i % 2 == 0 else f"{gap}fr"
                             for i in range(2 * n_rows - 1))
        cards.append({
            "id": c, "name": _cluster_name(c).capitalize(), "colour": lay.colours[c],
            "size": format_number(s.size), "share": f"{100 * s.share:.1f} %",
            "majority": None if s.majority_class is None else data.class_name(s.majority_class),
            "purity": s.purity,
            "matched": None if s.matched_class is None or s.matched_class == s.majority_class
            else data.class_name(s.matched_class),
            "top": ", ".join(f"{data.class_name(k)} ({_share(f)})" for k, f in s.top_classes[1:]),
            "link": link, "w": sheet.width, "h": sheet.height, "cells": cells,
            "caps": [cap for cap, _ in groups], "caps_rows": caps_rows,
        })
    intro = ("Per cluster, the members nearest the cluster's mean in the run's feature space "
             f"(first row, up to {opts.n_centre}) and a random sample of the others (second "
             f"row, up to {opts.n_random}), in the same order as above.")
    if data.x_rows is not None:
        intro += (f" The store was not loaded: the centre and its nearest members come from "
                  f"the {format_number(len(data.x_rows))} rows sampled from it.")
    if data.X is None:
        intro = ("Per cluster, a random sample of its members (the features are not available, "
                 "so the members nearest the centre cannot be found: "
                 + data.notes.get("features", "unknown reason") + ").")
    if data.has_labels:
        intro += (" Purity: share of the cluster's labelled members in its majority class; "
                  "a red frame marks a thumbnail of another class. Hover for the row and class.")
    if truncated:
        intro += f" Showing the {opts.max_galleries} largest of {len(lay.order)} clusters."
    html = render("""<p class="note">{{ intro }}</p>
<div class="gallery-grid">{% for g in cards %}
<div class="gcard" id="gallery-{{ g.id }}">
<h3><span class="chip" style="background:{{ g.colour }}"></span>{{ g.name }}</h3>
<div class="gmeta"><b>{{ g.size }}</b> images ({{ g.share }}){% if g.majority is not none %} ·
majority <b>{{ g.majority }}</b> · purity <b>{{ g.purity | pct }}</b>{% if g.matched %} ·
matched to {{ g.matched }}{% endif %}{% if g.top %} · also {{ g.top }}{% endif %}{% endif %}</div>
<div class="sheetrow"><div class="caps" style="grid-template-rows:{{ g.caps_rows }}">
{% for cap in g.caps %}{% if not loop.first %}<span></span>{% endif %}<span>{{ cap }}</span>{% endfor %}</div>
<div class="sheet"><img src="{{ g.link }}" width="{{ g.w }}" height="{{ g.h }}" alt="thumbnails of {{ g.name }}">
{% for t in g.cells %}<i{% if t.off %} class="off"{% endif %} title="{{ t.title }}" style="left:{{ '%.3f' % t.left }}%;top:{{ '%.3f' % t.top }}%;width:{{ '%.3f' % t.w }}%;height:{{ '%.3f' % t.h }}%"></i>{% endfor %}
</div></div></div>{% endfor %}
</div>""", intro=intro, cards=cards)
    return Section("galleries", "Cluster galleries", html, files)


#: The sections of a run's report, in page order.
DEFAULT_SECTIONS = (
    overview_section,
    pipelines_section,
    scores_section,
    sizes_section,
    embedding_section,
    confusion_section,
    galleries_section,
)
