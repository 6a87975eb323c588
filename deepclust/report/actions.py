"""Sections a person acts on: images the report could not find, how k was chosen, images the
run could not read, exact and near duplicates, and the most isolated images.

Each returns None when it has nothing to say for this run (no ``k_selection``, no
``failed``, no ``assignments.parquet``), so an older run's report simply lacks them; the
duplicates and outliers sections read ``RUN/assignments.parquet`` (the per-image results:
``duplicate_group``, ``near_duplicate_group``, ``outlier_score``).
"""

from __future__ import annotations

import numpy as np

from deepclust.report.core import ReportContext, Section
from deepclust.report.gallery import gallery_plan, thumb_cell, write_sheet
from deepclust.report.template import format_number, render

#: Groups shown at most in each duplicates table, and images per group.
MAX_GROUPS = 40
MAX_PER_GROUP = 12
#: Rows of the failed-images table shown (all are in run.json).
MAX_FAILED = 200


def missing_section(ctx: ReportContext) -> Section | None:
    """A visible notice when the run's input or some of its image files were not found:
    how many, and every folder the report looked in."""
    data = ctx.data
    if data is None or data.command != "cluster":
        return None
    items = []
    if not data.input_found:
        items.append(data.notes.get("input", "the run's input was not found") + ". Only what "
                     "run.json and labels.npy hold is shown: no map, no galleries.")
    m = data.missing
    if m:
        gone = m["expected"] - m["found"]
        items.append(f"{format_number(gone)} of {format_number(m['expected'])} image files were "
                     f"not found; they show as grey tiles. Looked in: "
                     f"{', '.join(m['looked_in']) or 'the recorded absolute paths'}. "
                     f"For example: {', '.join(m['examples'])}.")
    if "assignments" in data.notes:
        items.append(data.notes["assignments"] + ".")
    if not items:
        return None
    html = render('{% for t in items %}<p class="error">{{ t }}</p>{% endfor %}'
                  '<p class="note">Paths are resolved against the working folder the run '
                  "recorded, the run folder and the folders above it, and the store's source "
                  "folder. Move the files back, or re-run <code>deepclust cluster</code> on "
                  "their new place.</p>", items=items)
    return Section("missing", "Missing files", html)


def kselection_section(ctx: ReportContext) -> Section | None:
    """The k sweep: the label-free score of every k tried, the chosen k marked."""
    data = ctx.data
    sel = None if data is None else data.run.get("k_selection")
    if not sel or not sel.get("curve"):
        return None
    from deepclust.report.figures import k_curve_figure

    curve = sorted(sel["curve"], key=lambda r: r["k"])
    ks = [int(r["k"]) for r in curve]
    best = sel.get("best_k")
    fig = ctx.figure(k_curve_figure(ks, [r.get("score") for r in curve], best,
                                    str(sel.get("criterion"))), "k-selection")
    edge = best is not None and len(ks) > 2 and best in (ks[0], ks[-1])
    tag = "ORACLE: uses the true labels" if sel.get("oracle") else "label-free"
    html = render("""{{ img }}
<p class="note">k = {{ best }} was chosen by {{ criterion }} ({{ tag }}), the best score over
k = {{ ks[0] }} … {{ ks[-1] }} ({{ ks | length }} values tried).</p>
{% if edge %}<p class="error">The chosen k is at the edge of the range tried: the best k may lie
outside it. Widen the range (<code>--k-range</code>) and run again.</p>{% endif %}
<details><summary>Scores as a table</summary><table class="t"><tr><th>k</th><th>score</th></tr>
{% for r in curve %}<tr{% if r.k == best %} class="hl"{% endif %}><td class="num">{{ r.k }}</td>
<td class="num">{{ r.score | num }}</td></tr>{% endfor %}</table></details>""",
                  img=fig.img("label-free score against k"), best=best,
                  criterion=sel.get("criterion"), tag=tag, ks=ks, edge=edge, curve=curve)
    return Section("k-selection", "Choice of k", html, [fig.link])


