"""The results file of a benchmark run: one Parquet table, one row per finished task.

Rows are appended one at a time; each append rewrites the file atomically (temporary file +
``os.replace``), so an interrupted run leaves the rows finished so far and never a damaged
file. Every row carries the ``key`` of its task; a rerun skips the keys already present,
which is how a run resumes without duplicating rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deepclust.errors import InputError

__all__ = ["ResultsFile", "rows_to_table"]


def rows_to_table(rows: list[dict]):
    """A pyarrow Table of ``rows``: the union of their keys, in first-seen order, nulls where
    a row lacks one (``pa.Table.from_pylist`` would take the columns of the first row only)."""
    import pyarrow as pa

    columns: dict[str, None] = {}
    for r in rows:
        for key in r:
            columns.setdefault(key, None)
    arrays = {}
    for col in columns:
        values = [r.get(col) for r in rows]
        try:
            arrays[col] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # mixed kinds (say 3 and "auto"): keep them readable as text
            arrays[col] = pa.array([None if v is None else str(v) for v in values])
    return pa.table(arrays)


class ResultsFile:
    """Append-only results in one Parquet file.

    Parameters
    ----------
    path : path
        The ``.parquet`` file; created on the first append.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._rows: list[dict] | None = None

    def rows(self) -> list[dict]:
        """All rows (read once, then kept in memory)."""
        if self._rows is None:
            if self.path.is_file():
                import pyarrow.parquet as pq

                try:
                    self._rows = pq.read_table(self.path).to_pylist()
                except Exception as exc:
                    raise InputError(f"{self.path} could not be read as Parquet: {exc}; move it "
                                     "away to start over") from None
            else:
                self._rows = []
        return self._rows

    def keys(self) -> set[str]:
        return {r["key"] for r in self.rows() if r.get("key") is not None}

    def append(self, row: dict[str, Any]) -> None:
        """Add one row (it must have a ``key`` not yet present) and rewrite the file."""
        self.extend([row])

    def extend(self, new_rows: Iterable[dict[str, Any]]) -> None:
        import pyarrow.parquet as pq

        from deepclust.runinfo import atomic_write

        new_rows = list(new_rows)
        have = self.keys()
        for r in new_rows:
            if not r.get("key"):
                raise InputError("every results row needs a 'key'")
            if r["key"] in have:
                raise InputError(f"a row with key {r['key']} is already in {self.path}")
            have.add(r["key"])
        rows = self.rows() + new_rows
        table = rows_to_table(rows)
        atomic_write(self.path, lambda f: pq.write_table(table, f))
        self._rows = rows
