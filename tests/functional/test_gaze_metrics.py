"""Gaze metrics: analytic cases, golden values from the published formulas, and parity with
pysaliency 0.2.22 on identical maps and fixations (when it is importable)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from gmxai_eval.errors import ConfigError
from gmxai_eval.functional import gaze as M
from gmxai_eval.functional.gaze_maps import centre_bias_map, density_map, fixation_map

try:
    import pysaliency
    from pysaliency.roc import general_roc
except Exception:  # pragma: no cover - depends on the environment
    pysaliency = None

needs_pysaliency = pytest.mark.skipif(pysaliency is None, reason="pysaliency is not importable")

H, W = 24, 32


def _case(seed=0, n=12):
    r = np.random.default_rng(seed)
    pts = np.column_stack([r.uniform(0, W, n), r.uniform(0, H, n)])
    pts[1] = pts[0]  # a duplicate fixation (MIT counts the pixel once)
    smap = r.normal(size=(H, W))
    return pts, smap, density_map(pts, (H, W), 2.0)


# ----------------------------------------------------------------------------------------------
# analytic cases

def test_constant_map_nss_cc_zero_and_auc_half():
    pts, _, dens = _case()
    c = np.full((H, W), 3.0)
    assert M.nss(c, pts) == 0.0 and M.cc(c, dens) == 0.0
    # a constant map puts every pixel at the single threshold: TPR = FPR = 1 -> area 0.5
    assert M.auc_judd(c, pts, "mit") == 0.5 and M.auc_judd(c, pts, "pysaliency") == 0.5
    assert M.auc_shuffled(c, pts, pts[::-1] * 0.5) == 0.5
    assert M.auc_borji(c, pts, np.random.default_rng(0)) == 0.5


def test_map_equal_to_density_sim_one_kl_zero_cc_one_emd_zero():
    _, _, dens = _case()
    for preset in ("mit", "pysaliency"):
        assert M.sim(dens, dens, preset) == pytest.approx(1.0, abs=1e-12)
        assert M.kl_div(dens, dens, preset) == pytest.approx(0.0, abs=1e-12)
    assert M.cc(dens, dens) == pytest.approx(1.0, abs=1e-12)
    assert M.emd(dens, dens) == 0.0


def test_indicator_of_fixations_gives_auc_one():
    pts, _, _ = _case()
    ind = (fixation_map(pts, (H, W)) > 0).astype(float)
    assert M.auc_judd(ind, pts, "mit") == 1.0
    assert M.auc_judd(ind, pts, "pysaliency") == 1.0
    assert M.auc_borji(ind, pts, np.random.default_rng(0), n_splits=5) > 0.99  # random pixels rarely hit
    assert M.auc_borji(ind, pts, np.random.default_rng(0), n_splits=5) == pytest.approx(
        1 - 0.5 * np.mean(ind), abs=0.05)  # expected: 1 - P(a random pixel is fixated) / 2


def test_nss_golden_value_and_presets():
    s = np.zeros((4, 4))
    s[1, 2] = 4.0  # mean 0.25, population std sqrt(15)/4 * ... computed below
    mu, sd = s.mean(), s.std()
    pts = np.array([[2.2, 1.7], [2.9, 1.1], [0.0, 0.0]])  # pixel (1,2) twice, (0,0) once
    z_hit, z_miss = (4 - mu) / sd, (0 - mu) / sd
    assert M.nss(s, pts, "fixation") == pytest.approx((2 * z_hit + z_miss) / 3, rel=1e-12)
    assert M.nss(s, pts, "mit") == pytest.approx((z_hit + z_miss) / 2, rel=1e-12)
    with pytest.raises(ConfigError, match="preset"):
        M.nss(s, pts, "tuebingen")


def test_auc_judd_golden_with_ties():
    s = np.array([[3.0, 2.0, 2.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    pts = np.array([[0.5, 0.5], [1.5, 0.5]])  # values 3 and 2; non-fixated: 2, 1, 0 x4
    # thresholds 3: TPR .5, FPR 0; 2: TPR 1, FPR 1/6 -> area = 1/6 * 0.75 ... trapezoid with (0,0),(0,.5),(1/6,1),(1,1)
    expected = 0.0 + (1 / 6) * (0.5 + 1.0) / 2 + (5 / 6) * 1.0
    assert M.auc_judd(s, pts, "mit") == pytest.approx(expected, rel=1e-12)


def test_roc_auc_all_thresholds_is_mann_whitney():
    r = np.random.default_rng(3)
    pos, neg = r.integers(0, 5, 40).astype(float), r.integers(0, 5, 60).astype(float)
    u = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert M.roc_auc(pos, neg, "all") == pytest.approx(u, rel=1e-12)


def test_sim_presets_differ_as_documented():
    s = np.array([[1.0, 2.0], [3.0, 4.0]])
    g = np.array([[0.0, 0.0], [0.5, 0.5]])
    # pysaliency: s/10 vs g -> min = 0 + 0 + .3 + .4 ; mit: (s-1)/3 -> [0,1/3,2/3,1]/2
    assert M.sim(s, g, "pysaliency") == pytest.approx(0.7, rel=1e-12)
    assert M.sim(s, g, "mit") == pytest.approx(1 / 3 + 0.5, rel=1e-12)


def test_kl_golden_value():
    p = np.array([[0.2, 0.8]])
    q = np.array([[0.5, 0.5]])
    exact = 0.5 * np.log(0.5 / 0.2) + 0.5 * np.log(0.5 / 0.8)
    assert M.kl_div(p, q, "mit") == pytest.approx(exact, rel=1e-9)
    assert M.kl_div(p, q, "pysaliency") == pytest.approx(exact, rel=1e-12)
    zero = np.array([[0.0, 1.0]])  # model puts no mass where the humans looked: MIT's eps bounds it
    assert M.kl_div(zero, q, "mit") == pytest.approx(0.5 * np.log(M.MIT_EPS + 0.5 / M.MIT_EPS) + 0.5 * np.log(M.MIT_EPS + 0.5), rel=1e-12)


def test_information_gain_golden_and_baseline_zero():
    pts, _, _ = _case()
    base = centre_bias_map((H, W))
    assert M.information_gain(base, pts, base, uniform_mix=1.0) == pytest.approx(
        np.mean(np.log2(1.0 / (H * W)) - np.log2(base[pts[:, 1].astype(int), pts[:, 0].astype(int)])), rel=1e-12)
    # the baseline itself (no uniform mixing to speak of) gains nothing over itself
    assert M.information_gain(base, pts, base, uniform_mix=1e-12) == pytest.approx(0.0, abs=1e-9)


def test_emd_point_masses_and_1d_wasserstein():
    a = np.zeros((1, 12))
    b = np.zeros((1, 12))
    a[0, 1], b[0, 9] = 1.0, 1.0
    assert M.emd(a, b, bins=12) == pytest.approx(8.0, abs=1e-6)  # one unit of mass, 8 pixels
    r = np.random.default_rng(0)
    u, v = r.random((1, 12)), r.random((1, 12))
    x = np.arange(12) + 0.5
    assert M.emd(u, v, bins=12) == pytest.approx(wasserstein_distance(x, x, u[0], v[0]), rel=1e-6)
    # a translated map: EMD equals the translation (pooled 2-d grid, interior blob)
    s = np.zeros((16, 16))
    s[4:6, 4:6] = 1.0
    t = np.roll(s, 4, axis=1)
    assert M.emd(s, t, bins=16) == pytest.approx(4.0, abs=1e-6)


def test_area_pool_preserves_mass_and_averages_blocks():
    r = np.random.default_rng(0)
    m = r.random((24, 32))
    p = M.area_pool(m, (6, 8))
    np.testing.assert_allclose(p, m.reshape(6, 4, 8, 4).sum((1, 3)), rtol=1e-12)
    assert M.area_pool(m, (7, 5)).sum() == pytest.approx(m.sum(), rel=1e-12)


def test_sauc_ignores_centre_bias_that_auc_rewards():
    pts, _, _ = _case()
    cb = centre_bias_map((H, W))
    # negatives drawn from the same distribution as the positives: sAUC of any map is 1/2
    assert M.auc_shuffled(cb, pts, pts.copy()) == pytest.approx(0.5, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# parity with pysaliency 0.2.22 (same maps, same fixations)

@needs_pysaliency
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("seed", [0, 1])
def test_pointwise_metrics_match_pysaliency(seed):
    pts, s, dens = _case(seed)
    xs, ys = pts[:, 0], pts[:, 1]
    assert M.nss(s, pts) == pytest.approx(pysaliency.metrics.NSS(s, xs, ys).mean(), rel=1e-12)
    assert M.cc(s, dens) == pytest.approx(pysaliency.metrics.CC(s, dens), rel=1e-12)
    assert M.sim(s, dens, "pysaliency") == pytest.approx(pysaliency.metrics.SIM(s, dens), rel=1e-12)
    assert M.kl_div(s, dens, "mit") == pytest.approx(pysaliency.metrics.MIT_KLDiv(s, dens), rel=1e-10)
    assert M.kl_div(s, dens, "pysaliency") == pytest.approx(
        pysaliency.metrics.image_based_kl_divergence(s, dens), rel=1e-10)
    neg = s[fixation_map(pts, (H, W)) == 0]
    pos = s[ys.astype(int), xs.astype(int)]
    assert M.roc_auc(pos, neg, "all") == pytest.approx(general_roc(pos, neg, judd=0)[0], rel=1e-12)
    assert M.auc_judd(s, pts, "pysaliency") == pytest.approx(general_roc(pos, neg, judd=1)[0], rel=1e-12)


class _FixedMaps(pysaliency.SaliencyMapModel if pysaliency else object):  # type: ignore[misc]
    """A pysaliency model returning fixed maps; stimulus i is an image filled with i."""

    def __init__(self, maps):
        super().__init__(caching=False)
        self.maps = maps

    def _saliency_map(self, stimulus):
        return self.maps[int(stimulus[0, 0])]


class _FixedDensity(pysaliency.Model if pysaliency else object):  # type: ignore[misc]
    def __init__(self, log_densities):
        super().__init__(caching=False)
        self.log_densities = log_densities

    def _log_density(self, stimulus):
        return self.log_densities[int(stimulus[0, 0])]


@needs_pysaliency
def test_model_level_metrics_match_pysaliency():
    r = np.random.default_rng(5)
    n_img = 3
    maps = [r.normal(size=(H, W)) for _ in range(n_img)]
    pts = [np.column_stack([r.uniform(0, W, 9), r.uniform(0, H, 9)]) for _ in range(n_img)]
    stimuli = pysaliency.Stimuli([np.full((H, W), float(i)) for i in range(n_img)])
    fx = pysaliency.Fixations.create_without_history(
        np.concatenate([p[:, 0] for p in pts]), np.concatenate([p[:, 1] for p in pts]),
        np.repeat(np.arange(n_img), 9))
    model = _FixedMaps(maps)
    judd = model.AUC_Judd(stimuli, fx, jitter=False)  # mean over images
    ours = np.mean([M.auc_judd(maps[i], pts[i], "pysaliency") for i in range(n_img)])
    assert ours == pytest.approx(judd, rel=1e-12)
    sauc = model.AUC_per_image(stimuli, fx, nonfixations="shuffled")
    for i in range(n_img):
        others = np.concatenate([pts[j] for j in range(n_img) if j != i])
        assert M.auc_shuffled(maps[i], pts[i], others, "pysaliency") == pytest.approx(sauc[i], rel=1e-12)
    # information gain of our density conversion over a centre-bias baseline, bits per fixation
    base = centre_bias_map((H, W))
    dens = [(1 - 0.01) * M.to_density(m) + 0.01 / m.size for m in maps]
    ig = _FixedDensity([np.log(d) for d in dens]).information_gains(
        stimuli, fx, baseline_model=_FixedDensity([np.log(base)] * n_img))
    for i in range(n_img):
        assert M.information_gain(maps[i], pts[i], base, 0.01) == pytest.approx(ig[fx.n == i].mean(), rel=1e-10)


def test_mit_step_auc_golden_value():
    # sampling is exhaustive here (as many other-image pixels as fixated pixels), so MIT's sAUC
    # is deterministic: positives {1, .5}, negatives {0, .5}, thresholds 1, .9, ..., 0
    s = np.array([[1.0, 0.5], [0.0, 0.5]])
    pos = np.array([[0.5, 0.5], [1.5, 0.5]])
    neg = np.array([[0.5, 1.5], [1.5, 1.5]])
    # ROC points (0,0) (0,.5) (.5,1) (1,1): 0.5 * (0.5 + 1) / 2 + 0.5 * 1
    assert M.auc_shuffled(s, pos, neg, "mit", np.random.default_rng(0), n_splits=3) == pytest.approx(0.875, abs=1e-12)
