"""What several commands share: parsing ``--param``/``--k``, printing JSON and score tables."""

from __future__ import annotations

from deepclust.errors import InputError

METRIC_COLUMNS = ("acc", "nmi", "ami", "ari", "purity", "homogeneity", "completeness")
LABEL_FREE_COLUMNS = ("umap_silhouette", "silhouette", "davies_bouldin", "calinski_harabasz")


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def terminal_safe(text: object) -> str:
    """``text`` with control characters and escape sequences written as ``\\xNN``, so a file
    name or a CSV value cannot move the cursor, recolour or rewrite the terminal."""
    return str(text).translate(_CONTROL)


def parse_params(items: list[str] | None) -> dict:
    """``--param KEY=VALUE`` items as a dict (values read as numbers/booleans when they are)."""
    from deepclust.reduce import parse_value

    params = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--param takes KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        params[key.strip().replace("-", "_")] = parse_value(value.strip())
    return params


def parse_k(text: str | None) -> int | str | None:
    """``--k``: an int, ``"auto"`` or None."""
    if text is None or text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--k takes an integer or 'auto', got {text!r}") from None


def print_json(obj) -> None:
    from deepclust.runinfo import to_json

    print(to_json(obj, indent=2))


def scores_rows(metrics: dict | None, label_free: dict | None) -> list[dict]:
    """Table rows of the scores a run has, those that use labels first."""
    rows = []
    for name in METRIC_COLUMNS:
        if metrics and name in metrics:
            rows.append({"score": name, "value": metrics[name], "uses labels": "yes"})
    for name in LABEL_FREE_COLUMNS:
        if label_free and name in label_free:
            rows.append({"score": name, "value": label_free[name], "uses labels": "no"})
    return rows
