"""Similarity kernels against SciPy / scikit-image on identical inputs, plus analytic values."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.feature import hog
from skimage.metrics import structural_similarity

from gmxai_eval.errors import ShapeError
from gmxai_eval.functional.similarity import (
    SIMILARITIES, hog_features, minmax, pearson, rankdata, spearman, ssim, topk_iou)


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 40, 36, generator=g, dtype=torch.float64)
    b = a + 0.5 * torch.rand(3, 40, 36, generator=g, dtype=torch.float64)
    a[0, :12] = 0.25  # ties
    b[1, 5:9] = 0.0
    return a, b


def test_rankdata_matches_scipy_with_ties(pair):
    a, _ = pair
    for i in range(3):
        np.testing.assert_allclose(rankdata(a[i:i + 1].reshape(1, -1))[0].numpy(),
                                   scipy.stats.rankdata(a[i].numpy().ravel()))


def test_spearman_and_pearson_match_scipy(pair):
    a, b = pair
    s, p = spearman(a, b), pearson(a, b)
    for i in range(3):
        assert s[i].item() == pytest.approx(scipy.stats.spearmanr(a[i].ravel(), b[i].ravel())[0], rel=1e-12)
        assert p[i].item() == pytest.approx(scipy.stats.pearsonr(a[i].ravel(), b[i].ravel())[0], rel=1e-12)


def test_spearman_constant_row_is_nan():
    a = torch.ones(1, 10)
    assert torch.isnan(spearman(a, torch.arange(10.0)[None])).all()


def test_ssim_gaussian_matches_skimage(pair):
    a, b = pair
    ours = ssim(a, b, gaussian=True, data_range=1.0)
    for i in range(3):
        ref = structural_similarity(a[i].numpy(), b[i].numpy(), gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, rel=1e-10, abs=1e-12)


def test_ssim_uniform_joint_range_matches_skimage(pair):
    a, b = pair
    ours = ssim(a, b, gaussian=False, win_size=7, data_range=None)
    for i in range(3):
        rng = float(np.ptp(np.concatenate([a[i].numpy(), b[i].numpy()])))
        ref = structural_similarity(a[i].numpy(), b[i].numpy(), win_size=7, data_range=rng)
        assert ours[i].item() == pytest.approx(ref, rel=1e-8)


def test_ssim_of_identical_maps_is_one(pair):
    a, _ = pair
    np.testing.assert_allclose(ssim(minmax(a), minmax(a)).numpy(), 1.0, rtol=0, atol=1e-12)


def test_ssim_too_small_raises():
    with pytest.raises(ShapeError, match="at least 11x11"):
        ssim(torch.rand(1, 8, 8), torch.rand(1, 8, 8))


@pytest.mark.parametrize("ppc,cpb", [(16, 2), (8, 2), (8, 3), (16, 1)])
def test_hog_matches_skimage(pair, ppc, cpb):
    a, _ = pair
    f = hog_features(a, pixels_per_cell=ppc, cells_per_block=cpb)
    for i in range(3):
        ref = hog(a[i].numpy(), orientations=9, pixels_per_cell=(ppc, ppc), cells_per_block=(cpb, cpb),
                  block_norm="L2-Hys", feature_vector=True)
        # skimage accumulates its cell histograms in float32
        np.testing.assert_allclose(f[i].numpy(), ref, rtol=0, atol=5e-7)


def test_topk_iou_analytic():
    a = torch.arange(100.0).reshape(1, 10, 10)
    b = a.flip(-1).flip(-2)  # top 10 of a = last row, of b = first row
    assert topk_iou(a, a, fraction=0.1).item() == 1.0
    assert topk_iou(a, b, fraction=0.1).item() == 0.0
    c = a.clone()
    c[0, 9, :5] = -1000.0  # still in the top by |value|
    c[0, 0, :5] = 0.5      # tiny
    assert topk_iou(a, c, fraction=0.1).item() == pytest.approx(1.0)
    d = a.clone()
    d[0, 9, :5] = 0.0  # 5 of 10 leave the top; 5 others (row 8, 95..99 -> 85..89) enter
    assert topk_iou(a, d, fraction=0.1).item() == pytest.approx(5 / 15)


def test_registered_similarities_are_one_on_identical_maps(pair):
    a, _ = pair
    for name in SIMILARITIES.list():
        out = SIMILARITIES.create(name)(a, a, hog_pixels_per_cell=8, hog_cells_per_block=2)
        np.testing.assert_allclose(out.numpy(), 1.0, atol=1e-12, err_msg=name)


def test_registered_similarities_equal_their_kernels(pair):
    a, b = pair
    a = a - 0.7  # signed maps
    opts = {"hog_pixels_per_cell": 8, "hog_cells_per_block": 2, "topk_fraction": 0.2}
    expected = {
        "spearman_abs": spearman(a.abs(), b.abs()),
        "spearman": spearman(a, b),
        "ssim": ssim(minmax(a.abs()), minmax(b.abs())),
        "hog": spearman(hog_features(minmax(a.abs()), pixels_per_cell=8, cells_per_block=2),
                        hog_features(minmax(b.abs()), pixels_per_cell=8, cells_per_block=2)),
        "topk_iou": topk_iou(a, b, fraction=0.2),
    }
    assert sorted(expected) == SIMILARITIES.list()
    for name, ref in expected.items():
        sim = SIMILARITIES.create(name)
        np.testing.assert_allclose(sim(a, b, **opts).numpy(), ref.numpy(), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(sim.compare(sim.prepare(a, **opts), sim.prepare(b, **opts)).numpy(),
                                   ref.numpy(), rtol=1e-12, err_msg=name)
