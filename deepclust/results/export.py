"""Export a run's images into one folder per cluster, and undo a move.

:func:`export_run` reads ``RUN/assignments.parquet`` (columns ``path`` and ``cluster``) and
copies, symlinks or moves every image into ``TO/<folder>/``: ``cluster_07`` (the label
zero-padded to the width of the largest one), ``noise`` for -1, or a name from the user's
names file. It never overwrites a file: a name already taken in a folder gets `` (2)``,
`` (3)``, ... before its extension. Every file written is listed in the manifest
``TO/deepclust-export.json`` (source, target, size; the SHA-256 too for moves).

Before anything is written the whole plan is checked: every row has a path, every source
exists, the folder names are safe and distinct. A move is done as a hard link then an
unlink where the source and target share a file system (a link never replaces an existing
file), else as an exclusive-create copy then an unlink; the manifest is written before the
first file moves and again at the end, so an interrupted move can be undone too.

:func:`undo_export` puts every moved file back where it was, after checking that none was
changed since (size and SHA-256) and that nothing now stands in its old place, then removes
the cluster folders it leaves empty (and ``TO`` if the export created it).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import re
import shutil
import time
import unicodedata
from pathlib import Path

from deepclust.errors import DataNotFoundError, InputError
from deepclust.runinfo import write_json

__all__ = ["MANIFEST", "MODES", "export_run", "folder_names", "read_manifest", "read_names",
           "safe_name", "sha256_of", "undo_export"]

MANIFEST = "deepclust-export.json"
MANIFEST_FORMAT = "deepclust-export"
MANIFEST_VERSION = 1
MODES = ("copy", "symlink", "move")
ASSIGNMENTS = "assignments.parquet"
#: Characters not allowed in folder names on some system (Windows' set, plus controls).
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}
MAX_NAME = 100


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------ names


def safe_name(name: str) -> str:
    """``name`` as a folder name safe on every common file system, or InputError.

    Unicode is kept (NFC); path separators, ``<>:"|?*`` and control characters become
    ``_``; surrounding spaces and dots are dropped; empty results, ``.``/``..`` and names
    Windows reserves (``con``, ``nul``, ``com1`` ...) are refused.
    """
    text = unicodedata.normalize("NFC", str(name))
    text = _UNSAFE.sub("_", text).strip().strip(".").strip()
    text = re.sub(r"\s+", " ", text)[:MAX_NAME].strip()
    if not text or set(text) == {"_"}:
        raise InputError(f"cluster name {name!r} has no usable characters for a folder name")
    if text.split(".")[0].lower() in _RESERVED:
        raise InputError(f"cluster name {name!r} is reserved on Windows; choose another")
    return text


def read_names(names) -> dict[int, str]:
    """Cluster names from a dict or a file: JSON ``{"7": "cats"}`` or a CSV with columns
    ``cluster,name``. Keys are cluster labels (``-1`` or ``noise`` for noise)."""
    if names is None:
        return {}
    if isinstance(names, dict):
        raw = dict(names)
        where = "names"
    else:
        path = Path(names).expanduser()
        where = str(path)
        if not path.is_file():
            raise DataNotFoundError(f"names file {path} does not exist")
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
            if not isinstance(raw, dict):
                raise InputError(f'{path} must hold a JSON object such as {{"7": "cats"}}')
        else:
            rows = list(csv.reader(text.splitlines()))
            if rows and [c.strip().lower() for c in rows[0][:2]] == ["cluster", "name"]:
                rows = rows[1:]
            raw = {}
            for i, row in enumerate(rows, 1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2:
                    raise InputError(f"{path}: line {i} should be 'cluster,name', got {','.join(row)!r}")
                if row[0].strip() in raw:
                    raise InputError(f"{path}: cluster {row[0].strip()} is named twice")
                raw[row[0].strip()] = row[1]
    out: dict[int, str] = {}
    for key, value in raw.items():
        k = str(key).strip()
        try:
            label = -1 if k.lower() == "noise" else int(k)
        except ValueError:
            raise InputError(f"{where}: {key!r} is not a cluster label (an integer, or 'noise')") from None
        if label < -1:
            raise InputError(f"{where}: cluster labels are >= -1, got {label}")
        if not isinstance(value, str):
            raise InputError(f"{where}: the name of cluster {label} must be text, got {value!r}")
        if label in out:
            raise InputError(f"{where}: cluster {label} is named twice")
        out[label] = value
    return out


def folder_names(labels, names: dict[int, str] | None = None) -> dict[int, str]:
    """The folder of each label: a user name made safe, else ``cluster_07`` (zero-padded to
    the width of the largest label) or ``noise``. Refuses names of clusters the run does not
    have and two clusters that would share a folder (compared ignoring case)."""
    labels = sorted({int(v) for v in labels})
    names = names or {}
    unknown = sorted(set(names) - set(labels))
    if unknown:
        have = ", ".join(str(v) for v in labels[:20]) + (" ..." if len(labels) > 20 else "")
        raise InputError(f"the names file names cluster(s) {', '.join(map(str, unknown))}, "
                         f"which this run does not have (clusters: {have})")
    width = len(str(max([v for v in labels if v >= 0], default=0)))
    out: dict[int, str] = {}
    seen: dict[str, int] = {}
    for v in labels:
        if v in names:
            folder = safe_name(names[v])
        else:
            folder = "noise" if v == -1 else f"cluster_{v:0{width}d}"
        key = folder.casefold()
        if key in seen:
            raise InputError(f"clusters {seen[key]} and {v} would share the folder {folder!r}; "
                             "give them different names")
        seen[key] = v
        out[v] = folder
    return out


# ------------------------------------------------------------------------------ export


def _read_assignments(run_dir: Path) -> tuple[list[str], list[int]]:
    import pyarrow.parquet as pq

    table_path = run_dir / ASSIGNMENTS
    if not run_dir.is_dir():
        raise DataNotFoundError(f"run folder {run_dir} does not exist")
    if not table_path.is_file():
        raise DataNotFoundError(f"{run_dir} has no {ASSIGNMENTS}; it is written by "
                                "`deepclust cluster` (re-run the clustering to get it)")
    try:
        table = pq.read_table(table_path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{table_path} cannot be read ({exc})") from None
    missing = [c for c in ("path", "cluster") if c not in table.column_names]
    if missing:
        raise InputError(f"{table_path} has no column {', '.join(missing)}; it is not an "
                         "assignments table")
    paths = table["path"].to_pylist()
    clusters = table["cluster"].to_pylist()
    no_path = sum(1 for p in paths if not p)
    if no_path:
        raise InputError(f"{no_path} of {len(paths)} rows of {table_path} have no image path "
                         "(a run on feature vectors); export needs a run on image files")
    if any(c is None for c in clusters):
        raise InputError(f"{table_path} has rows without a cluster label")
    return [str(p) for p in paths], [int(c) for c in clusters]


def _free_name(folder: Path, name: str, taken: set[str]) -> str:
    """``name``, or ``stem (2).ext``, ``stem (3).ext`` ...: the first not on disk nor taken."""
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension (or a dot file)
        stem, dot, ext = name, "", ""
    candidate, i = name, 1
    while candidate.casefold() in taken or os.path.lexists(folder / candidate):
        i += 1
        candidate = f"{stem} ({i}){dot}{ext}"
    taken.add(candidate.casefold())
    return candidate


def _copy_exclusive(src: str, dst: Path) -> None:
    """Copy ``src`` to a new file ``dst`` (FileExistsError if it exists), with its times."""
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    shutil.copystat(src, dst)


def _move_exclusive(src: str, dst: Path) -> None:
    """Move ``src`` to ``dst`` without ever replacing an existing ``dst``."""
    try:
        os.link(src, dst)  # fails with EEXIST rather than replacing
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        _copy_exclusive(src, dst)
    os.unlink(src)


def _write_manifest(path: Path, manifest: dict) -> None:
    write_json(path, manifest)


def export_run(run_dir: str | os.PathLike, to: str | os.PathLike, *, mode: str = "copy",
               names=None) -> Path:
    """Copy, symlink or move a run's images into one folder per cluster.

    Parameters
    ----------
    run_dir : path
        A run folder holding ``assignments.parquet`` (written by ``deepclust cluster``).
    to : path
        The export folder (created if needed; it must not hold an export already).
    mode : {"copy", "symlink", "move"}
        ``symlink`` makes absolute links to the originals; ``move`` takes the originals out
        of their folders (undo with :func:`undo_export`).
    names : dict or path, optional
        Cluster names: ``{7: "cats"}``, or a JSON / CSV file (see :func:`read_names`).

    Returns
    -------
    Path
        The manifest, ``to/deepclust-export.json``.

    Examples
    --------
    >>> export_run("run", "sorted", mode="symlink", names="names.json")  # doctest: +SKIP
    PosixPath('sorted/deepclust-export.json')
    """
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    run_dir = Path(run_dir).expanduser().resolve()
    to = Path(to).expanduser().resolve()
    paths, clusters = _read_assignments(run_dir)
    folders = folder_names(clusters, read_names(names))
    manifest_path = to / MANIFEST
    if manifest_path.exists():
        raise InputError(f"{to} already holds an export ({MANIFEST}); choose another folder, "
                         "or undo that export first")
    if to.exists() and not to.is_dir():
        raise InputError(f"{to} exists and is not a folder")
    sources = [str(Path(p).expanduser()) for p in paths]
    absent = [p for p in sources if not os.path.isfile(p)]
    if absent:
        more = f" and {len(absent) - 3} more" if len(absent) > 3 else ""
        raise DataNotFoundError(f"{len(absent)} image(s) of the run are missing, e.g. "
                                f"{', '.join(absent[:3])}{more}; nothing was exported")
    if mode == "move":
        real = [os.path.realpath(p) for p in sources]
        if len(set(real)) < len(real):
            twice = next(p for p, r in zip(sources, real, strict=True) if real.count(r) > 1)
            raise InputError(f"{twice} appears in more than one row; a move cannot put it in two folders")
        inside = [p for p in sources if Path(os.path.realpath(p)).is_relative_to(to)]
        if inside:
            raise InputError(f"{inside[0]} is inside the export folder {to}; export elsewhere")

    # plan every target before writing anything
    taken: dict[str, set[str]] = {}
    entries = []
    for src, label in zip(sources, clusters, strict=True):
        folder = folders[label]
        name = _free_name(to / folder, os.path.basename(src), taken.setdefault(folder, set()))
        entry = {"source": os.path.abspath(src), "target": f"{folder}/{name}", "cluster": label,
                 "size": os.path.getsize(src)}
        if mode == "move":
            entry["sha256"] = sha256_of(src)
        entries.append(entry)

    created = not to.exists()
    to.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "mode": mode,
        "run": str(run_dir), "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "created_folder": created,
        "folders": {str(k): v for k, v in folders.items()},
        "complete": False, "files": entries,
    }
    if mode == "move":  # an interrupted move must be undoable: the plan is on disk first
        _write_manifest(manifest_path, manifest)
    done = 0
    try:
        for folder in {e["target"].split("/")[0] for e in entries}:
            (to / folder).mkdir(exist_ok=True)
        for e in entries:
            dst = to / e["target"]
            if mode == "copy":
                _copy_exclusive(e["source"], dst)
            elif mode == "symlink":
                os.symlink(e["source"], dst)
            else:
                _move_exclusive(e["source"], dst)
            done += 1
    except OSError as exc:
        manifest["files"] = entries[:done] if mode != "move" else entries
        _write_manifest(manifest_path, manifest)
        raise InputError(f"export stopped after {done} of {len(entries)} files: {exc}; "
                         f"{manifest_path} lists what was written") from None
    manifest["complete"] = True
    _write_manifest(manifest_path, manifest)
    return manifest_path


# ------------------------------------------------------------------------------ undo


def read_manifest(manifest_or_dir: str | os.PathLike) -> tuple[Path, dict]:
    """The manifest path and contents, from the export folder or the manifest itself."""
    path = Path(manifest_or_dir).expanduser().resolve()
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist: no export to undo there")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path} is not a deepclust export manifest")
    if manifest.get("version", 0) > MANIFEST_VERSION:
        raise InputError(f"{path} was written by a newer deepclust; upgrade to undo it")
    return path, manifest


def undo_export(manifest_or_dir: str | os.PathLike) -> int:
    """Put back every file a ``move`` export took, exactly where it was.

    Parameters
    ----------
    manifest_or_dir : path
        The export folder or its ``deepclust-export.json``.

    Returns
    -------
    int
        Files restored.

    Nothing is moved unless every file can be: a target changed since the export (size or
    SHA-256), or a file now standing at an original place, stops the undo with its name.
    Files the interrupted export had not yet moved are skipped. Afterwards the cluster
    folders left empty are removed, then the manifest (and the export folder if the export
    created it and it is empty).
    """
    path, manifest = read_manifest(manifest_or_dir)
    to = path.parent
    if manifest.get("mode") != "move":
        raise InputError(f"{to} holds a {manifest.get('mode')} export; only a move can be "
                         f"undone (the originals were never touched: delete {to} to remove it)")
    todo, changed = [], []
    for e in manifest["files"]:
        dst, src = to / e["target"], Path(e["source"])
        if not dst.exists():
            if src.is_file() and (not manifest.get("complete")) and sha256_of(src) == e["sha256"]:
                continue  # an interrupted export had not moved this one yet
            changed.append(f"{dst} is missing")
        elif dst.is_symlink() or not dst.is_file():
            changed.append(f"{dst} is no longer a plain file")
        elif dst.stat().st_size != e["size"]:
            changed.append(f"{dst} changed size ({e['size']} -> {dst.stat().st_size} bytes)")
        elif sha256_of(dst) != e["sha256"]:
            changed.append(f"{dst} changed content (SHA-256 differs)")
        elif os.path.lexists(src):
            changed.append(f"{src} exists again at the original place")
        else:
            todo.append((dst, src))
    if changed:
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        raise InputError(f"cannot undo: {'; '.join(changed[:3])}{more}; nothing was moved back")
    for dst, src in todo:
        src.parent.mkdir(parents=True, exist_ok=True)
        _move_exclusive(str(dst), src)
    for folder in sorted(set(manifest.get("folders", {}).values())):
        try:
            (to / folder).rmdir()
        except OSError:
            pass  # not empty (the user put something there) or already gone
    path.unlink()
    if manifest.get("created_folder"):
        try:
            to.rmdir()
        except OSError:
            pass
    return len(todo)
