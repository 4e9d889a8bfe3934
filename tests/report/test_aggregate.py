"""Aggregation against hand computations, a naive bootstrap and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from gmxai_eval.report.aggregate import (bootstrap_means, kendall_tau_b, rank_bands, rank_min,
                                         summarise)


def naive_bootstrap(values, clusters, n_boot, seed):
    """The documented protocol written as a plain loop."""
    v = np.asarray(values, float)
    labels = sorted(set(clusters))
    members = {c: [i for i, k in enumerate(clusters) if k == c] for c in labels}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(labels), size=(n_boot, len(labels)))
    out = np.empty((n_boot, v.shape[1]))
    for b in range(n_boot):
        rows = [i for g in idx[b] for i in members[labels[g]]]
        out[b] = np.nanmean(v[rows], axis=0)
    return out


def test_bootstrap_matches_naive_loop_images_and_clusters():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(12, 3))
    v[4, 1] = np.nan
    got = bootstrap_means(v, None, n_boot=300, seed=7)
    want = naive_bootstrap(v, [f"{i:02d}" for i in range(12)], 300, 7)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    subjects = ["a", "a", "b", "c", "c", "c", "d", "e", "e", "f", "g", "g"]
    got = bootstrap_means(v, subjects, n_boot=300, seed=7)
    np.testing.assert_allclose(got, naive_bootstrap(v, subjects, 300, 7), rtol=1e-12, atol=1e-12)


def test_bootstrap_ci_agrees_with_scipy_percentile():
    x = np.random.default_rng(3).exponential(size=60)
    boots = bootstrap_means(x[:, None], None, n_boot=20000, seed=0)[:, 0]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=20000, method="percentile",
                                random_state=np.random.default_rng(1)).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.02) and hi == pytest.approx(ref.high, abs=0.02)


def test_ranks_bands_and_kendall():
    # NaN (no score): no rank, and not counted in the others' ranks
    np.testing.assert_array_equal(rank_min([0.3, 0.9, 0.3, np.nan]), [2, 1, 2, np.nan])
    np.testing.assert_array_equal(rank_min([np.nan, 0.3, np.nan, 0.9]), [np.nan, 2, np.nan, 1])
    # intervals: A [5, 7], B [4.5, 6] overlaps A, C [1, 2] below both, D [1.5, 4.6] overlaps B and C
    lo, hi = [5, 4.5, 1, 1.5], [7, 6, 2, 4.6]
    assert rank_bands(lo, hi, True).tolist() == [1, 1, 3, 2]
    assert rank_bands(lo, hi, False).tolist() == [3, 2, 1, 1]
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 4, size=7).astype(float)  # ties on purpose
        b = rng.integers(0, 4, size=7).astype(float)
        ref = scipy.stats.kendalltau(a, b).statistic
        got = kendall_tau_b(a, b)
        assert (np.isnan(ref) and np.isnan(got)) or got == pytest.approx(ref, abs=1e-12)
    assert np.isnan(kendall_tau_b([1.0], [2.0]))


def _table():
    rows = []
    scores = {  # evaluator -> method -> per-image scores (2 seeds for e1)
        "e1": {"m1": [0.9, 0.8, 0.7, 0.6], "m2": [0.5, 0.4, 0.6, 0.5], "rnd": [0.7, 0.7, 0.7, 0.7]},
        "e2": {"m1": [0.1, 0.2, 0.1, 0.2], "m2": [0.3, 0.3, 0.4, 0.2], "rnd": [0.9, 0.8, 0.9, 0.8]},
        "e3": {"m1": [1.0, 1.0, 1.0, np.nan], "m2": [2.0, 2.0, 2.0, 2.0], "rnd": [3.0, 3.0, 3.0, 3.0]},
    }
    for ev, per in scores.items():
        for m, vals in per.items():
            for i, v in enumerate(vals):
                for seed, shift in ((0, 0.0), (1, 0.02)) if ev == "e1" else ((0, 0.0),):
                    rows.append({"seed": seed, "evaluator": ev, "method": m, "sample_id": f"s{i}",
                                 "subject": f"p{i // 2}", "score": v + (shift if m == "m2" else 0.0)})
    return pd.DataFrame(rows)


CARDS_E = {"e1": {"higher_is_better": True, "category": "perturbation"},
           "e2": {"higher_is_better": False, "category": "perturbation"},
           "e3": {"higher_is_better": True, "category": "localisation"}}
CARDS_M = {"m1": {"control": False}, "m2": {"control": False}, "rnd": {"control": True}}


def test_summarise_by_hand():
    out = summarise(_table(), CARDS_E, CARDS_M, n_boot=500, seed=0)
    agg = {(r["evaluator"], r["method"]): r for r in out["aggregates"]}
    # seed average first: m2 on e1 is mean of (v, v + 0.02)
    assert agg[("e1", "m2")]["mean"] == pytest.approx(np.mean([0.51, 0.41, 0.61, 0.51]))
    assert agg[("e3", "m1")]["mean"] == pytest.approx(1.0) and agg[("e3", "m1")]["n_nan"] == 1
    # e1 (higher better): m1 0.75, rnd 0.7, m2 0.51 ; e2 (lower better): m1 .15, m2 .3, rnd .85
    assert out["rankings"]["by_evaluator"]["e1"] == {"m1": 1, "m2": 3, "rnd": 2}
    assert out["rankings"]["by_evaluator"]["e2"] == {"m1": 1, "m2": 2, "rnd": 3}
    assert out["rankings"]["by_evaluator"]["e3"] == {"m1": 3, "m2": 2, "rnd": 1}
    fam = out["rankings"]["by_family"]["perturbation"]
    assert fam["m1"] == {"mean_rank": 1.0, "rank": 1, "n": 2, "of": 2} and fam["m2"]["mean_rank"] == 2.5
    assert fam["rnd"]["mean_rank"] == 2.5 and fam["m2"]["rank"] == fam["rnd"]["rank"] == 2
    # overall: every family weighs the same: mean of the perturbation and localisation mean ranks
    # m1 (1 + 3) / 2 = 2, m2 (2.5 + 2) / 2 = 2.25, rnd (2.5 + 1) / 2 = 1.75 (an evaluator mean
    # would give m1 5/3, m2 7/3, rnd 2)
    overall = out["rankings"]["overall"]
    assert {m: overall[m]["mean_rank"] for m in overall} == pytest.approx({"m1": 2.0, "m2": 2.25, "rnd": 1.75})
    assert {m: overall[m]["rank"] for m in overall} == {"rnd": 1, "m1": 2, "m2": 3}
    # cluster bootstrap: subjects p0, p1 each hold two images
    assert out["aggregation"]["resampling_unit"]["e1"] == "subject"
    assert agg[("e1", "m1")]["resampling_unit"] == "subject"
    # CIs equal the percentiles of the naive cluster bootstrap of the seed-averaged scores
    per = np.array([[0.9, 0.51, 0.7], [0.8, 0.41, 0.7], [0.7, 0.61, 0.7], [0.6, 0.51, 0.7]])
    boots = naive_bootstrap(per, ["p0", "p0", "p1", "p1"], 500, 0)
    assert agg[("e1", "m2")]["ci_low"] == pytest.approx(np.percentile(boots[:, 1], 2.5))
    assert agg[("e1", "m2")]["ci_high"] == pytest.approx(np.percentile(boots[:, 1], 97.5))
    # control flags: on e1 rnd (0.7) is above the median real method (0.63 between m1 0.75 and
    # m2 0.51) and beats m2; on e3 it beats m1 and m2; on e2 it is last
    flags = out["control_flags"]
    assert flags["e1"]["flag"] is True and flags["e1"]["beats"] == {"rnd": ["m2"]}
    assert flags["e1"]["controls"]["rnd"]["above_median"] is True and flags["e1"]["controls"]["rnd"]["rank"] == 2
    assert flags["e2"] == {"flag": False, "controls": {}, "beats": {}}
    assert flags["e3"]["beats"] == {"rnd": ["m1", "m2"]} and flags["e3"]["controls"]["rnd"]["top_band"]
    # agreement: tau of oriented means per evaluator pair, against scipy
    o = {"e1": [0.75, np.mean([0.51, 0.41, 0.61, 0.51]), 0.7], "e2": [-0.15, -0.3, -0.85], "e3": [1.0, 2.0, 3.0]}
    tau = out["agreement"]["kendall_tau"]
    for i, a in enumerate(["e1", "e2", "e3"]):
        for j, b in enumerate(["e1", "e2", "e3"]):
            assert tau[i][j] == pytest.approx(scipy.stats.kendalltau(o[a], o[b]).statistic)


def test_bands_from_summarise_follow_intervals():
    out = summarise(_table(), CARDS_E, CARDS_M, n_boot=500, seed=0, band_rule="ci_overlap")
    assert out["aggregation"]["band_rule"] == "ci_overlap"
    for ev in CARDS_E:
        recs = [r for r in out["aggregates"] if r["evaluator"] == ev]
        hib = CARDS_E[ev]["higher_is_better"]
        for r in recs:
            better = [q for q in recs if (q["ci_low"] > r["ci_high"] if hib else q["ci_high"] < r["ci_low"])]
            assert r["band"] == 1 + len(better)


def test_image_level_bootstrap_when_subjects_are_unique():
    t = _table()
    t["subject"] = t["sample_id"]
    out = summarise(t, CARDS_E, CARDS_M, n_boot=100, seed=0)
    assert set(out["aggregation"]["resampling_unit"].values()) == {"image"}


def test_paired_bands_in_summarise_follow_holm_adjusted_tests():
    from gmxai_eval.functional.paired import holm, paired_bootstrap_test

    out = summarise(_table(), CARDS_E, CARDS_M, n_boot=500, seed=0)
    assert out["aggregation"]["band_rule"] == "paired"
    per = np.array([[0.9, 0.51, 0.7], [0.8, 0.41, 0.7], [0.7, 0.61, 0.7], [0.6, 0.51, 0.7]])
    t = paired_bootstrap_test(per, ["p0", "p0", "p1", "p1"], n_boot=500, seed=0)
    adj = holm(t["p"])
    means = per.mean(0)
    want = [1 + sum(1 for q, (a, b) in enumerate(zip(t["i"], t["j"])) if k in (a, b) and adj[q] < 0.05
                    and means[b if a == k else a] > means[k]) for k in range(3)]
    agg = {(r["evaluator"], r["method"]): r for r in out["aggregates"]}
    assert [agg[("e1", m)]["band"] for m in ("m1", "m2", "rnd")] == want
    st = out["statistics"]["e1"]
    assert st["n_pairs"] == 3 and st["pairs"]["p_holm"] == pytest.approx(list(adj))
    assert st["n_units"] == 2 and st["resampling_unit"] == "subject"
    # MDD: median over pairs of 2.8016 * sd(per-subject differences) / sqrt(2)
    subj = per.reshape(2, 2, 3).mean(1)
    sds = [np.std(subj[:, a] - subj[:, b], ddof=1) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert st["mdd"] == pytest.approx(np.median(sds) * 2.8015852 / np.sqrt(2), rel=1e-6)
    with pytest.raises(Exception, match="band_rule"):
        summarise(_table(), CARDS_E, CARDS_M, n_boot=10, band_rule="overlap")  # type: ignore[arg-type]


def test_identical_evaluators_count_once():
    t = _table()
    dup = t[t["evaluator"] == "e1"].copy()
    dup["evaluator"] = "e1_copy"
    dup["score"] = dup["score"] * (1 + 1e-12)  # the same quantity summed in another order
    cards = {**CARDS_E, "e1_copy": {"higher_is_better": True, "category": "localisation"}}
    out = summarise(pd.concat([t, dup]), cards, CARDS_M, n_boot=100, seed=0)
    assert out["rankings"]["aliases"] == {"e1": ["e1_copy"]}
    assert out["rankings"]["alias_of"] == {"e1_copy": "e1"}
    assert "e1_copy" not in out["rankings"]["counted"]
    # the copy keeps its own rows but the ranks equal the run without it
    base = summarise(t, CARDS_E, CARDS_M, n_boot=100, seed=0)
    assert out["rankings"]["overall"] == base["rankings"]["overall"]
    assert out["rankings"]["by_family"] == base["rankings"]["by_family"]
    assert any(r["evaluator"] == "e1_copy" for r in out["aggregates"])
    # a real difference, or the opposite direction, is not an alias
    dup["score"] = dup["score"] + np.where(dup["sample_id"] == "s0", 1e-3, 0.0)
    assert summarise(pd.concat([t, dup]), cards, CARDS_M, n_boot=100)["rankings"]["aliases"] == {}
    cards["e1_copy"] = {"higher_is_better": False, "category": "localisation"}
    dup["score"] = t[t["evaluator"] == "e1"]["score"].to_numpy()
    assert summarise(pd.concat([t, dup]), cards, CARDS_M, n_boot=100)["rankings"]["aliases"] == {}


def test_family_weighting_small_example():
    # family A has three evaluators that rank x first, family B one evaluator that ranks y first:
    # an evaluator mean favours x (mean ranks 1.25 vs 1.75); equal family weights tie them (1.5)
    rows = []
    for ev, best in (("a1", "x"), ("a2", "x"), ("a3", "x"), ("b1", "y")):
        for i in range(4):
            for m in ("x", "y"):
                rows.append({"evaluator": ev, "method": m, "seed": 0, "sample_id": f"s{i}", "subject": "",
                             "score": (1.0 if m == best else 0.0) + 0.1 * i + (0.01 * i if ev == "a2" else 0.0)})
    cards = {"a1": {"category": "A"}, "a2": {"category": "A"}, "a3": {"category": "A"}, "b1": {"category": "B"}}
    # a3 duplicates a1 exactly: counted once; the A family mean is still 1 for x
    out = summarise(pd.DataFrame(rows), cards, {"x": {}, "y": {}}, n_boot=50)
    assert out["rankings"]["aliases"] == {"a1": ["a3"]}
    assert out["rankings"]["overall"] == {"x": {"mean_rank": 1.5, "rank": 1, "n": 2, "of": 2},
                                         "y": {"mean_rank": 1.5, "rank": 1, "n": 2, "of": 2}}


def test_oracle_is_a_reference_row():
    t = _table()
    orc = t[t["method"] == "m1"].copy()
    orc["method"] = "oracle"
    orc["score"] = orc["score"] + np.where(orc["evaluator"] == "e1", -0.2, 5.0)  # e1: beaten; e2: worst
    cards_m = {**CARDS_M, "oracle": {"name": "oracle", "control": True}}
    out = summarise(pd.concat([t, orc]), CARDS_E, cards_m, n_boot=200, seed=0)
    base = summarise(t, CARDS_E, CARDS_M, n_boot=200, seed=0)
    agg = {(r["evaluator"], r["method"]): r for r in out["aggregates"]}
    bagg = {(r["evaluator"], r["method"]): r for r in base["aggregates"]}
    # the other methods' ranks, bands, families, overall, control flags and agreement do not move
    for k, r in bagg.items():
        assert (agg[k]["rank"], agg[k]["band"]) == (r["rank"], r["band"])
    assert out["rankings"]["overall"] == base["rankings"]["overall"]
    assert "oracle" not in out["rankings"]["overall"] and "oracle" in out["rankings"]["reference"]
    assert out["control_flags"] == base["control_flags"]  # the oracle is not a control
    assert out["agreement"] == base["agreement"]
    # e1 means: m1 .75, rnd .7, oracle .55, m2 .51 -> oracle rank 3 of 4, beaten by m1 and rnd
    assert agg[("e1", "oracle")]["rank"] == 3 and agg[("e1", "oracle")]["reference"] is True
    assert out["oracle_flags"]["e1"] == {"flag": True, "rank": {"oracle": 3}, "n_methods": 4,
                                         "beaten_by": {"oracle": ["m1", "rnd"]}, "truth_flag": False}
    # e3 (higher better): oracle ~6 beats everything -> rank 1, no flag; e2 (lower better): last
    assert out["oracle_flags"]["e3"]["flag"] is False and agg[("e3", "oracle")]["rank"] == 1
    assert agg[("e2", "oracle")]["rank"] == 4 and out["oracle_flags"]["e2"]["flag"] is True
    # the reference mean ranks use the oracle's ranks among all methods
    ref = out["rankings"]["reference"]["oracle"]
    assert ref["by_family"] == {"perturbation": 3.5, "localisation": 1.0}
    assert ref["mean_rank"] == pytest.approx(2.25)
    assert out["validity"]["evaluators"]["e1"]["oracle_rank"] == {"oracle": 3}


def test_ranking_conventions():
    from gmxai_eval.report.aggregate import ranking_conventions

    conv = {"abs": False, "baseline": "input_zero", "unit": "patch", "patch_size": 8, "output": "probability",
            "steps": 8}
    assert ranking_conventions(conv) == {"relevance": "signed", "substrate": "input_zero", "unit": "patch 8",
                                         "output": "probability"}
    assert ranking_conventions({"relevance": "positive", "abs": True}) == {"relevance": "positive"}
    assert ranking_conventions({"abs": True, "imputation": "noisy_linear"}) == {
        "relevance": "absolute", "substrate": "noisy_linear"}
    assert ranking_conventions(None) == {}
    out = summarise(_table(), CARDS_E, CARDS_M, n_boot=20, conventions={"e1": conv})
    assert out["ranking_conventions"]["e1"]["unit"] == "patch 8" and out["ranking_conventions"]["e2"] == {}


def test_an_unscored_oracle_raises_no_flag():
    t = _table()
    orc = t[(t["method"] == "m1") & (t["evaluator"] == "e1")].copy()
    orc["method"] = "oracle"
    out = summarise(pd.concat([t, orc]), CARDS_E, {**CARDS_M, "oracle": {"name": "oracle", "control": True}},
                    n_boot=50)
    assert out["oracle_flags"]["e2"] == {"flag": False, "rank": {}, "n_methods": 4, "beaten_by": {}, "truth_flag": False}
    assert out["oracle_flags"]["e1"]["rank"] == {"oracle": 1}  # ties m1: 1 + #strictly better
