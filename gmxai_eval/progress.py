"""Progress that a person can read wherever the output goes.

:func:`progress` gives a tqdm bar (on stderr) when stderr is a terminal and, when it is not
(CI logs, ``nohup``, a pipe), plain lines on **stdout**: one when the work starts, one every
``interval`` seconds with ``done/total`` and an ETA, and one when it ends. ``enabled=False``
prints nothing. Plain lines go to stdout so that stderr keeps only errors (one line each).

The interval defaults to 30 s (``$GMXAI_PROGRESS_SECONDS`` overrides it), so a cold default run
piped to a file shows it is alive instead of staying silent for minutes.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

DEFAULT_INTERVAL = 30.0


def _interval() -> float:
    try:
        v = float(os.environ.get("GMXAI_PROGRESS_SECONDS", DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return v if v >= 0 else DEFAULT_INTERVAL


def _fmt(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class LineProgress:
    """Plain-line progress (see the module docstring); the same ``update`` / ``close`` /
    ``set_postfix`` calls as a tqdm bar, and usable as a context manager."""

    def __init__(self, total: int, desc: str, *, unit: str = "it", interval: float | None = None,
                 stream: TextIO | None = None, clock: Any = time.monotonic) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.interval = _interval() if interval is None else float(interval)
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.n, self.postfix = 0, ""
        self.t0 = self.last = clock()
        self.closed = False
        self._print(f"{desc}: started, {self.total} {unit}")

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def line(self) -> str:
        """``desc: n/total (p %), elapsed, rate, ETA [postfix]``."""
        el = self.clock() - self.t0
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        rate = self.n / el if el > 0 else 0.0
        eta = f", ETA {_fmt((self.total - self.n) / rate)}" if rate > 0 and self.total >= self.n else ""
        post = f" [{self.postfix}]" if self.postfix else ""
        return f"{self.desc}: {self.n}/{self.total} {self.unit}{pct}, {_fmt(el)} elapsed{eta}{post}"

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = self.clock()
        if now - self.last >= self.interval and not self.closed:
            self.last = now
            self._print(self.line())

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._print(f"{self.desc}: done, {self.n}/{self.total} {self.unit} in {_fmt(self.clock() - self.t0)}")

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Silent:
    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress(total: int, desc: str, enabled: bool | None = None, *, unit: str = "it",
             stream: TextIO | None = None, interval: float | None = None) -> Any:
    """A progress reporter: ``enabled=None`` (auto) gives a tqdm bar on stderr when stderr is a
    terminal and :class:`LineProgress` lines on ``stream`` (stdout) otherwise; ``True`` always a
    tqdm bar; ``False`` nothing."""
    if enabled is False:
        return _Silent()
    if enabled is None and not sys.stderr.isatty():
        return LineProgress(total, desc, unit=unit, interval=interval, stream=stream)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True)


def announce(text: str, enabled: bool | None = None, stream: TextIO | None = None) -> None:
    """One line on ``stream`` (stdout) when progress is shown as lines (auto, stderr not a
    terminal)."""
    if enabled is None and not sys.stderr.isatty():
        print(text, file=stream if stream is not None else sys.stdout, flush=True)
