"""Gaze map kernels: fixation maps, densities, centre bias, areas of interest."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from gmxai_eval.errors import DataError, ShapeError
from gmxai_eval.data.gaze.study import Study
from gmxai_eval.functional.gaze_maps import (attribution_mass, centre_bias_map, density_map, dwell_fractions,
                                             fixation_map, rescale_points)


def test_fixation_map_counts_and_floor_convention():
    pts = np.array([[0.0, 0.0], [0.99, 0.99], [3.5, 1.2]])
    m = fixation_map(pts, (3, 4))
    assert m[0, 0] == 2 and m[1, 3] == 1 and m.sum() == 3
    w = fixation_map(pts, (3, 4), weights=np.array([100.0, 50.0, 25.0]))
    assert w[0, 0] == 150 and w[1, 3] == 25
    with pytest.raises(ShapeError, match="inside"):
        fixation_map(np.array([[4.0, 0.0]]), (3, 4))


def test_density_sums_to_one_and_is_the_nearest_padded_blur():
    pts = np.array([[1.2, 1.3], [10.5, 7.5], [10.5, 7.9]])
    d = density_map(pts, (12, 16), 2.5)
    assert d.sum() == pytest.approx(1.0, abs=1e-12)
    ref = gaussian_filter(fixation_map(pts, (12, 16)), 2.5, mode="nearest")
    np.testing.assert_allclose(d, ref / ref.sum(), rtol=1e-12)
    assert d[1, 1] > d[1, 10]  # near the corner fixation, 'nearest' padding keeps mass inside
    np.testing.assert_allclose(density_map(pts, (12, 16), 0.0), fixation_map(pts, (12, 16)) / 3)
    dw = density_map(pts, (12, 16), 0.0, weights=np.array([1.0, 2.0, 1.0]))
    assert dw[7, 10] == pytest.approx(0.75)
    with pytest.raises(DataError, match="at least one fixation"):
        density_map(np.zeros((0, 2)), (12, 16), 1.0)


def test_sigma_in_degrees_matches_hand_conversion():
    st = Study(screen_px=(1920, 1080), screen_cm=(53.1, 29.9), distance_cm=60.0, image_scale=4.0)
    px_per_cm = 0.5 * (1920 / 53.1 + 1080 / 29.9)
    cm = 2 * 60.0 * np.tan(np.radians(0.5))
    assert st.sigma_px == pytest.approx(cm * px_per_cm / 4.0, rel=1e-12)
    pts = np.array([[20.0, 20.0]])
    np.testing.assert_allclose(density_map(pts, (40, 40), st.sigma_px),
                               density_map(pts, (40, 40), cm * px_per_cm / 4.0), rtol=1e-12)


def test_centre_bias_is_a_centred_gaussian():
    c = centre_bias_map((11, 21), 0.2)
    assert c.sum() == pytest.approx(1.0) and np.unravel_index(c.argmax(), c.shape) == (5, 10)
    np.testing.assert_allclose(c, c[::-1, ::-1], rtol=1e-12)  # symmetric about the centre
    assert c[5, 10 + 4] / c[5, 10] == pytest.approx(np.exp(-0.5 * (4 / (0.2 * 21)) ** 2), rel=1e-12)


def test_rescale_points_maps_corners():
    np.testing.assert_allclose(rescale_points(np.array([[10.0, 5.0]]), (10, 20), (20, 40)), [[20.0, 10.0]])


def test_dwell_fractions_and_attribution_mass_share_a_layout():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2] = True
    masks[1, :, :2] = True  # overlaps region 0 in the top-left block
    pts = np.array([[0.5, 0.5], [3.5, 0.5], [3.5, 3.5]])
    dur = np.array([100.0, 300.0, 600.0])
    f = dwell_fractions(pts, dur, masks, ("top", "left"))
    assert f == pytest.approx({"top": 0.4, "left": 0.1, "outside": 0.6})
    a = np.zeros((4, 4))
    a[0, 0], a[0, 3], a[3, 3], a[2, 2] = 1.0, 3.0, 6.0, -5.0  # negative mass is ignored
    assert attribution_mass(a, masks, ("top", "left")) == pytest.approx(f)
