"""The interactive 2-D map: the report's UMAP scatter on a ``<canvas>``, drawn by the page's
inline script from data embedded in the page (no library, no network, works from
``file://``).

Wheel or +/− zoom at the cursor, drag to pan, double-click to reset; hovering a point shows
its thumbnail (cut from the gallery's sprite sheets) and file name; clicking it opens the
original; clicking a cluster in the legend highlights it. Points are drawn largest cluster
first, so small clusters lie on top, and clusters under :data:`SMALL_SHARE` of the points
are drawn larger with a dark outline, so a cluster of five images is still seen among
10 000.

Above ``ReportOptions.map_points`` points the map shows a seeded random subset, plus every
point of a small cluster.
"""

from __future__ import annotations

import json

import numpy as np
from markupsafe import Markup

from deepclust.report.core import ReportContext
from deepclust.report.data import NOISE
from deepclust.report.gallery import file_uri, gallery_plan
from deepclust.report.layout import cluster_name, layout
from deepclust.report.template import render

#: Clusters holding less than this share of the map's points are drawn larger, outlined.
SMALL_SHARE = 0.02


def _json_for_script(value: object) -> Markup:
    """JSON that cannot end the ``<script>`` element holding it."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def map_data(ctx: ReportContext, xy: np.ndarray, rows: np.ndarray | None) -> dict:
    """The map's points (normalised to [0, 1]) with cluster, name, link and thumbnail.

    Parameters
    ----------
    xy : ndarray of shape (m, 2)
        The 2-D UMAP positions.
    rows : ndarray of int or None
        The run's row of each position (None: row ``i`` is position ``i``).
    """
    data, lay = ctx.data, layout(ctx)
    rows = np.arange(len(xy)) if rows is None else np.asarray(rows)
    labels = data.labels[rows]
    keep = np.arange(len(xy))
    limit = ctx.options.map_points
    if len(xy) > limit:
        ids, counts = np.unique(labels, return_counts=True)
        small = ids[counts <= max(1, limit // 200)]
        rng = np.random.default_rng(data.seed)
        pick = rng.random(len(xy)) < limit / len(xy)
        keep = np.flatnonzero(pick | np.isin(labels, small))
    xy, rows, labels = xy[keep], rows[keep], labels[keep]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    norm = (xy - lo) / span.max()  # one scale for both axes: distances keep their meaning
    norm += (1 - (hi - lo) / span.max()) / 2  # centred
    clusters = [c for c in lay.order]
    pos = {c: j for j, c in enumerate(clusters)}
    counts = {c: int((labels == c).sum()) for c in clusters}
    # largest first: small clusters are drawn last, on top
    draw = sorted(range(len(rows)), key=lambda i: (-counts[int(labels[i])], int(labels[i])))
    plan = gallery_plan(ctx)
    sheets: list[str] = []
    sheet_pos: dict[str, int] = {}
    thumbs = []
    names, links = [], []
    for i in draw:
        r = int(rows[i])
        names.append(data.row_name(r))
        links.append((file_uri(data.paths[r]) if data.paths is not None else None) or "")
        at = plan.predict(r) if plan is not None else None
        if at is None:
            thumbs.append(0)
        else:
            link, x, y = at
            if link not in sheet_pos:
                sheet_pos[link] = len(sheets)
                sheets.append(link)
            thumbs.append([sheet_pos[link], x, y])
    n = max(1, len(rows))
    return {
        "x": np.round(norm[draw, 0], 4).tolist(), "y": np.round(norm[draw, 1], 4).tolist(),
        "c": [pos[int(labels[i])] for i in draw], "n": names, "u": links, "t": thumbs,
        "sheets": sheets, "tile": plan.tile if plan is not None else 0,
        "clusters": [{"name": cluster_name(c), "colour": lay.colours[c], "size": counts[c],
                      "small": c != NOISE and counts[c] < SMALL_SHARE * n} for c in clusters],
    }


def map_html(ctx: ReportContext, xy: np.ndarray, rows: np.ndarray | None) -> Markup:
    """The map's HTML: a canvas, a legend, a tooltip and the embedded data."""
    d = map_data(ctx, xy, rows)
    return render("""<div class="dc-map">
<div class="mapbar"><button type="button" data-zoom="1.5">+</button><button type="button" data-zoom="0.667">−</button>
<button type="button" data-zoom="0">reset</button>
<span class="note">{{ n }} points · wheel to zoom, drag to pan, hover for the image, click to open it{% if sub %} · a random {{ n }} of {{ total }}, small clusters whole{% endif %}</span></div>
<div class="mapwrap"><canvas width="900" height="560"></canvas><div class="maptip" hidden></div></div>
<div class="legend">{% for c in d.clusters %}<button type="button" data-c="{{ loop.index0 }}"><span class="chip" style="background:{{ c.colour }}"></span>{{ c.name }} ({{ c.size }}){% if c.small %} ◆{% endif %}</button>{% endfor %}</div>
<script type="application/json">{{ payload }}</script>
</div>""", d=d, n=len(d["x"]), sub=len(d["x"]) < (len(xy) if rows is None else len(rows)),
                  total=len(xy), payload=_json_for_script(d))
