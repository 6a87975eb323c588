"""Class hierarchies: each class and its ancestors (coarser classes).

A :class:`Hierarchy` is a forest given by a parent map (``node -> parent``, None for a root).
Depth counts from the roots (a root has depth 0); *level* counts up from a class (level 0 is
the class itself, level 1 its parent, ...). Relabelling to a depth cuts the tree there;
relabelling to a level moves every class the same number of steps up. Both stop at the root,
so a class shallower than the cut keeps itself.

Where hierarchies come from (:func:`load_hierarchy`):

==============================  ==============================================================
``"fashion-mnist"``             built in: tops (T-shirt/top, pullover, coat, shirt), trouser,
                                dress, footwear (sandal, sneaker, ankle boot), bag
``*.pth`` / ``*.pt``            the ImageNet-21K-P semantic tree (``imagenet21k_miil_tree.pth``
                                of Ridnik et al. 2021, fall11 or winter21 release), read by
                                :func:`load_imagenet21k_tree`
``*.json``                      a parent map ``{"child": "parent" or null}``, an ancestor map
                                ``{"child": ["root", ..., "parent"]}`` (coarse to fine), or
                                ``{"parents": {...}, "names": {...}}``
``*.csv``                       columns ``child,parent`` (``class``/``node``/``name`` and
                                ``parent`` also accepted; empty parent = root), optionally
                                ``description``
==============================  ==============================================================

Examples
--------
>>> h = builtin_hierarchy("fashion-mnist")
>>> h.ancestors("Sneaker"), h.depth("Sneaker"), h.ancestor_at_depth("Coat", 0)
(['footwear'], 1, 'tops')
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from deepclust.errors import DataNotFoundError, InputError

__all__ = [
    "BUILTIN_HIERARCHIES",
    "Hierarchy",
    "builtin_hierarchy",
    "load_hierarchy",
    "load_imagenet21k_tree",
    "load_parent_map",
]

#: Keys of the ImageNet-21K-P tree dictionary (``torch.save``-d by Ridnik et al.).
IMAGENET21K_TREE_KEYS = ("class_list", "child_2_parent", "class_tree_list", "class_description")


class Hierarchy:
    """A forest of classes: every node's parent, and optional readable names.

    Parameters
    ----------
    parents : mapping
        ``node -> parent`` (None or missing for a root). Parents that are not keys
        themselves become roots.
    names : mapping, optional
        ``node -> description`` (e.g. WordNet lemma names); the node id otherwise.
    classes : sequence of str, optional
        The dataset's classes in label order, when the hierarchy came with one
        (the ImageNet-21K-P ``class_list``).
    source : str
        Where the hierarchy was read from (recorded in results).

    Raises
    ------
    InputError
        If the parent map has a cycle.
    """

    def __init__(self, parents: Mapping[str, str | None], names: Mapping[str, str] | None = None,
                 *, classes: Sequence[str] | None = None, source: str = ""):
        par: dict[str, str | None] = {}
        for child, parent in parents.items():
            c = str(child)
            p = None if parent is None or (isinstance(parent, str) and not parent) else str(parent)
            if p == c:
                raise InputError(f"hierarchy: {c!r} is its own parent")
            par[c] = p
        for p in list(par.values()):
            if p is not None and p not in par:
                par[p] = None
        self._parent = par
        self._names = {str(k): str(v) for k, v in (names or {}).items()}
        self.classes = None if classes is None else [str(c) for c in classes]
        self.source = source
        self._depth: dict[str, int] = {}
        for node in par:
            self._compute_depth(node)
        self._children: dict[str, list[str]] | None = None

    def _compute_depth(self, node: str) -> int:
        chain = []
        seen = set()
        cur: str | None = node
        while cur is not None and cur not in self._depth:
            if cur in seen:
                raise InputError(f"hierarchy: the parent map has a cycle through {cur!r}")
            seen.add(cur)
            chain.append(cur)
            cur = self._parent[cur]
        base = -1 if cur is None else self._depth[cur]
        for i, n in enumerate(reversed(chain)):
            self._depth[n] = base + 1 + i
        return self._depth[node]

    # -- basic queries

    def __contains__(self, node: object) -> bool:
        return node in self._parent

    def __len__(self) -> int:
        return len(self._parent)

    def __repr__(self) -> str:
        src = f", source={self.source!r}" if self.source else ""
        return (f"Hierarchy({len(self)} nodes, {len(self.roots)} roots, "
                f"max depth {self.max_depth}{src})")

    @property
    def nodes(self) -> list[str]:
        """All nodes, in the order first seen."""
        return list(self._parent)

    @property
    def roots(self) -> list[str]:
        return [n for n, p in self._parent.items() if p is None]

    @property
    def max_depth(self) -> int:
        return max(self._depth.values(), default=0)

    def _check(self, node: str) -> str:
        if node not in self._parent:
            raise InputError(f"{node!r} is not in the hierarchy ({len(self)} nodes"
                             + (f", from {self.source}" if self.source else "") + ")")
        return node

    def parent(self, node: str) -> str | None:
        """The parent of ``node``; None for a root."""
        return self._parent[self._check(node)]

    def name(self, node: str) -> str:
        """Readable name of ``node`` (its description, else the id)."""
        return self._names.get(node, node)

    def depth(self, node: str) -> int:
        """Distance from the root (a root has depth 0)."""
        return self._depth[self._check(node)]

    def ancestors(self, node: str) -> list[str]:
        """Strict ancestors of ``node``, nearest first (parent, grandparent, ..., root)."""
        out = []
        cur = self._parent[self._check(node)]
        while cur is not None:
            out.append(cur)
            cur = self._parent[cur]
        return out

    def path(self, node: str) -> list[str]:
        """Root to ``node``, inclusive (coarse to fine)."""
        return [*reversed(self.ancestors(node)), node]

    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether ``a`` is a strict ancestor of ``b``."""
        return a in self.ancestors(b)

    def children(self, node: str) -> list[str]:
        if self._children is None:
            ch: dict[str, list[str]] = {n: [] for n in self._parent}
            for n, p in self._parent.items():
                if p is not None:
                    ch[p].append(n)
            self._children = ch
        return list(self._children[self._check(node)])

    def ancestor_at_depth(self, node: str, depth: int) -> str:
        """The ancestor of ``node`` at ``depth`` (``node`` itself when it is not deeper)."""
        if depth < 0:
            raise InputError(f"depth must be >= 0, got {depth}")
        path = self.path(node)
        return path[min(depth, len(path) - 1)]

    def ancestor_at_level(self, node: str, level: int) -> str:
        """``level`` steps up from ``node`` (stopping at its root); level 0 is ``node``."""
        if level < 0:
            raise InputError(f"level must be >= 0, got {level}")
        up = [node, *self.ancestors(node)]
        return up[min(level, len(up) - 1)]

    def coarse_node(self, node: str, *, depth: int | None = None, level: int | None = None) -> str:
        """``node`` relabelled at a depth or a level (exactly one of them, or neither: itself)."""
        if depth is not None and level is not None:
            raise InputError("give a depth or a level, not both")
        if depth is not None:
            return self.ancestor_at_depth(node, int(depth))
        if level is not None:
            return self.ancestor_at_level(node, int(level))
        return self._check(node)

    # -- dataset classes

    def check_classes(self, class_names: Sequence[str]) -> list[str]:
        """The dataset's class names, all of which must be nodes; a clear error otherwise."""
        names = [str(c) for c in class_names]
        missing = [c for c in names if c not in self._parent]
        if missing:
            shown = ", ".join(repr(c) for c in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise InputError(
                f"{len(missing)} class name(s) are not in the hierarchy"
                + (f" from {self.source}" if self.source else "")
                + f": {shown}{more}. Class names must equal the hierarchy's node ids "
                "(for ImageNet-21K: the WordNet ids that name the class folders)"
            )
        return names

    def coarsen(self, class_names: Sequence[str], *, depth: int | None = None,
                level: int | None = None) -> tuple[np.ndarray, list[str]]:
        """Map the dataset's classes to coarser ones.

        Parameters
        ----------
        class_names : sequence of str
            Name (node id) of each fine label ``0..C-1``.
        depth, level : int, optional
            Where to cut (see the module docstring); neither keeps the fine classes.

        Returns
        -------
        mapping : ndarray of shape (C,), int64
            Coarse label of each fine label, ``0..K-1`` in order of first appearance.
        coarse_names : list of str
            Node id of each coarse label.
        """
        names = self.check_classes(class_names)
        coarse = [self.coarse_node(c, depth=depth, level=level) for c in names]
        order: dict[str, int] = {}
        for c in coarse:
            order.setdefault(c, len(order))
        return np.array([order[c] for c in coarse], dtype=np.int64), list(order)

    def label_sets(self, class_names: Sequence[str]) -> list[set[str]]:
        """For each fine class: itself and all its ancestors (its true labels at any level)."""
        return [{c, *self.ancestors(c)} for c in self.check_classes(class_names)]

    # -- export

    def as_dict(self) -> dict:
        """``{"parents": {...}, "names": {...}}``: what :func:`load_parent_map` reads back."""
        out: dict = {"parents": dict(self._parent)}
        if self._names:
            out["names"] = dict(self._names)
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`as_dict` as JSON."""
        from deepclust.runinfo import write_json

        write_json(path, self.as_dict())

    @classmethod
    def from_ancestors(cls, ancestors: Mapping[str, Sequence[str]], **kwargs) -> Hierarchy:
        """Build from ``class -> [root, ..., parent]`` (coarse to fine, the ImageSource form)."""
        parents: dict[str, str | None] = {}

        def put(child: str, parent: str | None) -> None:
            old = parents.get(child)
            if old is not None and parent is not None and old != parent:
                raise InputError(f"hierarchy: {child!r} has two parents, {old!r} and {parent!r}")
            if old is None:
                parents[child] = parent

        for child, chain in ancestors.items():
            if isinstance(chain, str):
                raise InputError(f"hierarchy: ancestors of {child!r} must be a list, got a string")
            chain = [str(a) for a in chain]
            full = [*chain, str(child)]
            put(full[0], None)
            for parent, node in zip(full[:-1], full[1:], strict=True):
                put(node, parent)
        return cls(parents, **kwargs)


# ----------------------------------------------------------------------------- built-in

_FASHION_MNIST_GROUPS = {
    "T-shirt/top": "tops",
    "Pullover": "tops",
    "Coat": "tops",
    "Shirt": "tops",
    "Trouser": None,
    "Dress": None,
    "Sandal": "footwear",
    "Sneaker": "footwear",
    "Ankle boot": "footwear",
    "Bag": None,
}

BUILTIN_HIERARCHIES = ("fashion-mnist",)


def builtin_hierarchy(name: str) -> Hierarchy:
    """A hierarchy that ships with deepclust.

    ``"fashion-mnist"``: five coarse classes -- tops (T-shirt/top, Pullover, Coat, Shirt),
    Trouser, Dress, footwear (Sandal, Sneaker, Ankle boot), Bag. Trouser, Dress and Bag are
    roots: they are their own coarse class. Node ids are the dataset's class names.
    """
    key = name.split(":")[0].lower()
    if key == "fashion-mnist":
        from deepclust.data.builtin import FASHION_MNIST_CLASSES

        return Hierarchy(dict(_FASHION_MNIST_GROUPS), classes=FASHION_MNIST_CLASSES,
                         source="builtin:fashion-mnist")
    raise DataNotFoundError(f"no built-in hierarchy {name!r}; built in: "
                            f"{', '.join(BUILTIN_HIERARCHIES)}")


# ----------------------------------------------------------------------------- files


def _as_int_list(row, i: int) -> list[int]:
    try:
        return [int(v) for v in (row.tolist() if hasattr(row, "tolist") else row)]
    except (TypeError, ValueError):
        raise InputError(f"class_tree_list[{i}] is not a list of class indices") from None


def load_imagenet21k_tree(path: str | os.PathLike) -> Hierarchy:
    """Read the ImageNet-21K-P semantic tree (``imagenet21k_miil_tree.pth``).

    The file (Ridnik et al. 2021, published with the winter21 and fall11 releases of
    ImageNet-21K-P) is a ``torch.save``-d dict:

    ``class_list``
        WordNet ids of the classes, in the order of the class index (10 450 for winter21).
    ``class_tree_list``
        For class ``i``: ``[i, parent, grandparent, ..., top]`` as indices into
        ``class_list`` (fine to coarse; ``len - 1`` is the class's depth).
    ``child_2_parent``
        WordNet id -> parent WordNet id (used when ``class_tree_list`` is absent).
    ``class_description``
        WordNet id -> readable name.

    Ancestors are themselves classes of the dataset (ImageNet-21K labels internal WordNet
    nodes too). The file is read with ``torch.load(weights_only=True)``: no code in it runs.

    Parameters
    ----------
    path : path
        The ``.pth`` file.

    Returns
    -------
    Hierarchy
        Nodes are WordNet ids; ``classes`` is ``class_list``; names from
        ``class_description``.
    """
    import pickle

    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataNotFoundError(
            f"{p} does not exist; the ImageNet-21K-P winter21 tree is published as "
            "imagenet21k_miil_tree.pth beside the release (see docs/bench.md)"
        )
    try:
        tree = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise InputError(f"{p} could not be read as a torch-saved tree: {exc}") from None
    if not isinstance(tree, Mapping) or "class_list" not in tree:
        keys = list(tree)[:8] if isinstance(tree, Mapping) else type(tree).__name__
        raise InputError(f"{p} is not an ImageNet-21K-P semantic tree: expected a dict with "
                         f"keys {', '.join(IMAGENET21K_TREE_KEYS)}; found {keys}")
    classes = [str(c) for c in tree["class_list"]]
    if len(set(classes)) != len(classes):
        raise InputError(f"{p}: class_list has repeated WordNet ids")
    parents: dict[str, str | None] = dict.fromkeys(classes)
    tree_list = tree.get("class_tree_list")
    if tree_list is not None:
        if len(tree_list) != len(classes):
            raise InputError(f"{p}: class_tree_list has {len(tree_list)} entries for "
                             f"{len(classes)} classes")
        for i, row in enumerate(tree_list):
            chain = _as_int_list(row, i)
            if not chain or chain[0] != i:
                raise InputError(f"{p}: class_tree_list[{i}] must start with {i}, got {chain[:3]}")
            if any(not 0 <= j < len(classes) for j in chain):
                raise InputError(f"{p}: class_tree_list[{i}] holds an index outside class_list")
            parent = classes[chain[1]] if len(chain) > 1 else None
            old = parents[classes[i]]
            if old is not None and old != parent:
                raise InputError(f"{p}: {classes[i]} has two parents")
            parents[classes[i]] = parent
            # the rest of the chain must agree with the parents recorded so far
            for a, b in zip(chain[1:-1], chain[2:], strict=True):
                ca, cb = classes[a], classes[b]
                if parents[ca] is None:
                    parents[ca] = cb
                elif parents[ca] != cb:
                    raise InputError(f"{p}: class_tree_list disagrees about the parent of {ca}")
    else:
        c2p = tree.get("child_2_parent") or {}
        for child, parent in c2p.items():
            parents[str(child)] = None if parent is None else str(parent)
    names = {str(k): str(v) for k, v in dict(tree.get("class_description") or {}).items()}
    return Hierarchy(parents, names, classes=classes, source=str(p))


def _parent_map_from_json(obj, source: str) -> Hierarchy:
    if not isinstance(obj, dict):
        raise InputError(f"{source}: a hierarchy JSON must be an object, got {type(obj).__name__}")
    if "parents" in obj or "ancestors" in obj:
        names = obj.get("names")
        classes = obj.get("classes")
        if "parents" in obj:
            return Hierarchy(obj["parents"], names, classes=classes, source=source)
        return Hierarchy.from_ancestors(obj["ancestors"], names=names, classes=classes,
                                        source=source)
    if all(v is None or isinstance(v, str) for v in obj.values()):
        return Hierarchy(obj, source=source)
    if all(isinstance(v, list) for v in obj.values()):
        return Hierarchy.from_ancestors(obj, source=source)
    raise InputError(f"{source}: values must all be parents (strings or null) or all be "
                     "ancestor lists (coarse to fine)")


def _parent_map_from_csv(path: Path) -> Hierarchy:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        lower = {c.lower(): c for c in cols}
        child_col = next((lower[c] for c in ("child", "class", "node", "name", "id")
                          if c in lower), None)
        if child_col is None or "parent" not in lower:
            raise InputError(f"{path}: a hierarchy CSV needs a header with columns child,parent "
                             f"(found: {', '.join(cols) or 'none'})")
        parent_col = lower["parent"]
        desc_col = next((lower[c] for c in ("description", "label", "title") if c in lower), None)
        parents: dict[str, str | None] = {}
        names: dict[str, str] = {}
        for lineno, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            child = row.get(child_col, "")
            if not child:
                raise InputError(f"{path}:{lineno}: empty {child_col}")
            parent = row.get(parent_col) or None
            if child in parents and parents[child] != parent:
                raise InputError(f"{path}:{lineno}: {child!r} has two parents, "
                                 f"{parents[child]!r} and {parent!r}")
            parents[child] = parent
            if desc_col and row.get(desc_col):
                names[child] = row[desc_col]
    return Hierarchy(parents, names, source=str(path))


def load_parent_map(path: str | os.PathLike) -> Hierarchy:
    """Read a user hierarchy from a JSON or CSV file (formats: the module docstring)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataNotFoundError(f"hierarchy file {p} does not exist")
    if p.suffix.lower() == ".json":
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{p} is not valid JSON: {exc}") from None
        return _parent_map_from_json(obj, str(p))
    if p.suffix.lower() in (".csv", ".tsv"):
        return _parent_map_from_csv(p)
    raise InputError(f"{p}: a hierarchy file must be .json or .csv (or an ImageNet-21K .pth)")


def load_hierarchy(spec: str | os.PathLike | Mapping | Hierarchy) -> Hierarchy:
    """A hierarchy from a built-in name, a file, or a mapping.

    Parameters
    ----------
    spec : str, path, mapping or Hierarchy
        ``"fashion-mnist"``; a ``.pth``/``.pt`` ImageNet-21K-P tree; a ``.json``/``.csv``
        parent map; or a mapping in any of the JSON forms.
    """
    if isinstance(spec, Hierarchy):
        return spec
    if isinstance(spec, Mapping):
        return _parent_map_from_json(dict(spec), "mapping")
    text = str(spec)
    p = Path(text).expanduser()
    if not p.exists() and text.split(":")[0].lower() in BUILTIN_HIERARCHIES:
        return builtin_hierarchy(text)
    if p.suffix.lower() in (".pth", ".pt"):
        return load_imagenet21k_tree(p)
    if not p.exists():
        raise DataNotFoundError(f"hierarchy {text!r} is neither a file nor a built-in "
                                f"({', '.join(BUILTIN_HIERARCHIES)})")
    return load_parent_map(p)

