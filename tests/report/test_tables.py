"""Leaderboard formats: CSV parses back, LaTeX has booktabs rules and escapes, Markdown is GitHub."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd

from gmxai_eval.report.aggregate import summarise
from gmxai_eval.report.tables import (leaderboard_csv, leaderboard_latex, leaderboard_markdown,
                                      leaderboard_rows, tex_escape, write_results_json, write_tables)

HOSTILE = "odd_name & 50% {x}|y"


def results_doc():
    rows = []
    for m, base in (("good", 0.8), (HOSTILE, 0.5), ("random", 0.6)):
        for i in range(6):
            rows.append({"seed": 0, "evaluator": "ev_a", "method": m, "sample_id": f"s{i}", "subject": "",
                         "score": base + 0.01 * i})
            rows.append({"seed": 0, "evaluator": "ev_b", "method": m, "sample_id": f"s{i}", "subject": "",
                         "score": 1 - base + 0.02 * i})
    cards_e = {"ev_a": {"higher_is_better": True, "category": "perturbation"},
               "ev_b": {"higher_is_better": False, "category": "localisation"}}
    cards_m = {"good": {}, HOSTILE: {}, "random": {"control": True}}
    doc = summarise(pd.DataFrame(rows), cards_e, cards_m, n_boot=200, seed=0)
    doc.update(run_id="t", methods={m: {} for m in cards_m})
    return doc


def test_csv_round_trip():
    doc = results_doc()
    back = pd.read_csv(io.StringIO(leaderboard_csv(doc)), keep_default_na=False)
    assert len(back) == len(doc["aggregates"]) == 6
    for rec, (_, row) in zip(doc["aggregates"], back.iterrows()):
        assert row["evaluator"] == rec["evaluator"] and row["method"] == rec["method"]
        for k in ("mean", "ci_low", "ci_high"):
            assert float(row[k]) == rec[k]  # written with 17 significant digits: exact
        assert int(row["rank"]) == rec["rank"] and int(row["band"]) == rec["band"]


def test_latex_booktabs_and_escaping():
    tex = leaderboard_latex(results_doc())
    lines = tex.splitlines()
    assert r"\toprule" in lines and r"\midrule" in lines and r"\bottomrule" in lines
    assert lines.index(r"\toprule") < lines.index(r"\midrule") < lines.index(r"\bottomrule")
    assert tex_escape(HOSTILE) in tex and HOSTILE not in tex
    assert tex_escape("a_b&c%$#{}~^\\") == r"a\_b\&c\%\$\#\{\}\textasciitilde{}\textasciicircum{}\textbackslash{}"
    body = lines[lines.index(r"\midrule") + 1: lines.index(r"\bottomrule")]
    header = lines[lines.index(r"\toprule") + 1]
    n_cols = header.count(" & ") + 1
    assert all(row.count(" & ") + 1 == n_cols for row in body) and len(body) == 5  # 3 methods + MDD + reliability
    assert r"ev\_a $\uparrow$" in header and r"ev\_b $\downarrow$" in header


def test_markdown_github_table():
    md = leaderboard_markdown(results_doc())
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert set(table[1].replace("|", "").strip()) <= {"-", " "}
    # every row has as many cells as the header, also with a '|' inside a label (escaped)
    cells = lambda ln: ln.replace("\\|", "").count("|")  # noqa: E731
    assert len({cells(ln) for ln in table}) == 1 and len(table) == 7  # header, rule, 3 methods, MDD, reliability
    assert "odd_name &amp; 50% {x}\\|y" in md
    assert table[2].startswith("| good ")  # best overall first
    assert "random (control)" in md


def test_write_tables_and_json_nan(tmp_path):
    doc = results_doc()
    doc["aggregates"][0]["mean"] = float("nan")
    paths = write_tables(doc, tmp_path)
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.tex", "leaderboard.csv",
                                       "validity.md", "validity.tex", "validity.csv"]
    p = write_results_json({**doc, "x": [math.inf]}, tmp_path)
    back = json.loads(p.read_text())
    assert back["aggregates"][0]["mean"] is None and back["x"] == [None]


def rich_doc():
    """A run with an oracle, an alias, conventions and a truth evaluator."""
    rng = np.random.default_rng(0)
    rows = []
    quality = {"good": 3.0, "fair": 2.0, "random": 1.0, "oracle": 4.0}
    for i in range(12):
        for m, q in quality.items():
            s = q + rng.normal(0, 0.2)
            for ev, v in (("del", s), ("flip", s), ("cf", q + rng.normal(0, 0.2)),
                          ("loc", (-q if m == "oracle" else q) + rng.normal(0, 0.2))):
                rows.append({"seed": 0, "evaluator": ev, "method": m, "sample_id": f"s{i}",
                             "subject": f"p{i // 3}", "score": v})
    cards_e = {"del": {"higher_is_better": True, "category": "perturbation"},
               "flip": {"higher_is_better": True, "category": "perturbation"},
               "cf": {"higher_is_better": True, "category": "counterfactual"},
               "loc": {"higher_is_better": True, "category": "localisation"}}
    cards_m = {"good": {}, "fair": {}, "random": {"control": True}, "oracle": {"name": "oracle", "control": True}}
    conv = {"del": {"abs": False, "baseline": "input_zero", "unit": "pixel", "output": "probability"}}
    doc = summarise(pd.DataFrame(rows), cards_e, cards_m, n_boot=200, seed=0, conventions=conv)
    doc.update(run_id="rich", methods={m: {"card": c} for m, c in cards_m.items()})
    return doc


def test_headers_rows_and_flags_of_a_rich_run(tmp_path):
    doc = rich_doc()
    headers, rows = leaderboard_rows(doc)
    h = dict(zip(["method", "overall", "perturbation rank", "counterfactual rank", "localisation rank",
                  "del", "flip", "cf", "loc"], headers))
    assert h["del"] == "del ↑ [signed, input_zero, pixel, probability]"
    assert h["flip"] == "flip ↑ (= del, counted once)"
    assert h["loc"].startswith("loc ↑°")  # the oracle scores last on loc
    assert [r[0] for r in rows] == ["good", "fair", "random (control)", "oracle (reference)",
                                    "MDD (alpha 0.05, power 0.8)", "ranking reliability [split 95%] (n units)"]
    oracle = rows[3]
    assert oracle[1].startswith("ref") and oracle[-1].endswith("rank 4/4") and oracle[-2].endswith("rank 1/4")
    md = leaderboard_markdown(doc)
    assert "- del = flip" in md and "loc: the oracle is beaten (oracle (rank 4 of 4) is beaten by good, fair, random)" in md
    assert "rule 'paired'" in md and "split-half reliability of the ranking of means &lt; 0.8" in md
    # CSV: the per-evaluator columns, and the reference flag
    back = pd.read_csv(io.StringIO(leaderboard_csv(doc)), keep_default_na=False)
    assert set(back[back.evaluator == "flip"]["alias_of"]) == {"del"}
    assert set(back[back.method == "oracle"]["reference"]) == {True}
    assert back[back.evaluator == "del"]["conventions"].iloc[0] == \
        "relevance=signed; substrate=input_zero; unit=pixel; output=probability"
    assert float(back[back.evaluator == "del"]["mdd"].iloc[0]) == doc["statistics"]["del"]["mdd"]
    names = [p.name for p in write_tables(doc, tmp_path)]
    assert "validity.md" in names and "| del" in (tmp_path / "validity.md").read_text()


def test_old_results_document_still_renders():
    """A results.json written before the paired statistics (no statistics/validity/oracle keys)."""
    doc = results_doc()
    for k in ("statistics", "validity", "oracle_flags", "ranking_conventions", "ranking_reliability", "verdict"):
        doc.pop(k)
    for k in ("reference", "aliases", "alias_of", "counted"):
        doc["rankings"].pop(k)
    doc["evaluators"] = {"ev_a": {"conventions": {"abs": True, "unit": "patch", "patch_size": 4}}}
    headers, rows = leaderboard_rows(doc)
    assert "ev_a ↑ [absolute, patch 4]" in headers and len(rows) == 3
    assert "validity" not in leaderboard_markdown(doc)
    assert leaderboard_csv(doc).count("\n") == 7


def test_hostile_labels_are_neutralised_in_csv_and_markdown(tmp_path, toys):
    """Labels come from specs: a CSV cell starting with '=' or '@' must not become a spreadsheet
    formula, and Markdown cells must not carry HTML or split columns (the README promises it)."""
    import csv as csvmod

    from gmxai_eval.report.tables import leaderboard_csv, leaderboard_markdown
    from gmxai_eval.runner.run import run_benchmark
    from runner_report_toys import toy_spec

    spec = toy_spec(methods=[{"name": "toy_grad", "label": "=HYPERLINK(\"x\")"},
                             {"name": "toy_random", "label": "@SUM(A1)|<img src=x onerror=alert(1)>"}],
                    evaluators=["toy_mass"])
    res = run_benchmark(spec, output=tmp_path, progress=False, verbose=False)
    rows = list(csvmod.DictReader(leaderboard_csv(res.results).splitlines()))
    methods = {r["method"] for r in rows}
    assert methods == {"'=HYPERLINK(\"x\")", "'@SUM(A1)|<img src=x onerror=alert(1)>"}
    md = leaderboard_markdown(res.results)
    assert "<img" not in md and "@SUM(A1)\\|&lt;img src=x onerror=alert(1)&gt;" in md
