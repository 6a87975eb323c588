"""Feature matrices from files: ``.npy``, ``.npz``, ``.parquet``, ``.csv``, an embedding
store directory, or a built-in dataset name (its raw pixels).

Labels are optional. Where they come from:

- ``.npz``: the array ``y`` (or ``labels``); features in ``X`` (or ``features``,
  ``embeddings``, or the only array in the file);
- ``.parquet`` / ``.csv``: a column ``label`` (or ``y``, ``labels``, ``target``), or the one
  named by ``label_column``; features are either one list-valued column (``embedding``,
  ``features``, ``X``) or all remaining numeric columns; an ``id`` column gives row ids;
- ``.npy``: features only; labels from ``labels_path`` if given;
- a store directory (holds ``meta.json``): rows, labels and ids from the store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepclust.data.featureset import FeatureSet
from deepclust.errors import DataNotFoundError, InputError
from deepclust.validation import check_features, check_labels

__all__ = ["FeatureSet", "load_features"]

_X_KEYS = ("X", "x", "features", "embeddings", "embedding", "data")
_Y_KEYS = ("y", "labels", "label", "target", "targets")
_ID_KEYS = ("id", "ids", "path")


def _pick(keys, candidates, what, path) -> str | None:
    for k in candidates:
        if k in keys:
            return k
    return None


def _load_npz(path: Path) -> FeatureSet:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path} is not a readable .npz file: {exc}") from None
    keys = list(z.keys())
    if not keys:
        raise InputError(f"{path} holds no arrays")
    xk = _pick(keys, _X_KEYS, "features", path)
    if xk is None:
        others = [k for k in keys if k not in _Y_KEYS + _ID_KEYS]
        if len(others) != 1:
            raise InputError(
                f"{path}: cannot tell which array holds the features (arrays: {', '.join(keys)}); "
                "name it 'X'"
            )
        xk = others[0]
    yk = _pick(keys, _Y_KEYS, "labels", path)
    ik = _pick(keys, _ID_KEYS, "ids", path)
    try:
        X = z[xk]
        y = z[yk] if yk else None
        ids = z[ik] if ik else None
        names = [str(s) for s in z["class_names"]] if "class_names" in keys else None
    except Exception as exc:  # object arrays (refused without pickle), damaged members
        raise InputError(f"{path}: an array could not be read: {exc}") from None
    return FeatureSet(X, y, ids, names, str(path))


def _load_table(path: Path, label_column: str | None, id_column: str | None = None) -> FeatureSet:
    import pyarrow as pa

    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path} could not be read as a table: {exc}") from None
    if table.num_rows == 0:
        raise InputError(f"{path} has no rows")
    cols = table.column_names
    for given, what in ((label_column, "--label-column"), (id_column, "--id-column")):
        if given is not None and given not in cols:
            raise InputError(f"{path} has no column {given!r}; columns: {', '.join(cols)} "
                             f"(check {what})")
    if id_column is not None and id_column == label_column:
        raise InputError(f"{path}: column {id_column!r} cannot be both the labels and the ids")
    yk = label_column or _pick(cols, _Y_KEYS, "labels", path)
    ik = id_column or _pick(cols, _ID_KEYS, "ids", path)
    y = table.column(yk).to_numpy(zero_copy_only=False) if yk else None
    ids = table.column(ik).to_numpy(zero_copy_only=False) if ik else None
    xk = _pick(cols, _X_KEYS, "features", path)
    if xk is not None and pa.types.is_list(table.schema.field(xk).type) or (
        xk is not None and pa.types.is_fixed_size_list(table.schema.field(xk).type)
    ):
        values = table.column(xk).to_pylist()
        lengths = {len(v) if v is not None else -1 for v in values}
        if len(lengths) != 1 or -1 in lengths:
            raise InputError(f"{path}: vectors in column {xk!r} differ in length or are missing")
        X = np.asarray(values, dtype=np.float32)
    else:
        feats = [c for c in cols if c not in (yk, ik)]
        non_numeric = [
            c for c in feats
            if not (pa.types.is_integer(table.schema.field(c).type)
                    or pa.types.is_floating(table.schema.field(c).type))
        ]
        if non_numeric:
            raise InputError(
                f"{path}: column(s) {', '.join(non_numeric)} are not numeric; "
                "keep only feature columns, a label column and an id column"
            )
        if not feats:
            raise InputError(f"{path} has no feature columns")
        X = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in feats])
        X = X.astype(np.float32) if X.dtype != np.float64 else X
    return FeatureSet(X, y, ids, None, str(path))


def read_labels_file(path: str | Path, what: str = "labels") -> np.ndarray:
    """Labels, one per row, from a ``.npy`` file or a text file of integers (unchecked);
    ``what`` names them in the messages ("true labels", ...)."""
    lp = Path(path)
    if not lp.is_file():
        raise DataNotFoundError(f"{what} file {lp} does not exist")
    try:
        return (np.load(lp, allow_pickle=False) if lp.suffix == ".npy"
                else np.loadtxt(lp, dtype=np.int64, ndmin=1))
    except Exception as exc:
        raise InputError(f"{lp} could not be read as {what}: {exc}") from None


def load_features(
    path: str | Path,
    *,
    labels_path: str | Path | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    download: bool = True,
) -> FeatureSet:
    """Read a feature matrix (and labels, if present) from ``path``.

    Parameters
    ----------
    path : str or Path
        A file (``.npy``, ``.npz``, ``.parquet``, ``.csv``), an embedding store directory,
        or a built-in dataset name (``digits``, ``fashion-mnist[:train|test]``), whose raw
        pixels become the features.
    labels_path : str or Path, optional
        A ``.npy`` or text file of labels, one per row, overriding labels in ``path``.
    label_column : str, optional
        For tables: the column that holds labels.
    id_column : str, optional
        For tables: the column that holds row ids (default: ``id``, ``ids`` or ``path`` when
        present); it is never a feature.

    Returns
    -------
    FeatureSet
        ``X`` validated (2-D, finite), ``y`` as int64 or None.
    """
    from deepclust.data.builtin import BUILTIN_DATASETS, load_dataset

    text = str(path)
    p = Path(text).expanduser()
    if not p.exists() and text.split(":")[0].lower() in BUILTIN_DATASETS:
        ds = load_dataset(text, download=download)
        fs = FeatureSet(ds.features(), ds.labels, None, ds.class_names, f"{ds.name}:{ds.split}")
    elif not p.exists():
        raise DataNotFoundError(
            f"{p} does not exist; give a feature file (.npy/.npz/.parquet/.csv), an embedding "
            f"store directory, or a built-in dataset ({', '.join(BUILTIN_DATASETS)})"
        )
    elif p.is_dir():
        # imported here: deepclust.store -> deepclust.data (this package) at import time
        from deepclust.store import is_store, open_store

        if not is_store(p):
            raise InputError(f"{p} is a directory but not an embedding store (no meta.json)")

        fs = open_store(p).as_feature_set()
    elif p.stat().st_size == 0:
        raise InputError(f"{p} is empty")
    else:
        suffix = p.suffix.lower()
        if suffix == ".npy":
            try:
                X = np.load(p, allow_pickle=False)
            except Exception as exc:
                raise InputError(f"{p} is not a readable .npy file: {exc}") from None
            fs = FeatureSet(X, None, None, None, str(p))
        elif suffix == ".npz":
            fs = _load_npz(p)
        elif suffix in (".parquet", ".csv"):
            fs = _load_table(p, label_column, id_column)
        else:
            raise InputError(
                f"{p}: unsupported file type {suffix!r}; use .npy, .npz, .parquet or .csv"
            )
    if id_column is not None and p.suffix.lower() not in (".parquet", ".csv"):
        raise InputError(f"--id-column applies to .parquet/.csv tables, not {p}")
    label_source = fs.source
    if labels_path is not None:
        fs.y = read_labels_file(labels_path)
        label_source = str(labels_path)
    fs.X = check_features(fs.X, name=f"features in {fs.source}")
    if fs.y is not None:
        fs.y = check_labels(fs.y, len(fs.X), name=f"labels in {label_source}")
    return fs
