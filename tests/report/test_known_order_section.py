"""The known-order part of results.json and its validity-table column."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gmxai_eval.report.known_order import KNOWN_ORDER_HEADER, degraded_series, known_order_section
from gmxai_eval.report.validity import validity_rows


def _methods():
    d = lambda base, lv, seed=0: {"name": "degraded", "config": {"base": base, "base_config": {}, "level": lv,  # noqa: E731
                                                                 "seed": seed}}
    return {"g0": d("grad_cam", 0.0), "g1": d("grad_cam", 1.0), "g5": d("grad_cam", 0.5),
            "lone": d("saliency", 0.5), "s1": d("saliency", 0.5, seed=1), "s1b": d("saliency", 1.0, seed=1),
            "random": {"name": "random", "config": {}}}


def test_series_group_by_base_config_and_seed_and_need_two_levels():
    got = degraded_series(_methods())
    assert got == [{"base": "grad_cam", "base_config": {}, "levels": [0.0, 0.5, 1.0], "methods": ["g0", "g5", "g1"]},
                   {"base": "saliency", "base_config": {}, "levels": [0.5, 1.0], "methods": ["s1", "s1b"]}]
    assert degraded_series({"random": {"name": "random", "config": {}}}) == []


def test_section_scores_an_evaluator_that_follows_the_levels_and_the_table_shows_it():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        for m, lv in {"g0": 0.0, "g5": 0.5, "g1": 1.0, "s1": 0.5, "s1b": 1.0, "random": 1.0}.items():
            rows.append({"evaluator": "good", "method": m, "sample_id": f"i{i}", "subject": f"p{i}",
                         "score": 1 - lv + 0.2 * rng.normal()})
            rows.append({"evaluator": "bad", "method": m, "sample_id": f"i{i}", "subject": f"p{i}",
                         "score": rng.normal()})
    cards = {"good": {"higher_is_better": True}, "bad": {"higher_is_better": True}}
    sec = known_order_section(pd.DataFrame(rows), cards, _methods(), n_boot=300)
    good, bad = sec["evaluators"]["good"], sec["evaluators"]["bad"]
    assert good["tau"] == 1.0 and good["ci_low"] > 0.5 and good["resampling_unit"] == "image"
    assert bad["ci_low"] <= 0 <= bad["ci_high"]  # noise: the CI does not exclude 0
    results = {"validity": {"truth": [], "evaluators": {"good": {"alpha": 0.9}, "bad": {"alpha": 0.1}},
                            "known_order": sec}}
    headers, body = validity_rows(results)
    assert headers[1] == KNOWN_ORDER_HEADER and body[0][1].startswith("1.000 [")
    assert KNOWN_ORDER_HEADER not in validity_rows({"validity": {"truth": [], "evaluators": {"good": {}}}})[0]
