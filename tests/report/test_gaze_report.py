"""report.gaze: the gaze section rendered from its data alone."""

from __future__ import annotations

import math

import pytest

from gmxai_eval.errors import DataError
from gmxai_eval.report.gaze import gaze_aoi, gaze_per_image, gaze_table, render_gaze_markdown, render_gaze_section

CEIL = "human ceiling (LOO)"


def _data(simulated: bool = True) -> dict:
    """Hand-made section data: NSS (higher is better) and KL (lower is better)."""
    def row(method, nss, kl, frac_nss, frac_kl, n=2):
        return {"method": method, "nss": nss, "nss_lo": None if nss is None else nss - 0.5,
                "nss_hi": None if nss is None else nss + 0.5, "nss_frac_ceiling": frac_nss,
                "kl": kl, "kl_lo": kl - 0.25, "kl_hi": kl + 0.25, "kl_frac_ceiling": frac_kl,
                "n_images": n, "simulated": simulated}
    return {
        "title": "Gaze overlap", "caption": "Gaze overlap (SIMULATED observers): caption", "simulated": simulated,
        "level": 0.95, "n_boot": 10, "seed": 0, "transform": "abs",
        "metrics": [{"name": "nss", "evaluator": "gaze_nss", "label": "NSS", "higher_is_better": True, "config": {}},
                    {"name": "kl", "evaluator": "gaze_kl", "label": "KL", "higher_is_better": False, "config": {}}],
        "rows": [row("<script>m</script>", 1.0, 2.0, 0.5, 0.25), row(CEIL, 2.0, 0.5, 1.0, 1.0),
                 row("centre bias floor", None, 4.0, None, 0.125, n=1)],
        "ceiling_row": CEIL, "floor_row": "centre bias floor",
        "per_image": {"<script>m</script>": {"image_ids": ["a", "b"], "scores": {"nss": [0.5, None], "kl": [1.0, 3.0]}}},
        "aoi": {"columns": ["eyes", "outside"], "rows": [{"row": "gaze (dwell)", "eyes": 0.75, "outside": 0.25},
                                                         {"row": "<i>m</i>", "eyes": None, "outside": 0.5}]},
        "study": {"name": "st<udy>", "simulated": simulated, "sigma_deg": 1.0}, "fixations": "3 fixations",
    }


def test_markdown_is_the_gaze_table_format_with_directions():
    """Method labels are escaped like every Markdown cell (no HTML from a label)."""
    md = render_gaze_markdown(_data())
    assert md == (
        "**Gaze overlap (SIMULATED observers): caption**\n\n"
        "| method | NSS ↑ | KL ↓ | n |\n|---|---|---|---|\n"
        "| &lt;script&gt;m&lt;/script&gt; | 1.000 [0.500, 1.500] (0.50) | 2.000 [1.750, 2.250] (0.25) | 2 |\n"
        "| human ceiling (LOO) (simulated gaze) | 2.000 [1.500, 2.500] | 0.500 [0.250, 0.750] | 2 |\n"
        "| centre bias floor | n/a | 4.000 [3.750, 4.250] (0.12) | 1 |\n")


def test_html_section_is_escaped_and_carries_directions():
    out = render_gaze_section(_data())
    assert "<script>" not in out and "&lt;script&gt;m&lt;/script&gt;" in out
    assert "<i>" not in out and "&lt;i&gt;m&lt;/i&gt;" in out and "st&lt;udy&gt;" in out
    assert "<th>NSS ↑</th>" in out and "<th>KL ↓</th>" in out
    assert "1.000 [0.500, 1.500] (0.50)" in out and "n/a" in out and "(SIMULATED" in out
    assert "0.750" in out  # the AOI table
    no_aoi = {**_data(False), "aoi": None}
    assert "Areas of interest" not in render_gaze_section(no_aoi) and "SIMULATED" not in render_gaze_section(
        {**no_aoi, "caption": "Gaze overlap: caption"})


def test_frames_from_data():
    t = gaze_table(_data())
    assert list(t.index) == ["<script>m</script>", CEIL, "centre bias floor"] and t.index.name == "method"
    assert math.isnan(t.loc["centre bias floor", "nss"]) and t.loc[CEIL, "kl_lo"] == 0.25
    assert t["n_images"].dtype.kind == "i" and t["simulated"].dtype == bool
    assert t.attrs["higher_is_better"] == {"nss": True, "kl": False} and t.attrs["fixations"] == "3 fixations"
    per = gaze_per_image(_data())["<script>m</script>"]
    assert list(per.index) == ["a", "b"] and per.loc["a", "kl"] == 1.0 and math.isnan(per.loc["b", "nss"])
    aoi = gaze_aoi(_data())
    assert aoi.loc["gaze (dwell)", "eyes"] == 0.75 and math.isnan(aoi.loc["<i>m</i>", "eyes"])
    assert gaze_aoi({**_data(), "aoi": None}) is None


def test_missing_keys_raise_naming_them():
    with pytest.raises(DataError, match="missing \\['rows'\\]"):
        render_gaze_section({k: v for k, v in _data().items() if k != "rows"})
    with pytest.raises(DataError, match="mapping"):
        gaze_table([])  # type: ignore[arg-type]
