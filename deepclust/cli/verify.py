"""``deepclust verify STORE``: check an embedding store whole, checksums included."""

from __future__ import annotations

import argparse

from deepclust.cli.common import terminal_safe
from deepclust.errors import InputError


def cmd_verify(args) -> int:
    from deepclust.store import verify_store

    meta, problems = verify_store(args.store, checksums=not args.quick)
    for line in problems:
        print(terminal_safe(line))
    if problems:
        raise InputError(f"{args.store}: {len(problems)} problem{'s' * (len(problems) > 1)} found "
                         "(listed above); re-run the `deepclust embed` command that made the store "
                         "to rebuild the damaged parts, or with --overwrite to rebuild it all")
    what = "structure checked" if args.quick else (
        "structure and checksums checked" if "shards" in meta else
        "structure checked; written by an older deepclust, so no checksums were recorded")
    print(terminal_safe(f"{args.store}: OK, {meta['count']} rows x {meta['dim']} in "
                        f"{meta['n_shards']} shards ({what})"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check an embedding store (structure and checksums)",
                       description="Check every shard and the index of an embedding store against "
                       "what was recorded when they were written; name each damaged part and "
                       "how to repair it. Exit status 2 when something is damaged.")
    p.add_argument("store", help="the store folder (written by `deepclust embed`)")
    p.add_argument("--quick", action="store_true",
                   help="structure only (what every reader checks at open), no checksums")
    p.set_defaults(func=cmd_verify)
