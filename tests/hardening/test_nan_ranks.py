"""A method whose scores are all NaN on an evaluator gets no rank (never the last one); NaN is
dropped alike for the mean, the CI and the rank; per-sample NaNs are counted and flagged.

Oracle: invariance. Adding an all-NaN method must leave every other method's mean, CI, rank and
band exactly as they were without it; the NaN-free method's own family/overall mean rank is the
mean over the evaluators where it has a rank (computed by hand).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gmxai_eval.functional.paired import paired_bootstrap_test, paired_rank_bands
from gmxai_eval.report.aggregate import rank_bands, rank_min, summarise
from gmxai_eval.report.html import render_report
from gmxai_eval.report.tables import NO_RANK, leaderboard_csv, leaderboard_markdown, leaderboard_rows

BASE = {"a": 0.9, "b": 0.5, "c": 0.7}  # e1, e2 higher is better; per-image jitter below
CARDS_E = {"e1": {"higher_is_better": True, "category": "perturbation"},
           "e2": {"higher_is_better": True, "category": "perturbation"},
           "e3": {"higher_is_better": True, "category": "localisation"}}


def _rows(methods: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    rows = []
    for ev, per in methods.items():
        for m, vals in per.items():
            for i, v in enumerate(vals):
                rows.append({"seed": 0, "evaluator": ev, "method": m, "sample_id": f"s{i}", "subject": "",
                             "score": v})
    return pd.DataFrame(rows)


def _scores(with_broken: bool) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    per: dict[str, dict[str, list[float]]] = {}
    for ev in CARDS_E:
        per[ev] = {m: list(b + 0.05 * rng.standard_normal(8)) for m, b in BASE.items()}
        if with_broken:
            # "broken": every score NaN on e1, real scores elsewhere (the best on e2)
            per[ev]["broken"] = [np.nan] * 8 if ev == "e1" else list(1.5 + 0.05 * rng.standard_normal(8))
    # a per-sample NaN on a ranked method: dropped and counted
    per["e2"]["c"][3] = np.nan
    return _rows(per)


@pytest.mark.parametrize("band_rule", ["paired", "ci_overlap"])
def test_all_nan_method_gets_no_rank_and_changes_nobody_else(band_rule):
    cards_m = {m: {} for m in [*BASE, "broken"]}
    full = summarise(_scores(True), CARDS_E, cards_m, n_boot=300, seed=0, band_rule=band_rule)
    agg = {(r["evaluator"], r["method"]): r for r in full["aggregates"]}
    broken = agg[("e1", "broken")]
    assert broken["rank"] is None and broken["band"] is None and broken["mean"] is None
    assert broken["n"] == 0 and broken["n_nan"] == 8
    assert full["rankings"]["by_evaluator"]["e1"]["broken"] is None

    # the other methods on e1 are exactly as if "broken" were not there at all
    alone = summarise(_scores(True).query("method != 'broken' or evaluator != 'e1'"), CARDS_E, cards_m,
                      n_boot=300, seed=0, band_rule=band_rule)
    ref = {(r["evaluator"], r["method"]): r for r in alone["aggregates"]}
    for m in BASE:
        for k in ("mean", "ci_low", "ci_high", "rank", "band", "n", "n_nan"):
            assert agg[("e1", m)][k] == ref[("e1", m)][k], (m, k)
    assert sorted(full["rankings"]["by_evaluator"]["e1"][m] for m in BASE) == [1, 2, 3]

    # the per-sample NaN of c on e2: counted, dropped from the mean
    assert agg[("e2", "c")]["n_nan"] == 1 and agg[("e2", "c")]["n"] == 7
    vals = _scores(True).query("evaluator == 'e2' and method == 'c'")["score"].to_numpy()
    assert agg[("e2", "c")]["mean"] == pytest.approx(np.nanmean(vals))

    # family mean rank of "broken": over e2 only (1 of 2 perturbation evaluators)
    fam = full["rankings"]["by_family"]["perturbation"]["broken"]
    assert fam["n"] == 1 and fam["of"] == 2
    assert fam["mean_rank"] == full["rankings"]["by_evaluator"]["e2"]["broken"]
    overall = full["rankings"]["overall"]["broken"]
    loc = full["rankings"]["by_family"]["localisation"]["broken"]["mean_rank"]
    assert overall["mean_rank"] == pytest.approx((fam["mean_rank"] + loc) / 2) and overall["n"] == 2


def test_method_without_any_score_has_no_family_or_overall_rank_and_tables_say_so():
    rng = np.random.default_rng(1)
    per = {ev: {m: list(b + 0.05 * rng.standard_normal(6)) for m, b in BASE.items()} for ev in CARDS_E}
    for ev in CARDS_E:
        per[ev]["dead"] = [np.nan] * 6
    per["e1"]["a"][0] = np.nan
    doc = summarise(_rows(per), CARDS_E, {m: {} for m in [*BASE, "dead"]}, n_boot=200, seed=0)
    doc["run_id"] = "nan-toy"
    r = doc["rankings"]
    assert r["overall"]["dead"]["rank"] is None and r["overall"]["dead"]["mean_rank"] is None
    assert all(r["by_family"][f]["dead"]["rank"] is None for f in r["by_family"])
    # the ranked methods' overall ranks are 1..3: "dead" takes no place among them
    assert sorted(r["overall"][m]["rank"] for m in BASE) == [1, 2, 3]

    headers, rows = leaderboard_rows(doc)
    by_name = {row[0]: row for row in rows}
    assert [row[0] for row in rows][:4][-1] == "dead"  # listed after the ranked methods
    assert by_name["dead"][1] == f"n/a ({NO_RANK})"
    e1 = headers.index(next(h for h in headers if h.startswith("e1 ")))
    assert by_name["dead"][e1] == f"n/a [n/a, n/a] {NO_RANK} (6 NaN)"
    assert by_name["a"][e1].endswith("(1 NaN)")
    md = leaderboard_markdown(doc)
    assert NO_RANK in md and "(1 NaN)" in md and "never ranked" in md
    csv = pd.read_csv(pd.io.common.StringIO(leaderboard_csv(doc)))
    dead = csv[csv["method"] == "dead"]
    assert dead["rank"].isna().all() and dead["band"].isna().all() and (dead["n_nan"] == 6).all()
    html = render_report(doc)
    assert NO_RANK in html


def test_summary_gives_no_rank_and_intervals_only_over_ranked_draws():
    """The compact run summary follows the same rule: the all-NaN method has no rank and no
    interval, and the others' bootstrap ranks (image weights all one) are the aggregation's."""
    from gmxai_eval.report.summary import per_sample_tables, ranks_from_weights, summary_data, summary_lines

    rng = np.random.default_rng(3)
    per = {ev: {m: list(b + 0.05 * rng.standard_normal(6)) for m, b in BASE.items()} for ev in CARDS_E}
    for ev in CARDS_E:
        per[ev]["dead"] = [np.nan] * 6
    per["e2"]["a"] = [np.nan] * 6  # "a" has no rank on e2 only
    table = _rows(per)
    doc = summarise(table, CARDS_E, {m: {} for m in [*BASE, "dead"]}, n_boot=100, seed=0)
    doc.update(run_id="nan-toy", samples=table[["seed", "evaluator", "method", "sample_id", "score"]].values.tolist())
    tables = per_sample_tables(doc)
    pool = sorted({str(i) for t in tables.values() for i in t.index})
    overall, fam = ranks_from_weights(doc, tables, np.ones((1, len(pool))), pool)
    methods = [*BASE, "dead"]
    for j, m in enumerate(methods):
        want = doc["rankings"]["overall"][m]["rank"]
        assert (np.isnan(overall[0, j]) and want is None) or overall[0, j] == want, m
    data = summary_data(doc)
    rows = {r["method"]: r for r in data["rows"]}
    assert [r["method"] for r in data["rows"]][-1] == "dead"
    assert rows["dead"]["rank"] is None and rows["dead"]["interval"] is None
    assert rows["a"]["rank"] is not None and rows["a"]["interval"] is not None
    assert any(NO_RANK in line for line in summary_lines(data))


def test_rank_and_band_kernels_skip_nan():
    np.testing.assert_array_equal(rank_min([np.nan, 1.0, 1.0, 3.0]), [np.nan, 2, 2, 1])
    assert np.isnan(rank_min([np.nan, np.nan])).all()
    # CI bands: a method without a CI has no band and is better than nobody
    np.testing.assert_array_equal(rank_bands([5, np.nan, 1], [7, np.nan, 2], True), [1, np.nan, 2])
    v = np.random.default_rng(2).normal(size=(20, 3)) + np.array([1.0, 0.0, -1.0])
    v[:, 1] = np.nan
    t = paired_bootstrap_test(v, None, n_boot=300, seed=0)
    np.testing.assert_array_equal(paired_rank_bands([1.0, np.nan, -1.0], t),
                                  [1, np.nan, 2])
