"""Test-local explainers (independent of gmxai_eval.methods) and a small Sequential model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gmxai_eval.methods.base import Explainer, as_target_fn
from gmxai_eval.types import MethodCard


class GradInput(Explainer):
    """gradient x input, summed over channels."""

    card = MethodCard(name="test_grad_input", family="gradient", signed=True, paper="test")

    def _attribute(self, model, x, target):
        x = x.clone().requires_grad_(True)
        y = as_target_fn(target, x.shape[0])(model(x)).sum()
        (g,) = torch.autograd.grad(y, x)
        return g * x


class Gradient(Explainer):
    """plain gradient, summed over channels."""

    card = MethodCard(name="test_gradient", family="gradient", signed=True, paper="test")

    def _attribute(self, model, x, target):
        x = x.clone().requires_grad_(True)
        y = as_target_fn(target, x.shape[0])(model(x)).sum()
        (g,) = torch.autograd.grad(y, x)
        return g


class InputControl(Explainer):
    """the image itself (mean over channels): independent of the model's weights."""

    card = MethodCard(name="test_input", family="control", signed=False, paper="test", control=True)

    def _attribute(self, model, x, target):
        return x.mean(1)


def seq_model(seed: int = 0, in_ch: int = 3, k: int = 5) -> nn.Module:
    """A Sequential CNN without BatchNorm: registration order == execution order."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_ch, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(8 * 16, k),
    ).eval()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models: one thread avoids contention on a shared machine (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def grad_input():
    return GradInput()


@pytest.fixture
def gradient():
    return Gradient()


@pytest.fixture
def input_control():
    return InputControl()


@pytest.fixture
def seqnet():
    return seq_model()


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 32, 32, generator=g)
