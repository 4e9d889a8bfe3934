"""Toy methods, evaluators and the spec factory shared with the runner and report tests."""

from __future__ import annotations

import sys

import pytest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))

from runner_report_toys import *  # noqa: E402,F401,F403


@pytest.fixture
def faces() -> list:
    """Tiny faces with landmarks, evidence and region masks (the gaze command tests)."""
    from gmxai_eval.testing import toy_face

    return [toy_face(f"f{i}", size=32, seed=i, label=i % 2) for i in range(4)]  # toy_cnn takes 32x32
