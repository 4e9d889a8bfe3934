"""Paired statistics against hand computations, closed forms, simulation and the krippendorff package."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.agreement import krippendorff_alpha
from gmxai_eval.functional.paired import (bootstrap_means, difference_sd, holm,
                                          minimal_detectable_difference, paired_bootstrap_test,
                                          paired_rank_bands, power_at, required_n, unit_differences)

Z = 1.959963984540054 + 0.8416212335729143  # z_{0.975} + z_{0.8}


# -- Holm ----------------------------------------------------------------------------------------

def test_holm_by_hand():
    # sorted 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> max 0.06)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm") = 0.05 0.08 0.09 0.09 0.09
    np.testing.assert_allclose(holm([0.01, 0.02, 0.03, 0.04, 0.05]), [0.05, 0.08, 0.09, 0.09, 0.09])
    # capped at 1; NaN is not counted in m and stays NaN
    out = holm([0.5, np.nan, 0.4])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.8) and out[2] == pytest.approx(0.8)
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]
    assert holm([]).shape == (0,)
    with pytest.raises(ConfigError, match="p-values in"):
        holm([1.2])


def test_holm_controls_familywise_error_under_the_null():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(4000, 10))  # 10 true nulls per family
    rejected = np.array([(holm(row) < 0.05).any() for row in p])
    assert rejected.mean() <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 4000)


# -- paired test and bands ------------------------------------------------------------------------

def test_identical_scores_never_separate():
    v = np.random.default_rng(1).normal(size=(20, 1)).repeat(3, 1)
    t = paired_bootstrap_test(v, None, n_boot=300, seed=0)
    assert t["p"].tolist() == [1.0, 1.0, 1.0] and np.all(t["diff"] == 0)
    assert paired_rank_bands(v.mean(0), t).tolist() == [1, 1, 1]


def test_constant_shift_separates():
    base = np.random.default_rng(2).normal(size=20)
    v = np.stack([base + 0.3, base, base - 0.2], 1)  # every image: method 0 > 1 > 2
    t = paired_bootstrap_test(v, None, n_boot=300, seed=0)
    assert t["p"].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(t["diff"], [0.3, 0.5, 0.2])
    assert paired_rank_bands(v.mean(0), t).tolist() == [1, 2, 3]
    assert paired_rank_bands(-v.mean(0), t).tolist() == [3, 2, 1]  # lower is better
    # the marginal intervals overlap heavily (sd 1 per method, shift 0.2-0.5): the old rule cannot
    lo, hi = np.percentile(bootstrap_means(v, None, 300, 0), [2.5, 97.5], axis=0)
    assert lo[0] < hi[1] and lo[1] < hi[2]


def test_paired_test_matches_wald_on_bootstrap_se_and_cluster_draws():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(15, 3)) + [0.0, 0.4, 0.1]
    v[3, 2] = np.nan
    clusters = [f"s{i // 2}" for i in range(15)]
    t = paired_bootstrap_test(v, clusters, n_boot=400, seed=5)
    for q, (a, b) in enumerate([(0, 1), (0, 2), (1, 2)]):
        d = v[:, a] - v[:, b]
        boots = bootstrap_means(d[:, None], clusters, n_boot=400, seed=5)[:, 0]
        se = np.std(boots, ddof=1)
        assert t["diff"][q] == pytest.approx(np.nanmean(d))
        assert t["se"][q] == pytest.approx(se)
        assert t["p"][q] == pytest.approx(2 * scipy.stats.norm.sf(abs(np.nanmean(d)) / se))


def test_paired_test_type_one_error_and_power_at_mdd():
    rng = np.random.default_rng(4)
    n, reps, sd = 40, 300, 1.0
    shift = Z * sd / math.sqrt(n)  # the MDD of normal differences with sd 1 at n = 40
    null_rej = alt_rej = 0
    for r in range(reps):
        base = rng.normal(size=n)
        d0 = rng.normal(size=n)
        d1 = rng.normal(size=n) + shift
        null_rej += paired_bootstrap_test(np.stack([base + d0, base], 1), None, 500, r)["p"][0] < 0.05
        alt_rej += paired_bootstrap_test(np.stack([base + d1, base], 1), None, 500, r)["p"][0] < 0.05
    tol = 3 * math.sqrt(0.2 * 0.8 / reps)
    assert null_rej / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps) + 0.02  # bootstrap SE is ~1/sqrt(n) small
    assert abs(alt_rej / reps - 0.8) <= tol + 0.03


# -- minimal detectable difference and sample size -----------------------------------------------

def test_mdd_closed_form_for_normal_data():
    assert Z == pytest.approx(2.8016, abs=1e-4)
    assert minimal_detectable_difference(1.0, 16) == pytest.approx(Z / 4)
    assert minimal_detectable_difference(2.0, 48, alpha=0.01, power=0.9) == pytest.approx(
        (scipy.stats.norm.ppf(0.995) + scipy.stats.norm.ppf(0.9)) * 2 / math.sqrt(48))
    # estimated from normal data: the sample sd of the differences tends to sigma
    rng = np.random.default_rng(5)
    base = rng.normal(size=20000)
    v = np.stack([base + rng.normal(0, 0.5, 20000), base], 1)
    sd, n = difference_sd(v)
    assert n.tolist() == [20000] and sd[0] == pytest.approx(0.5, rel=0.02)
    assert minimal_detectable_difference(sd, n)[0] == pytest.approx(Z * 0.5 / math.sqrt(20000), rel=0.02)
    # power at the MDD is the requested power (normal approximation, exact inversion)
    assert power_at(Z * 0.5 / math.sqrt(30), 0.5, 30) == pytest.approx(0.8, abs=1e-3)
    assert np.isnan(minimal_detectable_difference(1.0, 1))
    with pytest.raises(ConfigError, match="power"):
        minimal_detectable_difference(1.0, 10, power=1.0)


def test_mdd_power_by_simulation_of_a_t_test():
    rng = np.random.default_rng(6)
    n, sigma = 48, 1.3
    delta = float(minimal_detectable_difference(sigma, n))
    d = rng.normal(delta, sigma, size=(4000, n))
    p = scipy.stats.ttest_1samp(d, 0.0, axis=1).pvalue
    # the normal approximation slightly overstates a t-test's power (~1 % at n = 48)
    assert 0.8 - 0.035 <= (p < 0.05).mean() <= 0.8 + 0.02


def test_required_n_inverts_the_mdd():
    for sd, delta in ((1.0, 0.3), (0.2, 0.05), (3.0, 2.5)):
        n = int(required_n(sd, delta))
        assert minimal_detectable_difference(sd, n) <= delta + 1e-12
        if n > 2:
            assert minimal_detectable_difference(sd, n - 1) > delta
    assert required_n(1.0, 0.0) == np.inf and np.isnan(required_n(np.nan, 1.0))
    assert required_n(1.0, -0.3) == required_n(1.0, 0.3)


def test_cluster_differences_average_within_subject():
    v = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 1.0], [np.nan, 0.0]])
    u = unit_differences(v, ["a", "a", "b", "b"])
    np.testing.assert_allclose(u[:, 0], [2.0, 1.0])  # subject a: mean(1, 3); b: only one pair
    sd, n = difference_sd(v, ["a", "a", "b", "b"])
    assert n.tolist() == [2] and sd[0] == pytest.approx(np.std([2.0, 1.0], ddof=1))
    with pytest.raises(ShapeError):
        unit_differences(v, ["a"])


# -- Krippendorff's alpha ------------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the 4 observers x 12 units
# example with missing values: nominal 0.743, ordinal 0.815, interval 0.849, ratio 0.797.
TEXTBOOK = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
    [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan]])


@pytest.mark.parametrize("level,want", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849),
                                        ("ratio", 0.797)])
def test_krippendorff_textbook(level, want):
    assert krippendorff_alpha(TEXTBOOK, level) == pytest.approx(want, abs=5e-4)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_krippendorff_parity_with_the_package(level):
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(7)
    for _ in range(10):
        x = rng.integers(1, 7, size=(5, 15)).astype(float)
        x[rng.random(x.shape) < 0.25] = np.nan
        if level in ("interval", "ratio"):
            x = x + rng.random(x.shape).round(2)  # non-integer values too
        want = krippendorff.alpha(reliability_data=x, level_of_measurement=level)
        assert krippendorff_alpha(x, level) == pytest.approx(want, abs=1e-10)


def test_krippendorff_edge_cases():
    assert krippendorff_alpha(np.tile(np.arange(5.0), (3, 1)), "ordinal") == pytest.approx(1.0)
    assert np.isnan(krippendorff_alpha(np.ones((3, 4)), "interval"))  # no expected disagreement
    assert np.isnan(krippendorff_alpha(np.array([[1.0, np.nan], [np.nan, 2.0]])))  # nothing pairable
    with pytest.raises(ShapeError):
        krippendorff_alpha(np.ones(3))
    with pytest.raises(ConfigError, match="level"):
        krippendorff_alpha(np.ones((2, 2)), "cardinal")  # type: ignore[arg-type]
