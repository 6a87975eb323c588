"""Image sources: where images come from, behind one small contract.

An :class:`ImageSource` has ``len(src)`` and ``src[i] -> (image, label, id)``: ``image`` is an
RGB :class:`PIL.Image.Image`, or None when the item cannot be decoded; ``label`` is an int,
-1 when unknown; ``id`` is a string. :meth:`ImageSource.load` gives the same plus the item's
path and, on failure, the reason. Decoding never raises for a bad file (see
:mod:`deepclust.data.imageio` for the mode-conversion rules).

==================  ===========================================================================
source              what
==================  ===========================================================================
:class:`FolderSource`     a folder tree: one subfolder per class, or flat (unlabelled)
:class:`ManifestSource`   a CSV or Parquet table with a path column and optional label columns
:class:`ArraySource`      in-memory arrays (the built-in datasets)
:class:`TarShardSource`   WebDataset tar shards (samples grouped by key, ``.cls`` labels)
:class:`HFDiskSource`     a Hugging Face ``datasets`` dataset saved with ``save_to_disk``
==================  ===========================================================================

:func:`open_source` picks the right one from a path or name.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepclust.data.imageio import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, array_to_image, open_image
from deepclust.errors import DataNotFoundError, InputError
from deepclust.store import is_store


@dataclass
class Item:
    """One item of a source, decoded.

    Attributes
    ----------
    image : PIL.Image.Image or None
        RGB image, None when decoding failed.
    label : int
        Class index, -1 when unknown.
    id : str
        Stable identifier (relative path, manifest id, sample key, row number).
    path : str
        Where the bytes came from ("" for in-memory arrays).
    error : str or None
        Why ``image`` is None.
    """

    image: Image.Image | None
    label: int
    id: str
    path: str = ""
    error: str | None = None


class ImageSource:
    """Base class of image sources; see the module docstring for the contract.

    Attributes
    ----------
    kind : str
        Short name of the source type (``"folder"``, ``"manifest"``, ...).
    class_names : list of str or None
        Names of the label values 0..K-1, when known.
    hierarchy : dict or None
        Optional map from a class name to its ancestors, coarse to fine.
    """

    kind = "source"
    class_names: list[str] | None = None
    hierarchy: dict[str, list[str]] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, i: int) -> Item:
        raise NotImplementedError

    def load(self, i: int) -> Item:
        """Item ``i`` with its path and, on failure, the reason; never raises for bad data."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for a source of {n} items")
        i = i % n
        try:
            return self._load(i)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return Item(None, -1, str(i), "", f"unreadable: {type(exc).__name__}: {exc}")

    def __getitem__(self, i: int) -> tuple[Image.Image | None, int, str]:
        item = self.load(i)
        return item.image, item.label, item.id

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def fingerprint(self) -> str:
        """A digest that changes when the source's content changes (see each source)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """A JSON-ready description of the source (stored in embedding stores)."""
        return {"kind": self.kind, "n_items": len(self), "class_names": self.class_names}

    def extra_labels(self) -> dict[str, tuple[np.ndarray, list[str] | None]]:
        """Additional label columns (e.g. coarse classes): name -> (codes per item, names)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items)"


class SubsetSource(ImageSource):
    """The items ``rows`` of another source, in that order (e.g. a seeded sample to embed
    with several encoders before choosing one); its fingerprint is the parent's and the rows'.
    """

    kind = "subset"

    def __init__(self, parent: ImageSource, rows) -> None:
        self.parent = parent
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.rows.ndim != 1 or (self.rows.size and (
                self.rows.min() < 0 or self.rows.max() >= len(parent))):
            raise InputError(f"subset rows must be item numbers of the source (0..{len(parent) - 1})")
        self.class_names = parent.class_names
        self.hierarchy = parent.hierarchy

    def __len__(self) -> int:
        return int(self.rows.size)

    def _load(self, i: int) -> Item:
        return self.parent.load(int(self.rows[i]))

    def fingerprint(self) -> str:
        return _digest([self.parent.fingerprint(), self.rows.tobytes()])

    def describe(self) -> dict:
        return {**self.parent.describe(), "kind": self.kind, "n_items": len(self),
                "of": self.parent.describe().get("kind"), "rows_digest": self.fingerprint()}


