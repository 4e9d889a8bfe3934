"""Every output file of a run, rendered from results only.

A run folder holds ``results.json`` (the results document) and ``report_data.json`` (what the
files need beyond it: the per-sample table, the example-maps figure as a base64 PNG and any
trusted extra HTML sections). :func:`write_outputs` renders ``leaderboard.md`` / ``.tex`` /
``.csv`` and ``report.html`` from them (``samples.csv`` is the table of the sidecar, written by
the runner's store), in a run as in ``gmxai-eval report RESULTS_JSON`` (which reads a run with :func:`read_run`), so
both give the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from gmxai_eval.errors import DataError
from gmxai_eval.report import tables
from gmxai_eval.utils import write_atomic

#: The sidecar next to ``results.json``.
REPORT_DATA = "report_data.json"
_FORMAT = "gmxai_eval.report_data/1"


def as_document(results: Mapping[str, Any]) -> dict[str, Any]:
    """``results`` as ``results.json`` stores it (NaN / inf as ``None``, JSON types only)."""
    return json.loads(json.dumps(tables._clean(results), default=str, allow_nan=False))


def report_data(table: pd.DataFrame, examples: Mapping[str, Any] | None = None,
                extra_sections: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The sidecar document: the per-sample ``table`` (columns and rows), ``examples`` (see
    :func:`gmxai_eval.report.html.example_maps`) and ``(title, trusted HTML)`` sections."""
    rows = [[None if isinstance(v, float) and v != v else v for v in r]
            for r in table.astype(object).itertuples(index=False, name=None)]
    return {"format": _FORMAT, "table": {"columns": [str(c) for c in table.columns], "rows": rows},
            "examples": dict(examples) if examples else None,
            "extra_sections": [[str(t), str(h)] for t, h in extra_sections]}


def table_from(data: Mapping[str, Any]) -> pd.DataFrame:
    """The per-sample table stored in a sidecar document."""
    t = data["table"]
    df = pd.DataFrame(t["rows"], columns=t["columns"])
    if "score" in df:
        df["score"] = df["score"].astype(float)
    return df


def write_outputs(results: Mapping[str, Any], data: Mapping[str, Any], folder: str | Path, *,
                  html: bool = True) -> list[Path]:
    """Write ``leaderboard.md/.tex/.csv`` and (``html``) ``report.html`` of ``results`` (a
    ``results.json`` document) and ``data`` (a sidecar document)."""
    from gmxai_eval.report.html import render_report

    folder = Path(folder)
    doc = as_document(results)
    out = tables.write_tables(doc, folder)
    if html:
        render_report(doc, folder / "report.html", examples=data.get("examples"),
                      extra_sections=[tuple(s) for s in data.get("extra_sections", [])])  # type: ignore[misc]
        out.append(folder / "report.html")
    from gmxai_eval.report.views import write_view_files

    out += write_view_files(doc, folder)  # views/*.png, *.csv, *.md of a "views" section
    return out


def write_report_data(data: Mapping[str, Any], folder: str | Path) -> Path:
    """Write the sidecar ``report_data.json`` atomically."""
    return write_atomic(Path(folder) / REPORT_DATA, json.dumps(data, allow_nan=False))


def read_run(results_json: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(results, report data)`` of the run whose ``results.json`` is ``results_json`` (its
    ``report_data.json`` lies next to it).

    Raises:
        DataError: a missing or unreadable ``results.json`` or sidecar.
    """
    src = Path(results_json)
    side = src.parent / REPORT_DATA
    docs = []
    for p in (src, side):
        if not p.is_file():
            raise DataError(f"expected a file at {p} (written by gmxai-eval run), got none", path=p)
        try:
            docs.append(json.loads(p.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise DataError(f"expected valid JSON, got {e}", path=p) from None
    results, data = docs
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise DataError(f"expected {REPORT_DATA} of format {_FORMAT!r}, got "
                        f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r}", path=side)
    if not isinstance(results, dict) or "aggregates" not in results:
        raise DataError("expected a results document with 'aggregates', got none", path=src)
    return results, data
