"""The run record: one versioned type for every ``run.json`` the package writes.

``deepclust cluster``, ``deepclust demo``, ``deepclust bench`` and ``deepclust deepcluster``
each write a :class:`RunRecord`; :meth:`RunRecord.read` reads any of them back (the report
does). The fields every run has are attributes with one name and one type everywhere
(``k`` an int, the request such as ``"auto"`` in ``k_requested``; ``params`` JSON-safe;
``timings`` in seconds with ``_s`` names: ``load_s``, ``reduce_s``, ``select_k_s``,
``cluster_s``, ``evaluate_s``, ``label_free_s``, ``train_s`` (DeepCluster), ``embed_s``,
``assignments_s``, ``total_s``).
What only one command has (the demo's ranked ``rows``, a benchmark's ``config``) goes in
``extra`` and is written at the top level of the file.

Schema versions: 1 is this layout; files written before it have no ``schema_version`` and
read back as version 0.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.errors import DataNotFoundError, InputError
from deepclust.runinfo import environment, to_json, write_json

SCHEMA_VERSION = 1
RUN_FILE = "run.json"

__all__ = ["RUN_FILE", "SCHEMA_VERSION", "RunRecord", "estimator_stats", "json_safe"]


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python values, tuples as lists and
    anything else JSON cannot hold (an estimator, a generator) as its ``str``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def estimator_stats(estimator: Any) -> dict | None:
    """The scalar and list entries of a fitted estimator's ``stats_``, or None if it has none."""
    stats = getattr(estimator, "stats_", None)
    if not isinstance(stats, dict):
        return None
    return {key: json_safe(v) for key, v in stats.items()
            if v is None or isinstance(v, (bool, int, float, str, list, tuple, np.generic))}


@dataclass
class RunRecord:
    """What one run did and produced: parameters, versions, seeds, timings and scores.

    Attributes
    ----------
    command : str
        ``"cluster"``, ``"demo"``, ``"bench"`` or ``"deepcluster"``.
    argv : list of str
        The command line after ``deepclust``.
    seed : int or None
    input : dict or None
        What was clustered: ``path`` (absolute), ``fingerprint``, ``store`` (the embedding
        store, when images were embedded), ``source``, ``n_samples``, ``n_features``,
        ``has_labels``, ``labels_path``, ``streamed`` (rows read block by block, never
        loaded), ``out_of_core`` (the same, kept for older readers).
    method, reducer : str or None
    params : dict
        The estimator's parameters, JSON-safe (:func:`json_safe`).
    k : int or None
        Clusters asked of the method (after ``--k auto`` chose); None when it finds k.
    k_requested : int, str or None
        What the user asked: an int, ``"auto"``, or None.
    n_clusters, n_noise : int or None
        Clusters found (noise not counted) and rows labelled -1.
    metrics, label_free, k_selection, stats : dict or None
        Scores with labels, label-free scores, the k sweep, the estimator's ``stats_``.
    selection : dict or None
        ``--method auto``: every candidate (reducer, method, k, scores), the pick, the
        runner-up and the margin between them (:class:`deepclust.selection.Selection`).
    label_free_rows : int or None
        Rows the label-free scores were computed on (a seeded sample when fewer than
        ``input.n_samples``).
    timings : dict
        Seconds per stage (names in the module docstring).
    warnings : list of str
        What the user should know (e.g. ``--k auto`` chose the edge of its range).
    failed : list of dict or None
        Images that could not be read (``path``, ``id``, ``reason``), when images were embedded.
    assignments : str or None
        The per-row results file in the run folder (``"assignments.parquet"``).
    extra : dict
        Command-specific keys, written at the top level.
    schema_version : int
    """

    command: str
    argv: list[str] = field(default_factory=list)
    seed: int | None = None
    input: dict | None = None
    method: str | None = None
    params: dict = field(default_factory=dict)
    reducer: str | None = None
    reduced_shape: list[int] | None = None
    k: int | None = None
    k_requested: int | str | None = None
    n_clusters: int | None = None
    n_noise: int | None = None
    noise: str | None = None
    k_selection: dict | None = None
    selection: dict | None = None
    metrics: dict | None = None
    label_free: dict | None = None
    label_free_rows: int | None = None
    stats: dict | None = None
    proxy_umap: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    failed: list[dict] | None = None
    assignments: str | None = None
    extra: dict = field(default_factory=dict)
    environment: dict = field(default_factory=environment)
    started: str | None = None
    finished: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        """The JSON object of ``run.json`` (``extra`` merged at the top level)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        clash = sorted(set(out) & set(self.extra))
        if clash:
            raise ValueError(f"extra keys {clash} are fields of RunRecord; set the fields")
        out["params"] = json_safe(self.params)
        out.update(self.extra)
        return json.loads(to_json(out))

    def write(self, out_dir: str | Path) -> Path:
        """Write ``out_dir/run.json`` atomically and return its path."""
        path = Path(out_dir) / RUN_FILE
        write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, data: dict) -> RunRecord:
        """The record of a ``run.json`` object; unknown keys go to ``extra``."""
        if not isinstance(data, dict) or "command" not in data:
            raise InputError("a run record is a JSON object with a 'command'")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {key: v for key, v in data.items() if key in names}
        known.setdefault("schema_version", 0)
        known.setdefault("environment", {})
        extra = {key: v for key, v in data.items() if key not in names}
        return cls(**known, extra=extra)

    @classmethod
    def read(cls, run_dir: str | Path) -> RunRecord:
        """Read ``run_dir/run.json`` (or the file itself when given a file)."""
        path = Path(run_dir).expanduser()
        if path.is_dir() or not path.suffix:
            path = path / RUN_FILE
        if not path.is_file():
            raise DataNotFoundError(f"{path.parent} holds no {RUN_FILE}; give the --out folder "
                                    "of a `deepclust cluster` or `deepclust demo` run")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path} is not readable JSON: {exc}") from None
        if isinstance(data, dict) and data.get("schema_version", 0) > SCHEMA_VERSION:
            raise InputError(f"{path} was written by a newer deepclust (run record schema "
                             f"{data['schema_version']}); upgrade deepclust to read it")
        return cls.from_dict(data)
