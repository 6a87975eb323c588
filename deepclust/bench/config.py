"""The benchmark config: what ``deepclust bench CONFIG.yaml`` runs.

A YAML (or JSON) mapping; relative paths are relative to the working directory::

    title: Fashion-MNIST, EfficientNet-Lite0           # optional
    out: runs/bench-fashion-mnist                      # results.parquet, manifests/, report/
    seeds: [0, 1, 2]
    features:                                          # encoders / stores (one or more)
      - name: effnet-lite0
        builtin: fashion-mnist:test                    # cached embeddings of a built-in set
        encoder: effnet-lite0
      - name: dinov2
        path: /data/in21k-dinov2-store                 # a store or feature file
        hierarchy: /data/imagenet21k_miil_tree.pth     # per-features override
    hierarchy: fashion-mnist                           # built-in, .pth, .json or .csv
    reducers: [none, "pca:64"]                         # default [none]
    methods:                                           # k-means is always added
      - kmeans
      - {name: temi, params: {n_heads: 4}}
      - {name: gmm, reducers: ["pca:32"], label: gmm-pca32}
    benchmarks:
      - {type: long_tail, imbalance_ratio: 10, name: "imbalance r=10"}
      - {type: granularity, depth: 0, name: "coarse"}
    k: benchmark                                       # or auto (label-free, k_values)
    k_values: "2:20"
    criterion: umap_silhouette
    label_free: false                                  # UMAP-silhouette etc. per row (slow)
    metrics: [acc, nmi, ami]                           # pivot tables printed
    non_primary: {depth: 0, ranks: 3}                  # or false; needs a hierarchy

See docs/bench.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepclust.bench.builders import check_spec
from deepclust.errors import DataNotFoundError, InputError

__all__ = ["BenchConfig", "FeaturesSpec", "MethodSpec", "load_config", "parse_config"]

_TOP_KEYS = {"title", "out", "seeds", "features", "hierarchy", "reducers", "methods",
             "benchmarks", "k", "k_values", "criterion", "label_free", "metrics", "non_primary",
             "noise"}
BASELINE = "kmeans"


def canonical(obj: Any) -> str:
    """Stable JSON text of ``obj`` (sorted keys): the identity of a setting."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def short_hash(obj: Any, n: int = 8) -> str:
    return hashlib.sha1(canonical(obj).encode()).hexdigest()[:n]


@dataclass
class FeaturesSpec:
    """One set of embeddings: a built-in dataset's cached embeddings, or a store/file."""

    name: str
    builtin: str | None = None
    encoder: str | None = None
    path: str | None = None
    hierarchy: Any = None

    def identity(self) -> dict:
        return {"builtin": self.builtin, "encoder": self.encoder, "path": self.path}


@dataclass
class MethodSpec:
    """A clusterer, its parameters, and the reducers it runs after."""

    name: str
    params: dict = field(default_factory=dict)
    label: str = ""
    reducers: list[str] | None = None
    baseline: bool = False


@dataclass
class BenchConfig:
    """A parsed, validated benchmark config (see the module docstring)."""

    features: list[FeaturesSpec]
    methods: list[MethodSpec]
    benchmarks: list[dict]
    seeds: list[int] = field(default_factory=lambda: [0])
    reducers: list[str] = field(default_factory=lambda: ["none"])
    hierarchy: Any = None
    out: str = "runs/bench"
    title: str = "deepclust benchmark"
    k: str = "benchmark"
    k_values: Any = "2:20"
    criterion: str = "umap_silhouette"
    label_free: bool = False
    metrics: list[str] = field(default_factory=lambda: ["acc", "nmi", "ami"])
    non_primary: dict | None = None
    noise: str = "cluster"
    raw: dict = field(default_factory=dict)

    def reducers_for(self, method: MethodSpec) -> list[str]:
        return method.reducers if method.reducers is not None else self.reducers


def _reducer_text(r: Any) -> str:
    if r is None or (isinstance(r, str) and r.strip().lower() in ("", "none")):
        return "none"
    if not isinstance(r, str):
        raise InputError(f"a reducer is a string such as 'pca:64' or 'none', got {r!r}")
    from deepclust.reduce import parse_reducer_spec

    parse_reducer_spec(r)  # fails early on a typo
    return r.strip()


