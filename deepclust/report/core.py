"""The report's skeleton: sections, the context they read, and the page they end up in.

A *section* is a function ``section(ctx) -> Section | None``. It reads what it needs from the
:class:`ReportContext` (the run's data, the options, values other sections computed in
``ctx.cache``), writes its figure and image files under ``ctx.assets_dir`` (use
:meth:`ReportContext.figure` and :meth:`ReportContext.asset`), and returns its HTML and the
list of files it wrote; None means "does not apply to this run" and leaves no trace.
:func:`render_report` runs a list of sections in order and assembles the page, so a new kind
of run (DeepCluster's NMI curves, a benchmark's pivot tables) adds its own section functions
without touching the others.
"""

from __future__ import annotations

import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from deepclust.errors import OutputError
from deepclust.report.data import RunData

#: Name of the page inside the report folder.
PAGE_NAME = "report.html"
#: The report folder's manifest: sections, their files and timings.
MANIFEST_NAME = "report.json"
ASSETS = "assets"


@dataclass
class Section:
    """What a section function returns.

    Attributes
    ----------
    id : str
        Anchor of the section in the page (letters, digits, ``-``); unique in a report.
    title : str
        Heading, also the link text in the page's table of contents.
    html : str
        The section's body. Plain ``str`` is escaped; return :class:`markupsafe.Markup`
        (e.g. from :func:`deepclust.report.template.render`) for HTML.
    files : list of str
        Files the section wrote, relative to the report folder (``assets/...``).
    """

    id: str
    title: str
    html: str
    files: list[str] = field(default_factory=list)


SectionFunction = Callable[["ReportContext"], "Section | None"]


@dataclass
class ReportOptions:
    """Settings of a report.

    Attributes
    ----------
    per_page : int
        Thumbnails per gallery page (0: no galleries); every member of a cluster is on one
        of its pages, nearest the centre first.
    cols : int
        Thumbnails per row of a gallery page.
    max_thumbs : int
        Thumbnails in all the galleries at most; above it each cluster shows its members
        nearest the centre (the page says so).
    max_galleries : int
        Galleries shown at most; beyond it, the largest clusters are shown.
    map_points : int
        Points of the interactive map at most (a seeded subset above it).
    top_outliers : int
        Thumbnails in the outliers section.
    thumb_target, thumb_max : int
        Tile size rules (see :func:`deepclust.report.images.tile_size_for`).
    """

    per_page: int = 48
    cols: int = 8
    max_thumbs: int = 20_000
    max_galleries: int = 100
    map_points: int = 20_000
    top_outliers: int = 24
    thumb_target: int = 64
    thumb_max: int = 96


@dataclass
class ReportContext:
    """Everything a section may read, and where it writes.

    Attributes
    ----------
    out_dir : Path
        The report folder (``report.html`` + ``assets/``).
    title : str
        Title of the page.
    data : RunData or None
        The run, for sections about one clustering; None for reports of something else
        (a benchmark), whose sections read ``extra``.
    options : ReportOptions
    extra : dict
        Anything a caller passes to its own sections.
    cache : dict
        Values sections share (the cluster order, colours, ...), filled on first use.
    log : callable
        Progress messages (``print`` to stderr by default; a no-op to silence).
    """

    out_dir: Path
    title: str = "deepclust report"
    data: RunData | None = None
    options: ReportOptions = field(default_factory=ReportOptions)
    extra: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr,
                                                                 flush=True))

    @property
    def assets_dir(self) -> Path:
        return self.out_dir / ASSETS

    def asset(self, *parts: str) -> tuple[Path, str]:
        """A file under ``assets/``: its path, and its link relative to the page.

        Parameters
        ----------
        *parts : str
            Sub-folders and file name, e.g. ``("thumbs", "cluster-003.png")``.
        """
        path = self.assets_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, "/".join((ASSETS, *parts))

    def figure(self, fig: Any, name: str) -> SavedFigure:
        """Save a matplotlib figure as ``assets/figures/<name>.png``.

        The PNG has 150 pixels per inch of figure, and the page shows it at the figure's
        size in CSS inches (96 px), so text reads at its intended size and stays sharp on
        high-density screens.
        """
        from deepclust.report.figures import save_png

        path, link = self.asset("figures", f"{name}.png")
        save_png(fig, path)
        w, h = fig.get_size_inches()
        return SavedFigure(link, round(w * 96), round(h * 96))


