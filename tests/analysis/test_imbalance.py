"""Class-imbalance analysis and rendering: pure functions against hand-computed values and
invariances (the experiment itself runs through the runner: tests/runner/test_imbalance_run.py)."""

from __future__ import annotations

import base64
import math

import pytest

from gmxai_eval.analysis import imbalance as A
from gmxai_eval.errors import DataError
from gmxai_eval.functional.stats import bootstrap_ci


def rec(cond, r, cls, size, value, method="m", metric="localisation"):
    return {"condition": cond, "repeat": r, "class": cls, "method": method, "metric": metric,
            "train_size": size, "value": value}


def test_summary_is_the_mean_and_bootstrap_ci_over_repeats():
    recs = [rec("all", 0, "a", 10, 0.2), rec("all", 1, "a", 10, 0.4), rec("all", 2, "a", 10, 0.9),
            rec("few", 0, "a", 2, 0.1), rec("few", 1, "a", 2, None)]
    s = A.summarise(recs, n_boot=500, seed=3)
    assert [(r["condition"], r["train_size"]) for r in s] == [("few", 2), ("all", 10)]  # sorted by size
    few, full = s
    assert full["mean"] == pytest.approx(0.5) and full["n_repeats"] == 3
    assert (full["mean"], full["ci_low"], full["ci_high"]) == bootstrap_ci([0.2, 0.4, 0.9], n_boot=500, seed=3)
    assert few["n_repeats"] == 1 and few["mean"] == few["ci_low"] == few["ci_high"] == pytest.approx(0.1)


def test_summary_rejects_malformed_records():
    with pytest.raises(DataError, match="row 1.*'value'"):
        A.summarise([rec("all", 0, "a", 1, 0.1), {k: v for k, v in rec("all", 1, "a", 1, 0.1).items() if k != "value"}])
    with pytest.raises(DataError, match="one train_size"):
        A.summarise([rec("all", 0, "a", 1, 0.1), rec("all", 1, "a", 2, 0.1)])
    with pytest.raises(DataError, match="train_size as an int"):
        A.summarise([rec("all", 0, "a", -1, 0.1)])


def test_size_trend_is_spearman_of_size_and_mean():
    up = [rec(f"c{i}", 0, f"k{i}", size, v) for i, (size, v) in enumerate([(1, 0.1), (5, 0.3), (50, 0.35), (9, 0.31)])]
    down = [dict(r, method="n", value=-r["value"]) for r in up]
    t = {r["method"]: r for r in A.size_trends(A.summarise(up + down, n_boot=10))}
    assert t["m"]["rho"] == pytest.approx(1.0) and t["n"]["rho"] == pytest.approx(-1.0) and t["m"]["points"] == 4
    only = A.size_trends(A.summarise(up, n_boot=10), classes=["k0", "k1"])
    assert only[0]["points"] == 2 and math.isnan(only[0]["rho"])  # fewer than 3 points


def test_table_cells_show_mean_and_ci():
    s = A.summarise([rec("all", 0, "a", 4, 0.25), rec("few", 0, "a", 1, None)], n_boot=10)
    headers, rows = A.table_rows(s)
    assert headers[-1] == "mean [95% CI]" and rows[0][-1] == "n/a [n/a, n/a]" and rows[1][-1] == "0.250 [0.250, 0.250]"


# -- rendering ------------------------------------------------------------------------------------

def section(name="s<1>"):
    s = A.summarise([rec("all", 0, name, 10, 0.5), rec("few", 0, name, 2, 0.2),
                     rec("all", 0, name, 10, 0.7, metric="ssim"), rec("few", 0, name, 2, float("nan"), metric="ssim")],
                    n_boot=10)
    h, rows = A.table_rows(s)
    return {"title": "Imb <x>", "metrics": ["localisation", "ssim"], "methods": ["m"], "summary": s,
            "conditions": [{"name": "all", "models": ["all-0"], "train_sizes": {name: 10}}],
            "reference": {name: "all"}, "trends": A.size_trends(s), "table": {"headers": h, "rows": rows},
            "costs": {"trainings": 2}}


def test_section_renders_escaped_figure_and_table():
    from gmxai_eval.report.html import SECTIONS
    from gmxai_eval.report.imbalance import size_figure

    png = size_figure(section())
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    title, frag = SECTIONS.get("imbalance")({}, section())
    assert title == "Imb <x>" and "s&lt;1&gt;: 10" in frag and "s<1>" not in frag
    assert base64.b64encode(png).decode()[:40] in frag  # the same figure, inline
    assert frag.count('<table class="imbalance">') == 1 and "imbalance-conditions" in frag
    with pytest.raises(DataError, match="imbalance section"):
        SECTIONS.get("imbalance")({}, {"title": "x"})


def test_models_page_renders_the_runs_model_sections():
    from gmxai_eval.report.models import models_html

    doc = {"run_id": "r", "models": {"all-0": {"source": "train", "folder": "models/all-0"}},
           "comparison": {"overall": {"all-0": {}}, "by_evaluator": {}}, "sections": {"imbalance": section()}}
    page = models_html(doc)
    assert "<h2>Imb &lt;x&gt;</h2>" in page and page.count('<table class="imbalance">') == 1
    assert "gmx-figcheck" in page
