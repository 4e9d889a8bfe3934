"""DeepLIFT's summation-to-delta: exact on the ReLU/average-pool networks the suite ships
(recorded delta ~ 0, no warning), broken by Captum's max-pool rule on max-pool networks
(recorded, and warned about), so the docstring's completeness claim says where it holds."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gmxai_eval.methods import METHODS
from gmxai_eval.methods.paths import CompletenessWarning


class MaxPoolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(8 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def test_delta_is_recorded_and_zero_on_a_network_without_max_pooling(toy_model, toy_batch):
    x, t, _ = toy_batch
    ex = METHODS.create("deeplift")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompletenessWarning)
        maps = ex(toy_model, x, t)
    assert ex.convergence_delta.shape == (6,) and float(ex.convergence_delta.max()) < 1e-4
    with torch.no_grad():  # the oracle: completeness by hand
        want = toy_model(x).gather(1, t.view(-1, 1)).squeeze(1) - toy_model(torch.zeros_like(x)).gather(
            1, t.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(maps.flatten(1).sum(1), want, rtol=1e-3, atol=1e-4)


def test_max_pool_breaks_completeness_and_is_warned_about(toy_batch):
    x, t, _ = toy_batch
    model = MaxPoolNet().eval()
    ex = METHODS.create("deeplift")
    with pytest.warns(CompletenessWarning, match="summation-to-delta fails"):
        maps = ex(model, x, t)
    with torch.no_grad():
        gap = model(x).gather(1, t.view(-1, 1)).squeeze(1) - model(torch.zeros_like(x)).gather(1, t.view(-1, 1)).squeeze(1)
    rel = (maps.flatten(1).sum(1) - gap).abs() / gap.abs()
    torch.testing.assert_close(ex.convergence_delta.float(), rel.float(), rtol=1e-3, atol=1e-5)
    assert float(ex.convergence_delta.max()) > 0.01
