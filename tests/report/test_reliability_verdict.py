"""The ‡ flag from the split-half reliability of each ranking (checked against an independent
pandas / SciPy computation from ``samples.csv``), the corrected τ, the verdict and the
informative control flag, on per-sample tables whose structure is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from gmxai_eval.report.aggregate import RELIABILITY_SPLITS, RELIABILITY_THRESHOLD, summarise
from gmxai_eval.report.summary import summary_data, summary_lines
from gmxai_eval.report.tables import MARK_UNRELIABLE, leaderboard_markdown
from gmxai_eval.report.validity import validity_markdown
from gmxai_eval.runner.store import read_table, write_table

METHODS = ["a", "b", "c", "d", "e", "ctrl", "truthmap"]
QUALITY = {"a": 6.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 2.0, "ctrl": 1.0, "truthmap": 7.0}
CARDS = {"cf": {"higher_is_better": True, "category": "counterfactual"},
         "agree": {"higher_is_better": True, "category": "perturbation"},
         "weak": {"higher_is_better": False, "category": "perturbation"},
         "noise": {"higher_is_better": True, "category": "perturbation"},
         "ctrl_top": {"higher_is_better": True, "category": "localisation"},
         "sparse": {"higher_is_better": True, "category": "complexity"}}
MCARDS = {**{m: {} for m in METHODS if m not in ("ctrl", "truthmap")}, "ctrl": {"control": True},
          "truthmap": {"reference": "counterfactual"}}


def make_table(n_subjects=20, seed=0) -> pd.DataFrame:
    """Two images per subject. ``cf`` (the truth) and ``agree`` rank by quality with little noise,
    ``weak`` (lower is better) with a small effect in much noise, ``noise`` has no method effect,
    ``ctrl_top`` ranks the control first, ``sparse`` ranks by reversed quality."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for k in range(2):
            sid = f"img{s:02d}_{k}"
            for m in METHODS:
                q = QUALITY[m]
                sc = {"cf": q + rng.normal(0, 1.0), "agree": 2 * q + rng.normal(0, 1.0),
                      "weak": -0.05 * q + rng.normal(0, 1.0), "noise": rng.normal(),
                      "ctrl_top": (8.0 if m == "ctrl" else q) + rng.normal(0, 0.5),
                      "sparse": -q + rng.normal(0, 0.5)}
                for ev, v in sc.items():
                    rows.append({"run": "t", "seed": 0, "evaluator": ev, "method": m, "sample_id": sid,
                                 "subject": f"subj{s:02d}", "score": v, "curve": "", "curve_x": "", "extras": "",
                                 "target": 0, "label": 0, "elapsed_s": 0.0})
    return pd.DataFrame(rows)


