"""Localisation evaluators: parity with Quantus 0.6.0, analytic values, invariances, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators import EvalBatch, create_evaluator
from gmxai_eval.functional import localisation as L

quantus = pytest.importorskip("quantus")

NAMES = ["relevance_mass_accuracy", "relevance_rank_accuracy", "pointing_game", "energy_pointing_game",
         "localisation_auc", "top_k_intersection"]


class _NoForward(nn.Module):
    """A model that fails if called: localisation must never need a forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - must not run
        raise AssertionError("forward pass")


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 16, 16, generator=g)  # continuous: no ties (Quantus breaks ties arbitrarily)
    s = torch.zeros(6, 16, 16, dtype=torch.bool)
    for i in range(6):
        s[i, i:i + 6, 2 + i:10 + i] = True
    x = torch.rand(6, 1, 16, 16, generator=g)
    return x, a, s


def _quantus(metric, x, a, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(model=None, x_batch=x.numpy(), y_batch=np.zeros(len(x), int), a_batch=a[:, None].numpy(),
                     s_batch=s[:, None].numpy().astype(float), channel_first=True, batch_size=len(x))
    return torch.tensor(np.asarray(out, dtype=np.float64))


_QKW = dict(abs=False, normalise=False, disable_warnings=True, return_aggregate=False)


@pytest.mark.parametrize("name, quantus_metric, quantus_map, kw", [
    ("relevance_mass_accuracy", lambda: quantus.RelevanceMassAccuracy(**_QKW), lambda a: a.clamp_min(0), {}),
    ("relevance_rank_accuracy", lambda: quantus.RelevanceRankAccuracy(**_QKW), lambda a: a, {}),
    ("pointing_game", lambda: quantus.PointingGame(weighted=False, **_QKW), lambda a: a, {"ties": "any"}),
    ("energy_pointing_game", lambda: quantus.AttributionLocalisation(
        weighted=False, max_size=1.0, positive_attributions=True, **_QKW), lambda a: a, {}),
    ("localisation_auc", lambda: quantus.AUC(**_QKW), lambda a: a, {}),
    ("top_k_intersection", lambda: quantus.TopKIntersection(k=25, concept_influence=False, **_QKW), lambda a: a,
     {"k": 25}),
    ("top_k_intersection", lambda: quantus.TopKIntersection(k=25, concept_influence=True, **_QKW), lambda a: a,
     {"k": 25, "concept_influence": True}),
])
def test_parity_with_quantus(data, name, quantus_metric, quantus_map, kw):
    x, a, s = data
    ours = create_evaluator(name, **kw)(_NoForward(), x, torch.zeros(6, dtype=torch.long), a, masks=s).scores
    ref = _quantus(quantus_metric(), x, quantus_map(a), s)
    # AttributionLocalisation adds 1e-9 to the denominator: relative 1e-5 covers it
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=0)


def test_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (4, 10, 10), generator=g).double()  # heavy ties
    s = torch.rand(4, 10, 10, generator=g) > 0.6
    ref = torch.tensor([roc_auc_score(s[i].flatten().numpy(), a[i].flatten().numpy()) for i in range(4)],
                       dtype=torch.float64)
    torch.testing.assert_close(L.mask_roc_auc(a, s), ref)


def test_ground_truth_map_scores_best(data):
    x, _, s = data
    oracle = s.float()
    t = torch.zeros(6, dtype=torch.long)
    expect = {"relevance_mass_accuracy": 1.0, "relevance_rank_accuracy": 1.0, "energy_pointing_game": 1.0,
              "localisation_auc": 1.0}
    for name, v in expect.items():
        torch.testing.assert_close(create_evaluator(name)(_NoForward(), x, t, oracle, masks=s).scores,
                                   torch.full((6,), v, dtype=torch.float64))
    # pointing: a smooth oracle (mask + tiny bump) has a unique arg-max inside -> hit
    bump = oracle + 1e-3 * torch.rand(6, 16, 16) * oracle
    torch.testing.assert_close(create_evaluator("pointing_game", ties="nan")(_NoForward(), x, t, bump, masks=s).scores,
                               torch.ones(6, dtype=torch.float64))
    # top-k with k <= |s| is a perfect 1; the inverted map scores 0
    assert create_evaluator("top_k_intersection", k=20)(_NoForward(), x, t, oracle, masks=s).scores.eq(1).all()
    assert create_evaluator("top_k_intersection", k=20)(_NoForward(), x, t, -oracle, masks=s).scores.eq(0).all()


