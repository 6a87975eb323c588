"""The ``deepclust`` command: a thin shell over the Python API.

Each group of commands lives in a module of this package with a ``register(subparsers)``
function that adds its sub-commands; every sub-command sets ``func(args) -> int``, which
parses, calls the library and prints.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from deepclust.cli.common import terminal_safe
from deepclust.errors import DeepclustError
from deepclust.version import __version__

# Modules that add sub-commands, in the order they appear in --help.
COMMAND_MODULES = ("deepclust.cli.cluster", "deepclust.cli.evaluate", "deepclust.cli.demo",
                   "deepclust.cli.info", "deepclust.cli.embed", "deepclust.cli.report",
                   "deepclust.cli.deepcluster", "deepclust.cli.bench", "deepclust.cli.similar",
                   "deepclust.cli.export", "deepclust.cli.verify")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepclust",
        description="Cluster images and feature matrices, and measure how good the clusters are.",
    )
    parser.add_argument("--version", action="version", version=f"deepclust {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # an optional command group not present in this build
                continue
            raise
        module.register(sub)
    for command in sub.choices.values():  # --quiet on every command
        command.add_argument("--quiet", "-q", action="store_true",
                             help="no progress bars and no tables (errors are still printed; "
                                  "--json output too)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in run.json
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        if getattr(args, "quiet", False):
            return _run_quietly(args)
        return int(args.func(args) or 0)
    except DeepclustError as exc:
        print(f"deepclust {args.command}: error: {terminal_safe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepclust {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"deepclust {args.command}: error: out of memory; give it more memory, or fewer "
              "rows (a store is streamed to kmeans and minibatch-kmeans)", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`deepclust ... | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # the system refused (no memory, no space, no permission, ...)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"deepclust {args.command}: error: {terminal_safe(exc.strerror or exc)}"
              f"{terminal_safe(where)}", file=sys.stderr)
        return 2


def _run_quietly(args) -> int:
    """Run a command with progress bars off (``TQDM_DISABLE``) and, unless it prints JSON,
    stdout discarded; stderr (errors, warnings) is kept."""
    import contextlib
    import os

    old = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        if getattr(args, "json", False):
            return int(args.func(args) or 0)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            return int(args.func(args) or 0)
    finally:
        if old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old


if __name__ == "__main__":
    sys.exit(main())
