"""Fixtures of the gaze data tests: tiny faces with landmarks, evidence and region masks."""

from __future__ import annotations

import pytest

from gmxai_eval.data.base import Sample
from gmxai_eval.testing import toy_face


@pytest.fixture
def faces() -> list[Sample]:
    return [toy_face(f"f{i}", seed=i, label=i % 2) for i in range(4)]


@pytest.fixture
def face_factory():
    """``toy_face(image_id, size=48, shift=(0, 0), label=0, seed=0) -> Sample``."""
    return toy_face
