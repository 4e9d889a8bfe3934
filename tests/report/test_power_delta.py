"""report.power.required_n with a chosen effect size (``delta`` x the spread of method means)
and a subset of evaluators, against the kernel."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.functional.paired import required_n as kernel_required_n
from gmxai_eval.report.aggregate import summarise
from gmxai_eval.report.power import required_n


def _doc():
    rng = np.random.default_rng(2)
    rows = []
    for i in range(20):
        base = rng.normal()
        for ev in ("e1", "e2"):
            for m, s in (("x", base + rng.normal(1.0, 1.0)), ("y", base)):
                rows.append({"evaluator": ev, "method": m, "seed": 0, "sample_id": f"s{i}", "subject": "",
                             "score": s})
    cards = {e: {"higher_is_better": True, "category": "p"} for e in ("e1", "e2")}
    return json.loads(json.dumps(summarise(pd.DataFrame(rows), cards, {"x": {}, "y": {}}, n_boot=100), default=str))


def test_delta_is_a_share_of_the_spread():
    doc = _doc()
    st = doc["statistics"]["e1"]
    plan = required_n(doc, correction="none", delta=0.5, evaluators=["e1"])
    want = kernel_required_n(st["pairs"]["sd"][0], 0.5 * st["spread"])
    assert list(plan["evaluators"]) == ["e1"] and plan["n"] == pytest.approx(float(want))
    assert plan["delta"] == 0.5
    # half the difference needs about four times the units
    quarter = required_n(doc, correction="none", delta=0.25, evaluators=["e1"])["n"]
    assert quarter == pytest.approx(4 * plan["n"], rel=0.1)
    with pytest.raises(ConfigError, match="delta > 0"):
        required_n(doc, delta=0.0)
    with pytest.raises(ConfigError, match="power"):
        required_n(doc, power=1.0)
    with pytest.raises(DataError, match="unknown"):
        required_n(doc, evaluators=["e9"])