def selection_section(ctx: ReportContext) -> Section | None:
    """``--method auto``: every candidate (reducer, method, k) with its label-free scores, the
    pick, the margin to the runner-up, what was left out and why."""
    data = ctx.data
    sel = None if data is None else data.run.get("selection")
    if not sel or not sel.get("candidates"):
        return None
    from deepclust.report.figures import selection_figure
    from deepclust.selection.criteria import check_criterion

    crit = sel.get("criterion")
    ranked = sorted((c for c in sel["candidates"] if isinstance(c.get("score"), (int, float))
                     and np.isfinite(c["score"])), key=lambda c: c["score"],
                    reverse=check_criterion(crit).higher_is_better)
    best = sel.get("best") or {}
    fig = ctx.figure(selection_figure(sel["candidates"], best, str(crit)), "selection")
    names = sorted({n for c in ranked for n in (c.get("scores") or {}) if n != crit})
    runner = (sel["candidates"][sel["runner_up"]]["name"]
              if sel.get("runner_up") is not None else None)
    tag = "ORACLE: uses the true labels" if sel.get("oracle") else "label-free"
    html = render("""{{ img }}
<p class="note">{{ best.name }} was chosen by {{ crit }} ({{ tag }}) among {{ n }} candidates,
fitted on {% if rows < of_rows %}a seeded sample of {{ rows }} of {{ of_rows }} rows{% else %}all
{{ rows }} rows{% endif %}. {% if runner %}Margin to the runner-up ({{ runner }}):
{{ margin | num }}.{% endif %}</p>
{% for w in warnings %}<p class="error">{{ w }}</p>{% endfor %}
{% for s in skipped %}<p class="note">Left out: {{ s.reducer or "" }} {{ s.method or "" }}:
{{ s.reason }}.</p>{% endfor %}
<details><summary>Every candidate, best first</summary><table class="t"><tr><th>candidate</th>
<th>{{ crit }}</th><th>clusters</th>{% for n in names %}<th>{{ n }}</th>{% endfor %}</tr>
{% for c in ranked %}<tr{% if c.name == best.name %} class="hl"{% endif %}><td>{{ c.name }}</td>
<td class="num">{{ c.score | num }}</td><td class="num">{{ c.n_clusters }}</td>
{% for n in names %}<td class="num">{{ c.scores[n] | num }}</td>{% endfor %}</tr>{% endfor %}
</table></details>""", img=fig.img("label-free score of every candidate"), best=best,
                  crit=crit, tag=tag, n=len(sel["candidates"]), rows=sel.get("rows"),
                  of_rows=sel.get("of_rows"), runner=runner, margin=sel.get("margin"),
                  warnings=sel.get("warnings") or [], skipped=sel.get("skipped") or [],
                  names=names, ranked=ranked)
    return Section("selection", "How the pipeline was chosen", html, [fig.link])


def failed_section(ctx: ReportContext) -> Section | None:
    """Images the run could not read, with the reason."""
    data = ctx.data
    if data is None or not data.failed:
        return None
    rows = data.failed[:MAX_FAILED]
    html = render("""<p class="note">{{ n }} images could not be read and were left out of the
clustering (all are listed in run.json, <code>failed</code>).</p>
<table class="t"><tr><th>file</th><th>reason</th></tr>{% for f in rows %}
<tr><td><code>{{ f.get('path', '?') }}</code></td><td>{{ f.get('reason', '') }}</td></tr>
{% endfor %}</table>{% if more %}<p class="note">and {{ more }} more.</p>{% endif %}""",
                  n=format_number(len(data.failed)), rows=rows,
                  more=format_number(len(data.failed) - len(rows)) if len(data.failed) > len(rows)
                  else None)
    return Section("failed", "Images that could not be read", html)


def _groups(column: np.ndarray) -> list[np.ndarray]:
    """Rows of each group id >= 0 with at least two members, largest group first."""
    col = np.asarray(column).astype(np.int64)
    ids, counts = np.unique(col[col >= 0], return_counts=True)
    keep = ids[counts >= 2]
    groups = [np.flatnonzero(col == g) for g in keep]
    groups.sort(key=lambda g: (-len(g), int(g[0])))
    return groups


