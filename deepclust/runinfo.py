"""What every run records (``run.json``) and how results reach the disk safely."""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.version import __version__

_PACKAGES = ("numpy", "scipy", "scikit-learn", "faiss-cpu", "faiss-gpu", "umap-learn", "torch",
             "pyarrow", "transformers")


def environment() -> dict[str, Any]:
    """Versions of deepclust, Python, the platform and the libraries results depend on."""
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "deepclust": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None  # JSON has no NaN; null reads as "undefined"
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(obj: Any, **kw) -> str:
    """JSON text with numpy values converted and NaN written as null."""
    return json.dumps(_jsonable(obj), **kw)


#: errno of a write that failed because of the disk, not of deepclust -> how to say it.
_DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted"}


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it:
    readers see the old file or the new one, never half of one."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        from deepclust.errors import OutputError

        raise OutputError(f"cannot write {path.name} in {path.parent}: {_DISK_ERRORS[exc.errno]}; "
                         f"{'free space there' if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 'choose a writable folder'} "
                         "and run the same command again (what was finished is kept and "
                         "the run resumes)") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create the output folder ``path`` (and its parents) and prove a file can be written in
    it, before any work starts; :class:`~deepclust.errors.InputError` naming the folder
    otherwise (under a file, a read-only or full file system, ``/proc``...)."""
    from deepclust.errors import InputError

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path} exists and is not a directory; choose another {flag}")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"{flag} {path}: {parent} is a file, not a folder; choose another "
                             f"{flag}")
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".deepclust-probe.", suffix=".tmp")
        try:
            os.write(fd, b"0")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        from deepclust.errors import OutputError

        raise OutputError(f"{flag} {path} cannot be written ({exc.strerror or exc}); choose "
                          f"another {flag}") from None
    return path


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` (and a newline) to a text file, all of it or none: on a full, read-only
    or forbidden disk the file is cut back to its old length and
    :class:`~deepclust.errors.OutputError` names the folder."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        with open(path, "ab") as f:
            size = f.tell()
            try:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                f.truncate(size)
                raise
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        from deepclust.errors import OutputError

        raise OutputError(f"cannot write {path.name} in {path.parent}: {_DISK_ERRORS[exc.errno]}; "
                          f"{'free space there' if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 'choose a writable folder'} "
                          "and run the same command again") from None


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path``, atomically."""
    atomic_write(path, lambda f: f.write(data))


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    data = (to_json(obj, indent=2) + "\n").encode()
    atomic_write(Path(path), lambda f: f.write(data))


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy``, atomically."""
    atomic_write(Path(path), lambda f: np.save(f, array, allow_pickle=False))
