"""Clinician questionnaire kit: blinding, answer validation, unblinded statistics against hand
computations, Krippendorff's alpha against the textbook value, and the whole round trip in
headless Chromium (fill the form by script, reload, save, analyse)."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from gmxai_eval.analysis.questionnaire import (ANSWERS_FORMAT, Case, analyse, build_form,
                                              krippendorff_alpha_ordinal, top_regions)
from gmxai_eval.errors import ConfigError, DataError

REGIONS = ("left", "right")
METHODS = ["alpha", "beta", "gamma"]


def _cases(n=3):
    rng = np.random.default_rng(0)
    left = np.zeros((8, 8), bool)
    left[:, :4] = True
    out = []
    for i in range(n):
        maps = {"alpha": np.where(left, 1.0, 0.0), "beta": np.where(left, 0.0, 2.0),
                "gamma": rng.normal(size=(8, 8))}
        out.append(Case(f"img{i}", rng.random((3, 8, 8)), f"syndrome {i}", maps, score=0.5,
                        region_masks=np.stack([left, ~left]), region_names=REGIONS, true_label="x"))
    return out


def _answers(key, rater, rating_of, regions_of=lambda m: [], form_id=None):
    ans = []
    for c in key["cases"]:
        for lab, m in c["labels"].items():
            ans.append({"case": c["case"], "label": lab, "rating": rating_of(c["case"], m),
                        "regions": regions_of(m), "comment": ""})
    return {"format": ANSWERS_FORMAT, "form_id": form_id or key["form_id"], "rater": rater, "answers": ans}


def test_form_is_blinded_and_the_key_unblinds():
    page, key = build_form(_cases(), METHODS, seed=1)
    for m in METHODS:
        assert m not in page  # method names never appear in the page
    orders = [tuple(c["labels"].values()) for c in key["cases"]]
    assert all(sorted(o) == sorted(METHODS) for o in orders)
    assert len(set(orders)) > 1 or len(orders) == 1  # random order per case
    assert key["cases"][0]["top_regions"]["alpha"] == ["left"]
    assert key["cases"][0]["top_regions"]["beta"] == ["right"]
    assert "http://" not in page and "https://" not in page  # offline
    _, again = build_form(_cases(), METHODS, seed=1)
    assert again == key  # deterministic


def test_top_regions_by_positive_mass():
    m = np.array([[3.0, -9.0], [0.0, 1.0]])
    masks = np.array([[[1, 1], [0, 0]], [[0, 0], [1, 1]]], bool)
    assert top_regions(m, masks, ("up", "down"), k=2) == ["up", "down"]


def test_analysis_matches_hand_computation(tmp_path):
    _, key = build_form(_cases(), METHODS, seed=2)
    rate = {"alpha": 5, "beta": 2, "gamma": 1}
    (tmp_path / "a.json").write_text(json.dumps(_answers(key, "r1", lambda c, m: rate[m], lambda m: ["left"])))
    (tmp_path / "b.json").write_text(json.dumps(_answers(key, "r2", lambda c, m: rate[m] - (m == "beta"))))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text(json.dumps(_answers(key, "r3", lambda c, m: 3, form_id="other")))
    (tmp_path / "range.json").write_text(json.dumps(_answers(key, "r4", lambda c, m: 7)))
    (tmp_path / "dup.json").write_text(json.dumps(_answers(key, "r1", lambda c, m: 3)))
    res = analyse(tmp_path, key, n_boot=200)
    assert res.files == {"read": 6, "used": 2, "skipped": 4}
    assert any("another questionnaire" in p for p in res.problems)
    assert any("rating in 1..5" in p for p in res.problems)
    assert any("already answered" in p for p in res.problems)
    pm = res.per_method
    assert pm.loc["alpha", "mean"] == 5 and pm.loc["gamma", "mean"] == 1
    assert pm.loc["beta", "mean"] == pytest.approx(1.5)
    assert pm.loc["alpha", "ci_low"] == pm.loc["alpha", "ci_high"] == 5  # no spread
    assert pm.loc["alpha", "region_hit"] == 1.0 and pm.loc["beta", "region_hit"] == 0.0
    assert pm.loc["alpha", "n"] == 6
    units = [dict(zip(g.rater, g.rating)) for _, g in res.ratings.groupby(["case", "label"])]
    assert res.alpha == pytest.approx(krippendorff_alpha_ordinal(units))
    assert "Krippendorff" in res.markdown() and "<table>" in res.html()


def test_krippendorff_alpha_ordinal_textbook_value():
    """Krippendorff (2011), 'Computing Krippendorff's Alpha-Reliability': 4 observers, 12 units,
    ordinal alpha = 0.815."""
    rows = {"A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
            "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
            "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
            "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]}
    units = [{r: v[i] for r, v in rows.items() if v[i] is not None} for i in range(12)]
    assert krippendorff_alpha_ordinal(units) == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha_ordinal([{"a": 2, "b": 2}, {"a": 2, "b": 2}]) is None  # no variation
    assert krippendorff_alpha_ordinal([{"a": 1, "b": 1}, {"a": 5, "b": 5}]) == pytest.approx(1.0)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="missing \\['delta'\\]"):
        build_form(_cases(), METHODS + ["delta"])
    with pytest.raises(ConfigError, match="at least one case"):
        build_form([], METHODS)
    with pytest.raises(DataError, match="no such folder"):
        analyse("/nonexistent-folder", build_form(_cases(), METHODS)[1])


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

FILL = """(() => {
  const set = (sel, fn) => document.querySelectorAll(sel).forEach(fn);
  document.getElementById('rater').value = RATER;
  document.getElementById('rater').dispatchEvent(new Event('input', {bubbles: true}));
  const plan = PLAN;   // {case: {label: [rating, [regions], comment]}}
  for (const [c, labs] of Object.entries(plan)) for (const [lab, [r, regs, txt]] of Object.entries(labs)) {
    set(`input[data-case="${c}"][data-label="${lab}"][data-field="rating"][value="${r}"]`, el => el.click());
    set(`input[data-case="${c}"][data-label="${lab}"][data-field="regions"]`, el => { if (regs.includes(el.value)) el.click(); });
    set(`textarea[data-case="${c}"][data-label="${lab}"]`, el => { el.value = txt; el.dispatchEvent(new Event('input', {bubbles: true})); });
  }
  return document.querySelectorAll('input:checked').length;
})()"""


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_round_trip_in_headless_chromium(tmp_path):
    from cdp import Browser

    page, key = build_form(_cases(2), METHODS, seed=3, title="Round trip")
    form = tmp_path / "questionnaire.html"
    form.write_text(page)
    rng = np.random.default_rng(5)
    plan = {c["case"]: {lab: [int(rng.integers(1, 6)), ["left"] if m == "alpha" else [], f"note {lab}"]
                        for lab, m in c["labels"].items()} for c in key["cases"]}
    downloads = tmp_path / "answers"
    downloads.mkdir()
    b = Browser(CHROMIUM, tmp_path / "profile")
    try:
        b.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        s = b.open(form.as_uri())
        assert b.wait_for(s, "!!document.getElementById('save2')", True)
        checked = b.eval(s, FILL.replace("RATER", json.dumps("dr_ada")).replace("PLAN", json.dumps(plan)))
        assert checked == 6 + 2  # one rating per map, plus the two 'left' boxes of alpha
        # a closed or reloaded tab loses nothing: answers come back from localStorage
        b.eval(s, "document.body.dataset.old = '1'")
        b.send("Page.reload", session=s)
        assert b.wait_for(s, "document.readyState == 'complete' && !document.body.dataset.old", True)
        assert b.wait_for(s, "document.querySelectorAll('input:checked').length", 8) == 8
        assert b.eval(s, "document.getElementById('rater').value") == "dr_ada"
        b.eval(s, "document.getElementById('save').click()")
        for _ in range(200):
            if list(downloads.glob("*.json")):
                break
            time.sleep(0.1)
        assert [p.name for p in downloads.glob("*.json")] == ["answers-dr_ada.json"]
    finally:
        b.close()
    doc = json.loads((downloads / "answers-dr_ada.json").read_text())
    assert doc["rater"] == "dr_ada" and doc["form_id"] == key["form_id"]
    res = analyse(downloads, key, n_boot=100)
    assert res.files["used"] == 1
    for c in key["cases"]:
        for lab, m in c["labels"].items():
            row = res.ratings[(res.ratings.case == c["case"]) & (res.ratings.label == lab)]
            assert row.rating.tolist() == [plan[c["case"]][lab][0]] and row.method.tolist() == [m]
    for m in METHODS:
        want = np.mean([plan[c["case"]][lab][0] for c in key["cases"] for lab, mm in c["labels"].items() if mm == m])
        assert res.per_method.loc[m, "mean"] == pytest.approx(want)
    assert {a["comment"] for a in doc["answers"]} == {"note A", "note B", "note C"}