def _group_block(ctx: ReportContext, name: str, groups: list[np.ndarray]) -> tuple[dict, list]:
    data = ctx.data
    shown = groups[:MAX_GROUPS]
    rows = [g[:MAX_PER_GROUP].tolist() for g in shown]
    block = {"n": len(groups), "images": int(sum(len(g) for g in groups)),
             "extra": int(sum(len(g) - 1 for g in groups)), "html": None, "names": None,
             "more": max(0, len(groups) - len(shown))}
    files = []
    if not groups:
        return block, files
    plan = gallery_plan(ctx)
    if data.images is not None and plan is not None:
        cluster = data.labels
        link, html, _ = write_sheet(ctx, name, rows, plan.tile,
                                    cell_extra=lambda i: f"cluster {int(cluster[i])}")
        block["html"] = html
        files.append(link)
    else:
        block["names"] = [", ".join(data.row_name(i) for i in r) for r in rows]
    return block, files


def duplicates_section(ctx: ReportContext) -> Section | None:
    """Exact copies (same file content) and near duplicates (embedding similarity), one row
    of thumbnails per group."""
    data = ctx.data
    a = None if data is None else data.assignments
    if not a or ("duplicate_group" not in a and "near_duplicate_group" not in a):
        return None
    files: list[str] = []
    blocks = []
    for col, title, what, name in (
            ("duplicate_group", "Exact copies", "byte-identical files (same SHA-256)",
             "duplicates-exact"),
            ("near_duplicate_group", "Near duplicates",
             "images whose embeddings are nearly the same (crops, flips, re-encodes of one "
             "photo), joined into groups", "duplicates-near")):
        if col not in a:
            continue
        block, f = _group_block(ctx, name, _groups(a[col]))
        block.update(title=title, what=what)
        blocks.append(block)
        files += f
    html = render("""{% for b in blocks %}<h3>{{ b.title }}</h3>
{% if b.n %}<p class="note">{{ b.n }} group{{ 's' if b.n != 1 }} of {{ b.what }}: {{ b.images }} images, of which
{{ b.extra }} could go while keeping one of each. One row per group{% if b.html %}; hover for the
file name and cluster, click to open{% endif %}.</p>
{% if b.html %}<div class="dupes">{{ b.html }}</div>{% else %}<ul>{% for n in b.names %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
{% if b.more %}<p class="note">and {{ b.more }} more groups (assignments.csv, column
<code>{{ 'duplicate_group' if b.title == 'Exact copies' else 'near_duplicate_group' }}</code>).</p>{% endif %}
{% else %}<p class="note">None found: no {{ b.what }}.</p>{% endif %}{% endfor %}""",
                  blocks=blocks)
    return Section("duplicates", "Duplicates", html, files)


def outliers_section(ctx: ReportContext) -> Section | None:
    """The most isolated images by ``outlier_score`` (1 = the most isolated of the run)."""
    data = ctx.data
    a = None if data is None else data.assignments
    if not a or "outlier_score" not in a:
        return None
    score = np.nan_to_num(np.asarray(a["outlier_score"], dtype=np.float64), nan=-1.0)
    n = min(ctx.options.top_outliers, int((score >= 0).sum()))
    if n == 0:
        return None
    top = np.argsort(-score, kind="stable")[:n]
    plan = gallery_plan(ctx)
    files, sheet, table = [], None, []
    if data.images is not None and plan is not None:
        rows = [top[i:i + plan.cols].tolist() for i in range(0, n, plan.cols)]
        link, sheet, _ = write_sheet(
            ctx, "outliers", rows, plan.tile,
            cell_extra=lambda i: f"outlier score {score[i]:.3f} · cluster {int(data.labels[i])}")
        files.append(link)
    else:
        table = [thumb_cell(data, int(i), 0, 0, 0, 0) | {"score": score[i],
                                                        "cluster": int(data.labels[i])}
                 for i in top]
    html = render("""<p class="note">The {{ n }} images farthest from their nearest neighbours
(outlier score: mean cosine distance to the 10 nearest neighbours, as a percentile over the
run's images; 1 = the most isolated), most isolated first. Look here for broken, blank or
unrelated pictures.</p>
{% if sheet %}{{ sheet }}{% else %}<table class="t"><tr><th>image</th><th>cluster</th><th>score</th></tr>
{% for t in table %}<tr><td>{% if t.href %}<a href="{{ t.href }}">{{ t.title }}</a>{% else %}{{ t.title }}{% endif %}</td>
<td class="num">{{ t.cluster }}</td><td class="num">{{ t.score | num }}</td></tr>{% endfor %}</table>{% endif %}""",
                  n=n, sheet=sheet, table=table)
    return Section("outliers", "Outliers", html, files)
