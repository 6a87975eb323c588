"""The package's import graph: no cycles, and no private name taken from another module.

Every ``import`` counts, at module level or inside a function: a cycle hidden behind a lazy
import is still a cycle for a reader. Importing ``deepclust.a.b`` is an edge to ``deepclust.a.b``
only (its parent packages' ``__init__`` files re-export; they are not dependencies of the caller).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deepclust"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def absolute(name: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return name
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports(path: Path, current: str, known: set[str]):
    """Yield (target module, imported private name or None, line) for each import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    aliases: dict[str, str] = {}  # local name -> deepclust module it refers to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "deepclust":
                    yield a.name, next((p for p in a.name.split(".") if p.startswith("_")), None), node.lineno
                    if a.asname:
                        aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            mod = absolute(node.module or "", node.level, current, is_package)
            if mod.split(".")[0] != "deepclust":
                continue
            private_mod = next((p for p in mod.split(".") if p.startswith("_") and not p.startswith("__")), None)
            for a in node.names:
                sub = f"{mod}.{a.name}"
                target = sub if sub in known else mod
                private = a.name if a.name.startswith("_") and not a.name.startswith("__") else private_mod
                yield target, private, node.lineno
                if target == sub:
                    aliases[a.asname or a.name] = sub
    for node in ast.walk(tree):  # module._private through an imported module
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            yield aliases[node.value.id], node.attr, node.lineno


def graph():
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for name, path in mods.items():
        for target, priv, line in imports(path, name, known):
            if target == name:
                continue
            if target in known:
                edges[name].add(target)
            if priv:
                private.append(f"{name}:{line} takes {priv!r} from {target}")
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle_and_a_private_import():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    src = "from deepclust.x import _hidden\nimport deepclust.y as y\ny._z()\n"
    tmp = PACKAGE.parent / "tests" / "_probe_imports.py"
    try:
        tmp.write_text(src)
        found = list(imports(tmp, "probe", {"deepclust.x", "deepclust.y"}))
    finally:
        tmp.unlink()
    assert ("deepclust.x", "_hidden", 1) in found and ("deepclust.y", "_z", 3) in found


def test_no_import_cycles():
    found = cycles(graph()[0])
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def imported_names(path: Path, current: str, known: set[str]):
    """Yield (module, name, line) for each ``from deepclust.x import name`` in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = absolute(node.module or "", node.level, current, path.name == "__init__.py")
            if mod in known:
                for a in node.names:
                    if f"{mod}.{a.name}" not in known and a.name != "*":
                        yield mod, a.name, node.lineno


def test_every_imported_name_exists():
    """A lazy import of a name that moved fails only when its function runs: check them all
    (the benchmark scripts too, which no test runs)."""
    import importlib

    mods = modules()
    scripts = {f"benchmarks.{p.stem}": p for p in sorted((PACKAGE.parent / "benchmarks").glob("*.py"))}
    missing = []
    for name, path in {**mods, **scripts}.items():
        for mod, attr, line in imported_names(path, name, set(mods)):
            try:
                target = importlib.import_module(mod)
            except ModuleNotFoundError as exc:  # an optional dependency (timm, open_clip, ...)
                if not (exc.name or "").startswith("deepclust"):
                    continue
                raise
            if not hasattr(target, attr):
                missing.append(f"{name}:{line} imports {attr!r} from {mod}, which has no such name")
    assert not missing, "\n".join(missing)


def test_no_private_name_imported_across_modules():
    found = graph()[1]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


if __name__ == "__main__":
    e, p = graph()
    print("\n".join(" <-> ".join(c) for c in cycles(e)))
    print("\n".join(p))
