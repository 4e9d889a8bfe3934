"""Fixtures for the attribution-method tests: small models with known structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gmxai_eval.models.base import ClassifierHead, GalleryHead, GMXModel, Preprocess


class SharedReLUNet(nn.Module):
    """One ReLU object registered under two names (like GestaltMatcher's shared max-pool)."""

    def __init__(self) -> None:
        super().__init__()
        act = nn.ReLU()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), act, nn.Conv2d(4, 8, 3, padding=1), act)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class SharedPoolNet(nn.Module):
    """One max-pool object used at two depths (GestaltMatcher v1's pattern); ReLUs separate."""

    def __init__(self) -> None:
        super().__init__()
        pool = nn.MaxPool2d(2)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), pool,
                                      nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), pool)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class InplaceNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class TwiceCalledNet(nn.Module):
    """Registered once, called twice per forward: only a run-time check can see it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.conv2(self.act(self.conv1(x))))).flatten(1)


class FlattenNet(nn.Module):
    """conv-ReLU-conv-ReLU, then flatten (a flatten + linear head, no pooling)."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(4, 3, 3, padding=1), nn.ReLU())
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.features(x))


class PiecewiseLinearNet(nn.Module):
    """Conv(bias) - BN - ReLU - MaxPool - Conv(bias) - BN - ReLU - GAP: piecewise linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def _gmx(backbone: nn.Module, d: int, k: int = 4, layer: str = "backbone.features.3",
         pre: Preprocess | None = None) -> GMXModel:
    return GMXModel(backbone, ClassifierHead(d, k), pre or Preprocess((0.0,) * 3, (1.0,) * 3),
                    cam_layer=layer).eval()


@pytest.fixture
def reused_model() -> GMXModel:
    torch.manual_seed(1)
    return _gmx(SharedReLUNet(), 8)


@pytest.fixture
def shared_pool_model() -> GMXModel:
    torch.manual_seed(1)
    return _gmx(SharedPoolNet(), 8)


@pytest.fixture
def inplace_model() -> GMXModel:
    torch.manual_seed(1)
    return _gmx(InplaceNet(), 8)


@pytest.fixture
def twice_model() -> GMXModel:
    torch.manual_seed(1)
    return _gmx(TwiceCalledNet(), 8, layer="backbone.conv2")


@pytest.fixture
def flatten_model() -> GMXModel:
    torch.manual_seed(2)
    return _gmx(FlattenNet(16), 3 * 16 * 16)


@pytest.fixture
def pl_model() -> GMXModel:
    """Piecewise-linear net with conv biases, BatchNorm (non-trivial running stats) and a
    normalising preprocess, so every kind of bias term is exercised."""
    torch.manual_seed(3)
    net = PiecewiseLinearNet()
    for bn in (net.features[1], net.features[5]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.3, 0.3)
    pre = Preprocess((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    return _gmx(net, 8, pre=pre)


@pytest.fixture
def gallery_model(toy_model) -> GMXModel:
    """``toy_cnn`` with a :class:`GalleryHead` (cosine similarity to 4 random centroids)."""
    g = torch.Generator().manual_seed(5)
    toy_model.head = GalleryHead(torch.randn(4, 16, generator=g), scale=10.0)
    return toy_model.eval()

