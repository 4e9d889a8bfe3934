"""Counterfactual kernels against hand-computed values on an additive toy score."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy.stats import spearmanr

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional import counterfactual as CF

# two images: image 0 has 3 traits with additive score contributions, image 1 has 1 trait
WEIGHTS = [[0.5, 0.1, 0.3], [0.2, float("nan"), float("nan")]]
VALID = torch.tensor([[True, True, True], [True, False, False]])


def additive_score(rows, off):
    """s(image i without traits off) = 0.95 - sum of the removed traits' weights."""
    return torch.tensor([0.95 - sum(WEIGHTS[i][j] for j in o) for i, o in zip(rows, off)], dtype=torch.float64)


def test_importance_is_the_single_trait_drop():
    imp = CF.interventional_importance(additive_score, VALID)
    assert torch.allclose(imp[0], torch.tensor([0.5, 0.1, 0.3], dtype=torch.float64))
    assert imp[1, 0].item() == pytest.approx(0.2) and imp[1, 1:].isnan().all()


def test_trait_mass_parts():
    maps = torch.tensor([[[1.0, -2.0], [3.0, 0.5]]])
    masks = torch.tensor([[[[True, True], [False, False]], [[False, True], [True, True]]]])
    valid = torch.tensor([[True, True]])
    assert CF.trait_mass(maps, masks, valid).tolist() == [[1.0, 3.5]]
    assert CF.trait_mass(maps, masks, valid, "signed").tolist() == [[-1.0, 1.5]]
    assert CF.trait_mass(maps, masks, valid, "abs").tolist() == [[3.0, 5.5]]
    with pytest.raises(ConfigError, match="part"):
        CF.trait_mass(maps, masks, valid, "square")


def test_region_rank_matches_scipy_and_gives_nan_below_two_traits():
    mass = torch.tensor([[2.0, 9.0, 4.0], [1.0, float("nan"), float("nan")]], dtype=torch.float64)
    imp = CF.interventional_importance(additive_score, VALID)
    r = CF.region_rank(mass, imp, VALID)
    assert r[0].item() == pytest.approx(spearmanr([2.0, 9.0, 4.0], [0.5, 0.1, 0.3])[0])
    assert r[1].isnan()
    assert CF.region_rank(imp.nan_to_num(), imp, VALID)[0].item() == pytest.approx(1.0)


def test_order_by_breaks_ties_with_the_tiebreak_and_keeps_padding_last():
    values = torch.tensor([[1.0, 3.0, 1.0], [5.0, 0.0, 0.0]])
    tb = torch.tensor([[0.1, 0.5, 0.9], [0.0, 0.0, 0.0]])
    assert CF.order_by(values, VALID, tb).tolist() == [[1, 2, 0], [0, 1, 2]]


def test_deletion_auc_by_hand_and_the_best_order_is_the_importance_order():
    order = torch.tensor([[0, 2, 1], [0, 1, 2]])
    curves = CF.deletion_curves(additive_score, order, VALID)
    want0 = [0.95, 0.45, 0.15, 0.05]
    assert torch.allclose(curves[0], torch.tensor(want0, dtype=torch.float64))
    assert curves[1, :2].tolist() == pytest.approx([0.95, 0.75]) and curves[1, 2:].isnan().all()
    auc = CF.normalised_auc(curves, VALID)
    hand = ((0.95 + 0.45) / 2 + (0.45 + 0.15) / 2 + (0.15 + 0.05) / 2) / 3
    assert auc[0].item() == pytest.approx(hand) and auc[1].isnan()
    # for an additive score the decreasing-importance order minimises the area over all orders
    areas = {}
    for p in itertools.permutations(range(3)):
        o = torch.tensor([list(p), [0, 1, 2]])
        areas[p] = CF.normalised_auc(CF.deletion_curves(additive_score, o, VALID), VALID)[0].item()
    assert min(areas, key=areas.get) == (0, 2, 1)


def test_class_score_outputs():
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    t = torch.tensor([1, 1])
    assert CF.class_score(logits, t, "logit").tolist() == [1.0, 0.0]
    assert torch.allclose(CF.class_score(logits, t), logits.double().softmax(1)[:, 1])
    with pytest.raises(ConfigError):
        CF.class_score(logits, t, "odds")


def test_bad_shapes_raise():
    with pytest.raises(ShapeError, match="valid"):
        CF.interventional_importance(additive_score, torch.tensor([[False, True]]))
    with pytest.raises(ShapeError, match="permute"):
        CF.deletion_curves(additive_score, torch.tensor([[0, 0, 1], [0, 1, 2]]), VALID)
    with pytest.raises(ShapeError, match="scores"):
        CF.interventional_importance(lambda rows, off: torch.zeros(1), VALID)
