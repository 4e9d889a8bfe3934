"""eMPRT on degenerate maps: the card's table (NaN for a constant original map, -1 for a map that
becomes constant), never +-inf (it returned +inf/-inf before)."""

from __future__ import annotations

import math

import torch

from gmxai_eval.evaluators import EVALUATORS, EvalBatch
from gmxai_eval.functional.randomisation import discrete_entropy, emprt_score


def test_emprt_score_table():
    h0 = torch.tensor([0.0, 2.0, 2.0, 0.0])
    h1 = torch.tensor([1.5, 0.0, 3.0, 0.0])
    s = emprt_score(h0, h1)
    assert math.isnan(s[0]) and math.isnan(s[3])
    assert s[1].item() == -1.0 and s[2].item() == 0.5  # analytic: (3 - 2) / 2


def test_constant_maps_give_nan_not_inf(seqnet, images, gradient):
    target = torch.tensor([0, 1, 2, 3])
    const = torch.full((4, 32, 32), 0.25)
    assert discrete_entropy(const).eq(0).all()
    batch = EvalBatch(seqnet, images, target, {"c": const}, explainers={"c": gradient})
    r = EVALUATORS.create("efficient_mprt", target="batch").evaluate(batch)["c"]
    assert r.scores.isnan().all() and r.n_nan == 4