@dataclass
class SavedFigure:
    """A figure written under ``assets/figures``: its link and its display size (CSS px)."""

    link: str
    width: int
    height: int

    def img(self, alt: str) -> Markup:
        """The ``<img>`` element that shows it."""
        from deepclust.report.template import render

        return render('<img class="fig" src="{{ f.link }}" width="{{ f.width }}" '
                      'height="{{ f.height }}" alt="{{ alt }}">', f=self, alt=alt)


def _error_section(fn: SectionFunction, exc: BaseException) -> Section:
    from deepclust.report.template import render

    name = getattr(fn, "__name__", "section").removesuffix("_section").replace("_", "-")
    return Section(
        id=f"{name}-error", title=f"{name} (failed)",
        html=render('<p class="error">This section could not be made: '
                    "<code>{{ kind }}: {{ msg }}</code></p>", kind=type(exc).__name__, msg=exc),
    )


def render_report(
    ctx: ReportContext,
    sections: Sequence[SectionFunction],
    *,
    subtitle: str = "",
    cards: Sequence[dict] = (),
    manifest: dict | None = None,
) -> Path:
    """Run ``sections`` and write ``report.html``, ``report.json`` and ``assets/``.

    A section that raises does not stop the report: its place shows the error, and the
    manifest (``report.json``) lists it under ``errors``. A folder that cannot be written
    (full, read-only) does: :class:`~deepclust.errors.OutputError` naming it, and the page,
    manifest and assets of this report are removed rather than left half-written.

    Parameters
    ----------
    ctx : ReportContext
    sections : sequence of section functions
        In page order.
    subtitle : str
        Line under the title.
    cards : sequence of dict
        Headline numbers in the header: ``name``, ``value`` (text), ``help`` (tooltip).
    manifest : dict, optional
        More keys for ``report.json`` (a run's report adds ``input_found`` and
        ``warnings``).

    Returns
    -------
    Path
        The page, ``ctx.out_dir / "report.html"``.
    """
    from deepclust.runinfo import check_output_dir

    out = check_output_dir(Path(ctx.out_dir))  # a full or read-only disk: before any work
    try:
        return _render(ctx, out, sections, subtitle, cards, manifest)
    except OutputError:
        # nothing half-made left visible: the next run writes the report whole
        for name in (PAGE_NAME, MANIFEST_NAME):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / ASSETS, ignore_errors=True)
        raise


def _render(ctx: ReportContext, out: Path, sections: Sequence[SectionFunction],
            subtitle: str, cards: Sequence[dict], manifest: dict | None) -> Path:
    from deepclust.report.template import PAGE, render
    from deepclust.runinfo import now_iso, write_bytes, write_json
    from deepclust.version import __version__

    if (out / MANIFEST_NAME).is_file() and (out / ASSETS).is_dir():
        shutil.rmtree(out / ASSETS)  # a report folder we wrote before: no stale sprites
    done: list[Section] = []
    manifest_sections, errors = [], []
    for fn in sections:
        t = time.perf_counter()
        try:
            sec = fn(ctx)
        except OutputError:
            raise  # the disk, not the section: every later file would fail too
        except Exception as exc:  # one broken section must not cost the whole report
            ctx.log(f"report: section {getattr(fn, '__name__', fn)} failed: "
                    f"{type(exc).__name__}: {exc}")
            errors.append({"section": getattr(fn, "__name__", str(fn)),
                           "error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc(limit=-3)})
            sec = _error_section(fn, exc)
        seconds = time.perf_counter() - t
        if sec is None:
            continue
        if any(s.id == sec.id for s in done):
            raise ValueError(f"two sections have the id {sec.id!r}")
        done.append(sec)
        manifest_sections.append({"id": sec.id, "title": sec.title, "files": sec.files,
                                  "seconds": round(seconds, 3)})
    generated = now_iso()
    html = render(PAGE, title=ctx.title, subtitle=subtitle, cards=list(cards),
                  sections=[{"id": s.id, "title": s.title,
                             "html": s.html if isinstance(s.html, Markup) else Markup.escape(s.html)}
                            for s in done],
                  version=__version__, generated=generated)
    page = out / PAGE_NAME
    write_bytes(page, html.encode("utf-8"))  # atomic; no temporary file left on failure
    write_json(out / MANIFEST_NAME, {
        "title": ctx.title, "generated": generated, "deepclust": __version__,
        "page": PAGE_NAME, "sections": manifest_sections, "errors": errors,
        **(manifest or {}),
    })
    return page
