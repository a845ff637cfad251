"""A page in headless Chromium, driven over the DevTools protocol: what a person would see.

Used to check that an HTML file agentflux writes (``agentflux report``) renders: it loads the
page, records console errors, uncaught exceptions and every network request other than the page
itself and ``data:`` URIs, evaluates an expression in the page, and takes a screenshot. The
protocol runs over a pipe (``--remote-debugging-pipe``: messages are JSON, each ended by a NUL
byte, read on fd 3 and written on fd 4), so nothing listens on a port and no websocket library is
needed.

    python -m agentflux.browser report.html --screenshot report.png

Chromium is Debian's ``chromium`` package (``make setup`` installs it when run as root); set
``AGENTFLUX_CHROMIUM`` to use another binary.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str:
    """The Chromium binary: ``AGENTFLUX_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on
    the PATH; a :class:`BrowserError` saying how to install it otherwise."""
    env = os.environ.get("AGENTFLUX_CHROMIUM")
    if env:
        if not Path(env).is_file():
            raise BrowserError(f"AGENTFLUX_CHROMIUM={env}: no such file")
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError("headless Chromium is not installed: `sudo apt-get install chromium` "
                       "(Debian), `make setup` as root, or set AGENTFLUX_CHROMIUM to a binary")


@dataclass
class PageResult:
    url: str
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # besides the page itself and data: URIs
    failed_requests: list[str] = field(default_factory=list)
    value: Any = None  # what ``evaluate`` returned
    screenshot: bytes | None = None


class _Pipe:
    """The DevTools protocol over Chromium's pipe: requests by id, events collected."""

    def __init__(self, proc: subprocess.Popen, rfd: int, wfd: int) -> None:
        self.proc, self.rfd, self.wfd = proc, rfd, wfd
        self.next_id = 0
        self.replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self.cond = threading.Condition()
        self.closed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.rfd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self.cond:
                    self.closed = True
                    self.cond.notify_all()
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            with self.cond:
                for m in messages:
                    msg = json.loads(m)
                    if "id" in msg:
                        self.replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                self.cond.notify_all()

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        except OSError:  # the pipe's other end is gone: Chromium exited
            raise BrowserError(f"Chromium did not answer {method} (it exited)") from None
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.next_id not in self.replies:
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    raise BrowserError(f"Chromium did not answer {method} "
                                       f"({'it exited' if self.closed else f'{timeout:g} s'})")
                self.cond.wait(left)
            reply = self.replies.pop(self.next_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if e.get("method") == method and e.get("sessionId") == session:
                        return e
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    raise BrowserError(f"the page did not fire {method} within {timeout:g} s")
                self.cond.wait(left)


def load(url_or_path: str | os.PathLike, *, evaluate: str | None = None,
         screenshot: bool = True, full_page: bool = True, width: int = 1200, height: int = 900,
         timeout: float = 60.0) -> PageResult:
    """Load a page (a URL, or a file's path) in a fresh headless Chromium, wait for its load
    event, evaluate ``evaluate`` (an expression; its JSON value is returned) and take a
    screenshot (PNG) of the whole page, or with ``full_page=False`` of the first
    ``width`` x ``height`` pixels."""
    target = str(url_or_path)
    url = target if "://" in target else Path(target).resolve().as_uri()
    binary = find_chromium()
    profile = tempfile.mkdtemp(prefix="agentflux-chromium-")
    # fd 3: what Chromium reads (our writes); fd 4: what it writes (our reads)
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()

    def child_fds() -> None:  # (in the child, before exec) the pipe's ends as fds 3 and 4
        import fcntl
        r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)  # out of 3 and 4's way first
        w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.dup2(r, 3)  # (inheritable: dup2's default)
        os.dup2(w, 4)

    args = [binary, "--headless=new", "--remote-debugging-pipe", "--no-first-run",
            "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
            "--disable-background-networking", "--disable-sync", "--metrics-recording-only",
            "--mute-audio", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--window-size={width},{height}", "about:blank"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    # close_fds=False: Popen would close 3 and 4 after child_fds ran; the other descriptors
    # this process opened are not inheritable (Python's default), so exec closes them anyway
    log = open(Path(profile) / "chromium.log", "wb")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log, preexec_fn=child_fds, close_fds=False)
    log.close()
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    pipe = _Pipe(proc, from_chrome_r, to_chrome_w)
    result = PageResult(url)
    try:
        try:
            _drive(pipe, url, result, evaluate, screenshot, full_page, width, height, timeout)
        except BrowserError as e:
            if pipe.closed or proc.poll() is not None:
                proc.wait(timeout=10)
                tail = (Path(profile) / "chromium.log").read_text(errors="replace")[-600:]
                raise BrowserError(f"{e}; Chromium exited ({proc.poll()}): {tail.strip()}") \
                    from None
            raise
        return result
    finally:
        _close(pipe, proc, from_chrome_r, to_chrome_w, profile)


