"""Progress display shared by long steps: a spinner with elapsed time for steps that offer no
hook (UMAP, a k-means fit, scoring), beside the tqdm bars of steps that count items.

Every bar and spinner writes to stderr and honours ``TQDM_DISABLE=1`` (what ``--quiet``
sets), so stdout holds only results.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

__all__ = ["progress_disabled", "spinner"]

#: Seconds between refreshes of a spinner.
REFRESH_S = 0.5
#: Steps shorter than this show nothing.
DELAY_S = 2.0


def progress_disabled() -> bool:
    """True when progress output is switched off (``TQDM_DISABLE`` set, as ``--quiet`` does)."""
    return os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")


@contextlib.contextmanager
def spinner(text: str | None, *, enabled: bool = True):
    """Show ``text`` with the elapsed time, refreshed while the block runs.

    A line such as ``reducing 200 x 1280 with umap:10: 00:12`` on stderr, shown once the block
    has run :data:`DELAY_S` seconds and kept when it ends; nothing when ``enabled`` is False,
    ``text`` is None or progress is disabled. When stderr is not a terminal (a log file),
    one line with the time taken is written when a step of at least :data:`DELAY_S` ends.
    """
    if not enabled or text is None or progress_disabled():
        yield
        return
    import time

    from tqdm.auto import tqdm

    stop = threading.Event()
    started = time.perf_counter()
    shown: list = []

    def tick() -> None:
        if stop.wait(DELAY_S):
            return
        bar = tqdm(total=None, desc=text, bar_format="  {desc}: {elapsed}", leave=True)
        bar.start_t -= time.perf_counter() - started  # count from the block's start
        shown.append(bar)
        while not stop.wait(REFRESH_S):
            bar.refresh()

    if not sys.stderr.isatty():  # a log file: one line when the step ends, no refreshes
        try:
            yield
        finally:
            took = time.perf_counter() - started
            if took >= DELAY_S:
                print(f"  {text}: {took:.0f} s", file=sys.stderr, flush=True)
        return

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for bar in shown:
            bar.refresh()
            bar.close()
