"""Shared timing helper for the benchmarks (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

import time
from typing import Any, Callable


def best_of(fn: Callable[[], Any], rounds: int = 3) -> tuple[float, Any]:
    """``(fastest wall time in seconds over rounds, last return value)``."""
    best, out = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out
