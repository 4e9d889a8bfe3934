"""Shared helpers of the hardening tests: the runner toys and a counter of covered cases."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))

from runner_report_toys import *  # noqa: E402,F401,F403
