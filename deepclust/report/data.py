"""What a report is made from: a run directory read back into arrays.

:func:`load_run` reads the ``run.json`` that ``deepclust cluster`` or ``deepclust demo`` wrote,
the predicted labels, and, when they can still be found, the run's features, true labels and
images. Whatever is missing is recorded with the reason, so each section can say why it is
empty instead of failing.

Where each piece comes from
---------------------------
``cluster`` runs
    ``labels.npy``; features and true labels from ``run.json`` → ``input.path`` (a built-in
    dataset name, a feature file, or an embedding store), read again; images from the
    built-in dataset, or from an embedding store's ``index.parquet`` ``path`` column. A store
    is never loaded: its labels are its label column (or the run's labels file) and its
    features a seeded sample of rows (:func:`deepclust.pipeline.read_sample`, the rows the
    run's label-free scores used), so :attr:`RunData.X` holds rows :attr:`RunData.x_rows`.
``demo`` runs
    ``run.json`` → ``rows`` (the ranked pipelines); one pipeline is shown in detail (rank 1
    unless asked otherwise), its labels in ``row["labels_file"]``; the dataset
    (``dataset``/``split``) gives images and true labels; features are the dataset's pixels
    or the cached embeddings the demo used.

The 2-D UMAP of the scatter plot is computed once from the features and cached beside the run
(``umap2d.npy``, or ``umap2d-<features>.npy`` for a demo) with a fingerprint in a ``.json``
next to it, so a second report of the same run is fast.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.errors import DataNotFoundError, DeepclustError, InputError, OutputError
from deepclust.report.images import (
    ArrayImages,
    FileImages,
    ImageSet,
    confine_paths,
    resolve_image_paths,
)
from deepclust.store import is_store, open_store, read_index, read_meta

NOISE = -1
UMAP2D_EPOCHS = 200
#: Above this many rows the 2-D UMAP is fit on (and the scatter shows) a random subset:
#: UMAP of millions of rows takes hours, and a scatter of them is a blot anyway.
UMAP2D_MAX_POINTS = 50_000


@dataclass
class RunData:
    """A run read back for reporting.

    Attributes
    ----------
    run_dir : Path
    run : dict
        The contents of ``run.json``.
    command : str
        ``"cluster"`` or ``"demo"``.
    title : str
        One line naming what was clustered and how.
    labels : ndarray of int64
        Predicted cluster per row (-1 = noise).
    y : ndarray of int64 or None
        True class per row (-1 = unknown), when the input has labels.
    class_names : list of str or None
    metrics, label_free : dict or None
        Scores with labels and without, as the run recorded them.
    seed : int
    features_name : str
        ``"features"`` for a cluster run; the demo's feature set (``"pixels"``, an encoder).
    X : ndarray or None
        The run's features (what was clustered, before reduction), when readable: every row,
        or the rows ``x_rows``.
    x_rows : ndarray or None
        Which rows ``X`` holds (sorted), when it is a sample; None when it holds them all.
    images : ImageSet or None
        Row ``i``'s image, when the input has images.
    notes : dict
        Why a piece is missing: keys ``"features"``, ``"labels"``, ``"images"``.
    pipeline : dict or None
        Demo runs: the ranked row shown in detail.
    paths : list of (str or None) or None
        Absolute path of row ``i``'s image file, when the input has files (None where the
        file was not found).
    names : list of str or None
        What to call row ``i`` on the page: its id (the image path relative to the source
        root), else the file name; None when rows have neither (use ``row N``).
    assignments : dict of str to ndarray, or None
        ``RUN/assignments.parquet`` column by column, when the run wrote it and it matches
        the labels (see :func:`read_assignments`).
    failed : list of dict
        Images the run could not read (``path``, ``reason``), from ``run.json`` ``failed``.
    missing : dict or None
        When image files were expected but some were not found: ``expected``, ``found``,
        ``looked_in`` (folders tried), ``examples`` (a few paths not found).
    input_found : bool
        False when ``run.json`` names an input that exists nowhere the report looked; the
        report is then made of ``run.json`` and the labels alone (``deepclust report``
        exits with status 1).
    outside : dict or None
        When image paths lay outside the folders the run's store recorded as its source and
        were not read: ``skipped`` (how many), ``roots`` (the folders allowed).
    """

    run_dir: Path
    run: dict
    command: str
    title: str
    labels: np.ndarray
    y: np.ndarray | None = None
    class_names: list[str] | None = None
    metrics: dict | None = None
    label_free: dict | None = None
    seed: int = 0
    features_name: str = "features"
    X: np.ndarray | None = None
    images: ImageSet | None = None
    notes: dict[str, str] = field(default_factory=dict)
    pipeline: dict | None = None
    x_rows: np.ndarray | None = None
    paths: list[str | None] | None = None
    names: list[str] | None = None
    assignments: dict[str, np.ndarray] | None = None
    failed: list[dict] = field(default_factory=list)
    missing: dict | None = None
    input_found: bool = True
    outside: dict | None = None

    @property
    def n_samples(self) -> int:
        return int(self.labels.size)

    @property
    def has_labels(self) -> bool:
        return self.y is not None and bool(np.any(self.y >= 0))

    def row_name(self, i: int) -> str:
        """Row ``i`` as the page names it: its file name or id, else ``row i``."""
        if self.names is not None and self.names[i]:
            return str(self.names[i])
        return f"row {int(i)}"

    def class_name(self, c: int) -> str:
        """Display name of class ``c``."""
        if c == NOISE:
            return "unknown"
        if self.class_names is not None and 0 <= c < len(self.class_names):
            return str(self.class_names[c])
        return str(c)

    @property
    def umap_cache(self) -> Path:
        """Where the 2-D UMAP of :attr:`X` is cached."""
        if self.features_name == "features":
            return self.run_dir / "umap2d.npy"
        return self.run_dir / f"umap2d-{_slug(self.features_name)}.npy"

    def _umap_positions(self, max_points: int) -> np.ndarray | None:
        """Positions in :attr:`X` the 2-D UMAP covers (None: all), drawn from the run's seed."""
        n = self.n_samples if self.X is None else len(self.X)
        if n <= max_points:
            return None
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(n, size=max_points, replace=False))

    def umap_rows(self, max_points: int = UMAP2D_MAX_POINTS) -> np.ndarray | None:
        """Rows the 2-D UMAP covers: None for all of them, else a sorted random subset
        (drawn from the run's seed, so the same every time)."""
        pos = self._umap_positions(max_points)
        if self.x_rows is None:
            return pos
        return self.x_rows if pos is None else self.x_rows[pos]

    def umap2d(self, max_points: int = UMAP2D_MAX_POINTS) -> np.ndarray | None:
        """The 2-D UMAP of :attr:`X` (seeded by the run's seed), from the cache or computed.

        Parameters
        ----------
        max_points : int
            Above this many rows, only the rows of :meth:`umap_rows` are embedded.

        Returns
        -------
        ndarray of shape (n, 2) or None
            One row per row of :meth:`umap_rows` (all rows when that is None); None when
            the features are not available.
        """
        if self.X is None:
            return None
        pos = self._umap_positions(max_points)
        rows = self.umap_rows(max_points)
        X = self.X if pos is None else self.X[pos]
        n = len(X)
        cache, meta_path = self.umap_cache, self.umap_cache.with_suffix(".json")
        fingerprint = features_fingerprint(X, self.seed)
        if cache.is_file() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                xy = np.load(cache, allow_pickle=False)
                if meta.get("fingerprint") == fingerprint and xy.shape == (n, 2):
                    return xy
            except (OSError, ValueError):
                pass  # unreadable cache: compute again
        from deepclust.reduce import umap_embedding
        from deepclust.runinfo import write_json, write_npy

        xy = np.asarray(umap_embedding(X, 2, n_epochs=UMAP2D_EPOCHS, random_state=self.seed),
                        dtype=np.float32)
        try:  # a cache: a run folder that cannot be written is no reason to stop
            write_npy(cache, xy)
            write_json(meta_path, {"fingerprint": fingerprint, "n_epochs": UMAP2D_EPOCHS,
                                   "seed": self.seed, "features": self.features_name,
                                   "rows": "all" if rows is None else f"{n} sampled of "
                                                                       f"{self.n_samples}"})
        except OutputError:
            pass
        return xy


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text).strip("-") or "x"


