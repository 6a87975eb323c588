"""The cluster galleries: every member of every cluster, paged, nearest the centre first.

Each cluster's members are ordered by distance to the cluster's centre (the assignments'
``rank`` when the run wrote ``assignments.parquet``, else the Euclidean distance to the mean
of the members in the features the report loaded; noise by outlier score), cut into pages of
``ReportOptions.per_page`` thumbnails, and each page packed into one sprite sheet
(``assets/thumbs/cluster-0003-p002.png``). The first page of a cluster is in the page; the
others are ``<template>`` elements that a few lines of inline script swap in (prev / next),
so a 10 000-image report still loads only one sheet per cluster. Each thumbnail is a link to
the original file (``file://`` absolute path) with the file name as its tooltip.

Above ``ReportOptions.max_thumbs`` thumbnails in all, each cluster shows its nearest
``max(per_page, max_thumbs // clusters)`` members and the page says so (every row is in
``assignments.csv``).

:func:`gallery_plan` is shared with the interactive map, whose hover shows a point's
thumbnail cut from the same sheets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from markupsafe import Markup

from deepclust.report.cohesion import MIXED_FACTOR, Cohesion, cluster_cohesion
from deepclust.report.core import ASSETS, ReportContext, Section
from deepclust.report.data import NOISE, RunData
from deepclust.report.layout import cluster_name, layout, note, share
from deepclust.report.template import format_number, render

GAP = 2


@dataclass
class ClusterPages:
    """The members of one cluster as the gallery shows them."""

    cluster: int
    size: int
    members: np.ndarray
    order: str
    links: list[str] = field(default_factory=list)

    def pages(self, per_page: int) -> list[np.ndarray]:
        return [self.members[i:i + per_page] for i in range(0, len(self.members), per_page)]


@dataclass
class GalleryPlan:
    """Which rows each gallery page holds, and where each thumbnail sits in its sheet."""

    clusters: list[ClusterPages]
    tile: int
    cols: int
    per_page: int
    capped: bool
    hidden: int
    where: dict[int, tuple[str, int, int]] = field(default_factory=dict)

    def box(self, j: int) -> tuple[int, int]:
        """Top-left pixel of the ``j``-th thumbnail of a page's sheet."""
        return (j % self.cols) * (self.tile + GAP), (j // self.cols) * (self.tile + GAP)

    def predict(self, row: int) -> tuple[str, int, int] | None:
        """Sheet link and top-left pixel of ``row``'s thumbnail (the galleries section
        writes the sheets under these names); None when no gallery page holds it."""
        return self.where.get(int(row))


def sheet_name(cluster: int, page: int) -> str:
    """File name (no extension) of a gallery page's sprite sheet; page 0 is the first."""
    tag = "noise" if cluster == NOISE else f"{cluster:04d}"
    return f"cluster-{tag}" if page == 0 else f"cluster-{tag}-p{page + 1:03d}"


def cohesion(ctx: ReportContext) -> dict[int, Cohesion]:
    """Per-cluster cohesion from the features the report loaded (empty without them)."""
    if "cohesion" not in ctx.cache:
        data = ctx.data
        out: dict[int, Cohesion] = {}
        if data is not None and data.X is not None and len(data.X):
            labels = data.labels if data.x_rows is None else data.labels[data.x_rows]
            out = cluster_cohesion(data.X, labels)
        ctx.cache["cohesion"] = out
    return ctx.cache["cohesion"]


def _x_positions(data: RunData, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The members :attr:`RunData.X` holds, and their positions in it."""
    if data.x_rows is None:
        return members, members
    at = np.searchsorted(data.x_rows, members)
    held = at < len(data.x_rows)
    held[held] = data.x_rows[at[held]] == members[held]
    return members[held], at[held]


def _ordered_members(data: RunData, c: int) -> tuple[np.ndarray, str]:
    members = np.flatnonzero(data.labels == c)
    a = data.assignments or {}
    if c == NOISE:
        if "outlier_score" in a:
            score = np.nan_to_num(a["outlier_score"][members], nan=-1.0)
            return members[np.argsort(-score, kind="stable")], "most isolated first"
        return members, "in row order"
    if "rank" in a:
        rank = a["rank"][members].astype(np.int64)
        rank = np.where(rank < 0, np.iinfo(np.int64).max, rank)
        return members[np.argsort(rank, kind="stable")], "nearest the centre first"
    if data.X is None:
        return members, "in row order (the features are not available, so there is no centre)"
    near, at = _x_positions(data, members)
    if not len(near):
        return members, "in row order"
    Xm = np.asarray(data.X[at], dtype=np.float64)
    d = ((Xm - Xm.mean(axis=0)) ** 2).sum(axis=1)
    first = near[np.argsort(d, kind="stable")]
    if len(near) == len(members):
        return first, "nearest the centre first"
    rest = np.setdiff1d(members, near, assume_unique=True)
    return (np.concatenate([first, rest]),
            f"nearest the centre first among the {format_number(len(near))} sampled members, "
            "then the others in row order")


def gallery_plan(ctx: ReportContext) -> GalleryPlan | None:
    """The galleries' pages (computed once per report); None without images or pages."""
    if "gallery_plan" in ctx.cache:
        return ctx.cache["gallery_plan"]
    data, opts = ctx.data, ctx.options
    plan = None
    if data is not None and data.images is not None and opts.per_page > 0:
        from deepclust.report.images import tile_size_for

        lay = layout(ctx)
        real = sorted((c for c in lay.order if c != NOISE),
                      key=lambda c: (-lay.summaries[c].size, c))
        shown = real[: opts.max_galleries] + ([NOISE] if NOISE in lay.order else [])
        hidden = len(real) - len(real[: opts.max_galleries])
        total = sum(lay.summaries[c].size for c in shown)
        cap = max(opts.per_page, opts.max_thumbs // max(1, len(shown)))
        capped = total > opts.max_thumbs
        clusters = []
        for c in shown:
            members, order = _ordered_members(data, c)
            if capped:
                members = members[:cap]
            clusters.append(ClusterPages(c, lay.summaries[c].size, members, order))
        first = None
        for i in range(min(len(data.images), 50)):  # the tile size follows the images' size
            first = data.images.image(i)
            if first is not None:
                break
        tile = tile_size_for(first.shape if first is not None else (opts.thumb_max,) * 2,
                             opts.thumb_target, opts.thumb_max)
        plan = GalleryPlan(clusters, tile, opts.cols, opts.per_page, capped, hidden)
        for cp in clusters:
            for p, rows in enumerate(cp.pages(opts.per_page)):
                link = f"{ASSETS}/thumbs/{sheet_name(cp.cluster, p)}.png"
                for j, i in enumerate(rows.tolist()):
                    plan.where[int(i)] = (link, *plan.box(j))
    ctx.cache["gallery_plan"] = plan
    return plan


def file_uri(path: str | None) -> str | None:
    """The ``file://`` URL of an absolute path (spaces and non-ASCII names encoded)."""
    if not path:
        return None
    try:
        return Path(path).as_uri()
    except ValueError:
        return None


def thumb_cell(data: RunData, i: int, left: float, top: float, w: float, h: float,
               extra: str = "", off: bool = False) -> dict:
    """One thumbnail's overlay: tooltip (file name, class, row), link to the original."""
    title = data.row_name(i)
    if data.has_labels:
        title += f" · {data.class_name(int(data.y[i]))}"
    if not title.startswith("row "):
        title += f" · row {int(i)}"
    if extra:
        title += f" · {extra}"
    href = file_uri(data.paths[i]) if data.paths is not None else None
    return {"left": left, "top": top, "w": w, "h": h, "title": title, "href": href, "off": off}


SHEET = """<div class="sheet"><img src="{{ link }}" width="{{ w }}" height="{{ h }}" alt="{{ alt }}">
{% for t in cells %}{% if t.href %}<a href="{{ t.href }}" target="_blank"{% else %}<i{% endif %}{% if t.off %} class="off"{% endif %} title="{{ t.title }}" style="left:{{ '%.3f' % t.left }}%;top:{{ '%.3f' % t.top }}%;width:{{ '%.3f' % t.w }}%;height:{{ '%.3f' % t.h }}%">{% if t.href %}</a>{% else %}</i>{% endif %}
{% endfor %}</div>"""


def write_sheet(ctx: ReportContext, name: str, rows: list[list[int]], tile: int,
                cell_extra=None, off=None) -> tuple[str, Markup, list[list[tuple[int, int]]]]:
    """Pack rows of thumbnails into ``assets/thumbs/<name>.png``; return its link, the
    ``<div class="sheet">`` that shows it (with a linked, titled cell per thumbnail) and the
    boxes."""
    from deepclust.report.images import sprite_sheet

    data = ctx.data
    sheet = sprite_sheet([[data.images.image(int(i)) for i in r] for r in rows], tile, gap=GAP)
    path, link = ctx.asset("thumbs", f"{name}.png")
    sheet.save(path)
    cells = []
    for r, boxes in zip(rows, sheet.boxes, strict=True):
        for i, (x, y0) in zip(r, boxes, strict=True):
            cells.append(thumb_cell(
                data, int(i), 100 * x / sheet.width, 100 * y0 / sheet.height,
                100 * tile / sheet.width, 100 * tile / sheet.height,
                extra=cell_extra(int(i)) if cell_extra else "",
                off=bool(off(int(i))) if off else False))
    html = render(SHEET, link=link, w=sheet.width, h=sheet.height, alt=f"thumbnails: {name}",
                  cells=cells)
    return link, html, sheet.boxes


def galleries_section(ctx: ReportContext) -> Section | None:
    """Per cluster, largest first: every member (paged), nearest the centre first, with
    cohesion, a flag on mixed clusters, majority class and purity when there are labels."""
    if ctx.data is None or ctx.options.per_page == 0:
        return None
    data = ctx.data
    if data.images is None:
        return Section("galleries", "Cluster galleries", note(
            "No images are available for this run: " + data.notes.get(
                "images", "its input holds no images") + "."))
    plan = gallery_plan(ctx)
    lay, coh = layout(ctx), cohesion(ctx)
    cards, files = [], []
    for cp in plan.clusters:
        s = lay.summaries[cp.cluster]
        pages = []
        for p, rows in enumerate(cp.pages(plan.per_page)):
            grid = [rows[i:i + plan.cols].tolist() for i in range(0, len(rows), plan.cols)]
            link, html, _ = write_sheet(
                ctx, sheet_name(cp.cluster, p), grid, plan.tile,
                off=(lambda i, s=s, cp=cp: cp.cluster != NOISE and data.has_labels
                     and s.majority_class is not None and data.y[i] != NOISE
                     and data.y[i] != s.majority_class))
            cp.links.append(link)
            files.append(link)
            pages.append(html)
        c = coh.get(cp.cluster)
        cards.append({
            "id": cp.cluster, "name": cluster_name(cp.cluster).capitalize(),
            "colour": lay.colours[cp.cluster], "size": format_number(s.size),
            "share": f"{100 * s.share:.1f} %",
            "cohesion": None if c is None else c.cohesion, "mixed": c is not None and c.mixed,
            "majority": None if s.majority_class is None else data.class_name(s.majority_class),
            "purity": s.purity,
            "matched": None if s.matched_class is None or s.matched_class == s.majority_class
            else data.class_name(s.matched_class),
            "top": ", ".join(f"{data.class_name(k)} ({share(f)})" for k, f in s.top_classes[1:]),
            "pages": pages, "shown": len(cp.members), "order": cp.order,
            "first_end": min(plan.per_page, len(cp.members)),
        })
    intro = ("Clusters from largest to smallest, noise last. Each gallery holds every member "
             f"in pages of {plan.per_page}; hover a thumbnail for its file name, click it to "
             "open the original.")
    if coh:
        intro += (" Cohesion: mean cosine similarity of the members to the cluster's centre "
                  "(1 = all alike)"
                  + (", on the rows sampled from the store" if data.x_rows is not None else "")
                  + f"; <b>mixed?</b> marks a spread (1 − cohesion) over {MIXED_FACTOR} times "
                  "the median cluster's: look there first for two kinds of image in one group.")
    if data.has_labels:
        intro += (" Purity: share of the cluster's labelled members in its majority class; "
                  "a red frame marks a thumbnail of another class.")
    if plan.capped:
        intro += (f" This run has more than {format_number(ctx.options.max_thumbs)} images: "
                  "each cluster shows its members nearest the centre; assignments.csv lists "
                  "every one.")
    if plan.hidden:
        intro += (f" {plan.hidden} smaller clusters have no gallery (--max-clusters "
                  f"{ctx.options.max_galleries}).")
    html = render("""<p class="note">{{ intro | safe }}</p>
<div class="gallery-grid">{% for g in cards %}
<div class="gcard"{% if g.mixed %} data-mixed="true"{% endif %} id="gallery-{{ g.id }}" data-per-page="{{ per_page }}" data-shown="{{ g.shown }}">
<h3><span class="chip" style="background:{{ g.colour }}"></span>{{ g.name }}{% if g.mixed %} <span class="flag" title="spread over {{ factor }} x the median cluster's">mixed?</span>{% endif %}</h3>
<div class="gmeta"><b>{{ g.size }}</b> images ({{ g.share }}){% if g.cohesion is not none %} ·
cohesion <b>{{ g.cohesion | num(2) }}</b>{% endif %}{% if g.majority is not none %} ·
majority <b>{{ g.majority }}</b> · purity <b>{{ g.purity | pct }}</b>{% if g.matched %} ·
matched to {{ g.matched }}{% endif %}{% if g.top %} · also {{ g.top }}{% endif %}{% endif %}</div>
<div class="gorder">{{ g.order }}</div>
<div class="gpage-live">{{ g.pages[0] }}</div>
{% if g.pages | length > 1 %}{% for p in g.pages %}<template class="gpage">{{ p }}</template>{% endfor %}
<div class="pager"><button type="button" data-step="-1" disabled>‹ prev</button>
<span class="pinfo">page 1 of {{ g.pages | length }} · images 1–{{ g.first_end }} of {{ g.shown }}</span>
<button type="button" data-step="1">next ›</button></div>{% endif %}
</div>{% endfor %}
</div>""", intro=Markup(intro), cards=cards, per_page=plan.per_page, factor=MIXED_FACTOR)
    return Section("galleries", "Cluster galleries", html, files)
