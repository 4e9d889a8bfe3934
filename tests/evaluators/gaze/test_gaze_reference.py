"""Ceiling / floor rows, summary table, bootstrap CI and the gaze section data from given maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gaze_toys import SHAPE, identical_observers

from gmxai_eval.data.gaze.maps import image_gaze_set
from gmxai_eval.evaluators.gaze_reference import (CEILING_ROW, FLOOR_ROW, bootstrap_ci, centre_bias_floor,
                                                  human_ceiling, score_maps, summarise)





def test_loo_ceiling_is_perfect_when_observers_are_identical():
    t = identical_observers()
    gazes = image_gaze_set(t, {i: SHAPE for i in t.image_ids}, 1.5)
    ceil = human_ceiling(gazes, 1.5, seed=0)
    np.testing.assert_allclose(ceil["cc"], 1.0, atol=1e-12)
    np.testing.assert_allclose(ceil["sim"], 1.0, atol=1e-12)
    np.testing.assert_allclose(ceil["kl"], 0.0, atol=1e-12)
    np.testing.assert_allclose(ceil["emd"], 0.0, atol=1e-12)
    # fixation-based metrics: the others' density equals the pooled density -> same score as it
    pooled = score_maps({k: g.density for k, g in gazes.items()}, gazes, metrics=("nss", "auc_judd", "ig"))
    np.testing.assert_allclose(ceil[["nss", "auc_judd", "ig"]].to_numpy(), pooled.to_numpy(), rtol=1e-12)


def test_single_observer_image_has_no_ceiling_and_floor_is_the_centre_map():
    t = identical_observers(n_obs=1)
    gazes = image_gaze_set(t, {i: SHAPE for i in t.image_ids}, 1.5)
    assert human_ceiling(gazes, 1.5, metrics=("nss",)).isna().all().all()
    fl = centre_bias_floor(gazes, metrics=("cc",))
    direct = score_maps({k: g.baseline for k, g in gazes.items()}, gazes, metrics=("cc",))
    pd.testing.assert_frame_equal(fl, direct)


def test_summary_fraction_of_ceiling_and_directions():
    per = {"m": pd.DataFrame({"nss": [1.0, 1.0], "kl": [2.0, 2.0]}),
           CEILING_ROW: pd.DataFrame({"nss": [2.0, 2.0], "kl": [0.5, 0.5]}),
           FLOOR_ROW: pd.DataFrame({"nss": [0.5, 0.5], "kl": [4.0, 4.0]})}
    tab = summarise(per, n_boot=50, seed=1, simulated=True)
    assert tab.loc["m", "nss_frac_ceiling"] == 0.5 and tab.loc["m", "kl_frac_ceiling"] == 0.25
    assert tab.loc[CEILING_ROW, "nss_frac_ceiling"] == 1.0
    assert tab["simulated"].all() and "SIMULATED" in tab.attrs["caption"]
    assert tab.attrs["higher_is_better"] == {"nss": True, "kl": False}
    pd.testing.assert_frame_equal(tab, summarise(per, n_boot=50, seed=1, simulated=True))


def test_random_metrics_are_seeded_per_image_not_per_order():
    t = identical_observers(n_obs=2, n_img=3)
    gazes = image_gaze_set(t, {i: SHAPE for i in t.image_ids}, 1.5)
    r = np.random.default_rng(1)
    maps = {k: r.random(SHAPE) for k in gazes}
    a = score_maps(maps, gazes, metrics=("auc_borji",), seed=3)
    b = score_maps(dict(reversed(list(maps.items()))), gazes, metrics=("auc_borji",), seed=3)
    pd.testing.assert_series_equal(a["auc_borji"].sort_index(), b["auc_borji"].sort_index())
    assert not a.equals(score_maps(maps, gazes, metrics=("auc_borji",), seed=4))


def test_bootstrap_ci_deterministic_and_contains_mean():
    v = np.random.default_rng(0).normal(size=30)
    a, b = bootstrap_ci(v, seed=3), bootstrap_ci(v, seed=3)
    assert a == b
    assert a[1] < a[0] < a[2] and a[0] == pytest.approx(v.mean())
    assert bootstrap_ci(v, seed=4) != a
    assert bootstrap_ci(np.full(5, 2.0)) == (2.0, 2.0, 2.0)


def test_bootstrap_ci_is_the_percentile_interval_of_the_resampled_means():
    # oracle: the draws written out (default_rng(seed).integers(0, n, (n_boot, n))), NaN dropped
    v = np.random.default_rng(1).normal(size=25)
    v[[3, 7]] = np.nan
    finite = v[np.isfinite(v)]
    idx = np.random.default_rng(5).integers(0, len(finite), size=(400, len(finite)))
    means = finite[idx].mean(1)
    mean, lo, hi = bootstrap_ci(v, n_boot=400, level=0.9, seed=5)
    assert mean == pytest.approx(finite.mean(), rel=1e-15)
    assert lo == pytest.approx(np.quantile(means, 0.05), rel=1e-12)
    assert hi == pytest.approx(np.quantile(means, 0.95), rel=1e-12)
    assert np.isnan(bootstrap_ci(np.array([np.nan, np.inf]))).all()  # nothing finite left
