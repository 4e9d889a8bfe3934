"""The metric-validity table and the pilot-based sample size, on fake per-sample tables whose
truth is known by construction."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from gmxai_eval.functional.agreement import krippendorff_alpha
from gmxai_eval.functional.paired import bootstrap_means, required_n as kernel_required_n
from gmxai_eval.report.aggregate import summarise
from gmxai_eval.report.power import required_n
from gmxai_eval.report.validity import (kendall_tau_b_rows, per_image_ranks, validity_csv, validity_html,
                                        validity_latex, validity_markdown)

METHODS = ["a", "b", "c", "d", "e", "f"]
QUALITY = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])  # the truth: a best ... f worst


def fake_table(n=24, seed=0):
    """Evaluators on ``n`` images of ``n // 2`` subjects:

    * ``cf`` (truth, category counterfactual): quality + small noise;
    * ``agree`` (higher better): quality + noise, consistent across images;
    * ``reverse``: scores like quality but declares lower is better, so it ranks f best;
    * ``noise``: per-image random scores (no ranking, unreliable);
    * ``cf_flipped`` (a second truth evaluator, lower is better: the same ranking as cf).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        for k, m in enumerate(METHODS):
            q = QUALITY[k]
            scores = {"cf": q + rng.normal(0, 0.3), "agree": 2 * q + rng.normal(0, 0.5),
                      "reverse": q + rng.normal(0, 0.3), "noise": rng.normal(),
                      "cf_flipped": -q + rng.normal(0, 0.3)}
            for ev, s in scores.items():
                rows.append({"evaluator": ev, "method": m, "seed": 0, "sample_id": f"i{i:02d}",
                             "subject": f"p{i // 2}", "score": s})
    return pd.DataFrame(rows)


CARDS = {"cf": {"higher_is_better": True, "category": "counterfactual"},
         "agree": {"higher_is_better": True, "category": "perturbation"},
         "reverse": {"higher_is_better": False, "category": "perturbation"},
         "noise": {"higher_is_better": True, "category": "localisation"},
         "cf_flipped": {"higher_is_better": False, "category": "counterfactual"}}
MCARDS = {m: {} for m in METHODS}


def test_tau_rows_and_per_image_ranks_against_scipy():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, size=(30, 6)).astype(float)
    b = rng.integers(0, 4, size=(30, 6)).astype(float)
    a[0, 2] = np.nan
    got = kendall_tau_b_rows(a, b)
    for r in range(30):
        ok = np.isfinite(a[r]) & np.isfinite(b[r])
        want = scipy.stats.kendalltau(a[r, ok], b[r, ok]).statistic
        assert (np.isnan(want) and np.isnan(got[r])) or got[r] == pytest.approx(want)
    ranks = per_image_ranks(a)
    for r in range(30):
        ok = np.isfinite(a[r])
        np.testing.assert_allclose(ranks[r, ok], scipy.stats.rankdata(-a[r, ok]))
    assert np.isnan(ranks[0, 2])


def test_validity_against_the_known_truth():
    doc = summarise(fake_table(), CARDS, MCARDS, n_boot=400, seed=0)
    val = doc["validity"]
    assert val["truth"] == ["cf", "cf_flipped"] and val["primary"] == "cf"
    ev = val["evaluators"]
    # agree ranks like the truth: tau 1 with a CI above 0; reliable per image
    assert ev["agree"]["tau"]["cf"]["tau"] == pytest.approx(1.0) and ev["agree"]["tau"]["cf"]["ci_low"] > 0
    assert ev["agree"]["disagrees"] is False and ev["agree"]["unreliable"] is False
    # reverse orients to the opposite ranking: tau -1, disagrees
    assert ev["reverse"]["tau"]["cf"]["tau"] == pytest.approx(-1.0) and ev["reverse"]["disagrees"] is True
    # noise: no ranking, alpha near 0: unreliable (and the CI of tau includes 0)
    assert ev["noise"]["alpha"] < 0.2 and ev["noise"]["unreliable"] is True
    assert ev["noise"]["tau"]["cf"]["ci_low"] <= 0 <= ev["noise"]["tau"]["cf"]["ci_high"]
    assert ev["noise"]["disagrees"] is True
    # the truth evaluators are not judged against themselves; the flipped truth agrees (oriented)
    assert ev["cf"]["is_truth"] and ev["cf"]["disagrees"] is None
    assert ev["cf"]["tau"]["cf_flipped"]["tau"] == pytest.approx(1.0)
    assert ev["agree"]["tau"]["cf"]["resampling_unit"] == "subject"


