"""``deepclust datasets`` and ``deepclust methods``: what is available here."""

from __future__ import annotations

import argparse

from deepclust.cli.common import print_json
from deepclust.tables import format_table


def cmd_datasets(args) -> int:
    from deepclust.data import dataset_status

    rows = dataset_status()
    if args.json:
        print_json(rows)
    else:
        print(format_table(rows, ["name", "available", "where", "description"]))
    return 0


def cmd_methods(args) -> int:
    from deepclust.cluster import available_methods, get_clusterer_class

    rows = []
    for name, desc in available_methods().items():
        cls = get_clusterer_class(name)
        params = [p for p in cls._get_param_names() if p not in ("n_clusters", "random_state")]
        rows.append({"name": name, "takes k": "yes" if cls.takes_n_clusters else "no (finds k)",
                     "parameters": ", ".join(params), "description": desc})
    if args.json:
        print_json(rows)
    else:
        print(format_table(rows, ["name", "takes k", "description"]))
        print("\nparameters (pass with --param KEY=VALUE):")
        for r in rows:
            print(f"  {r['name']}: {r['parameters']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list the built-in datasets and where they are")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("methods", help="list the clustering methods and their parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)
