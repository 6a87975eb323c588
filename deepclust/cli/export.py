"""``deepclust export``: a run's images into one folder per cluster, and its undo."""

from __future__ import annotations

import argparse
from collections import Counter

from deepclust.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="copy, link or move a run's images into one folder per cluster (and undo a move)",
        description=(
            "Put the images of RUN (its assignments.parquet) into one folder per cluster under "
            "--to: cluster_07 (zero-padded), noise for -1, or names from --names. Never "
            "overwrites a file (a clash gets ' (2)'); lists every file written in "
            "DIR/deepclust-export.json. `deepclust export --undo DIR` puts moved files back."
        ),
    )
    p.add_argument("run", nargs="?", help="run folder written by `deepclust cluster`")
    p.add_argument("--to", metavar="DIR", help="export folder (created if needed)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--copy", dest="mode", action="store_const", const="copy",
                     help="copy the images (the default)")
    how.add_argument("--symlink", dest="mode", action="store_const", const="symlink",
                     help="make absolute symbolic links to the images")
    how.add_argument("--move", dest="mode", action="store_const", const="move",
                     help="move the images (undo with --undo DIR)")
    how.add_argument("--undo", metavar="DIR",
                     help="put back the files a --move export took (DIR or its manifest)")
    p.add_argument("--names", metavar="FILE",
                   help='cluster names: JSON {"7": "cats"} or CSV with columns cluster,name')
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_export, mode=None)


def cmd_export(args: argparse.Namespace) -> int:
    from deepclust.cli.common import print_json
    from deepclust.results.export import export_run, read_manifest, undo_export

    if args.undo:
        if args.run or args.to or args.names:
            raise InputError("--undo DIR takes no RUN, --to or --names")
        manifest, _ = read_manifest(args.undo)
        n = undo_export(args.undo)
        if args.json:
            print_json({"undone": str(manifest), "restored": n})
        elif not args.quiet:
            print(f"restored {n} files to where they were; removed the export in {manifest.parent}")
        return 0
    if not args.run or not args.to:
        raise InputError("give a run folder and --to DIR (or --undo DIR)")
    mode = args.mode or "copy"
    manifest = export_run(args.run, args.to, mode=mode, names=args.names)
    _, m = read_manifest(manifest)
    counts = Counter(e["target"].split("/")[0] for e in m["files"])
    if args.json:
        print_json({"manifest": str(manifest), "mode": mode, "files": len(m["files"]),
                    "folders": dict(sorted(counts.items()))})
        return 0
    if args.quiet:
        return 0
    print(f"{mode}: {len(m['files'])} images into {len(counts)} folders in {manifest.parent}")
    for folder, n in sorted(counts.items()):
        print(f"  {folder}/  {n}")
    renamed = sum(1 for e in m["files"]
                  if e["target"].rsplit("/", 1)[1] != e["source"].replace("\\", "/").rsplit("/", 1)[1])
    if renamed:
        print(f"  {renamed} file(s) renamed with ' (2)', ... because the name was taken")
    print(f"manifest: {manifest}")
    if mode == "move":
        print(f"undo with: deepclust export --undo {manifest.parent}")
    return 0
