"""Interventional Shapley values of planted traits and the Shapley overlap score: efficiency,
a brute-force enumeration over orderings, analytic values on the additive block world."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from gmxai_eval.evaluators.base import create_evaluator, evaluator_card
from gmxai_eval.functional.counterfactual import shapley_overlap, shapley_values, unit_shares

from counterfactual_toys import BLOCKS, S, W
from test_counterfactual_evaluators import ToyRenderer, painted, toy_batch


def random_game(n_per_row, seed=0):
    """A non-additive game per row: ``v[(row, off)]`` uniform in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    v = {}
    for i, n in enumerate(n_per_row):
        for k in range(n + 1):
            for off in itertools.combinations(range(n), k):
                v[(i, frozenset(off))] = float(torch.rand(1, generator=g))
    return v


def test_shapley_matches_brute_force_and_is_efficient():
    ns = [4, 2, 3, 1, 0]
    v = random_game(ns)
    valid = torch.tensor([[j < n for j in range(4)] for n in ns])
    calls = []

    def score(rows, off):
        calls.append(len(rows))
        return torch.tensor([v[(i, o)] for i, o in zip(rows, off)], dtype=torch.float64)

    phi = shapley_values(score, valid)
    for i, n in enumerate(ns):
        got = phi[i, :n].tolist()
        # brute force over the n! orderings in which traits are switched on: the marginal
        # contribution of j is v(on + j) - v(on), i.e. s(off - j) - s(off)
        exact = []
        for j in range(n):
            tot = 0.0
            for perm in itertools.permutations(range(n)):
                on = set(perm[:perm.index(j)])
                off_before = frozenset(range(n)) - on
                tot += v[(i, off_before - {j})] - v[(i, off_before)]
            exact.append(tot / math.factorial(n))
        assert got == pytest.approx(exact, abs=1e-12)
        assert sum(got) == pytest.approx(v[(i, frozenset())] - v[(i, frozenset(range(n)))], abs=1e-12)
        assert torch.isnan(phi[i, n:]).all()
    assert sum(calls) == sum(2 ** n for n in ns)  # every subset once


def test_shapley_of_the_additive_block_world_is_the_weights():
    batch = toy_batch({"m": torch.zeros(3, S, S)})
    ev = create_evaluator("counterfactual_shapley", output="logit")
    phi = ev.shapley(batch)
    for i, sid in enumerate(ToyRenderer.TRAITS):
        assert phi[i, :len(ToyRenderer.TRAITS[sid])].tolist() == pytest.approx([W[t] for t in ToyRenderer.TRAITS[sid]])


def test_overlap_analytic_on_the_block_world():
    truth = painted(W)  # mass on each trait proportional to its weight, none on the rest
    rest = truth.clone()
    rest[(1, *BLOCKS["b"])] = truth[1].sum() / 16  # image s1: as much mass again on block b (not a trait)
    out = create_evaluator("counterfactual_shapley", output="logit").evaluate(
        toy_batch({"truth": truth, "rest": rest, "zero": torch.zeros(3, S, S)}))
    assert out["truth"].scores.tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert out["rest"].scores[1].item() == pytest.approx(0.5)  # half the mass wasted on the rest
    assert out["rest"].extras["trait_share"][1].item() == pytest.approx(0.5)
    assert torch.isnan(out["zero"].scores).all()
    # the uniform floor of s1: traits c (32 px), a (16 px), rest 16 px; truth shares 2/5, 3/5, 0
    # (the block logit is 0 with every trait off, so the rest carries none of the score)
    assert out["truth"].extras["random"][1].item() == pytest.approx(min(0.5, 0.4) + min(0.25, 0.6))


def test_the_rest_gets_the_score_left_with_every_trait_off():
    """s(x) = v(none) + sum(phi): a map putting each unit's share of that split scores 1."""
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    masks[0, 1, 2:, :2] = True  # the rest: rows 2-3, columns 2-3 (4 px)
    valid = torch.tensor([[True, True]])
    phi, rest = torch.tensor([[0.3, 0.1]], dtype=torch.float64), torch.tensor([0.1], dtype=torch.float64)
    m = torch.zeros(1, 4, 4)
    m[0, :2] = 0.6 / 8
    m[0, 2:, :2] = 0.2 / 4
    m[0, 2:, 2:] = 0.2 / 4
    assert shapley_overlap(unit_shares(m, masks, valid), phi, valid, rest).item() == pytest.approx(1.0)
    m[0, 2:, 2:] = 0.0  # no mass on the rest: shares 0.75, 0.25, 0 against 0.6, 0.2, 0.2
    assert shapley_overlap(unit_shares(m, masks, valid), phi, valid, rest).item() == pytest.approx(0.8)


def test_overlap_invariant_to_map_scale_and_negative_values():
    torch.manual_seed(0)
    maps = torch.randn(2, 1, 6, 6)[:, 0]
    masks = torch.zeros(2, 2, 6, 6, dtype=torch.bool)
    masks[:, 0, :3] = True
    masks[:, 1, 3:, :3] = True
    valid = torch.tensor([[True, True], [True, False]])
    phi = torch.tensor([[0.2, 0.5], [0.3, float("nan")]], dtype=torch.float64)
    rest = torch.tensor([0.1, 0.05], dtype=torch.float64)
    a = shapley_overlap(unit_shares(maps, masks, valid), phi, valid, rest)
    b = shapley_overlap(unit_shares(7.0 * maps.clamp(min=0) + maps.clamp(max=0) * 3, masks, valid), phi, valid, rest)
    assert a.tolist() == pytest.approx(b.tolist())
    assert unit_shares(maps, masks, valid).nansum(1).tolist() == pytest.approx([1.0, 1.0])


def test_card():
    c = evaluator_card("counterfactual_shapley")
    assert c.category == "counterfactual" and "counterfactual" in c.needs and c.higher_is_better
