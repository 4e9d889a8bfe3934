"""Toy methods, evaluators and a spec factory for the report tests (registered per test)."""

from __future__ import annotations

from runner_report_toys import *  # noqa: F401,F403
