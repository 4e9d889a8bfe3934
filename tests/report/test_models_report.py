"""The several-model comparison reads results only: validity per model and its stability, and
the Markdown / HTML pages escape what users name."""

from __future__ import annotations

from gmxai_eval.report.models import FORMAT, comparison, models_html, models_markdown, validity_by_model


def _results(tau, disagrees, truth="cf", uses=True):
    return {"evidence": {"drop": 0.3 if uses else 0.0, "ci_low": 0.2 if uses else -0.1, "ci_high": 0.4, "n": 40,
                         "uses_evidence": uses},
            "rankings": {"overall": {"a": {"rank": 1}, "b": {"rank": 2}}, "by_evaluator": {"del": {"a": 1, "b": 2}}},
            "validity": {"primary": truth, "evaluators": {
                "del": {"tau": {truth: {"tau": tau, "ci_low": tau - 0.2, "ci_high": tau + 0.2, "n": 40}},
                        "disagrees": disagrees, "is_truth": False},
                truth: {"tau": {}, "is_truth": True, "disagrees": None}}}}


def test_validity_by_model_marks_a_verdict_that_changes_with_the_model():
    got = validity_by_model({"m1": _results(0.6, False), "m2": _results(0.1, True), "m3": {"validity": {}}})
    assert set(got) == {"del"}  # the truth evaluator is not judged; m3 has no truth and is left out
    rec = got["del"]
    assert rec["agrees_on"] == ["m1"] and rec["disagrees_on"] == ["m2"] and rec["stable"] is False
    assert rec["by_model"]["m1"]["tau"] == 0.6 and rec["by_model"]["m1"]["truth"] == "cf"
    assert validity_by_model({"m1": _results(0.6, False), "m2": _results(0.5, False)})["del"]["stable"] is True


def test_a_model_that_does_not_use_the_evidence_is_shown_but_not_counted():
    got = validity_by_model({"m1": _results(0.6, False), "m2": _results(0.1, True, uses=False)})["del"]
    assert got["agrees_on"] == ["m1"] and got["excluded"] == ["m2"] and got["stable"] is True
    assert got["by_model"]["m2"]["counts"] is False and got["by_model"]["m2"]["tau"] == 0.1
    nobody = validity_by_model({"m2": _results(0.1, True, uses=False)})["del"]
    assert nobody["stable"] is None and nobody["excluded"] == ["m2"]
    doc = {"format": FORMAT, "run_id": "r", "models": {m: {"source": "default"} for m in ("m1", "m2")},
           "comparison": comparison({"m1": _results(0.6, False), "m2": _results(0.1, True, uses=False)})}
    md = models_markdown(doc)
    assert "(disagrees) (not counted)" in md and "yes (1 models)" in md
    assert "0.30 [0.20, 0.40] (n 40): uses the evidence" in md and "CI not above 0: validity not counted" in md


def test_pages_show_every_model_and_escape_labels():
    bad = "<img src=x onerror=alert(1)>"
    models = {"m1": _results(0.6, False), bad: _results(0.1, True)}
    doc = {"format": FORMAT, "run_id": "r", "models": {m: {"source": "registry", "model_hash": "h" * 16,
                                                             "folder": f"models/{m}", "n_images": 40}
                                                         for m in models},
           "comparison": comparison(models)}
    md, page = models_markdown(doc), models_html(doc)
    for text in (md, page):
        assert bad not in text and "m1" in text and "0.60 [0.40, 0.80]" in text
    assert "&lt;img" in page and "(disagrees)" in md


def test_the_crosscheck_of_each_model_is_tabulated():
    from test_crosscheck import CARDS, METHODS, _table

    from gmxai_eval.report.validity import crosscheck_section

    r = _results(0.6, False)
    r["validity"]["crosscheck"] = crosscheck_section(_table(), CARDS, METHODS, n_boot=100, seed=0)
    doc = {"format": FORMAT, "run_id": "r", "models": {"m1": {"source": "default"}}, "comparison": comparison({"m1": r})}
    cc = doc["comparison"]["crosscheck"]["m1"]
    assert cc["methods"]["pt"]["tau"] == 1.0 and cc["evaluators"]["same_verdict"] == 2 and cc["n_methods"] == 5
    md = models_markdown(doc)
    assert "pt: method-ranking tau vs truth" in md and "| m1 | cf | 5 | 1 [1, 1] | 0.82 [0.82, 0.82] | 2 of 3 |" in md