def test_validity_numbers_equal_a_direct_computation():
    t = fake_table(n=16, seed=3)
    doc = summarise(t, CARDS, MCARDS, n_boot=300, seed=2)
    per = {e: t[t.evaluator == e].pivot_table(index="sample_id", columns="method", values="score")[METHODS]
           for e in CARDS}
    sign = {e: 1.0 if CARDS[e]["higher_is_better"] else -1.0 for e in CARDS}
    r = doc["validity"]["evaluators"]["noise"]
    # tau point estimate: scipy's tau-b of the oriented means
    want = scipy.stats.kendalltau(per["noise"].mean().to_numpy(), per["cf"].mean().to_numpy()).statistic
    assert r["tau"]["cf"]["tau"] == pytest.approx(want)
    # CI: percentiles of tau over the joint cluster bootstrap (same draws for both evaluators)
    subjects = [f"p{int(s[1:]) // 2}" for s in per["noise"].index]
    boots = bootstrap_means(np.concatenate([per["noise"].to_numpy(), per["cf"].to_numpy()], 1), subjects,
                            n_boot=300, seed=2)
    taus = [scipy.stats.kendalltau(b[:6], b[6:]).statistic for b in boots]
    assert r["tau"]["cf"]["ci_low"] == pytest.approx(np.percentile(taus, 2.5))
    assert r["tau"]["cf"]["ci_high"] == pytest.approx(np.percentile(taus, 97.5))
    # alpha: images as raters, methods as units, ordinal values = per-image ranks (1 = best)
    ranks = np.array([scipy.stats.rankdata(-sign["reverse"] * row) for row in per["reverse"].to_numpy()])
    krippendorff = pytest.importorskip("krippendorff")
    assert doc["validity"]["evaluators"]["reverse"]["alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=ranks, level_of_measurement="ordinal"))
    assert doc["validity"]["evaluators"]["reverse"]["alpha"] == pytest.approx(krippendorff_alpha(ranks, "ordinal"))


def test_threshold_and_no_truth():
    doc = summarise(fake_table(), CARDS, MCARDS, n_boot=100, reliability_threshold=-1.0)
    assert not any(r["unreliable"] for r in doc["validity"]["evaluators"].values())
    cards = {k: v for k, v in CARDS.items() if v["category"] != "counterfactual"}
    t = fake_table()
    doc = summarise(t[t.evaluator.isin(cards)], cards, MCARDS, n_boot=100)
    assert doc["validity"]["truth"] == [] and doc["validity"]["evaluators"]["agree"]["disagrees"] is None
    assert "not available" in validity_markdown(doc)


def test_renderers_escape_and_parse():
    t = fake_table(n=8)
    hostile = "<b>x</b> & y|z"
    t.loc[t.evaluator == "noise", "evaluator"] = hostile
    cards = {**{k: v for k, v in CARDS.items() if k != "noise"}, hostile: CARDS["noise"]}
    doc = summarise(t, cards, MCARDS, n_boot=50)
    doc["run_id"] = "r"
    html = validity_html(doc)
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt; &amp; y|z" in html and "<table" in html
    assert validity_html({"aggregates": []}) == ""  # an old results.json
    md = validity_markdown(doc)
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len({ln.replace("\\|", "").count("|") for ln in table}) == 1 and len(table) == 2 + len(cards)
    back = pd.read_csv(io.StringIO(validity_csv(doc)), keep_default_na=False)
    assert len(back) == 2 * len(cards)  # one row per (evaluator, truth evaluator)
    row = back[(back.evaluator == "agree") & (back.truth == "cf")].iloc[0]
    assert float(row["tau"]) == doc["validity"]["evaluators"]["agree"]["tau"]["cf"]["tau"]
    tex = validity_latex(doc)
    assert r"\toprule" in tex and r"\&" in tex and "<b>" in tex  # LaTeX escapes &, not <


def test_required_n_from_a_pilot():
    rng = np.random.default_rng(5)
    rows = []
    # method x beats y by 0.5 per image with per-image difference sd 1; z equals y
    for i in range(30):
        base = rng.normal()
        d = rng.normal(0.5, 1.0)
        for m, s in (("x", base + d), ("y", base), ("z", base)):
            rows.append({"evaluator": "ev", "method": m, "seed": 0, "sample_id": f"s{i}", "subject": "",
                         "score": s})
    doc = summarise(pd.DataFrame(rows), {"ev": {"higher_is_better": True, "category": "p"}},
                    {"x": {}, "y": {}, "z": {}}, n_boot=200)
    doc = json.loads(json.dumps(doc, default=str))  # a results.json round trip
    st = doc["statistics"]["ev"]["pairs"]
    plan = required_n(doc, power=0.8, correction="none", fraction=1 / 3)
    # pairs (x, y) and (x, z) need the same n; (y, z) has no difference: inf
    want = kernel_required_n(st["sd"][0], st["diff"][0])
    assert plan["evaluators"]["ev"]["n"] == pytest.approx(float(want)) and plan["n"] == float(want)
    assert required_n(doc, fraction=1.0, correction="none")["evaluators"]["ev"]["n"] == np.inf
    # Bonferroni over the 3 pairs needs more
    strict = required_n(doc, correction="bonferroni", fraction=1 / 3)["evaluators"]["ev"]["n"]
    assert strict == pytest.approx(float(kernel_required_n(st["sd"][0], st["diff"][0], alpha=0.05 / 3)))
    assert strict > want
    with pytest.raises(Exception, match="statistics"):
        required_n({"aggregates": []})


def test_reused_draws_equal_fresh_joint_draws():
    from gmxai_eval.report.validity import validity_table

    t = fake_table(n=12, seed=4)
    doc = summarise(t, CARDS, MCARDS, n_boot=200, seed=1)  # reuses the evaluators' own draws
    per = {e: t[t.evaluator == e].pivot_table(index="sample_id", columns="method", values="score")[METHODS]
           for e in CARDS}
    subj = {e: {s: f"p{int(s[1:]) // 2}" for s in per[e].index} for e in CARDS}
    fresh = validity_table(per, subj, CARDS, METHODS, n_boot=200, seed=1)  # draws jointly
    for ev, r in fresh["evaluators"].items():
        for tr, v in r["tau"].items():
            got = doc["validity"]["evaluators"][ev]["tau"][tr]
            assert (got["ci_low"], got["ci_high"]) == pytest.approx((v["ci_low"], v["ci_high"]))
