"""``deepclust embed`` and ``deepclust encoders``."""

from __future__ import annotations

import argparse
import json

from deepclust import runtime
from deepclust.encoders.engine import ENGINE_HELP, ENGINES
from deepclust.errors import InputError


def _parse_option(text: str) -> tuple[str, object]:
    """``key=value`` with value read as JSON when it parses (numbers, true/false), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InputError(f"--encoder-opt wants KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "embed",
        help="embed images into an embedding store",
        description=(
            "Embed every image of SOURCE with an encoder into the store folder --out. "
            "SOURCE is an image folder (one subfolder per class, or flat), a .csv/.parquet "
            "manifest, WebDataset .tar shards (a folder, a file, a glob or {000..009}), a folder "
            "written by datasets.save_to_disk, or a built-in dataset (fashion-mnist:test). "
            "Interrupted runs resume; re-running a finished store does nothing. Under "
            "torchrun the work is shared by all processes."
        ),
    )
    p.add_argument("source", help="image folder, manifest, tar shards, saved HF dataset or built-in name")
    p.add_argument("--encoder", "-e", default="effnet-lite0",
                   help="encoder name (see `deepclust encoders`; default effnet-lite0)")
    p.add_argument("--encoder-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="encoder option, repeatable (pool=cls+mean, size=28, grey=true, crop_fraction=1.0)")
    p.add_argument("--out", "-o", required=True, help="store folder to create or resume")
    p.add_argument("--kind", choices=["folder", "manifest", "tar", "hf", "builtin"],
                   help="force the source type instead of guessing it")
    p.add_argument("--split", help="split of a saved HF dataset or a built-in dataset")
    p.add_argument("--path-column", help="manifest column holding image paths")
    p.add_argument("--label-column", help="manifest / HF dataset column holding labels ('none' for none)")
    p.add_argument("--extra-label-column", action="append", default=[],
                   help="manifest column with more labels (e.g. coarse classes), repeatable")
    p.add_argument("--root", help="folder that relative manifest paths are resolved against")
    p.add_argument("--unlabelled", action="store_true", help="ignore class subfolders of an image folder")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images with more pixels than this (decompression bombs; default Pillow's 89M)")
    p.add_argument("--follow-outside", action="store_true",
                   help="follow links and manifest paths that lead outside the source folder "
                        "(refused by default)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, 256 on GPU")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding worker processes (default: the cores the model leaves free)")
    p.add_argument("--precision", choices=list(runtime.PRECISIONS), default="auto",
                   help=runtime.PRECISION_HELP)
    p.add_argument("--dtype", choices=["float16", "float32"], default=None,
                   help="storage dtype (default float16, or the existing store's)")
    p.add_argument("--shard-size", type=int, default=None,
                   help="items per shard (default 4096, or the existing store's)")
    p.add_argument("--engine", choices=list(ENGINES), default="auto", help=ENGINE_HELP)
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: GPU if available)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: one per free core, from the load average)")
    p.add_argument("--overwrite", action="store_true", help="replace a store made from other inputs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="print the store's path, size, encoder, this run's counts and the "
                        "failed items as JSON")
    p.set_defaults(func=cmd_embed)

    q = subparsers.add_parser("encoders", help="list encoders, their dimension and offline availability")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.set_defaults(func=cmd_encoders)


def _source_options(args) -> dict:
    opts: dict = {}
    if args.kind:
        opts["kind"] = "builtin" if args.kind == "builtin" else args.kind
    if args.split:
        opts["split"] = args.split
    if args.path_column:
        opts["path_column"] = args.path_column
    if args.label_column:
        opts["label_column"] = False if args.label_column.lower() == "none" else args.label_column
    if args.extra_label_column:
        opts["extra_label_columns"] = list(args.extra_label_column)
    if args.root:
        opts["root"] = args.root
    if args.unlabelled:
        opts["labelled"] = False
    if args.max_pixels is not None:
        opts["max_pixels"] = args.max_pixels
    if args.follow_outside:
        opts["follow_outside"] = True
    return opts


def cmd_embed(args: argparse.Namespace) -> int:
    from deepclust import runtime
    from deepclust.data.sources import open_source
    from deepclust.embed import embed

    encoder_options = dict(_parse_option(o) for o in args.encoder_opt)
    di = runtime.init_from_env()
    try:
        opts = _source_options(args)
        kind = opts.pop("kind", None)
        try:
            source = open_source(args.source, kind=kind, **opts)
        except TypeError as exc:  # an option that this kind of source does not take
            raise InputError(f"{args.source}: {exc}") from None
        channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
        store = embed(
            source, args.encoder, args.out, batch_size=args.batch_size, num_workers=args.workers,
            precision=args.precision, dtype=args.dtype, shard_size=args.shard_size,
            channels_last=channels_last, device=args.device, threads=args.threads,
            overwrite=args.overwrite, engine=args.engine,
            progress=not (args.no_progress or args.json or args.quiet), encoder_options=encoder_options,
        )
        if di.is_main and args.json:
            print(json.dumps({
                "store": str(store.path.resolve()), "count": len(store), "dim": store.dim,
                "dtype": store.meta["dtype"], "encoder": store.meta["encoder"],
                "n_failed": store.meta.get("n_failed", 0), "failed": store.failed,
                "last_run": _read_run(store.path)}, indent=2, default=str))
        elif di.is_main:
            run = store.meta.get("last_run", {})
            n_failed = store.meta.get("n_failed", 0)
            print(f"{store.path}: {len(store)} embeddings of dim {store.dim} "
                  f"({store.meta['dtype']}, encoder {store.meta['encoder']})")
            if "note" in _read_run(store.path):
                print("  the store was already complete; nothing to do")
            elif run:
                print(f"  this run: {run.get('items_processed', 0)} images in {run.get('seconds', 0):.1f} s "
                      f"({run.get('images_per_second', 0):.1f} images/s, precision {run['parameters']['precision']}, "
                      f"engine {run['parameters'].get('engine', 'torch')}"
                      f"{', resumed' if run.get('resumed') else ''})")
            if n_failed:
                print(f"  {n_failed} item(s) could not be embedded; reasons in {store.path / 'failed.parquet'}:")
                for row in store.failed[:10]:
                    print(f"    {row['id']}: {row['reason']}")
                if n_failed > 10:
                    print(f"    ... and {n_failed - 10} more")
    finally:
        runtime.shutdown()
    return 0


def _read_run(path) -> dict:
    try:
        return json.loads((path / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def cmd_encoders(args: argparse.Namespace) -> int:
    from deepclust.encoders import list_encoders

    rows = list_encoders()
    if args.json:
        print(json.dumps([{
            "name": r.name, "dim": r.dim, "available": r.available, "family": r.family,
            "description": r.description, "how_to_get": r.how_to_get,
        } for r in rows], indent=2))
        return 0
    width = max(len(r.name) for r in rows)
    print(f"{'encoder':<{width}}  {'dim':>5}  offline  description")
    for r in rows:
        dim = str(r.dim) if r.dim else "-"
        avail = "yes" if r.available else "no"
        line = f"{r.name:<{width}}  {dim:>5}  {avail:<7}  {r.description}"
        if r.how_to_get:
            line += f"  [{r.how_to_get}]"
        print(line)
    return 0