def _digest(parts) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def _encode_labels(values: list, what: str) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels kept as is; strings mapped to sorted class names; missing -> -1."""
    present = [v for v in values if v is not None and v == v and v != ""]
    if not present:
        return np.full(len(values), -1, dtype=np.int64), None
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
        return np.array([-1 if v is None else int(v) for v in values], dtype=np.int64), None
    if all(isinstance(v, (float, np.floating)) and float(v).is_integer() for v in present):
        return np.array([-1 if v is None or v != v else int(v) for v in values], dtype=np.int64), None
    names = sorted({str(v) for v in present})
    code = {n: k for k, n in enumerate(names)}
    out = np.array([-1 if (v is None or v != v or v == "") else code[str(v)] for v in values], dtype=np.int64)
    return out, names


# --------------------------------------------------------------------------- folder


def _inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both absolute, normalised)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_max_pixels(value) -> int | None:
    """``max_pixels`` as a positive int or None (no limit), else :class:`InputError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"max_pixels={value!r} is not allowed; give a positive number of pixels "
                         "(or none for no limit)")
    return value


class FolderSource(ImageSource):
    """Every file under a folder.

    With subfolders, the first path component is the class (``root/cat/001.jpg`` has class
    ``cat``); files directly in ``root`` then have label -1. A flat folder is unlabelled.
    Hidden files and folders (names starting with ``.``) and embedding stores (folders with
    ``meta.json`` and ``shards/``, e.g. an ``--out`` placed inside the image folder) are
    skipped; every other file is an item, so a stray non-image file is reported as a failure
    rather than silently ignored.

    Parameters
    ----------
    root : path
    labelled : bool, optional
        Force (True) or refuse (False) class-per-subfolder labels; default: labelled when
        some subfolder holds files.
    extensions : sequence of str, optional
        Only files with these suffixes (case-insensitive), e.g. ``(".jpg", ".png")``;
        default: all files.
    max_pixels : int or None
        Decompression-bomb limit (see :func:`deepclust.data.imageio.open_image`).

    Notes
    -----
    The fingerprint covers each file's relative path, size and modification time.
    """

    kind = "folder"

    def __init__(self, root: str | os.PathLike, *, labelled: bool | None = None,
                 extensions=None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 follow_outside: bool = False):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataNotFoundError(f"image folder {self.root} does not exist (or is not a folder)")
        self.max_pixels = max_pixels
        exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions) if extensions else None
        self.follow_outside = bool(follow_outside)
        root_real = os.path.realpath(self.root)
        files: list[tuple[str, int, int]] = []
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            st_dir = os.stat(dirpath)
            if (st_dir.st_dev, st_dir.st_ino) in seen:  # a symlink loop: visit each folder once
                dirnames[:] = []
                continue
            seen.add((st_dir.st_dev, st_dir.st_ino))
            if is_store(dirpath):  # an embedding store (e.g. an --out inside the folder)
                dirnames[:] = []
                continue
            # A link to a folder inside the root is not followed: that folder is walked under
            # its own name, so a link can neither relabel its images nor hide its class.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                 and self._follow(os.path.join(dirpath, d), root_real))
            for name in filenames:
                if name.startswith(".") or (exts and not name.lower().endswith(exts)):
                    continue
                full = os.path.join(dirpath, name)
                self._follow(full, root_real)  # refuses a file link leaving the root
                try:
                    st = os.stat(full)
                except OSError:
                    st = None
                rel = os.path.relpath(full, self.root).replace(os.sep, "/")
                files.append((rel, st.st_size if st else -1, st.st_mtime_ns if st else -1))
        if not files:
            what = f"files with extensions {', '.join(exts)}" if exts else "files"
            raise InputError(f"no {what} found in {self.root}")
        files.sort()
        self._files = files
        self.paths = [f[0] for f in files]
        in_sub = ["/" in p for p in self.paths]
        if labelled is None:
            labelled = any(in_sub)
        if labelled:
            if not any(in_sub):
                raise InputError(f"{self.root} has no subfolders, so it cannot be labelled by folder")
            names = sorted({p.split("/", 1)[0] for p, s in zip(self.paths, in_sub, strict=True) if s})
            code = {n: k for k, n in enumerate(names)}
            self.labels = np.array(
                [code[p.split("/", 1)[0]] if s else -1 for p, s in zip(self.paths, in_sub, strict=True)], dtype=np.int64
            )
            self.class_names = names
        else:
            self.labels = np.full(len(self.paths), -1, dtype=np.int64)
            self.class_names = None
        self._fingerprint: str | None = None

    def _follow(self, path: str, root_real: str) -> bool:
        """Whether the walk enters ``path``: True for a plain folder or file, False for a link
        to a folder inside the root; a link leaving the root is followed only with
        ``follow_outside`` and refused otherwise."""
        if not os.path.islink(path):
            return True
        real = os.path.realpath(path)
        if _inside(real, root_real):
            return not os.path.isdir(real)
        if not self.follow_outside:
            raise InputError(f"{path} is a link to {real}, outside the image folder {self.root}; "
                             "move the images in, or pass --follow-outside (follow_outside=True) "
                             "to include them")
        return True

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, i: int) -> Item:
        rel = self.paths[i]
        full = self.root / rel
        image, error = open_image(full, max_pixels=self.max_pixels)
        return Item(image, int(self.labels[i]), rel, str(full), error)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = _digest(["folder"] + [f"{p}|{s}|{m}" for p, s, m in self._files])
        return self._fingerprint

    def describe(self) -> dict:
        return {**super().describe(), "root": str(self.root.resolve())}


# --------------------------------------------------------------------------- manifest

_PATH_COLUMNS = ("path", "filepath", "file_path", "file", "filename", "image", "image_path")
_LABEL_COLUMNS = ("label", "labels", "class", "class_name", "y", "target")


class ManifestSource(ImageSource):
    """Images listed in a CSV or Parquet table.

    Parameters
    ----------
    manifest : path
        ``.csv``, ``.tsv`` or ``.parquet``.
    root : path, optional
        Folder that relative paths are resolved against; default: the manifest's folder.
    path_column : str, optional
        Default: the first of ``path, filepath, file_path, file, filename, image, image_path``.
    label_column : str or False, optional
        Default: the first of ``label, labels, class, class_name, y, target`` if present;
        False: no labels. Integer labels are kept; strings become class indices in sorted
        order; empty cells are -1.
    extra_label_columns : sequence of str
        More label columns (e.g. coarse classes), stored beside ``label`` in embedding stores.
    id_column : str, optional
        Default: ``id`` if present, else the path as written in the manifest.
    max_pixels : int or None
        Decompression-bomb limit.

    Notes
    -----
    The fingerprint is the manifest's content (and ``root``): images edited in place
    without a change to the manifest are not detected.
    """

    kind = "manifest"

    def __init__(self, manifest: str | os.PathLike, *, root: str | os.PathLike | None = None,
                 path_column: str | None = None, label_column: str | bool | None = None,
                 extra_label_columns=(), id_column: str | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, follow_outside: bool = False):
        import pyarrow as pa

        self.manifest = Path(manifest).expanduser()
        if not self.manifest.is_file():
            raise DataNotFoundError(f"manifest {self.manifest} does not exist")
        suffix = self.manifest.suffix.lower()
        try:
            if suffix == ".parquet":
                import pyarrow.parquet as pq

                table = pq.read_table(self.manifest)
            elif suffix in (".csv", ".tsv", ".txt"):
                import pyarrow.csv as pcsv

                parse = pcsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
                table = pcsv.read_csv(self.manifest, parse_options=parse)
            else:
                raise InputError(f"{self.manifest}: a manifest must be .csv, .tsv or .parquet")
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.manifest} could not be read as a table: {exc}") from None
        cols = table.column_names
        if table.num_rows == 0:
            raise InputError(f"manifest {self.manifest} has no rows")

        def pick(given, candidates, what):
            if given is not None:
                if given not in cols:
                    raise InputError(f"{self.manifest} has no column {given!r} (columns: {', '.join(cols)})")
                return given
            return next((c for c in candidates if c in cols), None)

        self.path_column = pick(path_column, _PATH_COLUMNS, "path")
        if self.path_column is None:
            raise InputError(
                f"{self.manifest}: no path column found (columns: {', '.join(cols)}); name it "
                f"'path' or pass path_column="
            )
        self.label_column = None if label_column is False else pick(
            label_column if isinstance(label_column, str) else None, _LABEL_COLUMNS, "label")
        if self.label_column == self.path_column:
            self.label_column = None
        self.id_column = pick(id_column, ("id",), "id")
        self.root = Path(root).expanduser() if root is not None else self.manifest.parent
        raw_paths = table.column(self.path_column).to_pylist()
        bad = [k for k, p in enumerate(raw_paths) if not isinstance(p, str) or not p]
        if bad:
            raise InputError(f"{self.manifest}: rows {bad[:5]} have an empty {self.path_column!r} cell")
        self.raw_paths = raw_paths
        self.follow_outside = bool(follow_outside)
        if not self.follow_outside:
            root_abs = os.path.abspath(self.root)
            outside = [k for k, p in enumerate(raw_paths) if not _inside(
                os.path.normpath(os.path.join(root_abs, os.path.expanduser(p))), root_abs)]
            if outside:
                raise InputError(
                    f"{self.manifest}: {len(outside)} path(s) lead outside the folder {self.root} "
                    f"(row {outside[0]}: {raw_paths[outside[0]][:80]!r}); pass --root to a folder "
                    "that holds them, or --follow-outside (follow_outside=True) to allow it")
        if self.label_column:
            self.labels, self.class_names = _encode_labels(table.column(self.label_column).to_pylist(), "label")
        else:
            self.labels, self.class_names = np.full(len(raw_paths), -1, dtype=np.int64), None
        self._extra = {}
        for col in extra_label_columns:
            if col not in cols:
                raise InputError(f"{self.manifest} has no column {col!r} (columns: {', '.join(cols)})")
            self._extra[col] = _encode_labels(table.column(col).to_pylist(), col)
        self.ids = ([str(v) for v in table.column(self.id_column).to_pylist()]
                    if self.id_column else list(raw_paths))
        self.max_pixels = max_pixels
        h = hashlib.blake2b(digest_size=16)
        with open(self.manifest, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(str(self.root.resolve()).encode())
        h.update(repr((self.path_column, self.label_column, self.id_column, tuple(extra_label_columns))).encode())
        self._fingerprint = h.hexdigest()

    def __len__(self) -> int:
        return len(self.raw_paths)

    def _load(self, i: int) -> Item:
        p = Path(self.raw_paths[i]).expanduser()
        full = p if p.is_absolute() else self.root / p
        if not self.follow_outside and not _inside(os.path.realpath(full), os.path.realpath(self.root)):
            return Item(None, int(self.labels[i]), self.ids[i], str(full),
                        f"a link leading outside {self.root} (pass --follow-outside to allow it)")
        image, error = open_image(full, max_pixels=self.max_pixels)
        return Item(image, int(self.labels[i]), self.ids[i], str(full), error)

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict:
        return {**super().describe(), "manifest": str(self.manifest.resolve()), "root": str(self.root.resolve()),
                "label_column": self.label_column, "extra_label_columns": list(self._extra)}

    def extra_labels(self) -> dict[str, tuple[np.ndarray, list[str] | None]]:
        return dict(self._extra)


# --------------------------------------------------------------------------- arrays


class ArraySource(ImageSource):
    """Images held in memory as one array.

    Parameters
    ----------
    images : ndarray of shape (N, H, W), (N, H, W, 1), (N, H, W, 3) or (N, H, W, 4)
        ``uint8``, ``uint16`` or float in [0, 1] (see
        :func:`deepclust.data.imageio.array_to_image`).
    labels : array-like of int, optional
        -1 where unknown; default all -1.
    ids : sequence of str, optional
        Default: the row number.
    class_names : list of str, optional
    name : str
        Shown in store descriptions.

    Notes
    -----
    The fingerprint hashes the pixel and label bytes.
    """

    kind = "arrays"

    def __init__(self, images, labels=None, *, ids=None, class_names=None, name: str = "arrays"):
        images = np.asarray(images)
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3, 4)):
            raise InputError(
                f"images must be (N, H, W) or (N, H, W, C) with C in 1, 3, 4; got shape {images.shape}"
            )
        if len(images) == 0:
            raise InputError("images is empty")
        self.images = images
        if labels is None:
            self.labels = np.full(len(images), -1, dtype=np.int64)
        else:
            self.labels = np.asarray(labels).astype(np.int64).reshape(-1)
            if len(self.labels) != len(images):
                raise InputError(f"{len(self.labels)} labels for {len(images)} images")
        if ids is not None and len(ids) != len(images):
            raise InputError(f"{len(ids)} ids for {len(images)} images")
        self.ids = None if ids is None else [str(v) for v in ids]
        self.class_names = list(class_names) if class_names is not None else None
        self.name = name
        self._fingerprint: str | None = None

    @classmethod
    def from_dataset(cls, dataset) -> ArraySource:
        """Wrap a :class:`deepclust.data.builtin.Dataset`."""
        return cls(dataset.images, dataset.labels, class_names=dataset.class_names,
                   name=f"{dataset.name}:{dataset.split}")

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, i: int) -> Item:
        id_ = self.ids[i] if self.ids is not None else str(i)
        try:
            image = array_to_image(self.images[i])
        except ValueError as exc:
            return Item(None, int(self.labels[i]), id_, "", str(exc))
        return Item(image, int(self.labels[i]), id_, "", None)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(repr((self.images.shape, str(self.images.dtype))).encode())
            h.update(np.ascontiguousarray(self.images).data)
            h.update(np.ascontiguousarray(self.labels).data)
            if self.ids is not None:
                h.update("\0".join(self.ids).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def describe(self) -> dict:
        return {**super().describe(), "name": self.name, "shape": list(self.images.shape)}


# --------------------------------------------------------------------------- tar shards

_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_TAR_IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)
_LABEL_EXTS = ("cls", "cls2", "class", "label", "target")


def _expand_braces(pattern: str) -> list[str]:
    """Expand ``{000..009}`` numeric ranges (the WebDataset shard notation)."""
    m = _BRACE.search(pattern)
    if not m:
        return [pattern]
    a, b = m.group(1), m.group(2)
    width = len(a) if a.startswith("0") else 0
    out = []
    for k in range(int(a), int(b) + 1):
        out += _expand_braces(pattern[: m.start()] + str(k).zfill(width) + pattern[m.end():])
    return out


def _split_key(name: str) -> tuple[str | None, str | None]:
    """WebDataset's rule: the key is the path up to the first dot of the file name."""
    m = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", name)
    return (m.group(1), m.group(2)) if m else (None, None)


def resolve_shards(spec) -> list[Path]:
    """Tar shard paths from a folder, a file, a glob or ``{000..009}`` pattern, or a list."""
    if isinstance(spec, (list, tuple)):
        paths = [Path(p).expanduser() for p in spec]
    else:
        text = os.path.expanduser(str(spec))
        p = Path(text)
        if p.is_dir():
            paths = sorted(q for q in p.iterdir() if q.suffix == ".tar" and not q.name.startswith("."))
        elif p.is_file():
            paths = [p]
        else:
            paths = []
            for pat in _expand_braces(text):
                hits = sorted(glob.glob(pat)) if glob.has_magic(pat) else ([pat] if os.path.exists(pat) else [])
                paths += [Path(h) for h in hits]
    if not paths:
        raise DataNotFoundError(f"no tar shards found at {spec}")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataNotFoundError(f"tar shard(s) not found: {', '.join(missing[:5])}")
    return paths


class TarShardSource(ImageSource):
    """Samples in WebDataset tar shards, with random access.

    Members are grouped into samples by WebDataset's key rule (the member path up to the first
    dot of its file name; consecutive members with one key form one sample). The image is the
    sample's first member with an image extension (``jpg``, ``png``, ``webp``, ...); the label
    is read from a ``cls`` (or ``label``, ``target``) member holding an integer; the id is the
    sample key.

    Shards are indexed once with :mod:`tarfile` (member offsets), then members are read by
    seeking, so any item can be loaded in any order: the ``webdataset`` package's readers are
    sequential streams, while resumable, evenly sharded extraction needs ``src[i]``.
    Uncompressed ``.tar`` only (compressed tars cannot be read at random).

    Parameters
    ----------
    shards : path, pattern or list of paths
        A folder of ``.tar`` files, one file, a glob, ``data-{000..099}.tar``, or a list.
    max_pixels : int or None
        Decompression-bomb limit.

    Notes
    -----
    The fingerprint covers each shard's path, size and modification time.
    """

    kind = "tar"

    def __init__(self, shards, *, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.shards = resolve_shards(shards)
        self.max_pixels = max_pixels
        keys: list[str] = []
        shard_of: list[int] = []
        image_at: list[tuple[int, int, str] | None] = []
        labels: list[int] = []
        stats = []
        for s, path in enumerate(self.shards):
            st = path.stat()
            stats.append(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}")
            try:
                tf = tarfile.open(path, "r:")
            except tarfile.ReadError as exc:
                raise InputError(
                    f"{path} is not an uncompressed tar file ({exc}); WebDataset shards must be "
                    "plain .tar for random access"
                ) from None
            try:
                with tf:
                    self._index_tar(tf, path, s, keys, shard_of, image_at, labels)
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise InputError(f"{path} is damaged or truncated ({exc}); re-create or re-download "
                                 "the shard") from None
        if not keys:
            raise InputError(f"the tar shards at {shards} hold no samples")
        self.keys, self._shard_of = keys, np.asarray(shard_of, dtype=np.int32)
        self._image_at, self._labels = image_at, labels
        self._fingerprint = _digest(["tar"] + stats)
        self._handles: dict[int, Any] = {}
        self._pid = os.getpid()

    @staticmethod
    def _index_tar(tf, path, s, keys, shard_of, image_at, labels) -> None:
        """Append the samples of one open tar: keys, image members, labels (read now, so a
        label that is not an integer is refused up front, not turned into -1)."""
        current = None
        label_seen = False
        for member in tf:
            if not member.isfile():
                continue
            key, ext = _split_key(member.name)
            if key is None or os.path.basename(key).startswith("."):
                continue
            if key != current:
                current = key
                keys.append(key)
                shard_of.append(s)
                image_at.append(None)
                labels.append(-1)
                label_seen = False
            low = ext.lower()
            last = low.rsplit(".", 1)[-1]
            if image_at[-1] is None and last in _TAR_IMAGE_EXTS:
                image_at[-1] = (member.offset_data, member.size, member.name)
            elif not label_seen and low in _LABEL_EXTS:
                label_seen = True
                raw = tf.extractfile(member).read(64 + 1) if member.size <= 64 else b"?" * 65
                text = raw.decode("utf-8", "replace").strip()
                try:
                    labels[-1] = int(text)
                except ValueError:
                    shown = text if len(text) <= 64 else text[:61] + "..."
                    raise InputError(f"{path}: {member.name} holds the label {shown!r}, which is not "
                                     "an integer; fix that .cls file (labels are class numbers)") from None
                if labels[-1] < -1:
                    raise InputError(f"{path}: {member.name} holds the label {labels[-1]}; labels "
                                     "are class numbers >= 0 (-1: unknown)")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def _read(self, shard: int, offset: int, size: int) -> bytes:
        if self._pid != os.getpid():  # forked into a worker: do not share file positions
            self._handles, self._pid = {}, os.getpid()
        f = self._handles.get(shard)
        if f is None:
            f = self._handles[shard] = open(self.shards[shard], "rb")
        f.seek(offset)
        return f.read(size)

    def __len__(self) -> int:
        return len(self.keys)

    def _load(self, i: int) -> Item:
        s = int(self._shard_of[i])
        label = self._labels[i]
        where = f"{self.shards[s]}:{self.keys[i]}"
        if self._image_at[i] is None:
            return Item(None, label, self.keys[i], where, "sample has no image member")
        offset, size, name = self._image_at[i]
        image, error = open_image(self._read(s, offset, size), max_pixels=self.max_pixels)
        return Item(image, label, self.keys[i], f"{self.shards[s]}:{name}", error)

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict:
        return {**super().describe(), "shards": [str(p.resolve()) for p in self.shards]}


# --------------------------------------------------------------------------- HF datasets


class HFDiskSource(ImageSource):
    """A Hugging Face ``datasets`` dataset saved with ``save_to_disk`` (optional package).

    Parameters
    ----------
    path : path
        The folder ``save_to_disk`` wrote (a ``Dataset`` or a ``DatasetDict``).
    split : str, optional
        Which split of a ``DatasetDict``; needed when there are several.
    image_column : str, optional
        Default: the first column of feature type ``Image``, else ``image`` or ``img``.
    label_column : str or False, optional
        Default: the first ``ClassLabel`` column, else ``label`` or ``labels``.
    id_column : str, optional
        Default: ``id`` if present, else the row number.
    max_pixels : int or None

    Notes
    -----
    Images are decoded by deepclust (not by ``datasets``) so that bad ones are reported, not
    raised. The fingerprint is the dataset's own ``_fingerprint``.
    """

    kind = "hf"

    def __init__(self, path: str | os.PathLike, *, split: str | None = None,
                 image_column: str | None = None, label_column: str | bool | None = None,
                 id_column: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        try:
            import datasets
        except ImportError:
            raise InputError(
                "reading a saved Hugging Face dataset needs the datasets package: pip install datasets"
            ) from None
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise DataNotFoundError(f"dataset folder {self.path} does not exist")
        try:
            ds = datasets.load_from_disk(str(self.path))
        except (FileNotFoundError, ValueError) as exc:
            raise InputError(f"{self.path} is not a dataset saved with save_to_disk: {exc}") from None
        if isinstance(ds, datasets.DatasetDict):
            splits = list(ds)
            if split is None:
                if len(splits) != 1:
                    raise InputError(f"{self.path} holds splits {', '.join(splits)}; choose one with split=")
                split = splits[0]
            if split not in ds:
                raise InputError(f"{self.path} has no split {split!r} (splits: {', '.join(splits)})")
            ds = ds[split]
        elif split is not None and split != str(getattr(ds, "split", split)):
            raise InputError(f"{self.path} holds a single dataset (split {ds.split}), not {split!r}")
        self.split = split
        features = ds.features
        cols = list(features)
        if image_column is None:
            image_column = next((c for c in cols if isinstance(features[c], datasets.Image)), None)
            image_column = image_column or next((c for c in ("image", "img") if c in cols), None)
        if image_column is None or image_column not in cols:
            raise InputError(f"{self.path}: no image column found (columns: {', '.join(cols)}); pass image_column=")
        if label_column is None:
            label_column = next((c for c in cols if isinstance(features[c], datasets.ClassLabel)), None)
            label_column = label_column or next((c for c in ("label", "labels") if c in cols), None)
        elif label_column is False:
            label_column = None
        elif label_column not in cols:
            raise InputError(f"{self.path} has no column {label_column!r} (columns: {', '.join(cols)})")
        if id_column is not None and id_column not in cols:
            raise InputError(f"{self.path} has no column {id_column!r}")
        id_column = id_column or ("id" if "id" in cols else None)
        if isinstance(features[image_column], datasets.Image):
            ds = ds.cast_column(image_column, datasets.Image(decode=False))
        keep = [c for c in (image_column, label_column, id_column) if c]
        self._fingerprint = f"{getattr(ds, '_fingerprint', '')}|{split}|{keep}"
        self.ds = ds.select_columns(keep)
        self.image_column, self.label_column, self.id_column = image_column, label_column, id_column
        feat = features[label_column] if label_column else None
        self.class_names = list(feat.names) if isinstance(feat, datasets.ClassLabel) else None
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.ds)

    def _load(self, i: int) -> Item:
        row = self.ds[int(i)]
        label = row.get(self.label_column) if self.label_column else None
        label = int(label) if isinstance(label, (int, np.integer)) and not isinstance(label, bool) else -1
        id_ = str(row[self.id_column]) if self.id_column else str(i)
        value = row[self.image_column]
        path = ""
        if isinstance(value, dict):
            data, path = value.get("bytes"), value.get("path") or ""
            if data is None and path:
                full = Path(path) if os.path.isabs(path) else self.path / path
                image, error = open_image(full, max_pixels=self.max_pixels)
                return Item(image, label, id_, str(full), error)
            if data is None:
                return Item(None, label, id_, path, "no image bytes in this row")
            image, error = open_image(data, max_pixels=self.max_pixels)
        elif isinstance(value, Image.Image):
            try:
                from deepclust.data.imageio import to_rgb

                image, error = to_rgb(value), None
            except ValueError as exc:
                image, error = None, str(exc)
        elif isinstance(value, (bytes, bytearray)):
            image, error = open_image(bytes(value), max_pixels=self.max_pixels)
        elif value is None:
            image, error = None, "missing image (null cell)"
        else:
            try:
                image, error = array_to_image(np.asarray(value)), None
            except ValueError as exc:
                image, error = None, str(exc)
        return Item(image, label, id_, path, error)

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict:
        return {**super().describe(), "path": str(self.path.resolve()), "split": self.split,
                "image_column": self.image_column, "label_column": self.label_column}


# --------------------------------------------------------------------------- dispatch

SOURCE_KINDS = ("folder", "manifest", "arrays", "builtin", "tar", "hf")


def _is_hf_dataset_dir(p: Path) -> bool:
    return any((p / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))


def open_source(spec, *, kind: str | None = None, **kwargs) -> ImageSource:
    """An :class:`ImageSource` for ``spec``, guessing its kind unless ``kind`` is given.

    Parameters
    ----------
    spec : ImageSource, Dataset, path or str
        - an :class:`ImageSource` (returned as is) or a built-in
          :class:`~deepclust.data.builtin.Dataset` (wrapped in :class:`ArraySource`);
        - a folder saved by ``datasets.save_to_disk`` -> :class:`HFDiskSource`;
        - a folder holding ``.tar`` files and nothing else -> :class:`TarShardSource`;
        - any other folder -> :class:`FolderSource`;
        - a ``.csv``/``.tsv``/``.parquet`` file -> :class:`ManifestSource`;
        - a ``.tar`` file, a glob or ``{000..009}`` pattern -> :class:`TarShardSource`;
        - a built-in dataset name (``fashion-mnist:test``, ``digits``) -> :class:`ArraySource`.
    kind : {"folder", "manifest", "arrays", "builtin", "tar", "hf"}, optional
        Force the source type.
    **kwargs
        Passed to the source's constructor (``label_column=``, ``split=``, ...).
    """
    from deepclust.data.builtin import BUILTIN_DATASETS, Dataset, load_dataset

    if isinstance(spec, ImageSource):
        return spec
    if "max_pixels" in kwargs:
        check_max_pixels(kwargs["max_pixels"])
    if isinstance(spec, Dataset):
        return ArraySource.from_dataset(spec)
    if kind is not None and kind not in SOURCE_KINDS:
        raise InputError(f"unknown source kind {kind!r}; use one of {', '.join(SOURCE_KINDS)}")
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)
    p = Path(text).expanduser()
    if kind in ("arrays", "builtin") or (kind is None and not p.exists()
                                         and text.split(":")[0].lower() in BUILTIN_DATASETS):
        split = kwargs.pop("split", None)
        return ArraySource.from_dataset(load_dataset(text, split, **kwargs))
    if kind == "folder":
        return FolderSource(p, **kwargs)
    if kind == "manifest":
        return ManifestSource(p, **kwargs)
    if kind == "tar":
        return TarShardSource(text, **kwargs)
    if kind == "hf":
        return HFDiskSource(p, **kwargs)
    if p.is_dir():
        if _is_hf_dataset_dir(p):
            return HFDiskSource(p, **kwargs)
        entries = [q for q in p.iterdir() if not q.name.startswith(".")]
        if entries and all(q.is_file() and q.suffix == ".tar" for q in entries):
            return TarShardSource(p, **kwargs)
        return FolderSource(p, **kwargs)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix in (".csv", ".tsv", ".parquet"):
            return ManifestSource(p, **kwargs)
        if suffix == ".tar":
            return TarShardSource(p, **kwargs)
        raise InputError(
            f"{p}: cannot tell what kind of image source this file is; give a folder, a "
            ".csv/.parquet manifest or a .tar shard"
        )
    if glob.has_magic(text) or _BRACE.search(text):
        return TarShardSource(text, **kwargs)
    raise DataNotFoundError(
        f"{text} does not exist; give an image folder, a manifest (.csv/.parquet), tar shards, "
        f"a saved Hugging Face dataset, or a built-in dataset ({', '.join(BUILTIN_DATASETS)})"
    )
