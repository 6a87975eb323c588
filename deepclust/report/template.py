"""The HTML of the report: one page template and small snippets, rendered with jinja2.

Everything the page needs is here or under ``assets/``: the CSS and the one script are
inline, images are relative links, and nothing is fetched from the network, so the folder
opens from ``file://`` on a machine without internet. The script pages the galleries
(swapping in ``<template class="gpage">`` pages), draws the interactive map of each
``.dc-map`` from the JSON embedded in it (and sets its ``data-points``), and runs the
self-check below.

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
a.sheet-cell, .sheet a { position:absolute; display:block; }
.sheet a:hover { outline:2px solid var(--accent); }
.sheet a.off { box-shadow:inset 0 0 0 2px var(--bad); }
.gcard[data-mixed] { border-color:#e8a33d; }
.flag { font-size:11px; font-weight:600; color:#8a5200; background:#fdf0d8; border-radius:8px;
        padding:0 7px; }
.gorder { font-size:11px; color:var(--muted); margin:0 0 4px; }
.pager { display:flex; align-items:center; gap:10px; margin-top:6px; font-size:12px;
         color:var(--muted); }
.pager button, .mapbar button, .legend button { font:inherit; font-size:12px; border:1px solid var(--line);
         background:#fff; border-radius:4px; padding:2px 8px; cursor:pointer; color:var(--fg); }
.pager button[disabled] { opacity:.4; cursor:default; }
.dupes .sheet { margin-bottom:6px; }
.dc-map .mapbar { display:flex; gap:6px; align-items:center; margin-bottom:6px; }
.dc-map .mapwrap { position:relative; border:1px solid var(--line); border-radius:6px;
         background:#fcfcfd; width:100%; max-width:1100px; }
.dc-map canvas { display:block; width:100%; height:560px; cursor:grab; }
.dc-map canvas.dragging { cursor:grabbing; }
.maptip { position:absolute; pointer-events:none; background:#fff; border:1px solid var(--line);
         border-radius:6px; padding:6px; box-shadow:0 2px 8px rgba(0,0,0,.15); font-size:12px;
         max-width:260px; word-break:break-all; }
.maptip .mthumb { margin-bottom:4px; }
.legend { display:flex; flex-wrap:wrap; gap:4px; margin-top:6px; }
.legend button { display:inline-flex; align-items:center; gap:5px; }
.legend button.on { border-color:var(--accent); background:#eef4ff; }
dl { margin:6px 0; font-size:13px; } dt { font-weight:600; margin-top:6px; }
dd { margin:0 0 0 14px; color:var(--muted); }
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
document.querySelectorAll(".gcard[data-per-page]").forEach(function (card) {
  var pages = card.querySelectorAll("template.gpage");
  if (pages.length < 2) return;
  var live = card.querySelector(".gpage-live"), info = card.querySelector(".pinfo");
  var prev = card.querySelector('button[data-step="-1"]'), next = card.querySelector('button[data-step="1"]');
  var per = +card.getAttribute("data-per-page"), total = +card.getAttribute("data-shown"), cur = 0;
  function show(i) {
    cur = Math.max(0, Math.min(pages.length - 1, i));
    live.textContent = "";
    live.appendChild(pages[cur].content.cloneNode(true));
    info.textContent = "page " + (cur + 1) + " of " + pages.length + " \u00b7 images " +
      (cur * per + 1) + "\u2013" + Math.min(total, (cur + 1) * per) + " of " + total;
    prev.disabled = cur === 0; next.disabled = cur === pages.length - 1;
  }
  prev.addEventListener("click", function () { show(cur - 1); });
  next.addEventListener("click", function () { show(cur + 1); });
});
document.querySelectorAll(".dc-map").forEach(function (box) {
  var d = JSON.parse(box.querySelector('script[type="application/json"]').textContent);
  var cv = box.querySelector("canvas"), tip = box.querySelector(".maptip"), g = cv.getContext("2d");
  var n = d.x.length, s = 1, tx = 0, ty = 0, hl = -1, pad = 14, W = 0, H = 0, drag = null, moved = false;
  function size() {
    var dpr = window.devicePixelRatio || 1;
    W = cv.clientWidth || 900; H = cv.clientHeight || 560;
    cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr);
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
  }
  function sx(i) { return (pad + d.x[i] * (Math.min(W, H) - 2 * pad) + (W - Math.min(W, H)) / 2) * s + tx; }
  function sy(i) { return (pad + (1 - d.y[i]) * (Math.min(W, H) - 2 * pad)) * s + ty; }
  function draw() {
    g.clearRect(0, 0, W, H);
    var z = Math.min(3, Math.sqrt(s));
    for (var i = 0; i < n; i++) {
      var c = d.clusters[d.c[i]], x = sx(i), y = sy(i);
      if (x < -5 || y < -5 || x > W + 5 || y > H + 5) continue;
      g.globalAlpha = hl < 0 || hl === d.c[i] ? 0.85 : 0.12;
      g.fillStyle = c.colour;
      g.beginPath(); g.arc(x, y, (c.small ? 4 : 2.2) * z, 0, 6.2832); g.fill();
      if (c.small) { g.strokeStyle = "#1d2330"; g.lineWidth = 1; g.stroke(); }
    }
    g.globalAlpha = 1;
  }
  function nearest(mx, my) {
    var best = -1, bd = 81;
    for (var i = 0; i < n; i++) {
      if (hl >= 0 && hl !== d.c[i]) continue;
      var dx = sx(i) - mx, dy = sy(i) - my, q = dx * dx + dy * dy;
      if (q < bd) { bd = q; best = i; }
    }
    return best;
  }
  function zoom(f, mx, my) { s *= f; tx = mx - (mx - tx) * f; ty = my - (my - ty) * f; draw(); }
  function at(e) { var r = cv.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
  cv.addEventListener("wheel", function (e) { e.preventDefault(); var p = at(e); zoom(e.deltaY < 0 ? 1.25 : 0.8, p[0], p[1]); }, {passive: false});
  cv.addEventListener("mousedown", function (e) { drag = at(e); moved = false; cv.classList.add("dragging"); });
  window.addEventListener("mouseup", function () { drag = null; cv.classList.remove("dragging"); });
  cv.addEventListener("mousemove", function (e) {
    var p = at(e);
    if (drag) { tx += p[0] - drag[0]; ty += p[1] - drag[1]; moved = moved || Math.abs(p[0] - drag[0]) + Math.abs(p[1] - drag[1]) > 2; drag = p; tip.hidden = true; draw(); return; }
    var i = nearest(p[0], p[1]);
    if (i < 0) { tip.hidden = true; return; }
    tip.textContent = "";
    var t = d.t[i];
    if (t && d.tile) {
      var th = document.createElement("div"); th.className = "mthumb";
      th.style.width = th.style.height = d.tile + "px";
      th.style.background = 'url("' + d.sheets[t[0]] + '") -' + t[1] + "px -" + t[2] + "px no-repeat";
      tip.appendChild(th);
    }
    var label = document.createElement("div");
    label.textContent = d.n[i] + " \u00b7 " + d.clusters[d.c[i]].name;
    tip.appendChild(label);
    tip.hidden = false;
    tip.style.left = Math.min(p[0] + 12, W - 200) + "px"; tip.style.top = (p[1] + 12) + "px";
  });
  cv.addEventListener("mouseleave", function () { tip.hidden = true; });
  cv.addEventListener("click", function (e) {
    if (moved) return;
    var p = at(e), i = nearest(p[0], p[1]);
    if (i >= 0 && d.u[i]) window.open(d.u[i], "_blank");
  });
  cv.addEventListener("dblclick", function () { s = 1; tx = ty = 0; draw(); });
  box.querySelectorAll(".mapbar button").forEach(function (b) {
    b.addEventListener("click", function () {
      var f = +b.getAttribute("data-zoom");
      if (f === 0) { s = 1; tx = ty = 0; draw(); } else { zoom(f, W / 2, H / 2); }
    });
  });
  box.querySelectorAll(".legend button").forEach(function (b) {
    b.addEventListener("click", function () {
      var c = +b.getAttribute("data-c");
      hl = hl === c ? -1 : c;
      box.querySelectorAll(".legend button").forEach(function (o) { o.classList.toggle("on", +o.getAttribute("data-c") === hl); });
      draw();
    });
  });
  size(); draw();
  window.addEventListener("resize", function () { size(); draw(); });
  box.setAttribute("data-points", String(n));
});
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
