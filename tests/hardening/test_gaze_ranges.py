"""Every number of a gaze study file and of a fixation file is range-checked: a value outside
its range is a ``DataError`` naming the file and the key (study) or the row and column
(fixations), and a value just inside the range is accepted (the oracle that each check refuses
only what it should). ``distance_cm = 1e300`` used to end in an out-of-memory traceback of the
density filter."""

from __future__ import annotations

import json

import pytest

from gmxai_eval.data.gaze.fixations import (MAX_COORD, MAX_DURATION_MS, MAX_ONSET_MS, read_fixations,
                                            validate_fixations)
from gmxai_eval.data.gaze.study import MAX_SIGMA_PX, RANGES, Study, load_study
from gmxai_eval.errors import DataError

BASE = {"screen_px": [1920, 1080], "screen_cm": [53.1, 29.9], "distance_cm": 60.0, "image_scale": 4.0,
        "sigma_deg": 1.0, "image_size": [112, 112]}
PAIRS = ("screen_px", "screen_cm", "image_size")


def _value(key: str, v: float):
    return [v, v] if key in PAIRS else v


def _study(tmp_path, **changes) -> Study:
    p = tmp_path / "study.json"
    p.write_text(json.dumps({**BASE, **changes}))
    return load_study(p)


def test_every_numeric_study_key_has_a_range():
    numeric = {k for k, f in Study.__dataclass_fields__.items() if k not in ("simulated", "name", "description")}
    assert set(RANGES) == numeric


@pytest.mark.parametrize("key", sorted(RANGES))
@pytest.mark.parametrize("side", ["below", "above", "absurd"])
def test_study_value_out_of_range_names_the_key(tmp_path, key, side):
    lo, hi = RANGES[key]
    v = {"below": lo / 2 if lo > 0 else -1.0, "above": hi * 2, "absurd": 1e300}[side]
    with pytest.raises(DataError, match=f"study.json, column '{key}': expected a (number in|positive)"):
        _study(tmp_path, **{key: _value(key, v)})


@pytest.mark.parametrize("key", sorted(RANGES))
def test_study_ends_of_the_range_are_accepted(tmp_path, key):
    """Each end alone (the other keys as in BASE; screen pixels kept square)."""
    lo, hi = RANGES[key]
    for v in (lo, hi):
        changes = {key: _value(key, v)}
        if key == "screen_cm":  # keep square pixels: scale the pixels with the centimetres
            changes["screen_px"] = [6.0 * v, 6.0 * v]
        try:
            st = _study(tmp_path, **changes)
        except DataError as e:  # an end may only fail the geometry checks, never its own range
            assert "expected a number in" not in str(e), e
            continue
        got = getattr(st, key)
        assert (got[0] if key in PAIRS else got) == v


def test_a_geometry_giving_a_huge_density_sigma_is_refused(tmp_path):
    """Each number in its range, together a density sigma of millions of image pixels."""
    with pytest.raises(DataError, match=f"column 'sigma_deg'.*at most {MAX_SIGMA_PX:g} image pixels"):
        _study(tmp_path, screen_px=[65536, 65536], screen_cm=[1, 1], distance_cm=10000, image_scale=1e-3,
               sigma_deg=45)
    assert _study(tmp_path).sigma_px == pytest.approx(9.4615, rel=1e-4)  # the example study: accepted


def _fixations(**row) -> list[dict]:
    good = {"observer_id": "o1", "image_id": "img0", "x": "10", "y": "20", "onset_ms": "0", "duration_ms": "250"}
    return [good, {**good, **{k: str(v) for k, v in row.items()}}]


@pytest.mark.parametrize("column,value,sizes", [
    ("x", MAX_COORD, None), ("y", 1e300, None), ("x", -1, None),    # no image size known
    ("x", 112, (112, 112)), ("y", -0.5, (112, 112)),                # the image's size
    ("onset_ms", MAX_ONSET_MS * 1.01, None), ("onset_ms", 1e300, None), ("onset_ms", -1, None),
    ("duration_ms", MAX_DURATION_MS * 1.01, None), ("duration_ms", 1e300, None), ("duration_ms", -1, None),
])
def test_fixation_value_out_of_range_names_row_and_column(tmp_path, column, value, sizes):
    import pandas as pd

    p = tmp_path / "fix.csv"
    pd.DataFrame(_fixations(**{column: value})).to_csv(p, index=False)
    with pytest.raises(DataError, match=f"fix.csv, row 2, column '{column}': expected"):
        read_fixations(p, image_sizes=sizes)
    # dropped and counted, never silently kept
    t = read_fixations(p, image_sizes=sizes, on_invalid="drop")
    assert len(t) == 1 and sum(t.dropped.values()) == 1


@pytest.mark.parametrize("column,value", [("x", MAX_COORD - 1), ("onset_ms", MAX_ONSET_MS),
                                          ("duration_ms", MAX_DURATION_MS), ("duration_ms", 0)])
def test_fixation_ends_of_the_range_are_accepted(column, value):
    import pandas as pd

    t = validate_fixations(pd.DataFrame(_fixations(**{column: value})))
    assert len(t) == 2 and float(t.data[column].iloc[1]) == value
