"""HTML reports of clustering runs, with static PNG figures for papers.

``write_report(run_dir)`` turns the folder of a ``deepclust cluster`` or ``deepclust demo`` run
into a report folder (``RUN_DIR/report`` by default)::

    report/
      report.html            the page: open it from file://, nothing is fetched from the network
      report.json            manifest: sections, the files each wrote, timings, errors
      assets/figures/*.png   the plots (matplotlib, 150 dpi), usable as they are in a paper
      assets/thumbs/*.png    one sprite sheet of thumbnails per gallery page (and for duplicates, outliers)

"Self-contained" means that folder: copy or zip it whole. Images are files beside the page
rather than base64 inside it, which keeps a 10 000-image report quick to open.

The page is a list of *sections*; each is a function ``section(ctx) -> Section | None``
(see :mod:`deepclust.report.core`). :data:`DEFAULT_SECTIONS` are the ones for a run; other
runners (benchmarks, DeepCluster training) add their own functions to the list, or call
:func:`render_report` with only theirs.

Examples
--------
>>> from deepclust.report import write_report                       # doctest: +SKIP
>>> write_report("runs/km")                                          # doctest: +SKIP
PosixPath('runs/km/report/report.html')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepclust.report.core import (
    ReportContext,
    ReportOptions,
    Section,
    SectionFunction,
    render_report,
)
from deepclust.report.data import RunData, load_run, outside_warning
from deepclust.report.sections import DEFAULT_SECTIONS
from deepclust.report.template import format_number

__all__ = [
    "DEFAULT_SECTIONS",
    "ReportContext",
    "ReportOptions",
    "RunData",
    "Section",
    "SectionFunction",
    "load_run",
    "render_report",
    "write_report",
]

_CARDS = (
    ("ami", "AMI", "adjusted mutual information with the true labels"),
    ("acc", "ACC", "accuracy under the Hungarian cluster-to-class matching"),
    ("nmi", "NMI", "normalised mutual information"),
    ("ari", "ARI", "adjusted Rand index"),
)


def _cards(data: RunData) -> list[dict]:
    cards = []
    m = data.metrics or {}
    for key, name, help_ in _CARDS:
        if m.get(key) is not None:
            cards.append({"name": name, "value": format_number(m[key]), "help": help_})
    lf = data.label_free or {}
    if lf.get("umap_silhouette") is not None:
        cards.append({"name": "UMAP-sil", "value": format_number(lf["umap_silhouette"]),
                      "help": "label-free proxy: silhouette in a UMAP space"})
    n_clusters = len({int(c) for c in data.labels.tolist() if c != -1})
    cards.append({"name": "clusters", "value": str(n_clusters), "help": "noise not counted"})
    cards.append({"name": "images" if data.images is not None else "rows",
                  "value": format_number(data.n_samples), "help": "rows clustered"})
    return cards


def write_report(
    run: str | Path | RunData,
    out_dir: str | Path | None = None,
    *,
    sections: Sequence[SectionFunction] | None = None,
    options: ReportOptions | None = None,
    pipeline: int | None = None,
    features: Any = None,
    extra: dict | None = None,
    log: Callable[[str], None] | None = None,
    follow_outside: bool = False,
) -> Path:
    """Write the report of a run; return the path of ``report.html``.

    Parameters
    ----------
    run : path or RunData
        A run folder (holding ``run.json``) or a run already loaded with :func:`load_run`.
    out_dir : path, optional
        Report folder; default ``RUN_DIR/report``. Files of an earlier report there are
        replaced.
    sections : sequence of section functions, optional
        Default :data:`DEFAULT_SECTIONS`. A benchmark runner passes
        ``[*DEFAULT_SECTIONS, its_section]``, or calls :func:`render_report` itself.
    options : ReportOptions, optional
        Gallery sizes and thumbnail rules.
    pipeline : int, optional
        Demo runs: rank of the pipeline to detail (default 1, the best by AMI).
    features : FeatureSet, array or dict, optional
        The run's features, when the caller still holds them (see :func:`load_run`).
    extra : dict, optional
        Passed to sections as ``ctx.extra``.
    log : callable, optional
        Receives progress messages; default: print to stderr.
    follow_outside : bool
        Read image files wherever the run names them, not only inside the folder its store
        recorded (see :func:`load_run`).

    Returns
    -------
    Path
    """
    data = run if isinstance(run, RunData) else load_run(run, pipeline=pipeline,
                                                         features=features,
                                                         follow_outside=follow_outside)
    out = Path(out_dir) if out_dir is not None else data.run_dir / "report"
    kwargs = {} if log is None else {"log": log}
    ctx = ReportContext(out, title=data.title, data=data, options=options or ReportOptions(),
                        extra=dict(extra or {}), **kwargs)
    what = "demo" if data.command == "demo" else "cluster run"
    subtitle = f"deepclust {what} · {data.run_dir}"
    return render_report(ctx, list(sections or DEFAULT_SECTIONS), subtitle=subtitle,
                         cards=_cards(data), manifest=_manifest(data))


def _manifest(data: RunData) -> dict:
    """What ``report.json`` says about missing inputs (``deepclust report`` prints it)."""
    warnings = []
    if not data.input_found:
        warnings.append(data.notes.get("input", "the run's input was not found"))
    if data.missing:
        m = data.missing
        warnings.append(f"{m['expected'] - m['found']} of {m['expected']} image files not "
                        f"found (looked in {', '.join(m['looked_in'])})")
    if data.outside:
        warnings.append(outside_warning(data.outside))
    return {"input_found": data.input_found, "warnings": warnings}

