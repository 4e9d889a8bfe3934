"""Sparseness (Gini) and complexity (entropy): analytic values and Quantus 0.6.0 parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import quantus
import torch

from gmxai_eval.evaluators import EVALUATORS
from gmxai_eval.functional.complexity import entropy, gini


def test_gini_analytic():
    n = 50
    assert gini(torch.full((1, n), 3.0)).item() == pytest.approx(0.0, abs=1e-15)
    onehot = torch.zeros(1, n)
    onehot[0, 7] = -2.0  # sign is ignored
    assert gini(onehot).item() == pytest.approx(1 - 1 / n, rel=1e-14)
    # two values {0, 1} in equal shares: G = 1/2
    assert gini(torch.tensor([[0.0, 1.0] * 10])).item() == pytest.approx(0.5, rel=1e-14)
    assert torch.isnan(gini(torch.zeros(1, 4))).all()


def test_entropy_analytic():
    n = 64
    assert entropy(torch.full((1, 8, 8), -0.3)).item() == pytest.approx(math.log(n), rel=1e-14)
    onehot = torch.zeros(1, n)
    onehot[0, 3] = 1.0
    assert entropy(onehot).item() == 0.0
    two = torch.zeros(1, n)
    two[0, :2] = 1.0
    assert entropy(two).item() == pytest.approx(math.log(2), rel=1e-14)


@pytest.mark.parametrize("name,qcls,eps", [("sparseness", quantus.Sparseness, 1e-7),
                                           ("complexity", quantus.Complexity, 1e-12)])
def test_matches_quantus(toy_model, toy_batch, name, qcls, eps):
    x, target, _ = toy_batch
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(6, 32, 32, generator=g) * (torch.rand(6, 32, 32, generator=g) > 0.7)
    ours = EVALUATORS.create(name, eps=eps)(toy_model, x, target, maps).scores
    ref = qcls(normalise=False, abs=True, disable_warnings=True)(
        model=toy_model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=maps.numpy()[:, None].copy())
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5)
    exact = EVALUATORS.create(name)(toy_model, x, target, maps).scores
    np.testing.assert_allclose(exact.numpy(), ref, rtol=1e-4)  # eps changes little on these maps
    assert EVALUATORS.card(name).higher_is_better == (name == "sparseness")
