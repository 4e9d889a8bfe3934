"""Fixtures of the perturbation-evaluator tests."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.models import MODELS


class ForwardCounter:
    """Counts forward calls and images of a module (forward pre-hook, scoped by a context)."""

    def __init__(self) -> None:
        self.calls = 0
        self.images = 0

    def __call__(self, module, args):  # noqa: ANN001
        self.calls += 1
        self.images += int(args[0].shape[0])


@pytest.fixture
def gray_model():
    """Seeded single-channel ``toy_cnn`` (1x16x16 -> 4 logits): a map is one value per feature,
    so Quantus's channel broadcast and our pixel unit coincide."""
    return MODELS.create("toy_cnn", num_classes=4, in_channels=1, seed=0)


@pytest.fixture
def gray_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 16, 16, generator=g)
    maps = torch.randn(4, 16, 16, generator=g)
    target = torch.tensor([0, 1, 2, 3])
    return x, target, maps, [f"g{i}" for i in range(4)]


@pytest.fixture
def counter():
    """A fresh :class:`ForwardCounter` (register it inside ``with hooks() as hs``)."""
    return ForwardCounter()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is faster (and restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
