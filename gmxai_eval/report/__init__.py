"""Aggregation, leaderboards, the HTML report, metric reliability and regression comparison.

Public API (imported lazily)::

    from gmxai_eval.report import summarise, compare_results, render_report, SECTIONS
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "summarise": "aggregate", "bootstrap_means": "aggregate", "kendall_tau_b": "aggregate",
    "rank_min": "aggregate", "rank_bands": "aggregate",
    "leaderboard_markdown": "tables", "leaderboard_latex": "tables", "leaderboard_csv": "tables",
    "write_tables": "tables", "write_results_json": "tables",
    "render_report": "html", "SECTIONS": "html", "SectionContext": "html", "frame_html": "html",
    "compare_results": "compare", "load_results": "compare", "Comparison": "compare",
    "metric_reliability": "reliability",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