def independent_reliability(csv: pd.DataFrame, ev: str, methods: list[str], seed: int = 0) -> float:
    """Split-half reliability of ``ev``'s ranking of ``methods`` straight from samples.csv:
    subjects split at random (the aggregation's seeded permutations of the sorted subjects),
    per-half method means, Spearman's rho (SciPy), Spearman-Brown per split, mean."""
    sub = csv[(csv.evaluator == ev) & csv.method.isin(methods)]
    per = sub.groupby(["sample_id", "method"]).score.mean().unstack("method")[methods]
    subj = sub.drop_duplicates("sample_id").set_index("sample_id").subject.astype(str).reindex(per.index)
    distinct = sorted(subj.unique())
    gen = np.random.default_rng(seed)
    vals = []
    for _ in range(RELIABILITY_SPLITS):
        first = {distinct[k] for k in gen.permutation(len(distinct))[: len(distinct) // 2]}
        half = subj.isin(first).to_numpy()
        rho = scipy.stats.spearmanr(per[half].mean(), per[~half].mean()).statistic
        vals.append(max(-1.0, 2 * rho / (1 + rho)))
    return float(np.mean(vals))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    write_table(make_table(), folder)
    csv = pd.read_csv(folder / "samples.csv", dtype={"sample_id": str, "subject": str})
    doc = summarise(read_table(folder / "samples.csv"), CARDS, MCARDS, n_boot=200, seed=0)
    return csv, doc


def test_unreliable_flag_agrees_with_split_half_from_samples_csv(run):
    csv, doc = run
    ranked = [m for m in METHODS if m != "truthmap"]
    seen = set()
    for ev in CARDS:
        want = independent_reliability(csv, ev, ranked)
        rel = doc["ranking_reliability"][ev]
        assert rel["reliability"] == pytest.approx(want, abs=1e-9), ev
        assert rel["unit"] == "subject" and rel["n_units"] == 20 and rel["n_images"] == 40
        flag = doc["validity"]["evaluators"][ev]["unreliable"]
        assert flag == (want < RELIABILITY_THRESHOLD), ev
        assert (MARK_UNRELIABLE in [h for h in leaderboard_markdown(doc).splitlines()[2].split("|")
                                    if h.strip().startswith(ev + " ")][0]) == flag
        seen.add(flag)
    assert seen == {True, False}  # the table has both kinds (noise and weak are unreliable)
    assert doc["validity"]["evaluators"]["noise"]["unreliable"] and not doc["validity"]["evaluators"]["agree"]["unreliable"]


def test_alpha_stays_a_per_image_column_and_every_figure_names_unit_n_interval(run):
    _, doc = run
    v = doc["validity"]["evaluators"]["agree"]
    assert v["alpha"] is not None and v["n_images"] == 40  # per image, n images
    assert v["reliability"]["n_units"] == 20 and v["reliability"]["unit"] == "subject"
    md = validity_markdown(doc)
    assert "α per image (n images)" in md and "ranking reliability [split 95%] (n units)" in md
    assert "(20 subjects)" in md and "unit: the single image" in md
    assert "ranking reliability [split 95%] (n units)" in leaderboard_markdown(doc)
    assert "(20 subjects)" in leaderboard_markdown(doc)


def test_corrected_tau_divides_by_both_reliabilities(run):
    _, doc = run
    rel = doc["ranking_reliability"]
    for ev in ("agree", "weak", "sparse"):
        t = doc["validity"]["evaluators"][ev]["tau"]["cf"]
        k = math.sqrt(rel[ev]["reliability"] * rel["cf"]["reliability"]) if rel[ev]["reliability"] > 0 else None
        if k is None:
            assert t["tau_corrected"] is None
            continue
        tc, lo, hi = (max(-1.0, min(1.0, t[key] / k)) for key in ("tau", "ci_low", "ci_high"))
        assert t["tau_corrected"] == pytest.approx(tc)
        want = [lo, hi]
        assert [t["corrected_ci_low"], t["corrected_ci_high"]] == pytest.approx(want)
        assert abs(t["tau_corrected"]) >= min(1.0, abs(t["tau"])) - 1e-12


def test_verdict_agreeing_evaluators_faithfulness_rank_and_properties(run):
    _, doc = run
    ver = doc["verdict"]
    assert ver["has_truth"] and ver["truth_evaluator"] == "cf"
    assert [r["method"] for r in ver["truth"]["methods"]][:3] == ["a", "b", "c"]
    agree = {a["evaluator"]: a for a in ver["agreement"]}
    assert set(agree) == {"agree", "weak", "noise", "ctrl_top", "sparse"}
    # agree: tau interval above 0 and the truth map in its top band; sparse ranks reversed
    assert agree["agree"]["agrees"] and not agree["sparse"]["agrees"]
    for ev, a in agree.items():
        rec = {(r["evaluator"], r["method"]): r for r in doc["aggregates"]}
        want = (a["corrected_ci_low"] is not None and a["corrected_ci_low"] > 0
                and rec[(ev, "truthmap")]["band"] == 1)
        assert a["agrees"] == want, ev
    basis = ver["faithfulness_evaluators"]
    assert "agree" in basis and "sparse" not in basis
    by_ev = doc["rankings"]["by_evaluator"]
    ranked = [m for m in METHODS if m != "truthmap"]
    means = {m: np.mean([by_ev[e][m] for e in basis]) for m in ranked}
    assert {m: r["mean_rank"] for m, r in ver["faithfulness"].items()} == pytest.approx(means)
    # complexity and localisation are properties, never in the faithfulness basis
    assert set(ver["properties"]) == {"localisation", "complexity"}
    assert not set(basis) & {"ctrl_top", "sparse"}


def test_control_flag_fires_for_a_control_in_the_top_band_or_above_the_median(run):
    _, doc = run
    flags = doc["control_flags"]
    assert flags["ctrl_top"]["flag"] and flags["ctrl_top"]["controls"]["ctrl"]["top_band"]
    assert not flags["agree"]["flag"] and flags["agree"]["beats"] == {}
    # sparse ranks by reversed quality: the control (worst quality) is best there
    assert flags["sparse"]["flag"] and flags["sparse"]["controls"]["ctrl"]["above_median"]
    for ev, f in flags.items():
        rec = {r["method"]: r for r in doc["aggregates"] if r["evaluator"] == ev}
        sign = 1 if rec["a"]["higher_is_better"] else -1
        med = np.median([sign * rec[m]["mean"] for m in "abcde"])
        want = rec["ctrl"]["band"] == 1 or sign * rec["ctrl"]["mean"] > med
        assert f["flag"] == want, ev
    assert ver_lines_name_the_control(doc)


def ver_lines_name_the_control(doc) -> bool:
    lines = summary_lines(summary_data(doc))
    return any("ctrl on" in line for line in lines)


def test_console_opens_with_the_truth_ranked_verdict(run):
    _, doc = run
    doc = dict(doc, run_id="t", n_images=40, seeds=[0], methods={m: {"card": c} for m, c in MCARDS.items()})
    lines = summary_lines(summary_data(doc))
    assert all(len(line) <= 120 for line in lines)
    assert lines[1].startswith("Faithfulness verdict. Truth: methods ranked by the counterfactual truth cf")
    head = next(line for line in lines if line.startswith("method "))
    assert head.split()[1:3] == ["truth", "faithfulness"] and "overall" not in head
    first = lines[lines.index(head) + 1]
    assert first.split()[0] == "a"  # ordered by the truth


def test_without_a_truth_the_headline_names_its_evidence(run):
    csv, _ = run
    no_truth = make_table()
    no_truth = no_truth[no_truth.evaluator != "cf"]
    doc = summarise(no_truth, {k: v for k, v in CARDS.items() if k != "cf"}, MCARDS, n_boot=100, seed=0)
    ver = doc["verdict"]
    assert not ver["has_truth"] and ver["basis"].endswith("(no truth in this run)")
    rel = doc["ranking_reliability"]
    want = [e for e in ("agree", "weak", "noise") if not rel[e]["unreliable"]]
    assert ver["faithfulness_evaluators"] == want
    doc.update(run_id="t", n_images=40, seeds=[0], methods={m: {"card": c} for m, c in MCARDS.items()})
    text = "\n".join(summary_lines(summary_data(doc)))
    assert "no counterfactual truth in this run" in text and "agree" in text


def test_an_older_results_document_without_verdict_or_reliability_still_summarises():
    """results.json keeps its format tag (gmxai_eval.results/1): a document written before the
    verdict renders with the overall rank as its headline and alpha-based marks."""
    import json
    from pathlib import Path

    ref = Path(__file__).resolve().parents[2] / "results" / "reference" / "results.json"
    doc = json.loads(ref.read_text())
    assert "verdict" not in doc and "ranking_reliability" not in doc
    data = summary_data(doc)
    assert data["columns"][0] == "overall"
    lines = summary_lines(data)
    assert any("older results.json" in line for line in lines) and all(len(line) <= 120 for line in lines)
    assert "Krippendorff" not in leaderboard_markdown(doc) or "older results.json" in leaderboard_markdown(doc)


def test_an_agreeing_evaluator_of_another_family_never_votes(tmp_path):
    """The same scores with ``agree`` filed as localisation: it still agrees with the truth but
    is listed under ``also_agree``, and the faithfulness rank is over perturbation evaluators only."""
    folder = tmp_path / "run"
    write_table(make_table(), folder)
    cards = {**CARDS, "agree": {"higher_is_better": True, "category": "localisation"}}
    doc = summarise(read_table(folder / "samples.csv"), cards, MCARDS, n_boot=200, seed=0)
    ver = doc["verdict"]
    a = {x["evaluator"]: x for x in ver["agreement"]}
    assert a["agree"]["agrees"] and not a["agree"]["votes"] and a["weak"]["votes"]
    assert "agree" in ver["also_agree"] and "agree" not in ver["faithfulness_evaluators"]
    assert all(a[e]["category"] in ("perturbation", "retraining") for e in ver["faithfulness_evaluators"])
    doc.update(run_id="t", n_images=40, seeds=[0], methods={m: {"card": c} for m, c in MCARDS.items()})
    text = " ".join(summary_lines(summary_data(doc)))
    assert "Also agree with the truth but measure other properties" in text
