"""The IoU of thresholded maps (Duong et al. 2024): analytic values, presets, invariances."""

from __future__ import annotations

import numpy as np
import pytest

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional import gaze as G


def _disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(float)


def test_two_rectangles_have_the_analytic_iou():
    """Region A = columns 0..5, region B = columns 3..9 of a 10x10 image: |A & B| = 30,
    |A | B| = 100 -> 0.3, whatever the values inside the regions (above the cut)."""
    a = np.zeros((10, 10))
    a[:, :6] = 1.0
    b = np.zeros((10, 10))
    b[:, 3:] = np.linspace(0.5, 1.0, 7)
    assert G.iou_regions(a, b) == pytest.approx(0.3)
    assert G.iou_regions(a, a) == 1.0
    assert G.iou_regions(a, 1 - a) == 0.0


def test_the_cut_is_applied_after_min_max_scaling():
    """A linear ramp 0..1 over 256 columns: ``> 70/255`` keeps 255 - 70 = 185 columns (values k/255,
    k = 71..255); the 110 preset keeps 145; a map and its affine rescaling score the same."""
    ramp = np.tile(np.arange(256) / 255.0, (4, 1))
    full = np.ones((4, 256))
    full[0, 0] = 0.0   # min-max scaling needs a spread; one zero pixel stays outside
    assert G.iou_regions(ramp, full) == pytest.approx(4 * 185 / (4 * 256 - 1))
    assert G.iou_regions(ramp, full, "duong2024_110") == pytest.approx(4 * 145 / (4 * 256 - 1))
    assert G.iou_regions(3 * ramp - 7, full) == G.iou_regions(ramp, full)
    assert G.iou_regions(ramp, full, cut=0.5) == pytest.approx(4 * 128 / (4 * 256 - 1))


def test_degenerate_and_bad_input():
    g = _disc(20, 20, 10, 10, 5)
    assert G.iou_regions(np.full((20, 20), 3.0), g) == 0.0       # constant map: empty region
    assert G.iou_regions(np.zeros((20, 20)), np.zeros((20, 20))) == 0.0   # empty union -> 0
    with pytest.raises(ConfigError, match="preset"):
        G.iou_regions(g, g, "otsu")
    with pytest.raises(ConfigError, match="cut"):
        G.iou_regions(g, g, cut=1.0)
    with pytest.raises(ShapeError):
        G.iou_regions(g, g[:, :-1])


def test_overlapping_discs_match_the_area_formula():
    """Two discs of radius 12 whose centres are 12 apart on a fine grid: IoU = lens area /
    (2 pi r² - lens), lens = 2 r² acos(d / 2r) - (d / 2) sqrt(4 r² - d²); within pixelisation."""
    r, d = 12.0, 12.0
    a, b = _disc(80, 80, 40, 34, r), _disc(80, 80, 40, 46, r)
    lens = 2 * r * r * np.arccos(d / (2 * r)) - d / 2 * np.sqrt(4 * r * r - d * d)
    assert G.iou_regions(a, b) == pytest.approx(lens / (2 * np.pi * r * r - lens), abs=0.02)
