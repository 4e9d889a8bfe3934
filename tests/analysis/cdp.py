"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (file descriptors
3 and 4, NUL-delimited JSON): enough to open a page, run JavaScript and allow downloads in
headless Chromium without any browser-automation package."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any


def _to_fds_3_4(r: int, w: int) -> None:
    """In the child: the browser reads commands from fd 3 and writes replies to fd 4 (moved up
    first, so neither pipe end is clobbered; dup2 leaves the new fds inheritable)."""
    import fcntl

    hi_r, hi_w = fcntl.fcntl(r, fcntl.F_DUPFD, 10), fcntl.fcntl(w, fcntl.F_DUPFD, 10)
    os.dup2(hi_r, 3)
    os.dup2(hi_w, 4)


class Browser:
    def __init__(self, chromium: str, profile: Path) -> None:
        r_in, w_in = os.pipe()    # we write commands -> browser reads fd 3
        r_out, w_out = os.pipe()  # browser writes fd 4 -> we read
        self._proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", "--disable-dev-shm-usage", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "about:blank"],
            close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=lambda: _to_fds_3_4(r_in, w_out))
        os.close(r_in), os.close(w_out)
        self._w, self._r = os.fdopen(w_in, "wb", buffering=0), os.fdopen(r_out, "rb", buffering=0)
        self._id, self._buf = 0, b""

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while b"\0" not in self._buf:
                chunk = self._r.read(65536)
                if not chunk:
                    raise RuntimeError("the browser closed the pipe")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(method)

    def open(self, url: str) -> str:
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Runtime.enable", session=session)
        return session

    def eval(self, session: str, js: str) -> Any:
        res = self.send("Runtime.evaluate", {"expression": js, "returnByValue": True,
                                             "awaitPromise": True}, session=session)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JavaScript failed: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def wait_for(self, session: str, js: str, expected: Any, timeout: float = 20.0) -> Any:
        """Poll ``js`` until it returns ``expected`` (or ``timeout``); returns the last value."""
        end, got = time.monotonic() + timeout, None
        while time.monotonic() < end:
            try:
                got = self.eval(session, js)
            except RuntimeError:  # the page is between documents
                got = None
            if got == expected:
                break
            time.sleep(0.1)
        return got

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
