"""Order, colours and small helpers every section of a run's report shares, so a cluster
looks the same (same place, same colour, same name) wherever it appears."""

from __future__ import annotations

from dataclasses import dataclass

from deepclust.report.core import ReportContext
from deepclust.report.data import NOISE, ClusterSummary, RunData, cluster_order, cluster_summaries
from deepclust.report.template import render


def share(fraction: float) -> str:
    """A share of a cluster, rounded to whole percents; "<1 %" rather than "0 %"."""
    return "<1 %" if 0 < fraction < 0.005 else f"{100 * fraction:.0f} %"


def cluster_name(c: int) -> str:
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

        data = need_data(ctx)
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


def need_data(ctx: ReportContext) -> RunData:
    if ctx.data is None:
        raise ValueError("this section reports on a clustering run; the context has no run data")
    return ctx.data


def note(text: str) -> str:
    return render('<p class="note">{{ t }}</p>', t=text)
