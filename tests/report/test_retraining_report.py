"""The retraining section's figure and palette: one distinct colour per method, error bands
clipped to [0, 1], labelled axes; the table escapes data text."""

from __future__ import annotations

import numpy as np
import pytest

from gmxai_eval.report.retraining import (ORACLE_COLOUR, method_colours, render_retraining_section,
                                          retraining_figure)
from gmxai_eval.runner.stages.retraining_section import curve_band


@pytest.mark.parametrize("n", [1, 4, 10, 11, 20, 25])
def test_palette_gives_every_method_its_own_colour(n):
    names = [f"m{i}" for i in range(n)] + ["oracle"]
    cols = method_colours(names, oracle=["oracle"])
    assert list(cols) == names and len(set(cols.values())) == n + 1
    assert cols["oracle"] == ORACLE_COLOUR and list(cols.values()).count(ORACLE_COLOUR) == 1


def test_band_is_mean_sd_clipped_to_the_accuracy_range():
    curves = np.array([[1.0, 0.9, 0.0], [0.6, 0.5, 0.2]])
    b = curve_band(curves)
    assert b["mean"] == pytest.approx([0.8, 0.7, 0.1]) and b["sd"] == pytest.approx([0.2, 0.2, 0.1])
    assert b["band_high"] == pytest.approx([1.0, 0.9, 0.2])  # 0.8 + 0.2 = 1.0 stays, nothing above 1
    assert b["band_low"] == pytest.approx([0.6, 0.5, 0.0])
    nan = curve_band(np.array([[np.nan, 0.5], [np.nan, 0.7]]))  # a failed point: n/a, not an error
    assert nan["mean"][0] is None and nan["mean"][1] == pytest.approx(0.6)


def _ev():
    x = [0.0, 0.1, 0.3]
    methods = []
    for i, (m, c, o) in enumerate([("saliency", False, False), ("random", True, False), ("sobel", True, False),
                                   ("oracle", False, True)]):
        curves = np.array([[1.0, 0.95 - 0.2 * i, 0.9 - 0.3 * i], [0.9, 0.85 - 0.2 * i, 0.1]]).clip(0, 1)
        methods.append({"method": m, "control": c, "oracle": o, "curves": curves.tolist(), **curve_band(curves),
                        "area": [0.1, 0.2], "leakage": [0.0, 0.1, 0.2], "leakage_accuracy": [0.25, 0.35, 0.45]})
    return {"evaluator": "roar", "mode": "roar", "x": x, "repeats": 2, "chance": 0.25, "methods": methods,
            "kendall_tau_road": 0.5, "tau_methods": [m["method"] for m in methods], "imputation": "noisy_linear"}


def test_figure_has_a_line_and_a_clipped_band_per_method_and_labelled_axes():
    ev = _ev()
    ax = retraining_figure(ev).axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"saliency", "random (control)", "sobel (control)", "oracle (oracle)", "chance (1/K)"}
    colours = [lines[k].get_color() for k in lines if k != "chance (1/K)"]
    assert len(set(colours)) == 4 and lines["oracle (oracle)"].get_color() == ORACLE_COLOUR
    assert lines["random (control)"].get_linestyle() == "--" and lines["oracle (oracle)"].get_linestyle() == ":"
    assert np.allclose(lines["saliency"].get_ydata(), ev["methods"][0]["mean"])
    bands = ax.collections
    assert len(bands) == 4
    for poly in bands:
        y = np.concatenate([p.vertices[:, 1] for p in poly.get_paths()])
        assert y.min() >= 0.0 and y.max() <= 1.0
    assert "fraction of pixels removed" in ax.get_xlabel() and "accuracy" in ax.get_ylabel()
    assert ax.get_ylim() == pytest.approx((0.0, 1.02))
    kar = retraining_figure({**ev, "mode": "kar"}).axes[0]
    assert "fraction of pixels kept" in kar.get_xlabel()


def test_renderer_escapes_method_names():
    ev = _ev()
    ev["methods"][0]["method"] = "<b>x</b>"
    results = {"aggregates": [{"evaluator": "roar", "method": "<b>x</b>", "mean": 0.1, "ci_low": 0.0,
                               "ci_high": 0.2, "rank": 1, "band": 1}]}
    title, frag = render_retraining_section(results, {"title": "T", "retraining": [ev], "data_randomisation": []})
    assert "<b>x</b>" not in frag and "&lt;b&gt;x&lt;/b&gt;" in frag and title == "T"
    assert "<td>0.2500</td>" not in frag and "<td>0.350</td><td>0.450</td>" in frag  # leakage at t > 0
