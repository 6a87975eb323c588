"""The benchmark's report: pivot tables and plots, through the report package's section hook.

Three section functions read ``ctx.extra["bench"]`` (a dict with ``rows``, the results, and
optionally ``config`` and ``metrics``) and return None without it, so they can sit in any
list of sections:

- :func:`bench_setup_section` -- what was run: features, benchmarks (sizes, k, imbalance),
  methods, seeds;
- :func:`bench_results_section` -- per metric, the pivot table (mean ± std over seeds) and a
  grouped bar chart with the std as error bars;
- :func:`bench_non_primary_section` -- how often non-primary clusters name a true ancestor,
  beside the chance level, as a table and a plot.

:func:`write_bench_report` renders them with :func:`deepclust.report.render_report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepclust.bench.tables import format_delta, mean_std, non_primary_table, pivot
from deepclust.report.core import ReportContext, Section, render_report
from deepclust.report.template import render

__all__ = ["BENCH_SECTIONS", "bench_non_primary_section", "bench_results_section",
           "bench_setup_section", "write_bench_report"]

_METRIC_NAMES = {"acc": "ACC", "nmi": "NMI", "ami": "AMI", "ari": "ARI", "purity": "purity",
                 "homogeneity": "homogeneity", "completeness": "completeness"}


def _bench(ctx: ReportContext) -> dict | None:
    b = ctx.extra.get("bench")
    return b if b and b.get("rows") else None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


def bench_setup_section(ctx: ReportContext) -> Section | None:
    """Features, benchmarks with their sizes, methods and seeds."""
    b = _bench(ctx)
    if b is None:
        return None
    rows = b["rows"]
    benches: dict[tuple, dict] = {}
    for r in rows:
        key = (r["features"], r["benchmark"])
        e = benches.setdefault(key, {"features": r["features"], "benchmark": r["benchmark"],
                                     "type": r.get("benchmark_type"), "n": [], "k": [],
                                     "ratio": [], "seeds": set()})
        e["n"].append(r.get("subset_n_samples"))
        e["k"].append(r.get("subset_n_classes"))
        e["ratio"].append(r.get("subset_imbalance_ratio"))
        e["seeds"].add(r.get("seed"))
    table = []
    for e in benches.values():
        ns = sorted({n for n in e["n"] if n is not None})
        table.append({**e, "n": " / ".join(map(str, ns)) if len(ns) <= 3 else
                      f"{min(ns)}–{max(ns)}", "k": max(k for k in e["k"] if k is not None),
                      "ratio": max(x for x in e["ratio"] if x is not None),
                      "seeds": ", ".join(map(str, sorted(e["seeds"])))})
    methods = list(dict.fromkeys((r["method"], r.get("method_name"), r.get("params"),
                                  r.get("baseline")) for r in rows))
    html = render("""
