"""Aggregation, leaderboards, the HTML report and regression comparison, from results only.

The report reads a results document (or ``results.json`` with its ``report_data.json``); it
never runs a model. Public API (imported lazily)::

    from gmxai_eval.report import summarise, compare_results, render_report, SECTIONS
    from gmxai_eval.report import validity_html, required_n
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "summarise": "aggregate", "bootstrap_means": "aggregate", "kendall_tau_b": "aggregate",
    "rank_min": "aggregate", "rank_bands": "aggregate", "ranking_conventions": "aggregate",
    "find_aliases": "aggregate", "validity_html": "validity", "validity_table": "validity",
    "validity_markdown": "validity", "required_n": "power",
    "leaderboard_markdown": "tables", "leaderboard_latex": "tables", "leaderboard_csv": "tables",
    "write_tables": "tables", "write_results_json": "tables",
    "render_report": "html", "SECTIONS": "html", "frame_html": "fragments", "table_section": "fragments",
    "example_maps": "html", "compare_results": "compare", "load_results": "compare", "Comparison": "compare",
    "render_reliability": "reliability", "write_outputs": "render", "read_run": "render",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
