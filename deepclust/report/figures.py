"""The report's plots as matplotlib figures, for the page and for papers.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly, never
through ``pyplot``: no global state, no display needed, safe in threads and notebooks.
Every function returns a Figure; :func:`save_png` writes it.
"""

from __future__ import annotations

import colorsys
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.text
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

NOISE_COLOUR = "#b4b4b4"
DPI = 150


def palette(n: int) -> list[str]:
    """``n`` distinct colours as hex strings: tab10 up to 10, tab20 up to 20, then hues
    spaced by the golden ratio with alternating lightness.

    Examples
    --------
    >>> palette(2)
    ['#1f77b4', '#ff7f0e']
    """
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if n <= 10:
        cmap = colormaps["tab10"]
        return [to_hex(cmap(i)) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        # tab20 pairs a dark and a light shade; dark ones first keeps neighbours distinct
        order = list(range(0, 20, 2)) + list(range(1, 20, 2))
        return [to_hex(cmap(i)) for i in order[:n]]
    out = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        v = 0.85 if i % 2 == 0 else 0.62
        r, g, b = colorsys.hsv_to_rgb(h, 0.70, v)
        out.append(to_hex((r, g, b)))
    return out


def colour_map(ids: Sequence[int]) -> dict[int, str]:
    """A colour for each id in ``ids`` (display order); the noise id -1 is grey."""
    real = [i for i in ids if i != -1]
    colours = dict(zip(real, palette(len(real)), strict=True))
    if -1 in ids:
        colours[-1] = NOISE_COLOUR
    return colours


def new_figure(width: float, height: float) -> Figure:
    """An empty Figure of ``width`` x ``height`` inches at :data:`DPI`, constrained layout,
    on the Agg canvas: the start of every plot here, and of a custom report section's.

    Examples
    --------
    >>> new_figure(3, 2).get_size_inches().tolist()
    [3.0, 2.0]
    """
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI` and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # names are data, not TeX: a class called "$5 off" must not be parsed as mathtext
    with matplotlib.rc_context({"text.parse_math": False}):
        for _ in range(2):  # the texts there are; then those a draw creates (tick labels)
            for text in fig.findobj(matplotlib.text.Text):
                text.set_parse_math(False)
            fig.draw_without_rendering()
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=DPI, format="png")
    from deepclust.runinfo import write_bytes

    write_bytes(path, buffer.getvalue())  # atomic: no half-written PNG on a full disk
    return path


def _cluster_tick(c: int) -> str:
    return "noise" if c == -1 else str(c)


def size_figure(
    clusters: Sequence[int], sizes: Sequence[int], colours: Mapping[int, str]
) -> Figure:
    """Bar chart of cluster sizes in display order, with the size of a balanced cluster.

    Parameters
    ----------
    clusters : sequence of int
        Cluster ids in display order (-1 = noise).
    sizes : sequence of int
        Members of each.
    colours : mapping
        Cluster id → colour.
    """
    n = len(clusters)
    fig = new_figure(min(12.0, max(5.0, 0.28 * n + 2.0)), 3.2)
    ax = fig.add_subplot()
    x = np.arange(n)
    ax.bar(x, sizes, color=[colours[c] for c in clusters], width=0.85, linewidth=0)
    real = [s for c, s in zip(clusters, sizes, strict=True) if c != -1]
    if real:
        balanced = sum(sizes) / len(real)
        ax.axhline(balanced, color="#444", linestyle="--", linewidth=0.8)
        ax.annotate(f"balanced\n{balanced:.0f}", xy=(1.0, balanced),
                    xycoords=("axes fraction", "data"), xytext=(4, 0),
                    textcoords="offset points", ha="left", va="center", fontsize=8,
                    color="#444")
    if n <= 60:
        ax.set_xticks(x, [_cluster_tick(c) for c in clusters], fontsize=8 if n <= 30 else 6,
                      rotation=0 if n <= 30 else 90)
    else:
        ax.set_xticks([])
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel("cluster")
    ax.set_ylabel("images")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _scatter_panel(ax, xy: np.ndarray, groups: np.ndarray, colours: Mapping[int, str],
                   title: str, names: Mapping[int, str] | None, label_centres: bool) -> None:
    n = len(xy)
    size = float(np.clip(12000.0 / max(n, 1), 0.6, 12.0))
    ids = [g for g in colours if g != -1]
    background = groups == -1
    if background.any():  # noise / unknown underneath, in grey
        ax.scatter(xy[background, 0], xy[background, 1], s=size, c=NOISE_COLOUR,
                   linewidths=0, rasterized=True)
    # points in a shuffled order so that no group is painted over all the others
    rng = np.random.default_rng(0)
    idx = rng.permutation(np.flatnonzero(~background))
    lut = {g: colours[g] for g in ids}
    ax.scatter(xy[idx, 0], xy[idx, 1], s=size, c=[lut[g] for g in groups[idx]], linewidths=0,
               alpha=0.8, rasterized=True)
    if label_centres and len(ids) <= 40:
        for g in ids:
            m = groups == g
            if not m.any():
                continue
            cx, cy = np.median(xy[m], axis=0)
            ax.text(cx, cy, _cluster_tick(g), fontsize=8, weight="bold", ha="center",
                    va="center", color="#111",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.75})
    if names is not None and len(ids) <= 20:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="", markersize=5, color=colours[g],
                          label=names.get(g, str(g))) for g in ids]
        if background.any():
            handles.append(Line2D([], [], marker="o", linestyle="", markersize=5,
                                  color=NOISE_COLOUR, label="unknown"))
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  frameon=False, handletextpad=0.2)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    for s in ax.spines.values():
        s.set_color("#ccc")


def scatter_figure(
    xy: np.ndarray,
    clusters: np.ndarray,
    cluster_colours: Mapping[int, str],
    classes: np.ndarray | None = None,
    class_colours: Mapping[int, str] | None = None,
    class_names: Mapping[int, str] | None = None,
) -> Figure:
    """2-D UMAP scatter coloured by cluster and, when ``classes`` is given, by class.

    Parameters
    ----------
    xy : ndarray of shape (n, 2)
    clusters : ndarray of int
        Cluster per point (-1 = noise, grey).
    cluster_colours : mapping
        Cluster id → colour.
    classes : ndarray of int, optional
        True class per point (-1 = unknown, grey).
    class_colours : mapping, optional
        Class → colour (required with ``classes``).
    class_names : mapping, optional
        Class → name, for the legend.
    """
    two = classes is not None and class_colours is not None
    fig = new_figure(11.0 if two else 5.6, 4.9)
    ax = fig.add_subplot(1, 2 if two else 1, 1)
    _scatter_panel(ax, xy, np.asarray(clusters), cluster_colours, "coloured by cluster",
                   None, label_centres=True)
    if two:
        ax2 = fig.add_subplot(1, 2, 2)
        _scatter_panel(ax2, xy, np.asarray(classes), class_colours, "coloured by class",
                       class_names, label_centres=False)
    return fig


def confusion_figure(
    table: np.ndarray, cluster_ids: Sequence[int], class_labels: Sequence[str]
) -> Figure:
    """Heat map of a clusters × classes table, shaded by each cluster's class shares.

    Parameters
    ----------
    table : ndarray of int, shape (n_clusters, n_classes)
        Counts, rows and columns already in display (Hungarian) order.
    cluster_ids : sequence of int
        Row labels (-1 = noise).
    class_labels : sequence of str
        Column labels.
    """
    n_rows, n_cols = table.shape
    cell = 0.42 if max(n_rows, n_cols) <= 25 else max(0.08, 10.0 / max(n_rows, n_cols))
    width = min(14.0, max(4.5, n_cols * cell + 2.6))
    height = min(16.0, max(3.0, n_rows * cell + 1.8))
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    totals = table.sum(axis=1, keepdims=True)
    share = np.divide(table, totals, out=np.zeros(table.shape, dtype=float), where=totals > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto",
                   interpolation="nearest")
    if n_rows <= 30 and n_cols <= 30:
        for i in range(n_rows):
            for j in range(n_cols):
                if table[i, j]:
                    ax.text(j, i, str(int(table[i, j])), ha="center", va="center",
                            fontsize=7 if max(n_rows, n_cols) <= 15 else 5,
                            color="white" if share[i, j] > 0.55 else "#222")
    if n_cols <= 60:
        ax.set_xticks(range(n_cols), class_labels, rotation=45, ha="right", fontsize=8)
    else:
        ax.set_xticks([])
    if n_rows <= 60:
        ax.set_yticks(range(n_rows), [_cluster_tick(c) for c in cluster_ids], fontsize=8)
    else:
        ax.set_yticks([])
    ax.set_xlabel("class")
    ax.set_ylabel("cluster")
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the cluster")
    return fig


def pipelines_figure(rows: Sequence[Mapping], highlight: str | None = None) -> Figure:
    """AMI against the label-free proxy (UMAP-silhouette), one point per demo pipeline.

    Parameters
    ----------
    rows : sequence of mappings
        The demo's ranked rows (``rank``, ``ami``, ``umap_silhouette``, ``features``).
    highlight : str, optional
        The ``pipeline`` to circle.
    """
    fig = new_figure(5.6, 4.0)
    ax = fig.add_subplot()
    feats = sorted({str(r.get("features", "")) for r in rows})
    colours = dict(zip(feats, palette(len(feats)), strict=True))
    for f in feats:
        pts = [(r["umap_silhouette"], r["ami"], r["rank"]) for r in rows
               if str(r.get("features", "")) == f and r.get("umap_silhouette") is not None
               and r.get("ami") is not None]
        if not pts:
            continue
        xs, ys, _ = zip(*pts, strict=True)
        ax.scatter(xs, ys, s=36, color=colours[f], label=f, zorder=3)
        same: dict[tuple[float, float], list[int]] = {}  # pipelines that tie share one label
        for x, y, rank in pts:
            same.setdefault((round(x, 3), round(y, 3)), []).append(rank)
        for (x, y), ranks in same.items():
            ax.annotate(",".join(map(str, sorted(ranks))), (x, y), xytext=(4, 3),
                        textcoords="offset points", fontsize=8)
    for r in rows:
        if highlight is not None and r.get("pipeline") == highlight and r.get(
                "umap_silhouette") is not None:
            ax.scatter([r["umap_silhouette"]], [r["ami"]], s=160, facecolors="none",
                       edgecolors="#d62728", linewidths=1.5, zorder=4)
    ax.set_xlabel("UMAP-silhouette (label-free)")
    ax.set_ylabel("AMI (uses labels)")
    ax.grid(True, color="#eee", zorder=0)
    ax.legend(fontsize=8, frameon=False, title="features", title_fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def selection_figure(candidates: Sequence[dict], pick: dict, criterion: str) -> Figure:
    """The label-free score of every candidate of ``--method auto`` against k, one line per
    reducer and method (methods that find k themselves as a point at the k they found), the
    pick circled."""
    fig = new_figure(6.5, 3.2)
    ax = fig.add_subplot()
    groups: dict[str, list[dict]] = {}
    for c in candidates:
        if c.get("score") is None or not np.isfinite(c["score"]):
            continue
        reducer = "umap" if str(c["reducer"]).startswith("umap") else (c["reducer"] or "none")
        groups.setdefault(f"{reducer} | {c['method']}", []).append(c)
    for name, rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r["k"] if r["k"] is not None else r["n_clusters"])
        xs = [r["k"] if r["k"] is not None else r["n_clusters"] for r in rows]
        ax.plot(xs, [r["score"] for r in rows], marker="o", markersize=3, linewidth=1.0,
                label=name, linestyle="-" if rows[0]["k"] is not None else "none")
    x = pick["k"] if pick.get("k") is not None else pick.get("n_clusters")
    ax.plot([x], [pick["score"]], marker="o", markersize=10, markerfacecolor="none",
            markeredgecolor="#d62728", markeredgewidth=1.6)
    ax.set_xlabel("k (clusters found, for methods that find k)")
    ax.set_ylabel(criterion.replace("_", "-"))
    ax.legend(fontsize=7, frameon=False, loc="best")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def k_curve_figure(ks: Sequence[int], scores: Sequence[float | None], best: int | None,
                   criterion: str) -> Figure:
    """The label-free score of each k of a sweep, the chosen k marked.

    Parameters
    ----------
    ks : sequence of int
        The k values tried, ascending.
    scores : sequence of float or None
        Score of each (None or NaN where it could not be computed).
    best : int or None
        The chosen k.
    criterion : str
        Name of the score, for the axis.
    """
    fig = new_figure(5.5, 2.8)
    ax = fig.add_subplot()
    y = np.array([np.nan if s is None else float(s) for s in scores], dtype=np.float64)
    ax.plot(ks, y, marker="o", markersize=4, color="#2a6fdb", linewidth=1.2)
    if best is not None and best in ks:
        yb = y[list(ks).index(best)]
        ax.plot([best], [yb], marker="o", markersize=9, markerfacecolor="none",
                markeredgecolor="#d62728", markeredgewidth=1.6)
        ax.annotate(f"k = {best}", xy=(best, yb), xytext=(6, 6), textcoords="offset points",
                    fontsize=8, color="#d62728")
    ax.set_xlabel("k")
    ax.set_ylabel(criterion.replace("_", "-"))
    ax.spines[["top", "right"]].set_visible(False)
    return fig