<table class="t"><tr><th>features</th><th>benchmark</th><th>type</th><th>images</th>
<th>k (classes)</th><th>imbalance (max/min)</th><th>seeds</th></tr>
{% for t in table %}<tr><td>{{ t.features }}</td><td>{{ t.benchmark }}</td><td>{{ t.type }}</td>
<td class="num">{{ t.n }}</td><td class="num">{{ t.k }}</td><td class="num">{{ t.ratio | num(1) }}</td>
<td>{{ t.seeds }}</td></tr>{% endfor %}</table>
<table class="t"><tr><th>method</th><th>clusterer</th><th>parameters</th></tr>
{% for m in methods %}<tr><td>{{ m[0] }}{% if m[3] %} <span class="tag">baseline</span>{% endif %}</td>
<td>{{ m[1] }}</td><td><code>{{ m[2] }}</code></td></tr>{% endfor %}</table>
<p class="note">k is the benchmark's number of classes unless the config chose it without labels
(<code>k: auto</code>). Results: {{ path }}.</p>""", table=table, methods=methods,
                  path=str(b.get("results_path", "results.parquet")))
    return Section("bench-setup", "Benchmarks", html)


def _bar_figure(table: list[dict], methods: list[str], metric: str, row_label):
    from deepclust.report.figures import new_figure, palette

    n_rows = len(table)
    fig = new_figure(max(5.5, 0.9 * n_rows * max(1, len(methods)) * 0.45 + 2.0), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(methods))
    colours = palette(len(methods))
    x = np.arange(n_rows)
    for i, m in enumerate(methods):
        means = [t[m]["mean"] for t in table]
        stds = [0.0 if not math.isfinite(t[m]["std"]) else t[m]["std"] for t in table]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               color=colours[i], label=m, zorder=3)
    ax.set_xticks(x, [row_label(t) for t in table], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"{_METRIC_NAMES.get(metric, metric)} (mean ± std over seeds)")
    ax.set_ylim(0, 1)
    ax.grid(True, axis="y", color="#eee", zorder=0)
    fig.legend(loc="outside upper center", fontsize=8, frameon=False,
               ncols=min(5, len(methods)))
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def bench_results_section(ctx: ReportContext) -> Section | None:
    """Per metric: the pivot table (mean ± std over seeds) and a grouped bar chart."""
    b = _bench(ctx)
    if b is None:
        return None
    metrics = list(b.get("metrics") or ["acc", "nmi", "ami"])
    keys = ("features", "benchmark")
    blocks, files = [], []
    for metric in metrics:
        table, methods = pivot(b["rows"], metric, row_keys=keys)
        table = [t for t in table if any(t[m]["n"] for m in methods)]
        if not table:
            continue
        shown = [k for k in keys[:-1] if len({t[k] for t in table}) > 1] + [keys[-1]]

        def label(t, shown=shown):
            return " · ".join(str(t[k]) for k in shown)

        fig = ctx.figure(_bar_figure(table, methods, metric, label), f"bench-{_slug(metric)}")
        files.append(fig.link)
        cells = []
        for t in table:
            means = [t[m]["mean"] for m in methods if t[m]["n"]]
            best = max(means) if len(means) > 1 else None
            cells.append({"label": [t[k] for k in shown],
                          "vals": [(t[m]["mean"], t[m]["std"], t[m]["n"],
                                    best is not None and t[m]["n"]
                                    and round(t[m]["mean"], 3) == round(best, 3))
                                   for m in methods]})
        blocks.append(render("""
