"""Fixtures of the gaze tests: tiny faces with landmarks, evidence and region masks."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.data.base import Sample
from gmxai_eval.data.regions import ARCFACE_TEMPLATE_112


def make_face(image_id: str, size: int = 48, shift: tuple[int, int] = (0, 0), label: int = 0,
              seed: int = 0) -> Sample:
    """A ``size x size`` sample: template landmarks scaled to ``size`` and shifted by ``shift``,
    an evidence box above the eyes, two region masks (upper / lower half of the face)."""
    g = torch.Generator().manual_seed(seed)
    dx, dy = shift
    lm = ARCFACE_TEMPLATE_112 * (size / 112.0) + torch.tensor([float(dx), float(dy)])
    ev = torch.zeros(size, size, dtype=torch.bool)
    ev[8 + dy:14 + dy, 16 + dx:30 + dx] = True
    regions = torch.zeros(2, size, size, dtype=torch.bool)
    regions[0, : size // 2] = True
    regions[1, size // 2:] = True
    return Sample(torch.rand(3, size, size, generator=g), label, image_id, landmarks=lm, evidence=ev,
                  region_masks=regions, region_names=("upper", "lower"))


@pytest.fixture
def faces() -> list[Sample]:
    return [make_face(f"f{i}", seed=i, label=i % 2) for i in range(4)]


@pytest.fixture
def face_factory():
    """``make_face(image_id, size=48, shift=(0, 0), label=0, seed=0) -> Sample``."""
    return make_face
