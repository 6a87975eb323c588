"""Pivot tables of benchmark results: mean ± std over seeds.

Rows are (features, benchmark), columns the pipelines (a method, with its reducer when the
method runs after several), cells ``mean ± std`` of one
metric over the seeds (sample standard deviation, ``ddof=1``; ``± 0`` for one seed). The
best mean of a row is marked ``*``; a cell with fewer seeds than the row's most shows
``(n=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepclust.tables import format_table

__all__ = ["format_delta", "format_non_primary", "format_pivot", "mean_std", "non_primary_table", "pipeline_labels",
           "pivot"]


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample std (0 for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def _ordered(values: list) -> list:
    return list(dict.fromkeys(values))


def _cell(mean: float, std: float, n: int, n_max: int, best: bool, digits: int = 3) -> str:
    if n == 0:
        return "-"
    text = f"{mean:.{digits}f} ± {std:.{digits}f}"
    if best:
        text += " *"
    if n < n_max:
        text += f" (n={n})"
    return text


def pipeline_labels(rows: Sequence[dict]) -> dict[tuple[str, str], str]:
    """Column name of each (method, reducer): the method's label, plus `` · reducer`` when
    that method runs after more than one reducer."""
    reducers: dict[str, list[str]] = {}
    for r in rows:
        reducers.setdefault(r["method"], [])
        if r.get("reducer") not in reducers[r["method"]]:
            reducers[r["method"]].append(r.get("reducer"))
    return {(m, red): m if len(reds) == 1 else f"{m} · {red}"
            for m, reds in reducers.items() for red in reds}


def pivot(rows: Sequence[dict], metric: str, *, row_keys: Sequence[str] = ("features",
          "benchmark")) -> tuple[list[dict], list[str]]:
    """Aggregate ``rows`` into a pivot of ``metric``.

    Returns
    -------
    table : list of dict
        One dict per pivot row: the ``row_keys`` and, per column, ``{"mean", "std", "n"}``.
    columns : list of str
        One per pipeline (method, and its reducer when a method runs after several), in
        first-seen order, the baseline first.
    """
    rows = [r for r in rows if metric in r]
    names = pipeline_labels(rows)
    col = [names[(r["method"], r.get("reducer"))] for r in rows]
    methods = _ordered(col)
    baseline = _ordered([c for c, r in zip(col, rows, strict=True) if r.get("baseline")])
    methods = baseline + [m for m in methods if m not in baseline]
    groups: dict[tuple, dict[str, list]] = {}
    for c, r in zip(col, rows, strict=True):
        g = groups.setdefault(tuple(r.get(k) for k in row_keys), {})
        g.setdefault(c, []).append(r.get(metric))
    table = []
    for key, by_method in groups.items():
        entry: dict[str, Any] = dict(zip(row_keys, key, strict=True))
        for m in methods:
            mean, std, n = mean_std(by_method.get(m, []))
            entry[m] = {"mean": mean, "std": std, "n": n}
        table.append(entry)
    return table, methods


def format_pivot(rows: Sequence[dict], metric: str, *, digits: int = 3,
                 row_keys: Sequence[str] = ("features", "benchmark")) -> str:
    """The pivot of ``metric`` as an aligned text table (see the module docstring)."""
    table, methods = pivot(rows, metric, row_keys=row_keys)
    if not table:
        return f"(no rows with {metric})"
    # drop row-key columns that hold a single value: they only repeat themselves
    # the last row key always; the others only when they vary (one value repeats itself)
    shown_keys = [k for k in row_keys[:-1] if len({t[k] for t in table}) > 1] + [row_keys[-1]]
    out = []
    for t in table:
        means = [t[m]["mean"] for m in methods if t[m]["n"]]
        best = max(means) if means else math.nan
        n_max = max((t[m]["n"] for m in methods), default=0)
        line = {k: t[k] for k in shown_keys}
        for m in methods:
            c = t[m]
            tie = c["n"] > 0 and round(c["mean"], digits) == round(best, digits)
            line[m] = _cell(c["mean"], c["std"], c["n"], n_max, len(means) > 1 and tie, digits)
        out.append(line)
    return format_table(out, [*shown_keys, *methods])


def format_delta(rows: Sequence[dict], metric: str, *, digits: int = 3,
                 row_keys: Sequence[str] = ("features", "benchmark")) -> str:
    """Each pipeline minus the k-means baseline, paired by seed: mean ± std of the differences.

    Pairing removes what the seeds share (for random benchmarks, the subset itself), so the
    spread shown is that of the difference, not of the scores.
    """
    rows = [r for r in rows if r.get(metric) is not None]
    names = pipeline_labels(rows)
    base_cols = _ordered([names[(r["method"], r.get("reducer"))] for r in rows if r.get("baseline")])
    if not base_cols:
        return "(no baseline rows)"
    base = base_cols[0]
    cols = [c for c in _ordered([names[(r["method"], r.get("reducer"))] for r in rows])
            if c != base]
    values: dict[tuple, dict[str, dict[int, float]]] = {}
    for r in rows:
        key = tuple(r.get(k) for k in row_keys)
        values.setdefault(key, {}).setdefault(names[(r["method"], r.get("reducer"))],
                                              {})[r.get("seed")] = r[metric]
    out = []
    shown = [k for i, k in enumerate(row_keys[:-1])
             if len({key[i] for key in values}) > 1] + [row_keys[-1]]
    for key, by_col in values.items():
        line: dict[str, Any] = {k: key[row_keys.index(k)] for k in shown}
        b = by_col.get(base, {})
        for c in cols:
            diffs = [v - b[s] for s, v in by_col.get(c, {}).items() if s in b]
            mean, std, n = mean_std(diffs)
            line[f"{c} - {base}"] = "-" if n == 0 else f"{mean:+.{digits}f} ± {std:.{digits}f}"
        out.append(line)
    return format_table(out, [*shown, *(f"{c} - {base}" for c in cols)])


def non_primary_table(rows: Sequence[dict]) -> list[dict]:
    """Non-primary analysis per (features, benchmark, pipeline), mean ± std over seeds.

    Columns: the naming level, then for rank 2 the ancestor rate and its chance level, for
    rank 3 the same, and over ranks 2..R ("any").
    """
    rows = [r for r in rows if r.get("np_naming") is not None]
    names = pipeline_labels(rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r.get("features"), r.get("benchmark"), names[(r["method"], r.get("reducer"))])
        groups.setdefault(key, []).append(r)
    row_keys = ("features", "benchmark", "method")
    cols = [c for c in ("np_r1_ancestor", "np_r1_same", "np_r2_ancestor", "np_r2_chance_ancestor",
                        "np_r2_same", "np_r2_chance_same", "np_r3_ancestor",
                        "np_r3_chance_ancestor", "np_any_ancestor", "np_any_chance_ancestor",
                        "np_r2_unrelated", "np_r2_chance_unrelated")
            if any(c in r for r in rows)]
    out = []
    for key, rs in groups.items():
        entry: dict[str, Any] = dict(zip(row_keys, key, strict=True))
        entry["naming"] = rs[0]["np_naming"]
        entry["seeds"] = len(rs)
        for c in cols:
            entry[c] = mean_std([r.get(c) for r in rs])
        out.append(entry)
    return out


_NP_HEADERS = {
    "np_r1_ancestor": "r1 ancestor", "np_r1_same": "r1 same",
    "np_r2_ancestor": "r2 ancestor", "np_r2_chance_ancestor": "chance",
    "np_r2_same": "r2 same", "np_r2_chance_same": "chance",
    "np_r3_ancestor": "r3 ancestor", "np_r3_chance_ancestor": "chance",
    "np_any_ancestor": "any of r2..R ancestor", "np_any_chance_ancestor": "chance",
    "np_r2_unrelated": "r2 unrelated", "np_r2_chance_unrelated": "chance",
}


def format_non_primary(rows: Sequence[dict], *, digits: int = 3, brief: bool = True) -> str:
    """The non-primary table as text: rates beside their chance levels (mean ± std)."""
    table = non_primary_table(rows)
    if not table:
        return "(no non-primary analysis in these rows)"
    keys = ("features", "benchmark", "method")
    shown_keys = [k for k in keys if k != "features" or len({t[k] for t in table}) > 1]
    cols = [c for c in _NP_HEADERS if c in table[0]]
    if brief:
        cols = [c for c in cols if c in ("np_r2_ancestor", "np_r2_chance_ancestor",
                                         "np_r2_same", "np_r2_chance_same",
                                         "np_any_ancestor", "np_any_chance_ancestor")]
    out = []
    for t in table:
        line = {k: t[k] for k in shown_keys}
        line["naming"] = t["naming"]
        for c in cols:
            mean, std, n = t[c]
            line[c] = "-" if n == 0 else f"{mean:.{digits}f} ± {std:.{digits}f}"
        out.append(line)
    return format_table(out, [*shown_keys, "naming", *cols],
                        headers={c: _NP_HEADERS[c] for c in cols})
