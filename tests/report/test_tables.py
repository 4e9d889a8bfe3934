"""Leaderboard formats: CSV parses back, LaTeX has booktabs rules and escapes, Markdown is GitHub."""

from __future__ import annotations

import io
import json
import math

import pandas as pd

from gmxai_eval.report.aggregate import summarise
from gmxai_eval.report.tables import (leaderboard_csv, leaderboard_latex, leaderboard_markdown,
                                      tex_escape, write_results_json, write_tables)

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
    assert all(row.count(" & ") + 1 == n_cols for row in body) and len(body) == 3
    assert r"ev\_a $\uparrow$" in header and r"ev\_b $\downarrow$" in header


def test_markdown_github_table():
    md = leaderboard_markdown(results_doc())
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert set(table[1].replace("|", "").strip()) <= {"-", " "}
    # every row has as many cells as the header, also with a '|' inside a label (escaped)
    cells = lambda ln: ln.replace("\\|", "").count("|")  # noqa: E731
    assert len({cells(ln) for ln in table}) == 1 and len(table) == 5
    assert "odd_name & 50% {x}\\|y" in md
    assert table[2].startswith("| good ")  # best overall first
    assert "random (control)" in md


def test_write_tables_and_json_nan(tmp_path):
    doc = results_doc()
    doc["aggregates"][0]["mean"] = float("nan")
    paths = write_tables(doc, tmp_path)
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.tex", "leaderboard.csv"]
    p = write_results_json({**doc, "x": [math.inf]}, tmp_path)
    back = json.loads(p.read_text())
    assert back["aggregates"][0]["mean"] is None and back["x"] == [None]