def test_constant_map_pointing_game_conventions(data):
    x, _, s = data
    const = torch.full((6, 16, 16), 0.5)  # Quantus refuses all-ones / all-zero maps
    chance = s.flatten(1).double().mean(1)
    torch.testing.assert_close(L.pointing_game(const, s, ties="fraction"), chance)  # chance level
    assert torch.isnan(L.pointing_game(const, s, ties="nan")).all()
    assert L.pointing_game(const, s, ties="any").eq(1).all()  # "any": a constant map always hits
    # Quantus's convention is "any": a map with two tied maxima, one inside and one outside, hits
    a = torch.rand(6, 16, 16, generator=torch.Generator().manual_seed(3)) * 0.5
    for i in range(6):
        inside = torch.nonzero(s[i])[0]
        a[i, inside[0], inside[1]] = 1.0
        a[i, 15, 0] = 1.0  # outside every mask
    assert not s[:, 15, 0].any()
    ref = _quantus(quantus.PointingGame(weighted=False, **_QKW), x, a, s)
    torch.testing.assert_close(L.pointing_game(a, s, ties="any"), ref)
    torch.testing.assert_close(L.pointing_game(a, s), torch.full((6,), 0.5, dtype=torch.float64))


def test_quantus_pointing_game_scores_empty_mask_as_hit(data):
    """The defect: Quantus writes NaN into a bool array, which becomes True (a hit)."""
    x, a, s = data
    s = s.clone()
    s[0] = False
    a = a.clone()
    a[0] = a[0].abs() + 1.0  # keep maps positive somewhere
    ref = _quantus(quantus.PointingGame(weighted=False, **_QKW), x, a, s)
    assert ref[0] == 1.0  # Quantus: a hit on an empty mask
    ours = L.pointing_game(a, s)
    assert torch.isnan(ours[0]) and not torch.isnan(ours[1:]).any()


def test_empty_mask_raises_or_nan(data):
    x, a, s = data
    s = s.clone()
    s[2] = False
    t = torch.zeros(6, dtype=torch.long)
    for name in NAMES:
        with pytest.raises(ShapeError, match="non-empty"):
            create_evaluator(name)(_NoForward(), x, t, a, masks=s)
        r = create_evaluator(name, on_empty="nan")(_NoForward(), x, t, a, masks=s)
        assert torch.isnan(r.scores[2]) and torch.isfinite(r.scores[[0, 1, 3, 4, 5]]).all()


def test_mask_shape_mismatch_raises_before_forward(data):
    x, a, s = data
    t = torch.zeros(6, dtype=torch.long)
    for bad in (s[:, :8], s.float()):
        with pytest.raises(ShapeError):
            create_evaluator("pointing_game")(_NoForward(), x, t, a, masks=bad)
    batch = EvalBatch(_NoForward(), x, t, {"m": a}, masks=s, region_masks=s[:, None, :8], region_names=("eyes",))
    with pytest.raises(ShapeError, match="region_masks"):
        create_evaluator("relevance_mass_accuracy").evaluate(batch)
    with pytest.raises(ConfigError):
        create_evaluator("pointing_game", ties="first")
    with pytest.raises(ConfigError):
        create_evaluator("top_k_intersection", k=1.5)


def test_per_region_extras_and_region_as_scoring_mask(data):
    x, a, s = data
    t = torch.zeros(6, dtype=torch.long)
    regions = torch.stack([s, ~s], 1)
    names = ("inner", "outer")
    batch = EvalBatch(_NoForward(), x, t, {"m": a, "neg": -a}, masks=s, region_masks=regions, region_names=names)
    out = create_evaluator("relevance_mass_accuracy").evaluate(batch)
    for m, maps in (("m", a), ("neg", -a)):
        r = out[m]
        torch.testing.assert_close(r.extras["region/inner"], L.relevance_mass_accuracy(maps, s))
        torch.testing.assert_close(r.extras["region/outer"], L.relevance_mass_accuracy(maps, ~s))
        # inner + outer mass add up to 1 (a partition of the image)
        torch.testing.assert_close(r.extras["region/inner"] + r.extras["region/outer"], torch.ones(6, dtype=torch.float64))
    by_region = create_evaluator("relevance_mass_accuracy", mask="outer").evaluate(batch)["m"].scores
    torch.testing.assert_close(by_region, L.relevance_mass_accuracy(a, ~s))
    with pytest.raises(ConfigError, match="region"):
        create_evaluator("relevance_mass_accuracy", mask="nose").evaluate(batch)


@pytest.mark.parametrize("name", NAMES)
def test_batch_order_and_split_invariance(data, name):
    x, a, s = data
    t = torch.zeros(6, dtype=torch.long)
    ev = create_evaluator(name)
    full = ev(_NoForward(), x, t, a, masks=s).scores
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(ev(_NoForward(), x[perm], t, a[perm], masks=s[perm]).scores, full[perm])
    halves = torch.cat([ev(_NoForward(), x[i:i + 3], t[:3], a[i:i + 3], masks=s[i:i + 3]).scores for i in (0, 3)])
    torch.testing.assert_close(halves, full)
