"""Kernels of the in-distribution patch truth (IDSDS) and of the known-order test, against
analytic models and SciPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau, spearmanr
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.known_order import degrade_maps, known_order_statistic, known_order_tau
from gmxai_eval.functional.patches import (cumulative_patch_curve, delete_patches, patch_index, patch_sums,
                                           patch_truth_score, random_patch_masks, single_patch_drops)

H = W = 16
GRID = 4  # 16 patches of 4 x 4 px


class OneRegion(nn.Module):
    """Logit 0 = sum of the pixels of patch ``region`` with positive weights; logit 1 = 0: the
    model reads exactly one region."""

    def __init__(self, region: int) -> None:
        super().__init__()
        w = torch.zeros(3, H, W)
        w[:, patch_index(H, W, GRID) == region] = torch.linspace(0.5, 1.5, 3 * 16).view(3, 16)
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.w).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def _x(b: int = 3) -> torch.Tensor:
    return 0.2 + 0.8 * torch.rand(b, 3, H, W, generator=torch.Generator().manual_seed(0))


def test_patch_truth_of_a_one_region_model_puts_that_region_first():
    model, x = OneRegion(region=6).eval(), _x()
    idx = patch_index(H, W, GRID)
    drops = single_patch_drops(model, x, torch.zeros(3, dtype=torch.long), idx, GRID * GRID, torch.zeros_like(x),
                               max_batch=7)
    assert drops.shape == (3, 16)
    assert (drops.argmax(1) == 6).all()
    expected = (x * model.w).flatten(1).sum(1).double()  # deleting region 6 to black removes its whole logit
    torch.testing.assert_close(drops[:, 6], expected, rtol=1e-5, atol=1e-5)
    others = torch.cat([drops[:, :6], drops[:, 7:]], 1)
    assert others.abs().max() < 1e-5
    # gradient x input is exact for this linear model: its patch sums are the drops -> Spearman 1
    gxi = (x * model.w).sum(1)
    torch.testing.assert_close(patch_truth_score(gxi, drops.round(decimals=5), idx),
                               torch.ones(3, dtype=torch.float64))


def test_spearman_score_matches_scipy_on_naive_patch_sums():
    g = torch.Generator().manual_seed(1)
    maps, drops = torch.randn(5, H, W, generator=g), torch.randn(5, 16, generator=g).double()
    drops[0, :4] = 0.25  # ties are average ranks, as in SciPy
    idx = patch_index(H, W, GRID)
    for relevance in ("signed", "abs"):
        got = patch_truth_score(maps, drops, idx, relevance)
        for i in range(5):
            a = maps[i].abs() if relevance == "abs" else maps[i]
            naive = [float(a[r * 4:(r + 1) * 4, c * 4:(c + 1) * 4].sum()) for r in range(4) for c in range(4)]
            assert got[i].item() == pytest.approx(spearmanr(naive, drops[i].numpy()).statistic, abs=1e-10)
    # a constant map has no ranking: NaN, never a number
    assert torch.isnan(patch_truth_score(torch.ones(1, H, W), drops[:1], idx)).all()


def test_patch_grid_sums_and_deletion():
    idx = patch_index(112, 112, 8)  # the default: 8 x 8 patches of 14 px
    assert idx.max() == 63 and (idx[:14, :14] == 0).all() and (idx[14:28, :14] == 8).all()
    m = torch.rand(2, 112, 112)
    torch.testing.assert_close(patch_sums(m, idx, 64).sum(1), m.double().flatten(1).sum(1))
    x = torch.rand(2, 3, 112, 112)
    deleted = torch.zeros(2, 64, dtype=torch.bool)
    deleted[1, 9] = True
    y = delete_patches(x, deleted, idx, torch.zeros_like(x))
    assert torch.equal(y[0], x[0]) and (y[1][:, 14:28, 14:28] == 0).all()
    assert int((y[1] != x[1]).any(0).sum()) == 14 * 14
    with pytest.raises(ConfigError, match="grid"):
        patch_index(16, 16, 0)
    with pytest.raises(ShapeError):
        patch_sums(torch.rand(1, 8, 8), idx, 64)


def test_random_patch_masks_are_keyed_and_bounded():
    gens = lambda: [torch.Generator().manual_seed(s) for s in range(200)]  # noqa: E731
    a, b = random_patch_masks(64, gens(), 0.5), random_patch_masks(64, gens(), 0.5)
    assert torch.equal(a, b)
    share = a.double().mean(1)
    assert share.max() <= 0.5 + 1e-9 and share.min() >= 0
    assert 0.2 < float(share.mean()) < 0.3  # u ~ U(0, 0.5): mean share 0.25


def test_cumulative_patch_curve_deletes_the_read_region_first_for_morf_and_last_for_lerf():
    model, x = OneRegion(region=6).eval(), _x(2)
    idx = patch_index(H, W, GRID)
    t = torch.zeros(2, dtype=torch.long)
    exact = (x * model.w).sum(1)
    fill = torch.zeros_like(x)
    morf, frac = cumulative_patch_curve(model, x, t, exact, idx, 16, fill, order="morf", steps=16)
    lerf, _ = cumulative_patch_curve(model, x, t, exact, idx, 16, fill, order="lerf", steps=16)
    p0 = torch.softmax(model(x), 1)[:, 0].double()
    torch.testing.assert_close(frac, torch.arange(17, dtype=torch.float64) / 16)
    torch.testing.assert_close(morf[:, 0], p0)
    torch.testing.assert_close(morf[:, 1:], torch.full((2, 16), 0.5, dtype=torch.float64))  # logits equal
    torch.testing.assert_close(lerf[:, :16], p0[:, None].expand(2, 16))
    assert torch.allclose(lerf[:, 16], torch.full((2,), 0.5, dtype=torch.float64))


def test_degrade_maps_keeps_values_and_randomises_the_share_asked():
    m = torch.randn(4, 32, 32, generator=torch.Generator().manual_seed(0))
    for level in (0.0, 0.25, 0.5, 1.0):
        d = degrade_maps(m, level, [torch.Generator().manual_seed(i) for i in range(4)])
        assert torch.equal(d.flatten(1).sort(1).values, m.flatten(1).sort(1).values)  # distribution kept
        moved = (d != m).double().mean().item()
        assert moved == pytest.approx(level * (1 - 1 / (level * 1024)) if level else 0.0, abs=0.03)
    again = degrade_maps(m, 0.5, [torch.Generator().manual_seed(i) for i in range(4)])
    assert torch.equal(again, degrade_maps(m, 0.5, [torch.Generator().manual_seed(i) for i in range(4)]))
    with pytest.raises(ConfigError):
        degrade_maps(m, 1.5, [torch.Generator() for _ in range(4)])


def test_known_order_tau_matches_scipy_and_the_statistic_recovers_a_planted_order():
    rng = np.random.default_rng(0)
    levels = [0.0, 0.25, 0.5, 0.75, 1.0]
    a = rng.normal(size=(6, 5))
    a[0, 1] = a[0, 2]  # a tie
    got = known_order_tau(a, levels)
    for r in range(6):
        assert got[r] == pytest.approx(kendalltau(a[r], -np.asarray(levels)).statistic)
    # per-image scores that fall with the level (lower is better here) plus noise
    n = 40
    base = np.array(levels)[None, :] + 0.3 * rng.normal(size=(n, 5))
    vals = np.concatenate([base, base[:, ::-1]], 1)  # a second series stored in reverse column order
    res = known_order_statistic(vals, [[0, 1, 2, 3, 4], [9, 8, 7, 6, 5]], [levels, levels],
                                higher_is_better=False, n_boot=500)
    assert res["tau"] == 1.0 and res["per_series"] == [1.0, 1.0]
    assert 0.5 < res["ci_low"] <= res["ci_high"] <= 1.0
    flipped = known_order_statistic(vals, [[0, 1, 2, 3, 4]], [levels], higher_is_better=True, n_boot=200)
    assert flipped["tau"] == -1.0


def test_the_kernels_doctests_pass():
    import doctest

    import gmxai_eval.functional.known_order as ko
    import gmxai_eval.functional.patches as pt

    for mod in (pt, ko):
        res = doctest.testmod(mod)
        assert res.attempted > 0 and res.failed == 0, mod.__name__
