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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.errors import DataNotFoundError, DeepclustError, InputError
from deepclust.report.images import ArrayImages, FileImages, ImageSet, resolve_image_paths
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

    @property
    def n_samples(self) -> int:
        return int(self.labels.size)

    @property
    def has_labels(self) -> bool:
        return self.y is not None and bool(np.any(self.y >= 0))

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
        write_npy(cache, xy)
        write_json(meta_path, {"fingerprint": fingerprint, "n_epochs": UMAP2D_EPOCHS,
                               "seed": self.seed, "features": self.features_name,
                               "rows": "all" if rows is None else f"{n} sampled of "
                                                                   f"{self.n_samples}"})
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

    Returns
    -------
    RunData
    """
    from deepclust.record import RunRecord

    run_dir = Path(run_dir).expanduser()
    path = run_dir / "run.json"
    run = RunRecord.read(run_dir).to_dict()
    command = run.get("command")
    if command == "cluster":
        return _load_cluster_run(run_dir, run, features)
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


def store_images(store_dir: Path) -> tuple[ImageSet | None, str | None]:
    """The images behind an embedding store's rows, or None and the reason.

    Paths in ``index.parquet`` are tried as given, then under the source's ``root`` and the
    store folder; a store made from a built-in dataset (in-memory arrays) is read from the
    dataset by each row's ``item``.
    """
    try:
        meta, index = read_meta(store_dir), read_index(store_dir)
    except (DeepclustError, OSError, ValueError) as exc:
        return None, f"the embedding store's index could not be read ({exc})"
    source = meta.get("source") if isinstance(meta.get("source"), dict) else {}
    if source.get("kind") in ("arrays", "builtin") and "item" in index.column_names:
        name = str(source.get("name", ""))
        if _builtin_name(name):
            from deepclust.data.builtin import load_dataset

            try:
                ds = load_dataset(name, download=False)
            except DeepclustError as exc:
                return None, f"the store's dataset {name} is not available ({exc})"
            items = index["item"].to_numpy()
            return ArrayImages(ds.images[items]), None
        return None, "the store was made from in-memory arrays, which it does not keep"
    if "path" not in index.column_names:
        return None, "the embedding store records no image paths"
    roots = [r for r in (source.get("root"), str(store_dir)) if r]
    paths = resolve_image_paths(index["path"].to_pylist(), roots)
    found = sum(p is not None for p in paths)
    if not found:
        return None, "none of the image files the embedding store lists could be found"
    return FileImages(paths), None


def _load_cluster_run(run_dir: Path, run: dict, features: Any) -> RunData:
    labels = _read_labels(run_dir / "labels.npy")
    inp = run.get("input") or {}
    text = str(inp.get("path", ""))
    k = run.get("n_clusters")
    title = f"{run.get('method', '?')} on {inp.get('source') or text}" + (
        f", {k} clusters" if k is not None else "")
    data = RunData(run_dir, run, "cluster", title, labels, metrics=run.get("metrics"),
                   label_free=run.get("label_free"), seed=int(run.get("seed") or 0))
    fs = features if features is not None and hasattr(features, "X") else None
    store_dir = Path(text).expanduser() if text else None
    if store_dir is not None and is_store(store_dir):
        _read_store_features(data, store_dir, inp, features)
    elif _builtin_name(text):
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
    elif text:
        from deepclust.data import load_features

        try:
            fs = load_features(text, labels_path=inp.get("labels_path"), download=False)
        except DeepclustError as exc:
            data.notes["features"] = f"the run's input could not be read again ({exc})"
    else:
        data.notes["features"] = "run.json does not name the run's input"
    if fs is not None and data.X is None and "features" not in data.notes:
        if len(fs.X) != labels.size:
            data.notes["features"] = (f"the input now has {len(fs.X)} rows but the run labelled "
                                      f"{labels.size}; it has changed since the run")
        else:
            data.X, data.y, data.class_names = fs.X, fs.y, fs.class_names
    if text and is_store(text):
        images, why = store_images(Path(text).expanduser())
        if images is not None and len(images) == labels.size:
            data.images = images
        else:
            data.notes["images"] = why or "the store's rows no longer match the run"
    elif data.images is None and "images" not in data.notes:
        data.notes["images"] = ("the run's input is a feature file, which holds no images; "
                                "cluster an embedding store or a built-in dataset to see "
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
    from deepclust.store import open_store

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


def _demo_features(row: dict, ds, features: Any) -> tuple[np.ndarray | None, str | None]:
    name = row.get("features", "pixels")
    if isinstance(features, dict) and name in features:
        return np.asarray(features[name]), None
    if name == "pixels":
        return ds.features(), None
    try:  # the demo's cached embeddings; never recomputed here (minutes on a CPU)
        from deepclust.embed import builtin_store_path
        return open_store(builtin_store_path(ds.name, ds.split, name)).as_feature_set().X, None
    except (ImportError, DeepclustError) as exc:
        return None, f"the {name} embeddings the demo used are no longer cached ({exc})"


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
    if len(ds) != labels.size:
        raise InputError(f"{run.get('dataset')} has {len(ds)} images but the demo labelled "
                         f"{labels.size}")
    from deepclust.metrics import evaluate

    data.y, data.class_names, data.images = ds.labels, ds.class_names, ArrayImages(ds.images)
    data.metrics = evaluate(ds.labels, labels)
    data.X, why = _demo_features(row, ds, features)
    if why:
        data.notes["features"] = why
    return data
