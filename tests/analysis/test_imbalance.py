"""Class-imbalance analysis, planning, spec and rendering: pure functions against hand-computed
values and invariances (the trainings themselves are tested in tests/runner/test_imbalance_run.py)."""

from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
import pytest

from gmxai_eval.analysis import imbalance as A
from gmxai_eval.errors import ConfigError, DataError, UnknownNameError
from gmxai_eval.functional.stats import bootstrap_ci
from gmxai_eval.runner.imbalance import (CONDITIONS, parse_imbalance_spec, plan_conditions, preset_imbalance_spec,
                                         PRESETS)


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


def test_csv_and_markdown_are_safe_and_complete():
    s = A.summarise([rec("all", 0, "=HYPERLINK(1)", 3, 0.5), rec("all", 0, "a|<b>", 4, 0.25)], n_boot=10)
    text = A.to_csv(s)
    rows = list(__import__("csv").reader(io.StringIO(text)))
    assert rows[0] == list(A.SUMMARY_COLUMNS) and len(rows) == 3
    assert any(r[2] == "'=HYPERLINK(1)" for r in rows[1:])
    md = A.to_markdown(s, A.size_trends(s))
    assert "a\\|&lt;b&gt;" in md and "<b>" not in md and "0.250 [0.250, 0.250]" in md


# -- planning the conditions ----------------------------------------------------------------------

def layout():
    """5 classes; class c has 10 * (5 - c) training images (2 per patient) and 4 test images."""
    labels, patients, splits, pid = [], [], [], 0
    for c in range(5):
        for _ in range(5 * (5 - c)):
            labels += [c, c]
            patients += [pid, pid]
            splits += [0, 0]
            pid += 1
        for _ in range(2):
            labels += [c, c]
            patients += [pid, pid]
            splits += [2, 2]
            pid += 1
    return np.array(labels), np.array(patients), np.array(splits), ["unaffected", "s1", "s2", "s3", "s4"]


def spec(**kw):
    return parse_imbalance_spec({"imbalance": {"top_k": 2, "few_patients": 2, "many_patients": 4,
                                               "test_per_class": 3, **kw}}, source="t.toml")


def test_conditions_choose_classes_and_nested_training_rows():
    labels, patients, splits, names = layout()
    conds, test, chosen = plan_conditions(spec(), labels, patients, splits, names)
    by = {c.name: c for c in conds}
    assert [c.name for c in conds] == list(CONDITIONS)
    assert chosen == 4  # the rarest syndrome
    assert by["top_k"].classes == (0, 1, 2)  # unaffected + the two largest syndromes
    assert by["all"].classes == (0, 1, 2, 3, 4)
    assert dict(by["all"].train_sizes) == {c: 10 * (5 - c) for c in range(5)}
    assert set(by["balanced"].train_sizes.values()) == {10}
    assert by["chosen_few"].classes == by["chosen_many"].classes == (0, 1, 2, 4)
    assert (by["chosen_few"].train_patients[4], by["chosen_many"].train_patients[4]) == (2, 4)
    assert by["chosen_few"].train_sizes[4] == 4 and by["chosen_many"].train_sizes[4] == 8
    few, many = set(by["chosen_few"].train_rows), set(by["chosen_many"].train_rows)
    assert few < many and set(by["balanced"].train_rows) < set(by["all"].train_rows)
    for cond in conds:
        rows = np.array(cond.train_rows)
        assert (splits[rows] == 0).all() and np.bincount(labels[rows], minlength=5)[list(cond.classes)].tolist() == \
            [cond.train_sizes[c] for c in cond.classes]
    assert all(len(r) == 3 and (splits[r] == 2).all() and (labels[r] == c).all() for c, r in test.items())
    capped, _, _ = plan_conditions(spec(max_train_per_class=12), labels, patients, splits, names)
    assert max(capped[1].train_sizes.values()) == 12


