"""``deepclust similar``: the images of a store most like a query image or id."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "similar",
        help="find the images of an embedding store most like an image or a stored id",
        description=(
            "Print the N items of STORE most cosine-similar to QUERY. QUERY is an image file "
            "(embedded with the store's own encoder; if it is in the store it comes first, "
            "similarity about 1) or an id of the store (that item is left out of the results)."
        ),
    )
    p.add_argument("store", help="embedding store folder (written by `deepclust embed` or `cluster`)")
    p.add_argument("query", help="an image file, or an id of the store")
    p.add_argument("-n", type=int, default=10, help="how many results (default 10)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--paths", action="store_true",
                   help="print only the paths (ids where there is no path), one per line")
    p.set_defaults(func=cmd_similar)


def cmd_similar(args: argparse.Namespace) -> int:
    from deepclust.cli.common import print_json
    from deepclust.results.similar import find_similar

    hits = find_similar(args.store, args.query, n=args.n)
    if args.json:
        print_json(hits)
        return 0
    if args.paths:
        for h in hits:
            print(h["path"] or h["id"])
        return 0
    print(f"{len(hits)} most similar to {args.query} in {args.store}:")
    id_width = max([len("id")] + [len(h["id"]) for h in hits])
    print(f"{'rank':>4}  {'similarity':>10}  {'id':<{id_width}}  path")
    for h in hits:
        print(f"{h['rank']:>4}  {h['similarity']:>10.4f}  {h['id']:<{id_width}}  {h['path'] or '-'}")
    return 0
