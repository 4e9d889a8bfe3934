"""Fixation-file and study-file validation: every error names row and column."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gmxai_eval.errors import DataError
from gmxai_eval.data.gaze.fixations import read_fixations, validate_fixations, write_fixations
from gmxai_eval.data.gaze.study import Study, load_study, write_study

HEADER = "observer_id,image_id,x,y,onset_ms,duration_ms\n"
GOOD = ["o1,a,1.5,2.5,0,200", "o1,b,3,4,250,180", "o2,a,9.99,0,0,220"]
SIZES = {"a": (10, 10), "b": (10, 10)}


def _write(tmp_path, rows, header=HEADER, name="fix.csv"):
    p = tmp_path / name
    p.write_text(header + "\n".join(rows) + "\n")
    return p


def test_good_file_roundtrip(tmp_path):
    t = read_fixations(_write(tmp_path, GOOD), known_images=SIZES, image_sizes=SIZES)
    assert len(t) == 3 and t.dropped == {}
    assert t.observers == ["o1", "o2"] and t.image_ids == ["a", "b"]
    np.testing.assert_array_equal(t.points("a"), [[1.5, 2.5], [9.99, 0.0]])
    p2 = write_fixations(t, tmp_path / "again.csv")
    t2 = read_fixations(p2, known_images=SIZES, image_sizes=SIZES)
    np.testing.assert_allclose(t2.data[["x", "y", "onset_ms", "duration_ms"]], t.data[["x", "y", "onset_ms", "duration_ms"]])


@pytest.mark.parametrize("row, column, bad", [
    (2, "x", "o1,b,abc,4,250,180"),           # non-numeric
    (2, "y", "o1,b,3,nan,250,180"),           # non-finite
    (2, "x", "o1,b,inf,4,250,180"),           # non-finite
    (2, "duration_ms", "o1,b,3,4,250,-5"),    # negative duration
    (2, "onset_ms", "o1,b,3,4,-1,180"),       # negative onset
    (2, "image_id", "o1,zzz,3,4,250,180"),    # unknown image
    (2, "x", "o1,b,10,4,250,180"),            # out of bounds (x == W)
    (2, "y", "o1,b,3,-0.1,250,180"),          # out of bounds (negative)
    (2, "observer_id", ",b,3,4,250,180"),     # missing value
])
def test_invalid_row_names_row_and_column(tmp_path, row, column, bad):
    rows = [GOOD[0], bad, GOOD[2]]
    with pytest.raises(DataError) as e:
        read_fixations(_write(tmp_path, rows), known_images=SIZES, image_sizes=SIZES)
    assert (e.value.row, e.value.column) == (row, column)
    assert f"row {row}" in str(e.value) and repr(column) in str(e.value) and "fix.csv" in str(e.value)


def test_first_invalid_row_is_reported(tmp_path):
    rows = [GOOD[0], "o1,b,3,4,250,-5", "o1,zzz,abc,4,250,180"]
    with pytest.raises(DataError) as e:
        read_fixations(_write(tmp_path, rows), known_images=SIZES, image_sizes=SIZES)
    assert (e.value.row, e.value.column) == (2, "duration_ms")
    with pytest.raises(DataError) as e:  # one row, two problems: the first reason (non-numeric x) wins
        read_fixations(_write(tmp_path, ["o1,zzz,abc,4,250,180"]), known_images=SIZES, image_sizes=SIZES)
    assert (e.value.row, e.value.column) == (1, "x")


def test_missing_column_and_malformed_csv(tmp_path):
    with pytest.raises(DataError) as e:
        read_fixations(_write(tmp_path, ["o1,a,1,2,0"], header="observer_id,image_id,x,y,onset_ms\n"))
    assert e.value.column == "duration_ms"
    with pytest.raises(DataError) as e:
        read_fixations(_write(tmp_path, [GOOD[0], GOOD[1], "o1,a,1,2,0,200,7,8"]))
    assert e.value.row == 3 and "well-formed CSV" in str(e.value)


def test_drop_policy_counts_every_reason(tmp_path):
    rows = GOOD + ["o1,b,abc,4,250,180", "o1,b,3,4,250,-5", "o1,b,3,4,250,-6", "o1,zzz,3,4,250,180",
                   "o1,b,3,40,250,180", "o1,b,inf,4,1,1", ",b,3,4,1,1"]
    t = read_fixations(_write(tmp_path, rows), known_images=SIZES, image_sizes=SIZES, on_invalid="drop")
    assert len(t) == 3
    assert dict(t.dropped) == {"non_numeric": 1, "negative_duration": 2, "unknown_image": 1,
                               "out_of_bounds": 1, "non_finite": 1, "missing_value": 1}
    assert t.data["row"].tolist() == [1, 2, 3]
    assert "negative_duration: 2" in t.summary()


def test_valid_column_excludes_and_counts(tmp_path):
    rows = [r + f",{v}" for r, v in zip(GOOD, ["1", "false", "true"])]
    t = read_fixations(_write(tmp_path, rows, header=HEADER.strip() + ",valid\n"))
    assert len(t) == 2 and dict(t.dropped) == {"marked_invalid": 1}
    with pytest.raises(DataError) as e:
        read_fixations(_write(tmp_path, [GOOD[0] + ",maybe"], header=HEADER.strip() + ",valid\n"))
    assert (e.value.row, e.value.column) == (1, "valid")


def test_parquet_needs_pyarrow_or_reads(tmp_path):
    import pandas as pd

    df = validate_fixations(pd.DataFrame({"observer_id": ["o"], "image_id": ["a"], "x": [1.0], "y": [2.0],
                                          "onset_ms": [0.0], "duration_ms": [100.0]})).data
    p = tmp_path / "f.parquet"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        p.write_bytes(b"PAR1")
        with pytest.raises(DataError, match="pyarrow"):
            read_fixations(p)
    else:
        df.drop(columns="row").to_parquet(p)
        assert read_fixations(p).points("a").tolist() == [[1.0, 2.0]]


def test_study_degrees_to_pixels(tmp_path):
    st = Study(screen_px=(1000, 500), screen_cm=(50.0, 25.0), distance_cm=57.0, image_scale=2.0, sigma_deg=1.0)
    # 20 px/cm on screen; 1 deg at 57 cm = 2*57*tan(0.5 deg) cm; image shown 2x
    expected = 2 * 57.0 * math.tan(math.radians(0.5)) * 20.0 / 2.0
    assert st.sigma_px == pytest.approx(expected, rel=1e-12)
    assert st.deg_to_px(2.0) == pytest.approx(2 * 57.0 * math.tan(math.radians(1.0)) * 10.0, rel=1e-12)
    p = write_study(st, tmp_path / "s.json")
    assert load_study(p) == st
    toml = tmp_path / "s.toml"
    toml.write_text('screen_px = [1000, 500]\nscreen_cm = [50.0, 25.0]\ndistance_cm = 57\n'
                    'image_scale = 2.0\nsimulated = true\n')
    assert load_study(toml).simulated is True and load_study(toml).sigma_px == pytest.approx(expected)


@pytest.mark.parametrize("patch, column", [({"distance_cm": -1}, "distance_cm"), ({"screen_px": [1]}, "screen_px"),
                                           ({"screen_cm": [50.0, 10.0]}, "screen_cm"), ({"simulated": "yes"}, "simulated")])
def test_study_errors_name_the_key(tmp_path, patch, column):
    d = {"screen_px": [1000, 500], "screen_cm": [50.0, 25.0], "distance_cm": 57.0, **patch}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(d))
    with pytest.raises(DataError) as e:
        load_study(p)
    assert e.value.column == column
    d.pop(column)
    p.write_text(json.dumps(d))
    if column in ("screen_px", "screen_cm", "distance_cm"):
        with pytest.raises(DataError, match=f"expected key '{column}'"):
            load_study(p)
