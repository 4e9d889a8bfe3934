"""The metric-reliability table of ``report.html``, rendered from ``results["reliability"]``.

The numbers come from the runner's ``reliability`` stage
(:mod:`gmxai_eval.runner.stages.reliability`, MetaQuantus-style); this module only formats them.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

#: ``(key in a per-evaluator record, column header)`` in table order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("minor_change", "change under minor noise (↓)"),
    ("disruptive_change", "change under disruptive noise (↑)"),
    ("ratio", "ratio (↑)"),
    ("minor_tau", "τ minor (↑)"),
    ("disruptive_tau", "τ disruptive"),
    ("n_kept", "images kept"),
)


def reliability_rows(rel: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` of the reliability table: one row per evaluator, floats to 3 decimals."""
    headers = ["evaluator", *(h for _, h in COLUMNS)]
    rows = [[str(ev), *(_cell(r.get(k)) for k, _ in COLUMNS)] for ev, r in rel.get("evaluators", {}).items()]
    return headers, rows


def _cell(v: Any) -> str:
    """Floats to 3 decimals; ``None`` (a NaN or infinite value in ``results.json``) as ``n/a``."""
    if v is None:
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def render_reliability(rel: Mapping[str, Any]) -> str:
    """The escaped HTML table and its description line."""
    from gmxai_eval.report.fragments import table_html

    headers, rows = reliability_rows(rel)
    return table_html(headers, rows) + f"<p>{html.escape(str(rel.get('description', '')))}</p>"