def _methods(items: Any) -> list[MethodSpec]:
    from deepclust.cluster import get_clusterer_class

    if items is None:
        items = []
    if not isinstance(items, list):
        raise InputError("methods must be a list of names or {name, params, reducers, label}")
    out: list[MethodSpec] = []
    for item in items:
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or "name" not in item:
            raise InputError(f"a method needs a name, got {item!r}")
        unknown = sorted(set(item) - {"name", "params", "label", "reducers"})
        if unknown:
            raise InputError(f"method {item['name']}: unknown key(s) {', '.join(unknown)}")
        cls = get_clusterer_class(item["name"])
        params = dict(item.get("params") or {})
        clash = sorted({"n_clusters", "random_state"} & set(params))
        if clash:
            raise InputError(f"method {item['name']}: do not set {', '.join(clash)}; k comes "
                             "from the benchmark and the seed from 'seeds'")
        if not cls.takes_n_clusters:
            raise InputError(f"method {item['name']} finds k itself; benchmarks give k, so "
                             "use a method that takes it")
        accepted = set(cls._get_param_names())
        bad = sorted(set(params) - accepted)
        if bad:
            raise InputError(f"method {item['name']} does not take {', '.join(bad)}")
        reducers = item.get("reducers")
        if reducers is not None:
            if isinstance(reducers, str):
                reducers = [reducers]
            reducers = [_reducer_text(r) for r in reducers]
        out.append(MethodSpec(item["name"], params, str(item.get("label") or ""), reducers))
    if not any(m.name == BASELINE for m in out):
        out.insert(0, MethodSpec(BASELINE))  # k-means is the baseline of every comparison
    for m in out:
        m.baseline = m.name == BASELINE
    # labels: the name when unique, else name + a digest of the parameters
    names = [m.name for m in out]
    for m in out:
        if not m.label:
            m.label = m.name if names.count(m.name) == 1 else f"{m.name}[{short_hash(m.params, 6)}]"
    labels = [m.label for m in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InputError(f"two methods share the label(s) {', '.join(dup)}; give each a label")
    return out


def _features(items: Any) -> list[FeaturesSpec]:
    if isinstance(items, (str, dict)):
        items = [items]
    if not items or not isinstance(items, list):
        raise InputError("features: give at least one entry ({name, builtin, encoder} or "
                         "{name, path})")
    out = []
    for item in items:
        if isinstance(item, str):
            item = {"path": item}
        unknown = sorted(set(item) - {"name", "builtin", "encoder", "path", "hierarchy"})
        if unknown:
            raise InputError(f"features entry: unknown key(s) {', '.join(unknown)}")
        if ("builtin" in item) == ("path" in item):
            raise InputError(f"a features entry needs exactly one of 'builtin' (with "
                             f"'encoder') and 'path', got {item!r}")
        if "builtin" in item and not item.get("encoder"):
            raise InputError(f"features {item['builtin']}: give the encoder (e.g. effnet-lite0)")
        name = item.get("name") or (f"{item['builtin']}/{item['encoder']}" if "builtin" in item
                                    else Path(str(item["path"])).name)
        out.append(FeaturesSpec(str(name), item.get("builtin"), item.get("encoder"),
                                None if item.get("path") is None else str(item["path"]),
                                item.get("hierarchy")))
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise InputError("two features entries share a name; give each a name")
    return out


def parse_config(raw: dict) -> BenchConfig:
    """Validate a config mapping (as read from YAML) into a :class:`BenchConfig`."""
    from deepclust.selection import CRITERIA, parse_k_range

    if not isinstance(raw, dict):
        raise InputError("a bench config is a mapping (YAML keys: features, methods, "
                         "benchmarks, ...)")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise InputError(f"unknown config key(s): {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(_TOP_KEYS))}")
    benches = raw.get("benchmarks")
    if not benches or not isinstance(benches, list):
        raise InputError("benchmarks: give a list of {type: ..., ...} entries")
    benches = [check_spec(b) for b in benches]
    names = [b["name"] for b in benches]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"two benchmarks share the name(s) {', '.join(dup)}")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int):
        seeds = [seeds]
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise InputError(f"seeds must be a list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise InputError("seeds are repeated")
    reducers = raw.get("reducers", ["none"])
    if isinstance(reducers, str) or reducers is None:
        reducers = [reducers]
    reducers = [_reducer_text(r) for r in reducers]
    k = str(raw.get("k", "benchmark"))
    if k not in ("benchmark", "auto"):
        raise InputError(f"k must be 'benchmark' (the benchmark's class count) or 'auto' "
                         f"(label-free selection), got {k!r}")
    k_values = raw.get("k_values", "2:20")
    parse_k_range(k_values)
    criterion = str(raw.get("criterion", "umap_silhouette"))
    if criterion not in (*CRITERIA, "combined"):
        raise InputError(f"criterion must be one of {', '.join([*CRITERIA, 'combined'])}")
    if k == "auto" and criterion != "combined" and CRITERIA[criterion].needs_labels:
        raise InputError(f"criterion {criterion} reads the labels; k='auto' is meant to be "
                         "label-free")
    metrics = raw.get("metrics", ["acc", "nmi", "ami"])
    if isinstance(metrics, str):
        metrics = [metrics]
    np_cfg = raw.get("non_primary")
    if np_cfg is True:
        np_cfg = {}
    if np_cfg is not None and np_cfg is not False:
        if not isinstance(np_cfg, dict):
            raise InputError("non_primary: give {depth: D} or {level: L} (and ranks), or false")
        bad = sorted(set(np_cfg) - {"depth", "level", "ranks", "benchmarks"})
        if bad:
            raise InputError(f"non_primary: unknown key(s) {', '.join(bad)}")
        if "depth" in np_cfg and "level" in np_cfg:
            raise InputError("non_primary: give depth or level, not both")
        np_cfg = {"ranks": 3, **np_cfg}
        if int(np_cfg["ranks"]) < 2:
            raise InputError("non_primary.ranks must be >= 2 (rank 1 is the primary cluster)")
    else:
        np_cfg = None
    noise = str(raw.get("noise", "cluster"))
    return BenchConfig(
        features=_features(raw.get("features")), methods=_methods(raw.get("methods")),
        benchmarks=benches, seeds=list(seeds), reducers=reducers,
        hierarchy=raw.get("hierarchy"), out=str(raw.get("out", "runs/bench")),
        title=str(raw.get("title", "deepclust benchmark")), k=k, k_values=k_values,
        criterion=criterion, label_free=bool(raw.get("label_free", False)),
        metrics=[str(m) for m in metrics], non_primary=np_cfg, noise=noise, raw=dict(raw),
    )


def load_config(path: str | os.PathLike) -> BenchConfig:
    """Read and validate a YAML (or JSON) bench config."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataNotFoundError(f"config {p} does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        raw = json.loads(text)
    else:
        try:
            import yaml
        except ImportError:  # pragma: no cover - PyYAML is a dependency
            raise InputError("reading YAML configs needs PyYAML: pip install pyyaml") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{p} is not valid YAML: {exc}") from None
    return parse_config(raw or {})
