"""functional/stats.py against SciPy (reference implementations), analytic values, and the
callers' historical conventions (every caller passes the convention it had)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional import agreement, similarity, stats


@pytest.fixture
def rows():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 50, generator=g, dtype=torch.float64)
    b = a + torch.randn(4, 50, generator=g, dtype=torch.float64)
    a[1, :20] = 0.5  # ties
    b[2, 10:30] = -1.0
    return a, b


def test_pearson_spearman_rankdata_match_scipy(rows):
    a, b = rows
    p, s, r = stats.pearson(a, b), stats.spearman(a, b), stats.rankdata(a)
    for i in range(4):
        assert p[i].item() == pytest.approx(scipy.stats.pearsonr(a[i], b[i])[0], rel=1e-12)
        assert s[i].item() == pytest.approx(scipy.stats.spearmanr(a[i], b[i])[0], rel=1e-12)
        np.testing.assert_array_equal(r[i].numpy(), scipy.stats.rankdata(a[i].numpy()))


@pytest.mark.parametrize("fn", [stats.pearson, stats.spearman])
def test_constant_convention_is_explicit(fn, rows):
    a, b = rows
    a = a.clone()
    a[0] = 2.0  # a constant row
    assert math.isnan(fn(a, b, constant="nan")[0]) and fn(a, b, constant="zero")[0].item() == 0.0
    torch.testing.assert_close(fn(a, b, constant="nan")[1:], fn(a, b, constant="zero")[1:])
    with pytest.raises(ConfigError):
        fn(a, b, constant="one")


@pytest.mark.parametrize("fn", [stats.pearson, stats.spearman])
def test_non_finite_row_is_nan_whatever_the_convention(fn, rows):
    a, b = rows
    b = b.clone()
    b[3, 7] = float("inf")
    assert math.isnan(fn(a, b, constant="zero")[3]) and not fn(a, b, constant="zero")[:3].isnan().any()


def test_shape_mismatch_raises(rows):
    a, b = rows
    with pytest.raises(ShapeError):
        stats.pearson(a, b[:, :10])


def test_kendall_tau_b_matches_scipy_with_ties_and_nan():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 30).astype(float)
    y = x + rng.integers(0, 3, 30)
    assert stats.kendall_tau_b(x, y) == pytest.approx(scipy.stats.kendalltau(x, y, variant="b")[0], rel=1e-12)
    x[3] = np.nan
    keep = np.isfinite(x)
    assert stats.kendall_tau_b(x, y) == pytest.approx(scipy.stats.kendalltau(x[keep], y[keep])[0], rel=1e-12)
    assert math.isnan(stats.kendall_tau_b([1, 1, 1], [1, 2, 3]))
    assert stats.kendall_tau_b([1, 1, 1], [1, 2, 3], constant="zero") == 0.0


def test_kendall_and_bootstrap_equal_the_report_versions():
    from gmxai_eval.report.aggregate import bootstrap_means, kendall_tau_b

    rng = np.random.default_rng(1)
    v = rng.normal(size=(13, 3))
    v[2, 1] = np.nan
    clusters = [i // 2 for i in range(13)]
    np.testing.assert_array_equal(stats.bootstrap_means(v, clusters, n_boot=200, seed=4),
                                  bootstrap_means(v, clusters, n_boot=200, seed=4))
    assert stats.kendall_tau_b(v[:, 0], v[:, 2]) == kendall_tau_b(v[:, 0], v[:, 2])


def test_bootstrap_ci_equals_the_gaze_version_and_contains_the_mean():
    from gmxai_eval.gaze.metrics import bootstrap_ci

    v = np.random.default_rng(2).normal(1.0, 1.0, 40)
    got = stats.bootstrap_ci(v, n_boot=500, seed=3)
    assert got == bootstrap_ci(v, n_boot=500, seed=3)
    assert got[1] < got[0] < got[2] and got[0] == pytest.approx(v.mean())
    assert all(math.isnan(t) for t in stats.bootstrap_ci([np.nan, np.nan]))


def test_top_k_iou_conventions():
    a = torch.arange(16.0).reshape(1, 16)
    b = a.flip(1)
    # signed: top 4 of a = 12..15, of b = positions 0..3 -> disjoint; abs of -a: same as a
    assert stats.top_k_iou(a, b, k=4).item() == 0.0
    assert stats.top_k_iou(a, -a, k=4, relevance="abs").item() == 1.0
    assert stats.top_k_iou(a, -a, k=4, relevance="signed").item() == 0.0
    assert stats.top_k_iou(a, b, fraction=0.25).item() == 0.0  # k = ceil(0.25 * 16) = 4
    ties = torch.zeros(1, 8)
    assert stats.top_k_iou(ties, ties, k=3, ties="index").item() == 1.0  # the same 3 lowest indices
    with pytest.raises(ConfigError):
        stats.top_k_iou(a, b, k=4, fraction=0.5)
    with pytest.raises(ConfigError):
        stats.top_k_iou(a, b, k=17)


def test_deprecated_aliases_keep_their_historical_conventions(rows):
    g = torch.Generator().manual_seed(8)
    a = torch.randn(3, 12, 12, generator=g)
    b = a + torch.randn(3, 12, 12, generator=g)
    torch.testing.assert_close(agreement.spearman(a, b), stats.spearman(a, b, constant="nan"))
    torch.testing.assert_close(agreement.top_k_iou(a, b, 20),
                               stats.top_k_iou(a, b, k=20, relevance="signed", ties="index"))
    torch.testing.assert_close(similarity.topk_iou(a, b, fraction=0.1),
                               stats.top_k_iou(a, b, fraction=0.1, relevance="abs", ties="topk"))
    assert similarity.spearman is stats.spearman and similarity.pearson is stats.pearson


# -- split-half reliability of a ranking of means ------------------------------------------------
def test_spearman_brown_analytic_values():
    assert stats.spearman_brown(0.5) == pytest.approx(2 / 3)
    assert stats.spearman_brown(0.6, k=3) == pytest.approx(3 * 0.6 / (1 + 2 * 0.6))
    assert float(stats.spearman_brown(1.0)) == 1.0 and float(stats.spearman_brown(0.0)) == 0.0
    assert float(stats.spearman_brown(-0.7)) == -1.0 and math.isnan(float(stats.spearman_brown(math.nan)))


def test_spearman_rows_matches_scipy_with_ties_and_nan():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, size=(30, 9)).astype(float), rng.normal(size=(30, 9))
    a[3, 2] = b[7, 4] = np.nan
    got = stats.spearman_rows(a, b)
    for r in range(30):
        ok = np.isfinite(a[r]) & np.isfinite(b[r])
        assert got[r] == pytest.approx(scipy.stats.spearmanr(a[r, ok], b[r, ok]).statistic, abs=1e-12)


def test_split_half_no_noise_is_one_and_pure_noise_is_near_zero():
    effect = np.add.outer(np.zeros(40), np.linspace(0, 1, 12))  # fixed method effect, no noise
    r = stats.split_half_reliability(effect, [f"img{i}" for i in range(40)])
    assert r["reliability"] == 1.0 and r["ci_low"] == r["ci_high"] == 1.0 and r["rho_halves"] == 1.0
    # pure noise: no method effect, the halves' rankings are unrelated; averaged over 20 data sets
    rng = np.random.default_rng(0)
    rho = [stats.split_half_reliability(rng.normal(size=(60, 30)), n_splits=50, seed=k)["rho_halves"]
           for k in range(20)]
    assert abs(np.mean(rho)) < 0.05 and np.std(rho) < 0.3
    # a strong effect with noise is reliable, and more images make it more reliable
    v = np.add.outer(np.zeros(200), np.linspace(0, 1, 10)) + rng.normal(0, 1.5, size=(200, 10))
    small, large = stats.split_half_reliability(v[:20]), stats.split_half_reliability(v)
    assert large["reliability"] > 0.9 and large["reliability"] > small["reliability"]
    assert large["ci_low"] <= large["reliability"] <= large["ci_high"]


def test_split_half_is_invariant_to_image_order_and_uses_whole_units():
    rng = np.random.default_rng(2)
    v = np.add.outer(np.zeros(30), np.linspace(0, 1, 8)) + rng.normal(0, 1, size=(30, 8))
    v[rng.random(v.shape) < 0.1] = np.nan
    ids = [f"s{i:02d}" for i in range(30)]
    perm = rng.permutation(30)
    a = stats.split_half_reliability(v, ids, seed=3)
    b = stats.split_half_reliability(v[perm], [ids[i] for i in perm], seed=3)
    assert a == b
    # subjects as units: two images of one subject always land in the same half, so a table whose
    # subjects hold two copies of one image equals the one-image-per-subject table
    subj = stats.split_half_reliability(np.repeat(v, 2, axis=0), [i for i in ids for _ in (0, 1)], seed=3)
    assert subj["reliability"] == pytest.approx(a["reliability"]) and subj["n_units"] == 30


def test_split_half_equals_an_independent_pandas_scipy_computation():
    rng = np.random.default_rng(4)
    v = np.add.outer(np.zeros(24), np.linspace(0, 1, 7)) + rng.normal(0, 1, size=(24, 7))
    v[0, 3] = np.nan
    units = [f"p{i // 2}" for i in range(24)]
    got = stats.split_half_reliability(v, units, n_splits=30, seed=9)
    df = pd.DataFrame(v).assign(unit=units)
    distinct = sorted(set(units))
    gen = np.random.default_rng(9)
    per_split = []
    for _ in range(30):
        first = {distinct[k] for k in gen.permutation(len(distinct))[: len(distinct) // 2]}
        ma = df[df.unit.isin(first)].drop(columns="unit").mean()
        mb = df[~df.unit.isin(first)].drop(columns="unit").mean()
        rho = scipy.stats.spearmanr(ma, mb).statistic
        per_split.append(max(-1.0, 2 * rho / (1 + rho)))
    assert got["reliability"] == pytest.approx(np.mean(per_split), abs=1e-12)
    assert [got["ci_low"], got["ci_high"]] == pytest.approx(np.percentile(per_split, [2.5, 97.5]), abs=1e-12)


def test_rank_stability_counts_draws():
    boots = np.array([[3.0, 2.0, 1.0]] * 8 + [[2.0, 3.0, 1.0]] * 2)
    r = stats.rank_stability(boots, [1, 2, 3])
    assert r["p_same"] == [0.8, 0.8, 1.0]
    assert r["interval"] == [[1, 2], [1, 2], [3, 3]]
    with pytest.raises(ShapeError):
        stats.rank_stability(boots, [1, 2])
    with pytest.raises(ConfigError):
        stats.split_half_reliability(boots, n_splits=0)