def _drive(pipe: _Pipe, url: str, result: PageResult, evaluate: str | None, screenshot: bool,
           full_page: bool, width: int, height: int, timeout: float) -> None:
    target_id = pipe.call("Target.createTarget", {"url": "about:blank"},
                          timeout=timeout)["targetId"]
    session = pipe.call("Target.attachToTarget", {"targetId": target_id, "flatten": True},
                        timeout=timeout)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.call(f"{domain}.enable", session=session, timeout=timeout)
    pipe.call("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
              session=session, timeout=timeout)
    nav = pipe.call("Page.navigate", {"url": url}, session=session, timeout=timeout)
    if nav.get("errorText"):
        raise BrowserError(f"cannot load {url}: {nav['errorText']}")
    pipe.wait_event("Page.loadEventFired", session, timeout)
    if evaluate is not None:
        r = pipe.call("Runtime.evaluate", {"expression": evaluate, "returnByValue": True,
                                           "awaitPromise": True},
                      session=session, timeout=timeout)
        if "exceptionDetails" in r:
            raise BrowserError(f"evaluating {evaluate[:60]!r} failed: "
                               f"{r['exceptionDetails'].get('text')}")
        result.value = r.get("result", {}).get("value")
    if screenshot:
        shot = pipe.call("Page.captureScreenshot",
                         {"format": "png", "captureBeyondViewport": full_page},
                         session=session, timeout=timeout)
        result.screenshot = base64.b64decode(shot["data"])
    with pipe.cond:
        events = list(pipe.events)
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            result.console_errors.append(" ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            result.console_errors.append(p["entry"].get("text", ""))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            result.exceptions.append(d.get("exception", {}).get("description")
                                     or d.get("text", ""))
        elif m == "Network.requestWillBeSent":
            u = p.get("request", {}).get("url", "")
            if u != url and not u.startswith("data:"):
                result.requests.append(u)
        elif m == "Network.loadingFailed":
            result.failed_requests.append(f"{p.get('errorText')} ({p.get('requestId')})")


def _close(pipe: _Pipe, proc: subprocess.Popen, rfd: int, wfd: int, profile: str) -> None:
    try:
        pipe.call("Browser.close", timeout=5)
    except BrowserError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for fd in (rfd, wfd):
        try:
            os.close(fd)
        except OSError:
            pass
    shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m agentflux.browser",
                                 description="Load a page in headless Chromium; report console "
                                             "errors and network requests; take a screenshot.")
    ap.add_argument("page", help="a file's path or a URL")
    ap.add_argument("--screenshot", help="write a full-page PNG here")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--viewport-only", action="store_true",
                    help="the screenshot: the first WIDTH x HEIGHT pixels, not the whole page")
    args = ap.parse_args(argv)
    try:
        r = load(args.page, screenshot=bool(args.screenshot), width=args.width,
                 height=args.height, full_page=not args.viewport_only)
    except BrowserError as e:
        print(f"agentflux.browser: {e}", file=sys.stderr)
        return 2
    if args.screenshot and r.screenshot:
        Path(args.screenshot).write_bytes(r.screenshot)
    print(json.dumps({"url": r.url, "console_errors": r.console_errors,
                      "exceptions": r.exceptions, "requests": r.requests,
                      "failed_requests": r.failed_requests}, indent=2))
    return 1 if r.console_errors or r.exceptions or r.failed_requests else 0


if __name__ == "__main__":
    sys.exit(main())
