"""Plain-text tables for the terminal."""

from __future__ import annotations

import math
from collections.abc import Sequence


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return format(value, fmt)
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None, *,
                 headers: dict[str, str] | None = None, floatfmt: str = ".4f") -> str:
    """Rows of dicts as an aligned text table (numbers right-aligned).

    Examples
    --------
    >>> print(format_table([{"method": "kmeans", "k": 10, "ami": 0.51234},
    ...                     {"method": "hdbscan", "k": 7, "ami": float("nan")}]))
    method    k     ami
    -------  --  ------
    kmeans   10  0.5123
    hdbscan   7     nan
    """
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    headers = headers or {}
    cells = [[_cell(r.get(c), floatfmt) for c in columns] for r in rows]
    titles = [headers.get(c, c) for c in columns]
    widths = [max(len(t), *(len(row[i]) for row in cells)) for i, t in enumerate(titles)]
    numeric = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows)
               for c in columns]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(titles), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)
