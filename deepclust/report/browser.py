"""Open a report in headless Chromium: its DOM, a screenshot, its load time.

Used by the browser test, ``benchmarks/report_load.py`` and to make the screenshot in the
docs; nothing in the report itself needs a browser. Chromium is found as ``chromium``
(Debian's package), ``chromium-browser``, ``google-chrome`` or ``google-chrome-stable`` on the
``PATH``, or at ``$DEEPCLUST_CHROMIUM``.

:func:`load_times` speaks the DevTools protocol over ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-separated JSON), so it needs neither a websocket library nor a free
port, and it measures in real time: ``--virtual-time-budget`` (used by :func:`dump_dom` to
wait for the page) also fast-forwards the page's clock, which would make timings meaningless.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from html import unescape
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Flags for a quiet, offline, throw-away headless browser (running as root needs
#: --no-sandbox; --disable-dev-shm-usage avoids crashes where /dev/shm is small).
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)


class BrowserError(RuntimeError):
    """Chromium is missing, failed, or did not answer in time."""


def find_chromium() -> str | None:
    """Path of a Chromium-family browser, or None."""
    env = os.environ.get("DEEPCLUST_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _browser() -> str:
    exe = find_chromium()
    if exe is None:
        raise BrowserError("no Chromium found: install it (Debian: apt-get install chromium) "
                           "or set DEEPCLUST_CHROMIUM to its path")
    return exe


def file_url(page: str | os.PathLike) -> str:
    """The ``file://`` URL of a local file."""
    return Path(page).resolve().as_uri()


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="deepclust-chromium-") as profile:
        cmd = [_browser(), *HEADLESS_FLAGS, f"--user-data-dir={profile}", *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BrowserError(f"chromium did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise BrowserError(f"chromium exited with status {proc.returncode}: "
                           f"{proc.stderr.strip()[-800:]}")
    return proc


def dump_dom(page: str | os.PathLike, *, budget_ms: int = 10_000, timeout: float = 90) -> str:
    """The page's DOM after it has loaded and its scripts have run (``--dump-dom``).

    Parameters
    ----------
    page : path
        A local HTML file.
    budget_ms : int
        Virtual time the page is given to load and run its timers.
    timeout : float
        Seconds of real time before giving up.
    """
    return _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", file_url(page)],
                timeout).stdout


def screenshot(page: str | os.PathLike, png: str | os.PathLike, *, width: int = 1400,
               height: int = 2400, budget_ms: int = 10_000, timeout: float = 90) -> Path:
    """Save a ``width`` × ``height`` screenshot of the top of ``page`` as ``png``."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--virtual-time-budget={budget_ms}", f"--window-size={width},{height}",
          f"--screenshot={png}", file_url(page)], timeout)
    if not png.is_file():
        raise BrowserError(f"chromium wrote no screenshot to {png}")
    return png


def body_attributes(dom: str) -> dict[str, str]:
    """The attributes of ``<body>`` in a dumped DOM (where the page's self-check writes)."""
    m = re.search(r"<body\b([^>]*)>", dom, flags=re.IGNORECASE)
    if not m:
        return {}
    return {k.lower(): unescape(v) for k, v in re.findall(r'([\w:-]+)="([^"]*)"', m.group(1))}


class _DevTools:
    """A minimal DevTools-protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="deepclust-chromium-")
        child_r, self._to_child = os.pipe()
        self._from_child, child_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4. The child moves the
        # pipe ends there; lifting them to fds >= 10 first keeps the moves from colliding.
        # close_fds=False keeps 3 and 4 open in the child; every other fd Python opened is
        # non-inheritable (PEP 446) and is closed at exec anyway.
        r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (child_r, child_w))
        os.close(child_r)
        os.close(child_w)

        def wire_fds() -> None:
            os.dup2(r, 3)  # os.dup2 makes the copies inheritable
            os.dup2(w, 4)

        cmd = [_browser(), *HEADLESS_FLAGS, f"--user-data-dir={self._profile.name}",
               "--remote-debugging-pipe", "about:blank"]
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, close_fds=False,
                                         preexec_fn=wire_fds)
        finally:
            os.close(r)
            os.close(w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    raise BrowserError("chromium closed the DevTools pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_event(self, method: str, session: str | None = None) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, ev in enumerate(self._events):
                if ev.get("method") == method and (session is None
                                                   or ev.get("sessionId") == session):
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))


_TIMING_JS = """(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return {load_ms: nav.loadEventEnd - nav.startTime,
          dom_content_loaded_ms: nav.domContentLoadedEventEnd - nav.startTime,
          first_contentful_paint_ms: paint ? paint.startTime : null,
          images: document.images.length,
          broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length,
          page_attr_ms: document.body.getAttribute('data-load-ms')};
})()"""


def load_times(page: str | os.PathLike, *, runs: int = 5, width: int = 1400, height: int = 900,
               timeout: float = 60) -> list[dict]:
    """Open ``page`` ``runs`` times, each in a fresh tab, and return its navigation timings.

    The first run is the coldest (a new browser); the later ones find the files in the
    operating system's cache, as a reader re-opening a report would.

    Returns
    -------
    list of dict
        Per run: ``load_ms`` (``loadEventEnd - startTime``), ``dom_content_loaded_ms``,
        ``first_contentful_paint_ms``, ``images``, ``broken`` (images that did not decode),
        ``page_attr_ms`` (what the page's own script recorded, for comparison).
    """
    url = file_url(page)
    client = _DevTools(timeout)
    out = []
    try:
        for _ in range(runs):
            target = client.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = client.send("Target.attachToTarget",
                                  {"targetId": target, "flatten": True})["sessionId"]
            client.send("Page.enable", session=session)
            client.send("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1,
                         "mobile": False}, session=session)
            client.send("Page.navigate", {"url": url}, session=session)
            client.wait_event("Page.loadEventFired", session)
            # loadEventEnd is set once the load handlers have returned: poll briefly for it
            for _ in range(100):
                res = client.send("Runtime.evaluate", {"expression": _TIMING_JS,
                                                       "returnByValue": True}, session=session)
                value = res.get("result", {}).get("value") or {}
                if value.get("load_ms", 0) > 0:
                    break
                time.sleep(0.02)
            out.append(value)
            client.send("Target.closeTarget", {"targetId": target})
    finally:
        client.close()
    return out
