"""The HTML of the report: one page template and small snippets, rendered with jinja2.

Everything the page needs is here or under ``assets/``: the CSS and the one script are
inline, images are relative links, and nothing is fetched from the network, so the folder
opens from ``file://`` on a machine without internet.

The script at the end of the page checks, once the page has loaded, that every image decoded
(``complete && naturalWidth > 0``) and writes the result and the page's load time
(navigation timing: ``loadEventEnd - startTime``) as ``data-`` attributes of ``<body>``:
``data-ready``, ``data-images``, ``data-broken-images``, ``data-broken-list`` and
``data-load-ms``. The browser test and ``benchmarks/report_load.py`` read them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from markupsafe import Markup

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="deepclust {{ version }}">
<title>{{ title }} · deepclust report</title>
<style>
:root { --fg:#1d2330; --muted:#5d6677; --line:#e2e5ea; --bg:#f5f6f8; --card:#fff;
        --accent:#2a6fdb; --bad:#d62728; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--fg); background:var(--bg); }
header.top { background:#1d2330; color:#fff; padding:18px 28px 14px; }
header.top h1 { margin:0; font-size:20px; font-weight:600; }
header.top .sub { color:#b8c0cf; font-size:13px; margin-top:2px; }
.cards { display:flex; flex-wrap:wrap; gap:10px; margin-top:12px; }
.card-num { background:#2b3344; border-radius:6px; padding:6px 12px; min-width:92px; }
.card-num .v { font-size:18px; font-weight:600; font-variant-numeric:tabular-nums; }
.card-num .k { font-size:11px; color:#b8c0cf; text-transform:uppercase; letter-spacing:.04em; }
nav.toc { position:sticky; top:0; z-index:5; background:#fff; border-bottom:1px solid var(--line);
          padding:8px 28px; display:flex; flex-wrap:wrap; gap:4px 16px; font-size:13px; }
nav.toc a { color:var(--accent); text-decoration:none; }
nav.toc a:hover { text-decoration:underline; }
main { max-width:1280px; margin:0 auto; padding:18px 28px 40px; }
section.report-section { background:var(--card); border:1px solid var(--line); border-radius:8px;
          padding:16px 20px 18px; margin-bottom:18px; scroll-margin-top:48px; }
section.report-section > h2 { margin:0 0 10px; font-size:17px; font-weight:600; }
p.note { color:var(--muted); margin:6px 0; font-size:13px; }
.error { border-left:4px solid var(--bad); background:#fdf0f0; padding:8px 12px; }
table.t { border-collapse:collapse; font-size:13px; margin:4px 0 8px; }
table.t th, table.t td { padding:4px 10px; border-bottom:1px solid var(--line); text-align:left;
          vertical-align:top; }
table.t th { font-weight:600; color:var(--muted); font-size:12px; }
table.t td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.t tr.hl td { background:#eef4ff; }
.two { display:flex; flex-wrap:wrap; gap:8px 36px; align-items:flex-start; }
.cols { display:flex; flex-wrap:wrap; gap:8px 36px; align-items:flex-start; }
.cols > div { flex:1 1 460px; min-width:0; }
.cols h3 { font-size:14px; margin:4px 0; }
img.fig { max-width:100%; height:auto; display:block; margin:6px 0; }
details { margin-top:6px; }
summary { cursor:pointer; color:var(--accent); font-size:13px; }
.tag { display:inline-block; font-size:11px; padding:0 6px; border-radius:8px; background:#e8ecf3;
       color:var(--muted); margin-left:4px; }
.gallery-grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr));
                gap:14px; }
.gcard { border:1px solid var(--line); border-radius:6px; padding:10px 12px; }
.gcard h3 { margin:0; font-size:14px; display:flex; align-items:center; gap:8px; }
.chip { width:12px; height:12px; border-radius:3px; display:inline-block; flex:none; }
.gmeta { font-size:12px; color:var(--muted); margin:2px 0 8px; }
.gmeta b { color:var(--fg); font-weight:600; }
.sheetrow { display:grid; grid-template-columns:54px minmax(0,1fr); gap:6px; align-items:start; }
.caps { display:grid; font-size:11px; color:var(--muted); line-height:1.15; align-self:stretch; }
.caps span { display:flex; align-items:center; }
.sheet { position:relative; width:fit-content; max-width:100%; }
.sheet img { display:block; max-width:100%; height:auto; image-rendering:pixelated; }
.sheet i { position:absolute; }
.sheet i:hover { outline:2px solid var(--accent); }
.sheet i.off { box-shadow:inset 0 0 0 2px var(--bad); }
footer { color:var(--muted); font-size:12px; text-align:center; padding:0 0 24px; }
@media print { nav.toc { display:none; } section.report-section { break-inside:avoid; } }
</style>
</head>
<body data-ready="false">
<header class="top">
  <h1>{{ title }}</h1>
  <div class="sub">{{ subtitle }}</div>
  {% if cards %}<div class="cards">{% for c in cards %}
    <div class="card-num" title="{{ c.help }}"><div class="v">{{ c.value }}</div><div class="k">{{ c.name }}</div></div>
  {% endfor %}</div>{% endif %}
</header>
<nav class="toc">{% for s in sections %}<a href="#{{ s.id }}">{{ s.title }}</a>{% endfor %}</nav>
<main>
{% for s in sections %}
<section class="report-section" id="{{ s.id }}" data-section="{{ s.id }}">
  <h2>{{ s.title }}</h2>
  {{ s.html }}
</section>
{% endfor %}
</main>
<footer>deepclust {{ version }} · generated {{ generated }} · a self-contained folder:
report.html + assets/, no network access needed</footer>
<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var imgs = Array.prototype.slice.call(document.images);
    var broken = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
    var b = document.body;
    b.setAttribute("data-images", String(imgs.length));
    b.setAttribute("data-broken-images", String(broken.length));
    b.setAttribute("data-broken-list", broken.map(function (im) { return im.getAttribute("src"); }).join(" "));
    var nav = performance.getEntriesByType ? performance.getEntriesByType("navigation")[0] : null;
    var ms = nav ? nav.loadEventEnd - nav.startTime
                 : performance.timing.loadEventEnd - performance.timing.navigationStart;
    b.setAttribute("data-load-ms", String(Math.round(ms)));
    b.setAttribute("data-ready", "true");
  }, 0);
});
</script>
</body>
</html>
"""


@lru_cache(maxsize=1)
def environment():
    """The jinja2 environment of the report (autoescaping on)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = format_number
    env.filters["pct"] = format_percent
    return env


def render(source: str, **context: Any) -> Markup:
    """Render a template string with autoescaping; the result is safe to embed.

    Parameters
    ----------
    source : str
        jinja2 template text.
    **context
        Template variables. Values are escaped unless they are :class:`markupsafe.Markup`.
    """
    return Markup(environment().from_string(source).render(**context))


def format_number(value: Any, digits: int = 3) -> str:
    """A score for display: ``digits`` decimals, integers as is, missing or NaN as a dash.

    Examples
    --------
    >>> format_number(0.12345), format_number(None), format_number(float("nan")), format_number(7)
    ('0.123', '—', '—', '7')
    """
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v or v in (float("inf"), float("-inf")):
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}".replace(",", " ")
    return f"{v:.{digits}f}"


def format_percent(value: Any, digits: int = 1) -> str:
    """A fraction as a percentage (``0.961`` → ``96.1 %``); missing as a dash."""
    if value is None:
        return "—"
    v = float(value)
    if v != v:
        return "—"
    return f"{100 * v:.{digits}f} %"
