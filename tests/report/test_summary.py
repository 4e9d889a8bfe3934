"""The compact run summary: the console lines ``run`` prints and the section report.html opens with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gmxai_eval.report.aggregate import summarise
from gmxai_eval.report.summary import (per_sample_tables, rank_intervals, ranks_from_weights, run_files,
                                       summary_data, summary_html, summary_lines)
from gmxai_eval.runner.run import run_benchmark
from runner_report_toys import toy_spec

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference" / "results.json"


def wide_doc(n_methods=25, n_families=8, per_family=5, n_images=12, seed=0, dominant=True):
    """A results document built by the real aggregation from random scores: ``n_methods``
    methods with long names (3 controls), ``n_families x per_family`` evaluators; with
    ``dominant`` the first method is best on every image of every evaluator."""
    rng = np.random.default_rng(seed)
    methods = [f"method_{i:02d}_with_a_long_layer_name@backbone.blocks.{i}" for i in range(n_methods)]
    ev_cards, rows = {}, []
    for f in range(n_families):
        for k in range(per_family):
            ev = f"family{f}_evaluator{k}"
            hib = bool((f + k) % 2)
            ev_cards[ev] = {"higher_is_better": hib, "category": f"family_number_{f}"}
            for j, m in enumerate(methods):
                for i in range(n_images):
                    v = rng.normal(0.5, 0.1)
                    if dominant and j == 0:
                        v = 10.0 if hib else -10.0
                    rows.append({"seed": 0, "evaluator": ev, "method": m, "sample_id": f"img{i:03d}", "score": v})
    m_cards = {m: {"control": j >= n_methods - 3} for j, m in enumerate(methods)}
    table = pd.DataFrame(rows)
    doc = summarise(table, ev_cards, m_cards, n_boot=100, seed=0)
    doc.update(run_id="wide", n_images=n_images, seeds=[0],
               methods={m: {"card": m_cards[m]} for m in methods},
               samples=table[["seed", "evaluator", "method", "sample_id", "score"]].values.tolist())
    return doc


def _ones(doc):
    tables = per_sample_tables(doc)
    pool = sorted({str(s) for t in tables.values() for s in t.index})
    return ranks_from_weights(doc, tables, np.ones((1, len(pool))), pool)


@pytest.mark.parametrize("doc", ["reference", "wide"])
def test_unit_weights_reproduce_the_documents_ranks(doc):
    """Oracle: the aggregation's own overall and family ranks (a bootstrap draw that keeps every
    image once must rank exactly as the document)."""
    d = json.loads(REFERENCE.read_text()) if doc == "reference" else wide_doc(dominant=False)
    overall, fam = _ones(d)
    methods = [m for m in d["methods"] if m in d["rankings"]["overall"]]
    assert [int(r) for r in overall[0]] == [d["rankings"]["overall"][m]["rank"] for m in methods]
    for f, r in fam.items():
        assert [int(v) for v in r[0]] == [d["rankings"]["by_family"][f][m]["rank"] for m in methods], f


def test_intervals_are_certain_for_a_dominant_method_and_wide_for_exchangeable_ones():
    d = wide_doc()
    iv = rank_intervals(d)
    first = next(iter(d["methods"]))
    assert iv["overall"][first] == [1, 1]
    assert all(v == [1, 1] for v in (iv["by_family"][f][first] for f in iv["by_family"]))
    # the others are i.i.d. noise: every interval contains its point rank and most are wide
    others = [m for m in d["methods"] if m != first]
    for m in others:
        lo, hi = iv["overall"][m]
        assert 2 <= lo <= hi <= len(d["methods"])
    assert np.median([iv["overall"][m][1] - iv["overall"][m][0] for m in others]) >= 3
    # deterministic: a re-rendered report is the same bytes
    assert rank_intervals(d) == iv


def test_console_lines_are_short_and_carry_the_summary():
    d = wide_doc()
    lines = summary_lines(summary_data(d, ["out/leaderboard.md", "out/results.json"]))
    assert all(len(line) <= 120 for line in lines), max(lines, key=len)
    text = "\n".join(lines)
    assert "|" not in text and not any(line.lstrip().startswith("- ") for line in lines)
    assert len(lines) < 100  # 25 methods x 8 families wrap into blocks, not one 300-char table
    first = next(iter(d["methods"]))
    # the dominant method: rank 1 with interval [1-1], best in every family
    row = next(line for line in lines if line.startswith(first[:20]))
    assert re.search(r"\s1 \[1-1\]", row)
    for f in d["rankings"]["by_family"]:
        assert any(line.strip().startswith(f"{f}: ") and first in line for line in lines), f
    # every method appears in every block of family columns
    blocks = sum(bool(re.match(r"method +(overall|family)", line)) for line in lines)
    assert blocks == 2
    # flag counts are the document's
    n_ctrl = sum(bool(v["flag"]) for v in d["control_flags"].values())
    assert f"control (top band or above the median real method) on {n_ctrl}/40" in text
    assert lines[-2:] == ["  out/leaderboard.md", "  out/results.json"]


def test_run_prints_the_summary_with_existing_paths(tmp_path, toys, capsys):
    spec = toy_spec(evaluators=["toy_mass", "toy_deletion"], html=True, examples=2, n_images=8)
    res = run_benchmark(spec, output=tmp_path, progress=False, verbose=True)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line) <= 120 for line in lines)
    assert "| method |" not in out and "Flags (evaluators)" in out and "Best per family:" in out
    paths = [Path(line.strip()) for line in lines if line.startswith("  ") and line.strip().startswith(str(tmp_path))]
    assert {p.name for p in paths} >= {"leaderboard.md", "leaderboard.csv", "results.json", "report.html"}
    assert all(p.is_file() for p in paths)
    # the ranks printed are the document's
    for m, r in res.results["rankings"]["overall"].items():
        row = next(line for line in lines if line.split()[:1] == [m]).replace(" (c)", "")
        assert row.split()[1] == str(r["rank"])
    # report.html opens with the same summary: its first section
    page = (res.run_dir / "report.html").read_text()
    assert page.index("<h2") == page.index('<h2 id="summary">Summary</h2>')
    assert summary_html(summary_data(res.results, [n for n in ("leaderboard.md", "leaderboard.csv",
                                                               "validity.md", "results.json", "report.html")
                                                   if (res.run_dir / n).is_file()])) in page
    assert run_files(res.run_dir) == paths


def test_summary_html_escapes_labels():
    d = wide_doc(n_methods=5, n_families=2, per_family=2)
    evil = "<script>x</script>"
    first = next(iter(d["methods"]))
    d = json.loads(json.dumps(d).replace(first, evil))
    frag = summary_html(summary_data(d))
    assert evil not in frag and "&lt;script&gt;x&lt;/script&gt;" in frag


def test_oracle_place_and_flag_counts_follow_the_document():
    """An oracle that scores exactly between the dominant method and the noise methods: it is a
    reference row (no rank, not in the intervals), placed second by its mean rank, and the
    number of evaluators on which it is beaten is the document's oracle flag count."""
    d = wide_doc(n_methods=6, n_families=2, per_family=2)
    table = pd.DataFrame(d["samples"], columns=["seed", "evaluator", "method", "sample_id", "score"])
    hib = {a["evaluator"]: a["higher_is_better"] for a in d["aggregates"]}
    extra = table[table.method == next(iter(d["methods"]))].copy()
    extra["method"] = "oracle"
    extra["score"] = [5.0 if hib[e] else -5.0 for e in extra["evaluator"]]
    table = pd.concat([table, extra], ignore_index=True)
    ev_cards = {e: {"higher_is_better": hib[e], "category": f} for f, evs in d["rankings"]["families"].items()
                for e in evs}
    m_cards = {m: {"control": c["card"]["control"]} for m, c in d["methods"].items()}
    m_cards["oracle"] = {"name": "oracle", "control": True, "needs_masks": True}
    doc = summarise(table, ev_cards, m_cards, n_boot=100, seed=0)
    doc.update(run_id="o", n_images=12, seeds=[0], methods={m: {"card": c} for m, c in m_cards.items()},
               samples=table[["seed", "evaluator", "method", "sample_id", "score"]].values.tolist())
    s = summary_data(doc)
    assert "oracle" not in [r["method"] for r in s["rows"]] and len(s["rows"]) == 6
    assert s["oracle"]["oracle"]["place"] == 2 and s["oracle"]["oracle"]["of"] == 7
    beaten = sum(bool(f["flag"]) for f in doc["oracle_flags"].values())
    assert beaten == 4 and s["flags"]["oracle_beaten"] == 4  # the dominant method beats it everywhere
    lines = summary_lines(s)
    assert "Reference oracle: mean rank 2.00, would rank 2 of 7 overall (not ranked)" in lines
    assert any("° oracle beaten on 4/4" in line for line in lines)


def test_truth_agreement_is_not_checked_without_a_truth_evaluator():
    """A run without a counterfactual evaluator cannot say that no evaluator disagrees with the
    truth: the summary says it was not checked instead of printing 0/N."""
    d = json.loads(REFERENCE.read_text())
    assert not d["validity"]["truth"]  # the quick preset has no counterfactual evaluator
    text = "\n".join(summary_lines(summary_data(d)))
    assert "not checked (no counterfactual truth evaluator" in text
    assert "disagrees with the counterfactual truth on" not in text
    d["validity"]["truth"] = ["counterfactual_deletion"]
    assert "disagrees with the counterfactual truth on 0/" in "\n".join(summary_lines(summary_data(d)))
