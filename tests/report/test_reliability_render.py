"""The reliability table is rendered from ``results["reliability"]`` alone (no model)."""

from __future__ import annotations

import math

from gmxai_eval.report.render import as_document
from gmxai_eval.report.reliability import COLUMNS, reliability_rows, render_reliability


def test_rows_follow_the_stored_numbers_and_missing_values_read_n_a():
    rel = {"evaluators": {"<b>del</b>": {"minor_change": 0.1234, "disruptive_change": 2.0, "ratio": math.inf,
                                         "minor_tau": math.nan, "disruptive_tau": -1.0, "n_kept": 7}},
           "description": "a <note>"}
    doc = as_document({"reliability": rel})["reliability"]  # as results.json stores it
    headers, rows = reliability_rows(doc)
    assert headers == ["evaluator", *(h for _, h in COLUMNS)]
    assert rows == [["<b>del</b>", "0.123", "2.000", "n/a", "n/a", "-1.000", "7"]]
    html = render_reliability(doc)
    assert "&lt;b&gt;del&lt;/b&gt;" in html and "<b>del</b>" not in html and "a &lt;note&gt;" in html
