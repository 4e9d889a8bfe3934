"""The sidecar keeps the per-sample table exactly: NaN scores, empty curves, ids that look like
numbers and text with separators survive the JSON round trip to the same ``samples.csv`` bytes."""

from __future__ import annotations

import json

import pandas as pd

from gmxai_eval.report.render import report_data, table_from
from gmxai_eval.runner.store import COLUMNS, write_table


def test_table_round_trips_to_identical_samples_csv(tmp_path):
    rows = [
        {"run": "r", "seed": 0, "evaluator": "deletion", "method": "a, \"b\"", "sample_id": "001",
         "subject": "", "score": float("nan"), "curve": "", "curve_x": "", "extras": ""},
        {"run": "r", "seed": 3, "evaluator": "deletion", "method": "m", "sample_id": "1e3", "subject": "s\n2",
         "score": 0.1 + 0.2, "curve": json.dumps([1.0, 0.5]), "curve_x": json.dumps([0.0, 1.0]),
         "extras": json.dumps({"k": [1, 2]})},
    ]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    write_table(table, tmp_path / "a")
    doc = json.loads(json.dumps(report_data(table), allow_nan=False))  # as report_data.json stores it
    back = table_from(doc)
    write_table(back, tmp_path / "b")
    assert (tmp_path / "a" / "samples.csv").read_bytes() == (tmp_path / "b" / "samples.csv").read_bytes()
    assert back["score"].isna().tolist() == [True, False] and back.loc[1, "score"] == 0.1 + 0.2
    assert back["sample_id"].tolist() == ["001", "1e3"]