<h3>{{ name }}</h3>
<div class="cols"><div>
<table class="t"><tr>{% for k in shown %}<th>{{ k }}</th>{% endfor %}{% for m in methods %}<th>{{ m }}</th>{% endfor %}</tr>
{% for c in cells %}<tr>{% for v in c.label %}<td>{{ v }}</td>{% endfor %}
{% for mean, std, n, best in c.vals %}<td class="num">{% if n %}{% if best %}<b>{% endif %}{{ mean | num }} ± {{ std | num }}{% if best %}</b>{% endif %}{% else %}—{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table></div>
<div>{{ img }}</div></div>""", name=_METRIC_NAMES.get(metric, metric), shown=shown,
                             methods=methods, cells=cells,
                             img=fig.img(f"{metric} per benchmark and method")))
    if not blocks:
        return None
    paired = "ami" if "ami" in metrics else metrics[0]
    html = render("""{% for b in blocks %}{{ b }}{% endfor %}
<p class="note">Mean ± sample standard deviation over seeds; the best mean of a row is bold.
The first method column is the k-means baseline.</p>
<h3>{{ name }}: difference to the k-means baseline, paired by seed</h3>
<pre>{{ delta }}</pre>
<p class="note">Mean ± std of the per-seed differences: pairing removes what a seed's runs
share (for random benchmarks, the subset itself).</p>""", blocks=blocks,
                  name=_METRIC_NAMES.get(paired, paired), delta=format_delta(b["rows"], paired))
    return Section("bench-results", "Results (mean ± std over seeds)", html, files)


def _non_primary_figure(table: list[dict]):
    from deepclust.report.figures import new_figure

    fig = new_figure(max(5.5, 0.6 * len(table) + 2.5), 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(table))
    obs = [t["np_r2_ancestor"][0] for t in table]
    err = [t["np_r2_ancestor"][1] for t in table]
    chance = [t["np_r2_chance_ancestor"][0] for t in table]
    ax.bar(x - 0.2, obs, 0.4, yerr=err, capsize=2, color="#2a6fdb", label="rank 2 names an ancestor",
           zorder=3)
    ax.bar(x + 0.2, chance, 0.4, color="#b4b4b4", label="chance (random other cluster)", zorder=3)
    ax.set_xticks(x, [f"{t['benchmark']} · {t['method']}" for t in table], rotation=25,
                  ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of images")
    ax.grid(True, axis="y", color="#eee", zorder=0)
    fig.legend(loc="outside upper center", fontsize=8, frameon=False, ncols=2)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def bench_non_primary_section(ctx: ReportContext) -> Section | None:
    """How often an image's non-primary clusters name a true ancestor, against chance."""
    b = _bench(ctx)
    if b is None:
        return None
    table = non_primary_table(b["rows"])
    if not table or "np_r2_ancestor" not in table[0]:
        return None
    fig = ctx.figure(_non_primary_figure(table), "bench-non-primary")
    cols = [("np_r2_ancestor", "rank 2: ancestor"), ("np_r2_chance_ancestor", "chance"),
            ("np_r3_ancestor", "rank 3: ancestor"), ("np_r3_chance_ancestor", "chance"),
            ("np_any_ancestor", "any of 2..R: ancestor"), ("np_any_chance_ancestor", "chance"),
            ("np_r2_same", "rank 2: same class"), ("np_r2_chance_same", "chance")]
    cols = [c for c in cols if c[0] in table[0]]
    keys = [k for k in ("features", "benchmark", "method")
            if k != "features" or len({t[k] for t in table}) > 1]
    html = render("""
<div style="overflow-x:auto">
<table class="t"><tr>{% for k in keys %}<th>{{ k }}</th>{% endfor %}
<th>clusters named at</th>{% for k, h in cols %}<th>{{ h }}</th>{% endfor %}</tr>
{% for t in table %}<tr>{% for k in keys %}<td>{{ t[k] }}</td>{% endfor %}<td>{{ t.naming }}</td>
{% for k, h in cols %}<td class="num">{% if t[k][2] %}{{ t[k][0] | num }} ± {{ t[k][1] | num }}{% else %}—{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table></div>
{{ img }}
<p class="note">Each cluster is named by the majority class of its members at the level shown;
for every image, the clusters after its own (rank 2, 3, ... by the method's soft assignment:
probabilities, centroid distance or distance to the cluster mean) are checked against the
image's class and its ancestors. <b>Chance</b> is the rate for a cluster drawn uniformly
from the image's other clusters. Mean ± std over seeds.</p>""", cols=cols, table=table, keys=keys,
                  img=fig.img("non-primary clusters naming an ancestor, against chance"))
    return Section("bench-non-primary", "Non-primary clusters", html, [fig.link])


BENCH_SECTIONS = (bench_setup_section, bench_results_section, bench_non_primary_section)


def write_bench_report(out_dir: str | Path, rows: Sequence[dict], *, title: str = "Benchmark",
                       metrics: Sequence[str] = ("acc", "nmi", "ami"), config: dict | None = None,
                       results_path: str | None = None, log=None) -> Path:
    """Write the benchmark report (``report.html`` + ``assets/``) into ``out_dir``.

    Parameters
    ----------
    out_dir : path
    rows : sequence of dict
        Result rows (``ResultsFile.rows()``).
    title : str
    metrics : sequence of str
        Metrics that get a pivot table and a plot.
    config : dict, optional
        The raw config, shown for reference.
    results_path : str, optional
        Where the rows came from.

    Returns
    -------
    Path
        The page.
    """
    extra = {"bench": {"rows": list(rows), "metrics": list(metrics), "config": config,
                       "results_path": results_path}}
    kwargs = {} if log is None else {"log": log}
    ctx = ReportContext(Path(out_dir), title=title, extra=extra, **kwargs)
    n_seeds = len({r.get("seed") for r in rows})
    baseline = [r for r in rows if r.get("baseline")]
    cards = [{"name": "rows", "value": str(len(rows)), "help": "results"},
             {"name": "seeds", "value": str(n_seeds), "help": "seeds per cell"}]
    if baseline:
        m, _, _ = mean_std([r.get("ami") for r in baseline])
        cards.append({"name": "k-means AMI", "value": f"{m:.3f}",
                      "help": "mean over every k-means row"})
    return render_report(ctx, list(BENCH_SECTIONS), subtitle=f"deepclust bench · {out_dir}",
                         cards=cards)