def test_plan_is_deterministic_and_refuses_impossible_choices():
    labels, patients, splits, names = layout()
    a = plan_conditions(spec(), labels, patients, splits, names)
    b = plan_conditions(spec(), labels, patients, splits, names)
    assert a[0] == b[0] and all((a[1][c] == b[1][c]).all() for c in a[1])
    with pytest.raises(ConfigError, match="outside the top_k"):
        plan_conditions(spec(chosen="s1"), labels, patients, splits, names)
    with pytest.raises(ConfigError, match="did you mean"):
        plan_conditions(spec(chosen="s44"), labels, patients, splits, names)
    with pytest.raises(ConfigError, match="top_k < 4"):
        plan_conditions(spec(top_k=4), labels, patients, splits, names)


@pytest.mark.parametrize("bad, match", [
    ({"repets": 1}, "did you mean .*repeats"),
    ({"conditions": ["top_k", "rare"]}, "imbalance.conditions"),
    ({"conditions": ["all", "all"]}, "distinct"),
    ({"repeats": 0}, "repeats >= 1"),
    ({"top_k": True}, "top_k as int"),
    ({"recipe": {"epochz": 2}}, "imbalance.recipe"),
    ({"data": {"preset": "huge"}}, "data.preset"),
    ({"data": {"num_imagez": 3}}, "imbalance.data"),
    ({"methods": ["salency"]}, "saliency"),
])
def test_spec_errors_name_the_key(bad, match):
    with pytest.raises((ConfigError, UnknownNameError), match=match):
        parse_imbalance_spec({"imbalance": bad}, source="t.toml")


def test_presets_parse_and_hash_ignores_where_it_runs():
    for name in PRESETS:
        s = preset_imbalance_spec(name)
        assert s.source == f"preset:{name}" and s.run_id().startswith(name)
    a = spec()
    assert parse_imbalance_spec({"imbalance": {"top_k": 2, "few_patients": 2, "many_patients": 4, "test_per_class": 3,
                                               "executor": "processes", "workers": 2, "output": "x"}}).hash() == a.hash()
    assert spec(seed=1).hash() != a.hash()
    with pytest.raises(ConfigError, match="one \\[imbalance\\] table"):
        parse_imbalance_spec({"run": {}})


# -- rendering ------------------------------------------------------------------------------------

def section(name="s<1>"):
    s = A.summarise([rec("all", 0, name, 10, 0.5), rec("few", 0, name, 2, 0.2),
                     rec("all", 0, name, 10, 0.7, metric="ssim"), rec("few", 0, name, 2, float("nan"), metric="ssim")],
                    n_boot=10)
    h, rows = A.table_rows(s)
    return {"title": "Imb <x>", "metrics": ["localisation", "ssim"], "methods": ["m"], "summary": s,
            "trends": A.size_trends(s), "table": {"headers": h, "rows": rows}, "costs": {"trainings": 2}}


def test_section_renders_escaped_figure_and_table():
    from gmxai_eval.report.html import SECTIONS
    from gmxai_eval.report.imbalance import render_page, size_figure

    png = size_figure(section())
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    title, frag = SECTIONS.get("imbalance")({}, section())
    assert title == "Imb <x>" and "s&lt;1&gt;" in frag and "s<1>" not in frag
    assert base64.b64encode(png).decode()[:40] in frag  # the same figure, inline
    page = render_page("rid", section(), [("run id", "<rid>")])
    assert "gmx-figcheck" in page and "&lt;rid&gt;" in page
    with pytest.raises(DataError, match="imbalance section"):
        SECTIONS.get("imbalance")({}, {"title": "x"})


def test_section_data_reads_the_run_folder(tmp_path):
    from types import SimpleNamespace

    from gmxai_eval.runner.stages.sections import SECTION_DATA

    fn = SECTION_DATA.get("imbalance")
    ctx = SimpleNamespace(out_root=tmp_path, run_id="r1")
    with pytest.raises(DataError, match="gmxai-eval imbalance"):
        fn(ctx)
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "imbalance.json").write_text(json.dumps({"format": "gmxai_eval.imbalance/1",
                                                                "section": section()}))
    assert fn(ctx)["title"] == "Imb <x>"