def features_fingerprint(X: np.ndarray, seed: int) -> str:
    """A cheap digest of ``X`` (shape, a strided subset of rows) and the seed.

    It tells a cached UMAP of other features (same row count) from the right one.
    """
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{X.shape}|{seed}".encode())
    step = max(1, len(X) // 512)
    h.update(np.ascontiguousarray(X[::step], dtype=np.float32).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- ordering


def cluster_order(y_true: np.ndarray | None, y_pred: np.ndarray) -> tuple[list[int], list[int]]:
    """Display order of clusters and classes: matched pairs on the diagonal.

    With labels, clusters and classes are paired by the Hungarian matching (noise left out
    of it); matched clusters come first, in the order of their classes, then unmatched
    clusters grouped under their majority class (largest first), then the noise cluster.
    Classes: matched ones in label order, then the unmatched. Without labels, clusters are
    sorted by size (largest first), noise last, and the class order is empty.

    Parameters
    ----------
    y_true : array of int or None
        True classes (-1 = unknown, ignored).
    y_pred : array of int
        Clusters (-1 = noise).

    Returns
    -------
    clusters, classes : list of int

    Examples
    --------
    >>> cluster_order(np.array([0, 0, 1, 1, 2, 2]), np.array([5, 5, 3, 3, 3, 7]))
    ([5, 3, 7], [0, 1, 2])
    """
    from deepclust.metrics import contingency, hungarian_mapping

    y_pred = np.asarray(y_pred)
    ids, sizes = np.unique(y_pred, return_counts=True)
    size_of = dict(zip(ids.tolist(), sizes.tolist(), strict=True))
    has_noise = NOISE in size_of
    real = [c for c in ids.tolist() if c != NOISE]
    known = None if y_true is None else np.asarray(y_true) != NOISE
    keep = None if known is None else known & (y_pred != NOISE)
    if keep is None or not keep.any():
        order = sorted(real, key=lambda c: (-size_of[c], c))
        return order + ([NOISE] if has_noise else []), []
    t, p = np.asarray(y_true)[keep], y_pred[keep]
    mapping = hungarian_mapping(t, p)  # cluster -> class
    table, classes, clusters = contingency(t, p)
    matched_classes = sorted(set(mapping.values()))
    class_order = matched_classes + [c for c in classes.tolist() if c not in mapping.values()]
    class_pos = {c: i for i, c in enumerate(class_order)}
    majority = {int(k): int(classes[table[:, j].argmax()]) for j, k in enumerate(clusters)}
    matched = sorted(mapping, key=lambda k: class_pos[mapping[k]])
    unmatched = [c for c in real if c not in mapping]
    # clusters without a labelled point have no majority: put them last among the unmatched
    unmatched.sort(key=lambda k: (class_pos.get(majority.get(k), len(class_pos)), -size_of[k], k))
    return matched + unmatched + ([NOISE] if has_noise else []), class_order


@dataclass
class ClusterSummary:
    """One cluster as the report describes it.

    Attributes
    ----------
    cluster : int
        Cluster id as in the labels file (-1 = noise).
    size : int
    share : float
        Fraction of all rows.
    majority_class, purity : int or None, float or None
        Most frequent known class and its share of the cluster's labelled members.
    matched_class : int or None
        The class the Hungarian matching gave it.
    top_classes : list of (int, float)
        Up to three classes with their share of the labelled members.
    """

    cluster: int
    size: int
    share: float
    majority_class: int | None = None
    purity: float | None = None
    matched_class: int | None = None
    top_classes: list[tuple[int, float]] = field(default_factory=list)


def cluster_summaries(y_true: np.ndarray | None, y_pred: np.ndarray) -> dict[int, ClusterSummary]:
    """Size, majority class, purity and Hungarian match of every cluster (noise included)."""
    y_pred = np.asarray(y_pred)
    n = max(1, y_pred.size)
    ids, sizes = np.unique(y_pred, return_counts=True)
    out = {int(c): ClusterSummary(int(c), int(s), float(s / n)) for c, s in zip(ids, sizes,
                                                                                   strict=True)}
    if y_true is None:
        return out
    known = np.asarray(y_true) != NOISE
    if not known.any():
        return out
    from deepclust.metrics import contingency

    t, p = np.asarray(y_true)[known], y_pred[known]
    table, classes, clusters = contingency(t, p)
    mapping = {}
    if (p != NOISE).any():
        from deepclust.metrics import hungarian_mapping

        mapping = hungarian_mapping(t, p, noise="exclude")
    for j, k in enumerate(clusters.tolist()):
        col = table[:, j]
        total = col.sum()
        top = np.argsort(-col, kind="stable")[:3]
        s = out[k]
        s.majority_class = int(classes[top[0]])
        s.purity = float(col[top[0]] / total)
        s.matched_class = mapping.get(k)
        s.top_classes = [(int(classes[i]), float(col[i] / total)) for i in top if col[i] > 0]
    return out


# --------------------------------------------------------------------------- loading


def load_run(
    run_dir: str | Path,
    *,
    pipeline: int | None = None,
    features: Any = None,
    follow_outside: bool = False,
) -> RunData:
    """Read a run directory written by ``deepclust cluster`` or ``deepclust demo``.

    Parameters
    ----------
    run_dir : path
        Holds ``run.json`` and the labels.
    pipeline : int, optional
        Demo runs: the rank (1 = best by AMI) of the pipeline to show in detail.
    features : FeatureSet, RowSample, ndarray or dict, optional
        The run's features when the caller still has them (``--report`` on ``cluster``
        passes its FeatureSet, or for a streamed store the sample of rows its label-free
        scores used; the demo a dict of feature-set name to array), so they are not read
        again.
    follow_outside : bool
        Read image files wherever the run names them. By default only files inside the
        folder the run's store recorded as its source are read (links followed, then
        checked); the others are skipped and counted (``RunData.outside``).

    Returns
    -------
    RunData
    """
    from deepclust.record import RunRecord

    run_dir = Path(os.path.abspath(Path(run_dir).expanduser()))
    path = run_dir / "run.json"
    run = RunRecord.read(run_dir).to_dict()
    command = run.get("command")
    if command == "cluster":
        return _load_cluster_run(run_dir, run, features, follow_outside)
    if command == "demo":
        return _load_demo_run(run_dir, run, pipeline, features)
    raise InputError(f"{path} was written by {command!r}; reports cover `cluster` and `demo` runs")


def _read_labels(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataNotFoundError(f"{path} is missing; the run directory is incomplete")
    labels = np.load(path, allow_pickle=False)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path} does not hold one integer label per row")
    return labels.astype(np.int64)


def _builtin_name(text: str) -> bool:
    from deepclust.data.builtin import BUILTIN_DATASETS

    return not Path(text).expanduser().exists() and text.split(":")[0].lower() in BUILTIN_DATASETS


def recorded_cwd(run: dict) -> Path | None:
    """The working folder the run was made in, when ``run.json`` recorded it (``cwd`` at
    the top level, in ``input`` or in ``environment``)."""
    inp = run.get("input") or {}
    for value in (run.get("cwd"), inp.get("cwd"), (run.get("environment") or {}).get("cwd")):
        if isinstance(value, str) and value and Path(value).is_absolute():
            return Path(value)
    return None


def resolve_recorded_path(text: str, run_dir: Path, run: dict) -> tuple[Path | None, list[str]]:
    """A path ``run.json`` recorded, as an existing absolute path, and the folders tried.

    Absolute paths (what runs record now) are taken as they are. A relative one (older runs
    stored the path as typed) is tried against the working folder the run recorded, then
    the run folder and up to three folders above it (``deepclust cluster stores/x --out
    runs/km`` made from ``/p`` leaves ``/p/runs/km``), then the current working folder.

    Returns
    -------
    path, looked_in : Path or None, list of str
    """
    path = Path(text).expanduser()
    if path.is_absolute():
        return (path if path.exists() else None), [str(path.parent)]
    bases: list[Path] = []
    cwd = recorded_cwd(run)
    if cwd is not None:
        bases.append(cwd)
    run_dir = Path(os.path.abspath(run_dir))
    bases += [run_dir, *list(run_dir.parents)[:3], Path.cwd()]
    looked: list[str] = []
    for base in bases:
        if str(base) in looked:
            continue
        looked.append(str(base))
        if (base / path).exists():
            return Path(os.path.abspath(base / path)), looked
    return None, looked


@dataclass
class StoreImages:
    """The image files behind a store's rows, as the report found them."""

    images: ImageSet | None
    paths: list[str | None] | None = None
    names: list[str] | None = None
    missing: dict | None = None
    why: str | None = None
    outside: dict | None = None


def image_roots(store_dir: Path | None, input_path: Path | None = None) -> list[str]:
    """The folders a run's images may be read from: the store's recorded source folder
    (``root``, or ``path`` for a dataset on disk); without a store, the run's input folder
    (or the folder of its input file). Empty when neither is known."""
    if store_dir is not None:
        try:
            source = read_meta(store_dir).get("source")
        except (DeepclustError, OSError, ValueError):
            source = None
        source = source if isinstance(source, dict) else {}
        root = source.get("root") or source.get("path")
        return [os.path.abspath(str(root))] if root else []
    if input_path is not None:
        return [str(input_path if input_path.is_dir() else input_path.parent)]
    return []


def find_store_images(store_dir: Path, *, follow_outside: bool = False) -> StoreImages:
    """The images behind an embedding store's rows (see :func:`store_images`), with the
    absolute path and id of each row and, when files are missing, where the report looked.
    Files outside the store's recorded source folder are not read unless ``follow_outside``
    (``outside`` says how many were skipped)."""
    store_dir = Path(os.path.abspath(store_dir))
    try:
        meta, index = read_meta(store_dir), read_index(store_dir)
    except (DeepclustError, OSError, ValueError) as exc:
        return StoreImages(None, why=f"the embedding store's index could not be read ({exc})")
    source = meta.get("source") if isinstance(meta.get("source"), dict) else {}
    ids = [str(v) for v in index["id"].to_pylist()] if "id" in index.column_names else None
    if source.get("kind") in ("arrays", "builtin") and "item" in index.column_names:
        name = str(source.get("name", ""))
        if _builtin_name(name):
            from deepclust.data.builtin import load_dataset

            try:
                ds = load_dataset(name, download=False)
            except DeepclustError as exc:
                return StoreImages(None, why=f"the store's dataset {name} is not available ({exc})")
            items = index["item"].to_numpy()
            return StoreImages(ArrayImages(ds.images[items]))
        return StoreImages(None, why="the store was made from in-memory arrays, which it does "
                                     "not keep")
    if "path" not in index.column_names:
        return StoreImages(None, why="the embedding store records no image paths")
    recorded = index["path"].to_pylist()
    roots = [r for r in (source.get("root"), str(store_dir), str(store_dir.parent)) if r]
    paths = resolve_image_paths(recorded, roots)
    root = source.get("root")
    if ids is not None and root and Path(root).is_absolute():
        # a folder store's paths are relative to where `embed` ran, its ids to the folder
        # (recorded absolute): the id under the root finds a file the path no longer does
        again = resolve_image_paths(ids, [root])
        paths = [p if p is not None else q for p, q in zip(paths, again, strict=True)]
    names = ids or [Path(p).name if p else "" for p in recorded]
    return _file_images(recorded, paths, names, roots,
                        None if follow_outside else image_roots(store_dir))


def _file_images(recorded: list, paths: list[str | None], names: list[str],
                 looked_in: list[str], allowed: list[str] | None = None) -> StoreImages:
    """Images from the files found; with ``allowed`` (folders), files outside them are
    dropped and counted rather than read."""
    outside, skipped_rows = None, set()
    if allowed is not None:
        kept, skipped = confine_paths(paths, allowed)
        if skipped:
            skipped_rows = {i for i, (p, q) in enumerate(zip(paths, kept, strict=True))
                            if p and not q}
            outside = {"skipped": skipped, "roots": list(allowed)}
        paths = kept
    expected = [i for i, p in enumerate(recorded) if p and i not in skipped_rows]
    found = sum(paths[i] is not None for i in expected)
    missing = None
    if found < len(expected):
        gone = [str(recorded[i]) for i in expected if paths[i] is None]
        missing = {"expected": len(expected), "found": found, "looked_in": looked_in,
                   "examples": gone[:5]}
    if not found:
        why = (f"none of the {len(expected)} image files the run lists could be found "
               f"(looked in {', '.join(looked_in) or 'their recorded paths'})")
        if outside:
            why = outside_warning(outside) if not expected else f"{why}; {outside_warning(outside)}"
        return StoreImages(None, paths, names, missing, why, outside)
    return StoreImages(FileImages(paths), paths, names, missing, outside=outside)


def outside_warning(outside: dict) -> str:
    """One line saying how many image paths were skipped as outside the allowed folders."""
    where = ", ".join(outside["roots"]) or "no image folder recorded by the run's store"
    return (f"{outside['skipped']} image path(s) outside the run's image folder ({where}) "
            "were skipped, not read; pass --follow-outside to show them")


def store_images(store_dir: Path, *, follow_outside: bool = False
                 ) -> tuple[ImageSet | None, str | None]:
    """The images behind an embedding store's rows, or None and the reason.

    Paths in ``index.parquet`` are tried under the source's ``root``, the store folder and
    the folder holding it, then as given; then each row's ``id`` under the source's
    ``root`` (a folder store records paths relative to where ``embed`` ran, ids relative
    to the folder); a store made from a built-in dataset (in-memory
    arrays) is read from the dataset by each row's ``item``.
    """
    found = find_store_images(store_dir, follow_outside=follow_outside)
    return found.images, found.why


#: Columns of ``RUN/assignments.parquet`` the report reads (the per-image results contract).
ASSIGNMENT_COLUMNS = ("row", "id", "path", "cluster", "probability", "distance", "rank",
                      "representative", "outlier_score", "duplicate_group",
                      "near_duplicate_group")


def read_assignments(run_dir: Path, n_rows: int) -> tuple[dict[str, np.ndarray] | None,
                                                           str | None]:
    """``RUN/assignments.parquet`` as a dict of columns, or None and why.

    Columns the file lacks are absent from the dict (older writers); a file whose rows do
    not match the run's labels is refused with the reason, since its groups and scores
    would land on the wrong images.
    """
    path = run_dir / "assignments.parquet"
    if not path.is_file():
        return None, None
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=[c for c in ASSIGNMENT_COLUMNS
                                             if c in pq.read_schema(path).names])
    except (OSError, ValueError) as exc:
        return None, f"{path} could not be read ({exc})"
    if table.num_rows != n_rows:
        return None, (f"{path} has {table.num_rows} rows but the run labelled {n_rows}; "
                      "it is left out")
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table[name]
        if name in ("id", "path"):
            out[name] = np.array(col.to_pylist(), dtype=object)
        elif name in ("probability", "distance", "outlier_score"):
            out[name] = col.to_numpy(zero_copy_only=False).astype(np.float64)
        else:
            out[name] = np.asarray(col.to_numpy(zero_copy_only=False))
    if "row" in out and not np.array_equal(out["row"].astype(np.int64), np.arange(n_rows)):
        order = np.argsort(out["row"].astype(np.int64), kind="stable")
        out = {k: v[order] for k, v in out.items()}
    return out, None


def _assignment_images(data: RunData, allowed: list[str] | None) -> None:
    """Images, names and missing files from the assignments' absolute ``path`` column, read
    only inside the ``allowed`` folders (None: anywhere)."""
    a = data.assignments or {}
    if "id" in a:
        data.names = [str(v) if v is not None else "" for v in a["id"]]
    if "path" not in a or not any(p for p in a["path"]):
        return
    recorded = [str(p) if p else None for p in a["path"]]
    paths = resolve_image_paths(recorded, [])
    names = data.names or [Path(p).name if p else "" for p in recorded]
    parents = sorted({str(Path(p).parent) for p in recorded if p})
    found = _file_images(recorded, paths, names, parents[:5], allowed)
    data.names, data.missing, data.outside = names, found.missing, found.outside
    if found.images is not None:
        data.images, data.paths = found.images, found.paths
    else:
        data.notes["images"] = found.why or "the image files are missing"


def _load_cluster_run(run_dir: Path, run: dict, features: Any,
                      follow_outside: bool = False) -> RunData:
    labels = _read_labels(run_dir / "labels.npy")
    inp = run.get("input") or {}
    text = str(inp.get("path", ""))
    k = run.get("n_clusters")
    # images embedded by the run: name the folder the user gave, not the cached store
    where = (f"{text} ({inp['encoder']})" if inp.get("store") and inp.get("encoder") and text
             else inp.get("source") or text)
    title = f"{run.get('method', '?')} on {where}" + (f", {k} clusters" if k is not None else "")
    data = RunData(run_dir, run, "cluster", title, labels, metrics=run.get("metrics"),
                   label_free=run.get("label_free"), seed=int(run.get("seed") or 0))
    data.failed = [f for f in (run.get("failed") or []) if isinstance(f, dict)]
    data.assignments, why = read_assignments(run_dir, labels.size)
    if why:
        data.notes["assignments"] = why
    fs = features if features is not None and hasattr(features, "X") else None
    builtin = bool(text) and _builtin_name(text)
    input_path, looked = (None, [])
    if text and not builtin:
        input_path, looked = resolve_recorded_path(text, run_dir, run)
    store_dir = None
    if inp.get("store"):
        store_dir, _ = resolve_recorded_path(str(inp["store"]), run_dir, run)
    if store_dir is None and input_path is not None and is_store(input_path):
        store_dir = input_path
    if store_dir is not None and not is_store(store_dir):
        store_dir = None
    if text and not builtin and input_path is None and store_dir is None:
        data.input_found = fs is not None
        data.notes["input"] = (f"the run's input {text} was not found (looked in "
                               f"{', '.join(looked)})")
    if store_dir is not None:
        _read_store_features(data, store_dir, inp, features)
    elif builtin:
        from deepclust.data.builtin import load_dataset
        from deepclust.data.features import FeatureSet

        try:
            ds = load_dataset(text, download=False)
        except DeepclustError as exc:
            data.notes["features"] = data.notes["images"] = (
                f"the dataset {text} is not available ({exc})")
        else:
            data.images = ArrayImages(ds.images)
            if fs is None:
                fs = FeatureSet(ds.features(), ds.labels, None, ds.class_names, ds.name)
    elif fs is not None:
        pass
    elif input_path is not None:
        from deepclust.data import load_features

        try:
            fs = load_features(str(input_path), labels_path=inp.get("labels_path"),
                               download=False)
        except DeepclustError as exc:
            data.notes["features"] = f"the run's input could not be read again ({exc})"
    else:
        data.notes["features"] = data.notes.get("input", "run.json does not name the run's input")
    if fs is not None and data.X is None and "features" not in data.notes:
        if len(fs.X) != labels.size:
            data.notes["features"] = (f"the input now has {len(fs.X)} rows but the run labelled "
                                      f"{labels.size}; it has changed since the run")
        else:
            data.X, data.y, data.class_names = fs.X, fs.y, fs.class_names
            if fs.ids is not None and data.names is None and len(fs.ids) == labels.size:
                data.names = [str(v) for v in fs.ids]
    if data.assignments is not None and "path" in data.assignments:
        _assignment_images(data, None if follow_outside else image_roots(store_dir, input_path))
    if data.images is None and store_dir is not None:
        found = find_store_images(store_dir, follow_outside=follow_outside)
        data.outside = found.outside or data.outside
        if found.images is not None and len(found.images) == labels.size:
            data.images, data.paths, data.names = found.images, found.paths, found.names
            data.missing = found.missing
        else:
            data.missing = found.missing
            data.notes["images"] = found.why or "the store's rows no longer match the run"
    elif data.names is None and data.assignments is not None and "id" in data.assignments:
        data.names = [str(v) for v in data.assignments["id"]]
    if data.images is None and "images" not in data.notes:
        if "input" in data.notes:
            data.notes["images"] = data.notes["input"]
        else:
            data.notes["images"] = ("the run's input is a feature file, which holds no images; "
                                    "cluster an embedding store or a folder of images to see "
                                    "thumbnails")
    if data.y is None or not data.has_labels:
        data.notes.setdefault("labels", "the run's input has no true labels")
    return data


def _read_store_features(data: RunData, store_dir: Path, inp: dict, features: Any) -> None:
    """Labels (the label column, or the run's labels file) and a sample of the rows of the
    store a run clustered; the store is never loaded whole."""
    from deepclust.data.features import read_labels_file
    from deepclust.data.rows import as_row_source
    from deepclust.pipeline import LABEL_FREE_ROWS, RowSample, read_sample

    try:
        store = open_store(store_dir)
        rows = as_row_source(store)
        if rows.n != data.n_samples:
            data.notes["features"] = (f"the store now has {rows.n} rows but the run labelled "
                                      f"{data.n_samples}; it has changed since the run")
            return
        labels_path = inp.get("labels_path")
        data.y = (read_labels_file(labels_path) if labels_path else store.labels).astype(np.int64)
        data.class_names = store.class_names
        if isinstance(features, RowSample):
            sample = features
        elif features is not None and hasattr(features, "X"):
            sample = RowSample(None, features.X)
        else:
            sample = read_sample(rows, LABEL_FREE_ROWS, data.seed)
    except DeepclustError as exc:
        data.notes["features"] = f"the run's input could not be read again ({exc})"
        return
    data.X, data.x_rows = sample.X, sample.rows


def _demo_features(row: dict, ds, features: Any,
                   subset: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
    name = row.get("features", "pixels")
    if isinstance(features, dict) and name in features:
        return np.asarray(features[name]), None
    if name == "pixels":
        return ds.features(), None
    try:  # the demo's cached embeddings; never recomputed here (minutes on a CPU)
        from deepclust.embed import builtin_embeddings
        return builtin_embeddings(ds.name, ds.split, name, rows=subset, compute=False).X, None
    except (ImportError, DeepclustError) as exc:
        return None, f"the {name} embeddings the demo used are no longer cached ({exc})"


def _demo_subset(run_dir: Path, run: dict, ds):
    """``ds`` cut to the rows the demo used (``run.json`` ``dataset_rows``, a subset), and
    those rows (None: every row)."""
    from dataclasses import replace

    name = run.get("dataset_rows")
    if not name:
        return ds, None
    path = run_dir / str(name)
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: the demo's dataset rows cannot be read ({exc}); run the "
                         "demo again") from None
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or (
            rows.size and (rows.min() < 0 or rows.max() >= len(ds))):
        raise InputError(f"{path} does not hold row numbers of {ds.name} ({len(ds)} images); "
                         "run the demo again")
    return replace(ds, images=ds.images[rows], labels=ds.labels[rows]), rows


def _load_demo_run(run_dir: Path, run: dict, pipeline: int | None, features: Any) -> RunData:
    from deepclust.data.builtin import load_dataset

    rows = run.get("rows") or []
    if not rows:
        raise InputError(f"{run_dir}/run.json lists no pipelines")
    rank = 1 if pipeline is None else int(pipeline)
    row = next((r for r in rows if r.get("rank") == rank), None)
    if row is None:
        raise InputError(f"the demo has pipelines ranked 1 to {len(rows)}, not {rank}")
    if "labels_file" not in row:
        raise InputError(f"{run_dir} was written by an older demo that did not record which "
                         "labels file holds which pipeline; run `deepclust demo --out DIR` again")
    labels = _read_labels(run_dir / row["labels_file"])
    title = (f"{row['pipeline']} on {run.get('dataset')} ({run.get('split')}), "
             f"{row.get('k')} clusters")
    data = RunData(run_dir, run, "demo", title, labels, seed=int(run.get("seed") or 0),
                   features_name=str(row.get("features", "pixels")), pipeline=row)
    if row.get("umap_silhouette") is not None:
        data.label_free = {"umap_silhouette": row["umap_silhouette"]}
    try:
        ds = load_dataset(str(run.get("dataset")), run.get("split"), download=False)
    except DeepclustError as exc:
        data.notes["features"] = data.notes["images"] = f"the dataset is not available ({exc})"
        data.notes["labels"] = data.notes["features"]
        data.metrics = {k: row[k] for k in ("acc", "nmi", "ami", "ari") if k in row}
        return data
    ds, subset = _demo_subset(run_dir, run, ds)
    if len(ds) != labels.size:
        raise InputError(f"{run.get('dataset')} has {len(ds)} images but the demo labelled "
                         f"{labels.size}")
    from deepclust.metrics import evaluate

    data.y, data.class_names, data.images = ds.labels, ds.class_names, ArrayImages(ds.images)
    data.metrics = evaluate(ds.labels, labels)
    data.X, why = _demo_features(row, ds, features, subset)
    if why:
        data.notes["features"] = why
    return data
