"""The input-dependence kernel against analytic values and a naive reference (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.sanity import input_dependence


def _maps(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_maps_identical_between_images_score_zero_whatever_the_noise():
    a = _maps(4, 16, 16)
    partners = a.unsqueeze(1).repeat(1, 3, 1, 1)           # every image of the class: the same map
    identical = input_dependence(a, partners, a.unsqueeze(1).repeat(1, 2, 1, 1))
    noisy = input_dependence(a, partners, _maps(4, 2, 16, 16, seed=1))
    for r in (identical, noisy):
        assert torch.equal(r.scores, torch.zeros(4, dtype=torch.float64))
        assert torch.equal(r.between, torch.zeros(4, dtype=torch.float64))
    assert (noisy.noise > 0.5).all()


def test_maps_stable_under_noise_and_different_between_images_score_one():
    a = _maps(3, 16, 16)
    r = input_dependence(a, _maps(3, 2, 16, 16, seed=5), a.unsqueeze(1).clone())
    assert torch.equal(r.scores, torch.ones(3, dtype=torch.float64))


def test_independent_random_maps_score_one_half():
    """Partners and noisy copies independent of ``a`` and of each other: both dissimilarities are
    1 - (Spearman of independent maps ~ N(0, 1/n)) -> score 1/2 (n = 4096 pixels: +- 0.03)."""
    a = _maps(8, 64, 64)
    r = input_dependence(a, _maps(8, 4, 64, 64, seed=1), _maps(8, 4, 64, 64, seed=2))
    assert torch.allclose(r.scores, torch.full((8,), 0.5, dtype=torch.float64), atol=0.03)


def test_matches_a_naive_scipy_reference():
    a, p, n = _maps(3, 12, 10) - 0.5, _maps(3, 2, 12, 10, seed=1) - 0.5, _maps(3, 3, 12, 10, seed=2) - 0.5
    a_noisy = a.unsqueeze(1) + 0.3 * n                     # noisy copies correlated with a
    r = input_dependence(a, p, a_noisy)
    for i in range(3):
        def d(u, v):
            return 1.0 - spearmanr(np.abs(u.flatten().numpy()), np.abs(v.flatten().numpy())).statistic
        db = np.mean([d(a[i], p[i, k]) for k in range(2)])
        dn = np.mean([d(a[i], a_noisy[i, k]) for k in range(3)])
        assert r.between[i].item() == pytest.approx(db, abs=1e-9)
        assert r.noise[i].item() == pytest.approx(dn, abs=1e-9)
        assert r.scores[i].item() == pytest.approx(db / (db + dn), abs=1e-9)


def test_constant_maps_follow_zero_unless_equal():
    z = torch.zeros(2, 8, 8)
    other = _maps(2, 1, 8, 8)
    # a zero map and a zero partner are identical (similarity 1); a non-constant one is not (0)
    r = input_dependence(z, torch.cat([z.unsqueeze(1), other], 1), z.unsqueeze(1))
    assert torch.equal(r.between, torch.full((2,), 0.5, dtype=torch.float64))
    assert torch.equal(r.scores, torch.ones(2, dtype=torch.float64))


def test_rounding_below_atol_counts_as_zero():
    a = _maps(2, 8, 8)
    tiny = a.unsqueeze(1) * (1 + 1e-7)                     # same ranks: 1 - s is rounding only
    r = input_dependence(a, tiny, tiny)
    assert torch.equal(r.scores, torch.zeros(2, dtype=torch.float64))


def test_no_partner_is_nan_and_bad_input_raises():
    a = _maps(2, 8, 8)
    r = input_dependence(a, a[:, None, :, :][:, :0], a.unsqueeze(1))
    assert torch.isnan(r.scores).all()
    with pytest.raises(ShapeError, match="partner_maps"):
        input_dependence(a, a, a.unsqueeze(1))
    with pytest.raises(ShapeError, match="noisy_maps"):
        input_dependence(a, a.unsqueeze(1), a[:1].unsqueeze(1))
    with pytest.raises(ConfigError, match="atol"):
        input_dependence(a, a.unsqueeze(1), a.unsqueeze(1), atol=-1.0)
    with pytest.raises(ConfigError, match="similarity"):
        input_dependence(a, a.unsqueeze(1), a.unsqueeze(1), similarity=3)
