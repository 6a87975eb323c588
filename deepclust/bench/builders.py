"""Benchmark builders: subsets and relabellings of a labelled dataset.

Each builder takes the dataset's fine labels (and, where needed, a hierarchy or embeddings)
and returns a :class:`BenchmarkSubset`: the rows it keeps, their fine label, and the label the
benchmark scores against. Builders that draw at random take a ``seed`` and give the same
subset for the same seed, on any machine (numpy's ``default_rng``). Every subset can be
written as a manifest (:meth:`BenchmarkSubset.write_manifest`): a Parquet table with the
columns ``index``, ``fine_label`` and ``label``, plus the builder, its parameters and the
class names in the file's metadata.

==================  ==========================================================================
builder             what it isolates (Adaloglou et al. 2024)
==================  ==========================================================================
``full``            the whole labelled set, fine classes (the reference)
``imbalance_band``  class imbalance as it occurs: the classes whose size lies in a band of
                    percentiles around the median size; a wider band keeps a wider spread
``long_tail``       imbalance under control: every class resampled to an exponential profile
                    with a given ratio between the largest and the smallest class
``granularity``     class granularity: classes replaced by their ancestors at a depth or level
                    of a hierarchy, k = the number of classes there
``easy``            easy-to-recognise classes: the top ``q`` classes by k-NN-probe accuracy
``balanced``        N classes drawn at random, the same number of images each
==================  ==========================================================================

Every builder accepts ``depth``/``level`` through :func:`build_benchmark` to relabel its
subset afterwards (e.g. a long tail of coarse classes).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepclust.data.hierarchy import Hierarchy
from deepclust.errors import InputError

__all__ = [
    "BUILDERS",
    "BenchmarkSubset",
    "balanced_classes",
    "build_benchmark",
    "easy_classes",
    "full_set",
    "granularity",
    "imbalance_band",
    "knn_probe_accuracy",
    "long_tail",
    "long_tail_sizes",
    "read_manifest",
]

MANIFEST_META_KEY = b"deepclust.bench"


@dataclass
class BenchmarkSubset:
    """Rows of a dataset and the labels a benchmark scores them against.

    Attributes
    ----------
    name : str
        Name of the benchmark (a table row).
    kind : str
        Builder that made it.
    indices : ndarray of int64
        Rows of the full dataset, ascending.
    fine_labels : ndarray of int64
        The dataset's own label of each row.
    labels : ndarray of int64
        The label used for scoring, ``0..K-1``.
    class_names : list of str
        Name of each label used.
    fine_class_names : list of str
        Name of each fine label (all the dataset's classes).
    params : dict
        The builder's parameters, seed included.
    """

    name: str
    kind: str
    indices: np.ndarray
    fine_labels: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    fine_class_names: list[str]
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def n_clusters(self) -> int:
        """k for this benchmark: the number of classes among the labels used."""
        return int(np.unique(self.labels).size)

    @property
    def class_sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names))

    @property
    def imbalance_ratio(self) -> float:
        """Largest over smallest class size (classes present)."""
        sizes = self.class_sizes
        sizes = sizes[sizes > 0]
        return float(sizes.max() / sizes.min()) if sizes.size else float("nan")

    def stats(self) -> dict[str, Any]:
        sizes = self.class_sizes
        present = sizes[sizes > 0]
        return {"n_samples": len(self), "n_classes": self.n_clusters,
                "n_fine_classes": int(np.unique(self.fine_labels).size),
                "min_class_size": int(present.min()) if present.size else 0,
                "max_class_size": int(present.max()) if present.size else 0,
                "imbalance_ratio": self.imbalance_ratio}

    def fingerprint(self) -> str:
        """A digest of the rows and labels (equal subsets have equal fingerprints)."""
        h = hashlib.sha1()
        for a in (self.indices, self.fine_labels, self.labels):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def write_manifest(self, path: str | os.PathLike) -> Path:
        """Write the subset as Parquet (``index``, ``fine_label``, ``label``), atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from deepclust.runinfo import atomic_write, to_json

        table = pa.table({"index": pa.array(self.indices, pa.int64()),
                          "fine_label": pa.array(self.fine_labels, pa.int64()),
                          "label": pa.array(self.labels, pa.int64())})
        meta = {"name": self.name, "kind": self.kind, "params": self.params,
                "class_names": self.class_names, "fine_class_names": self.fine_class_names,
                "stats": self.stats(), "fingerprint": self.fingerprint()}
        table = table.replace_schema_metadata({MANIFEST_META_KEY: to_json(meta).encode()})
        p = Path(path)
        atomic_write(p, lambda f: pq.write_table(table, f))
        return p


def read_manifest(path: str | os.PathLike) -> BenchmarkSubset:
    """Read a manifest written by :meth:`BenchmarkSubset.write_manifest`."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(MANIFEST_META_KEY)
    if raw is None:
        raise InputError(f"{path} is not a deepclust benchmark manifest (no metadata)")
    meta = json.loads(raw)
    return BenchmarkSubset(
        name=meta["name"], kind=meta["kind"],
        indices=table.column("index").to_numpy(), fine_labels=table.column("fine_label").to_numpy(),
        labels=table.column("label").to_numpy(), class_names=meta["class_names"],
        fine_class_names=meta["fine_class_names"], params=meta["params"])


# ----------------------------------------------------------------------------- helpers


def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise InputError("labels must be a 1-D integer array")
    if not np.any(y >= 0):
        raise InputError("a benchmark needs labels; every label is unknown (-1)")
    return y.astype(np.int64)


def _names(class_names, y: np.ndarray) -> list[str]:
    n = int(y.max()) + 1
    if class_names is None:
        return [str(i) for i in range(n)]
    names = [str(c) for c in class_names]
    if len(names) < n:
        raise InputError(f"labels go up to {n - 1} but only {len(names)} class names are given")
    return names


def _subset(name: str, kind: str, y: np.ndarray, rows: np.ndarray, names: list[str],
            params: dict) -> BenchmarkSubset:
    """Keep ``rows``; labels used are the fine classes kept, renumbered ``0..K-1``."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    fine = y[rows]
    kept = np.unique(fine)
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[kept] = np.arange(kept.size)
    return BenchmarkSubset(name=name, kind=kind, indices=rows, fine_labels=fine,
                           labels=remap[fine], class_names=[names[c] for c in kept],
                           fine_class_names=names, params=params)


def _class_rows(y: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(y, kind="stable")
    ys = y[order]
    classes, starts = np.unique(ys, return_index=True)
    ends = [*starts[1:], len(ys)]
    return {int(c): order[s:e] for c, s, e in zip(classes, starts, ends, strict=True) if c >= 0}


# ----------------------------------------------------------------------------- builders


def full_set(y, *, class_names=None, name: str = "full") -> BenchmarkSubset:
    """All labelled rows with their fine classes."""
    y = _labels(y)
    return _subset(name, "full", y, np.flatnonzero(y >= 0), _names(class_names, y), {})


def imbalance_band(y, width: float, *, center: float = 50.0, class_names=None,
                   name: str | None = None) -> BenchmarkSubset:
    """The classes whose size lies in a band of percentiles around the median size.

    A class is kept when its size ``s`` satisfies ``P(center - width/2) <= s <=
    P(center + width/2)``, ``P`` being the percentiles (linear interpolation) of the class
    sizes; all its images are kept. A narrow band keeps classes of nearly equal size, a wide
    one the natural imbalance of the dataset. Deterministic (no seed).

    Parameters
    ----------
    y : array of int
        Fine labels (-1 = unknown, left out).
    width : float
        Width of the band in percentiles, ``0 <= width <= 100``.
    center : float
        Percentile at the middle of the band (50: the median).
    """
    y = _labels(y)
    width, center = float(width), float(center)
    if not 0.0 <= width <= 100.0 or not 0.0 <= center <= 100.0:
        raise InputError(f"width and center are percentiles in [0, 100], got {width}, {center}")
    sizes = np.bincount(y[y >= 0])
    classes = np.flatnonzero(sizes)
    lo_q, hi_q = max(0.0, center - width / 2), min(100.0, center + width / 2)
    lo, hi = np.percentile(sizes[classes], [lo_q, hi_q])
    keep = classes[(sizes[classes] >= lo) & (sizes[classes] <= hi)]
    rows = np.flatnonzero(np.isin(y, keep))
    params = {"width": width, "center": center, "size_low": float(lo), "size_high": float(hi)}
    return _subset(name or f"band(w={width:g})", "imbalance_band", y, rows,
                   _names(class_names, y), params)


def long_tail_sizes(n_max: int, n_classes: int, imbalance_ratio: float) -> np.ndarray:
    """Exponential long-tail profile: ``n_max * ratio ** (-j / (K - 1))`` for ``j = 0..K-1``.

    The head class gets ``n_max``, the tail class ``round(n_max / ratio)``; every size is at
    least 1. (The profile of CIFAR-10-LT, Cao et al. 2019.)
    """
    if imbalance_ratio < 1:
        raise InputError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    if n_classes == 1:
        return np.array([n_max], dtype=np.int64)
    j = np.arange(n_classes)
    sizes = np.rint(n_max * float(imbalance_ratio) ** (-j / (n_classes - 1))).astype(np.int64)
    return np.maximum(sizes, 1)


def long_tail(y, imbalance_ratio: float, *, seed: int = 0, max_per_class: int | None = None,
              order: str = "random", class_names=None, name: str | None = None) -> BenchmarkSubset:
    """Resample every class to an exponential long tail with a given imbalance ratio.

    Classes are put in an order (``"random"``: a permutation drawn from ``seed``;
    ``"size"``: largest first, ties by class index) and the class at position ``j`` keeps
    ``n_j = round(n_max * ratio ** (-j / (K - 1)))`` of its images, drawn at random from
    ``seed``. ``n_max`` is the largest head size every class can supply (at most
    ``max_per_class``), so the sizes follow the profile exactly and ``n_max / n_min`` is
    ``imbalance_ratio`` up to rounding of ``n_min``.

    Parameters
    ----------
    y : array of int
        Fine labels.
    imbalance_ratio : float
        Largest over smallest class size, ``>= 1`` (1: a balanced subset).
    seed : int
    max_per_class : int, optional
        Cap on the head class's size.
    order : {"random", "size"}
    """
    y = _labels(y)
    rows_of = _class_rows(y)
    classes = np.array(sorted(rows_of), dtype=np.int64)
    counts = np.array([len(rows_of[c]) for c in classes])
    rng = np.random.default_rng(seed)
    if order == "random":
        ranked = classes[rng.permutation(len(classes))]
    elif order == "size":
        ranked = classes[np.lexsort((classes, -counts))]
    else:
        raise InputError(f"order must be 'random' or 'size', got {order!r}")
    if float(imbalance_ratio) < 1:
        raise InputError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    k = len(classes)
    frac = float(imbalance_ratio) ** (-np.arange(k) / (k - 1)) if k > 1 else np.ones(1)
    avail = np.array([len(rows_of[c]) for c in ranked], dtype=np.float64)
    n_max = int(np.floor(np.min(avail / frac)))
    if max_per_class is not None:
        n_max = min(n_max, int(max_per_class))
    sizes = long_tail_sizes(n_max, k, imbalance_ratio)
    while np.any(sizes > avail) and n_max > 1:  # rounding up past a class's size
        n_max -= 1
        sizes = long_tail_sizes(n_max, k, imbalance_ratio)
    if n_max < 1 or n_max / float(imbalance_ratio) < 0.5:
        raise InputError(
            f"imbalance ratio {imbalance_ratio} needs a head class of at least "
            f"{math.ceil(imbalance_ratio / 2)} images, but the classes allow {n_max}; "
            "lower the ratio or use order='size'"
        )
    keep = [np.sort(rng.choice(rows_of[int(c)], size=int(s), replace=False))
            for c, s in zip(ranked, sizes, strict=True)]
    rows = np.concatenate(keep)
    params = {"imbalance_ratio": float(imbalance_ratio), "seed": int(seed), "order": order,
              "max_per_class": max_per_class, "head_size": int(sizes[0]),
              "tail_size": int(sizes[-1]),
              "class_order": [int(c) for c in ranked]}
    return _subset(name or f"long_tail(r={imbalance_ratio:g})", "long_tail", y, rows,
                   _names(class_names, y), params)


def granularity(y, hierarchy: Hierarchy, *, depth: int | None = None, level: int | None = None,
                class_names=None, base: BenchmarkSubset | None = None,
                name: str | None = None) -> BenchmarkSubset:
    """Relabel to the ancestors at a depth or a level of ``hierarchy``.

    Parameters
    ----------
    y : array of int
        Fine labels of the whole dataset (ignored when ``base`` is given).
    hierarchy : Hierarchy
        Holds every class name as a node.
    depth, level : int
        Cut at this depth (0 = roots), or go this many steps up (exactly one of them).
    class_names : list of str
        Node id of each fine label.
    base : BenchmarkSubset, optional
        Relabel this subset instead of the whole set.
    """
    if (depth is None) == (level is None):
        raise InputError("granularity needs exactly one of depth and level")
    if base is None:
        base = full_set(y, class_names=class_names)
    mapping, coarse_names = hierarchy.coarsen(base.fine_class_names, depth=depth, level=level)
    coarse = mapping[base.fine_labels]
    kept = np.unique(coarse)
    remap = np.full(len(coarse_names), -1, dtype=np.int64)
    remap[kept] = np.arange(kept.size)
    where = f"depth={depth}" if depth is not None else f"level={level}"
    params = {**base.params, "depth": depth, "level": level}
    if base.kind != "full":
        params["base"] = base.name
    return BenchmarkSubset(
        name=name or (f"{base.name} @{where}" if base.kind != "full" else f"granularity({where})"),
        kind=base.kind if base.kind != "full" else "granularity",
        indices=base.indices, fine_labels=base.fine_labels, labels=remap[coarse],
        class_names=[coarse_names[c] for c in kept], fine_class_names=base.fine_class_names,
        params=params)


def knn_probe_accuracy(X, y, *, n_neighbors: int = 20, precision: str = "auto",
                       device: str = "auto") -> np.ndarray:
    """Leave-one-out k-NN accuracy of every class (cosine similarity, majority vote).

    Each row is classified by the majority label of its ``n_neighbors`` most similar other
    rows (ties go to the label met first, nearest first).

    Returns
    -------
    ndarray of shape (max(y) + 1,)
        Accuracy of each class; NaN for classes without rows.
    """
    from deepclust.neighbors import mine_neighbors

    y = _labels(y)
    ok = np.flatnonzero(y >= 0)
    Xl = np.asarray(X)[ok]
    yl = y[ok]
    table = mine_neighbors(Xl, int(n_neighbors), precision=precision, device=device)
    nb_labels = yl[table.indices]  # (n, k), nearest first
    votes = np.zeros(nb_labels.shape, dtype=np.int32)
    for j in range(nb_labels.shape[1]):
        votes[:, j] = (nb_labels == nb_labels[:, [j]]).sum(axis=1)
    pred = nb_labels[np.arange(len(yl)), votes.argmax(axis=1)]  # argmax: first (nearest) max
    correct = np.bincount(yl, weights=(pred == yl).astype(np.float64), minlength=y.max() + 1)
    total = np.bincount(yl, minlength=y.max() + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def easy_classes(X, y, q: float, *, n_neighbors: int = 20, probe_per_class: int | None = None,
                 seed: int = 0, class_names=None, name: str | None = None,
                 precision: str = "auto") -> BenchmarkSubset:
    """The ``q`` classes easiest to recognise: highest leave-one-out k-NN-probe accuracy.

    Parameters
    ----------
    X : array (n_samples, n_features)
        Embeddings the probe runs on (those of the benchmark, or another encoder's).
    y : array of int
        Fine labels.
    q : float
        A fraction of the classes (``0 < q < 1``, rounded up) or a number of classes
        (``q >= 1``).
    n_neighbors : int
        k of the probe.
    probe_per_class : int, optional
        Probe on at most this many images per class, drawn from ``seed`` (keeps the probe
        cheap at ImageNet-21K scale); all images of the chosen classes are kept.
    seed : int
    """
    y = _labels(y)
    X = np.asarray(X)
    if len(X) != len(y):
        raise InputError(f"X has {len(X)} rows but y has {len(y)}")
    rows_of = _class_rows(y)
    rng = np.random.default_rng(seed)
    if probe_per_class is not None:
        probe = np.sort(np.concatenate([
            rows if len(rows) <= probe_per_class else rng.choice(rows, probe_per_class,
                                                                 replace=False)
            for rows in rows_of.values()]))
    else:
        probe = np.flatnonzero(y >= 0)
    acc = knn_probe_accuracy(X[probe], y[probe], n_neighbors=n_neighbors, precision=precision)
    classes = np.array(sorted(rows_of), dtype=np.int64)
    n_classes = len(classes)
    if q <= 0:
        raise InputError(f"q must be positive, got {q}")
    n_keep = math.ceil(q * n_classes) if q < 1 else int(q)
    if n_keep > n_classes:
        raise InputError(f"q={q} asks for {n_keep} classes but there are {n_classes}")
    order = classes[np.lexsort((classes, -acc[classes]))]  # best first, ties by class index
    keep = np.sort(order[:n_keep])
    rows = np.flatnonzero(np.isin(y, keep))
    params = {"q": q, "n_neighbors": int(n_neighbors), "probe_per_class": probe_per_class,
              "seed": int(seed), "n_kept": int(n_keep),
              "probe_accuracy": {str(int(c)): float(acc[c]) for c in classes},
              "accuracy_cutoff": float(acc[order[n_keep - 1]])}
    return _subset(name or f"easy(q={q:g})", "easy", y, rows, _names(class_names, y), params)


def balanced_classes(y, n_classes: int, *, per_class: int | None = None, seed: int = 0,
                     class_names=None, name: str | None = None) -> BenchmarkSubset:
    """``n_classes`` classes drawn at random, ``per_class`` images each.

    Classes are drawn (from ``seed``) among those with at least ``per_class`` images;
    ``per_class`` defaults to the smallest size among the drawn classes, so every class
    keeps exactly the same number of images.
    """
    y = _labels(y)
    rows_of = _class_rows(y)
    eligible = np.array(sorted(c for c, r in rows_of.items()
                               if per_class is None or len(r) >= per_class), dtype=np.int64)
    if n_classes < 1 or n_classes > len(eligible):
        raise InputError(f"n_classes must be in 1..{len(eligible)} (classes with at least "
                         f"{per_class or 1} images), got {n_classes}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible, size=int(n_classes), replace=False))
    size = int(per_class) if per_class is not None else min(len(rows_of[int(c)]) for c in chosen)
    rows = np.concatenate([rng.choice(rows_of[int(c)], size=size, replace=False) for c in chosen])
    params = {"n_classes": int(n_classes), "per_class": size, "seed": int(seed),
              "classes": [int(c) for c in chosen]}
    return _subset(name or f"balanced(n={n_classes})", "balanced", y, rows,
                   _names(class_names, y), params)


# ----------------------------------------------------------------------------- from a spec

#: Benchmark types of a config (``type:``) and the parameters each takes.
BUILDERS: dict[str, tuple[str, ...]] = {
    "full": (),
    "imbalance_band": ("width", "center"),
    "long_tail": ("imbalance_ratio", "max_per_class", "order"),
    "granularity": ("depth", "level"),
    "easy": ("q", "n_neighbors", "probe_per_class"),
    "balanced": ("n_classes", "per_class"),
}
_COMMON = ("type", "name", "seed", "depth", "level")


def check_spec(spec: dict) -> dict:
    """Validate a benchmark spec; returns a copy with ``name`` filled in."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise InputError(f"a benchmark needs a 'type' ({', '.join(BUILDERS)}), got {spec!r}")
    kind = spec["type"]
    if kind not in BUILDERS:
        raise InputError(f"unknown benchmark type {kind!r}; known: {', '.join(BUILDERS)}")
    unknown = sorted(set(spec) - set(_COMMON) - set(BUILDERS[kind]))
    if unknown:
        raise InputError(f"benchmark type {kind!r} does not take {', '.join(unknown)}; it takes "
                         f"{', '.join((*BUILDERS[kind], 'name', 'seed', 'depth', 'level'))}")
    required = {"imbalance_band": ("width",), "long_tail": ("imbalance_ratio",),
                "easy": ("q",), "balanced": ("n_classes",)}.get(kind, ())
    missing = [r for r in required if r not in spec]
    if missing:
        raise InputError(f"benchmark type {kind!r} needs {', '.join(missing)}")
    if kind == "granularity" and ("depth" in spec) == ("level" in spec):
        raise InputError("a granularity benchmark needs exactly one of depth and level")
    if kind != "granularity" and "depth" in spec and "level" in spec:
        raise InputError(f"benchmark {spec.get('name', kind)}: give depth or level, not both")
    out = dict(spec)
    out.setdefault("name", default_name(out))
    return out


def default_name(spec: dict) -> str:
    kind = spec["type"]
    base = {
        "full": "full",
        "imbalance_band": f"band(w={spec.get('width')})",
        "long_tail": f"long_tail(r={spec.get('imbalance_ratio')})",
        "granularity": f"granularity({'depth' if 'depth' in spec else 'level'}="
                       f"{spec.get('depth', spec.get('level'))})",
        "easy": f"easy(q={spec.get('q')})",
        "balanced": f"balanced(n={spec.get('n_classes')})",
    }[kind]
    if kind != "granularity":
        for key in ("depth", "level"):
            if key in spec:
                base += f" @{key}={spec[key]}"
    return base


def uses_seed(spec: dict) -> bool:
    """Whether the subset depends on the seed (random builders without a fixed ``seed``)."""
    if "seed" in spec:
        return False
    return spec["type"] in ("long_tail", "balanced") or (
        spec["type"] == "easy" and spec.get("probe_per_class") is not None)


def build_benchmark(spec: dict, y, *, class_names=None, hierarchy: Hierarchy | None = None,
                    X=None, seed: int = 0) -> BenchmarkSubset:
    """Build the benchmark a config entry describes.

    Parameters
    ----------
    spec : dict
        ``type`` (see :data:`BUILDERS`), the builder's parameters, and optionally ``name``,
        ``seed`` (a fixed subset seed; default: ``seed`` below) and ``depth``/``level``
        (relabel the subset with ``hierarchy`` afterwards).
    y : array of int
        Fine labels of the whole dataset.
    class_names : list of str, optional
    hierarchy : Hierarchy, optional
        Needed by ``granularity`` and by ``depth``/``level``.
    X : array, optional
        Embeddings; needed by ``easy``.
    seed : int
        The run's seed, used when the spec has none.
    """
    spec = check_spec(spec)
    kind = spec["type"]
    s = int(spec.get("seed", seed))
    p = {k: v for k, v in spec.items() if k in BUILDERS[kind]}
    name = spec["name"]
    relabel = kind != "granularity" and ("depth" in spec or "level" in spec)
    inner_name = None if relabel else name
    if kind == "full":
        sub = full_set(y, class_names=class_names, name=inner_name or "full")
    elif kind == "imbalance_band":
        sub = imbalance_band(y, class_names=class_names, name=inner_name, **p)
    elif kind == "long_tail":
        sub = long_tail(y, seed=s, class_names=class_names, name=inner_name, **p)
    elif kind == "easy":
        if X is None:
            raise InputError("an 'easy' benchmark needs the embeddings for its k-NN probe")
        sub = easy_classes(X, y, seed=s, class_names=class_names, name=inner_name, **p)
    elif kind == "balanced":
        sub = balanced_classes(y, seed=s, class_names=class_names, name=inner_name, **p)
    else:
        if hierarchy is None:
            raise InputError(f"benchmark {name!r} needs a hierarchy (set 'hierarchy' in the "
                             "config)")
        return granularity(y, hierarchy, class_names=class_names, name=name, **p)
    if relabel:
        if hierarchy is None:
            raise InputError(f"benchmark {name!r} relabels by depth/level and needs a hierarchy")
        sub = granularity(y, hierarchy, depth=spec.get("depth"), level=spec.get("level"),
                          base=sub, name=name)
    return sub
