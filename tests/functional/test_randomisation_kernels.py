"""Analytic values of the randomisation-check kernels that define scores."""

from __future__ import annotations

import math

import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.functional.randomisation import constant_map_rule


def test_constant_map_rule():
    a = torch.stack([torch.zeros(4), torch.zeros(4), torch.arange(4.0), torch.arange(4.0)])
    b = torch.stack([torch.zeros(4), torch.ones(4), torch.arange(4.0).flip(0), torch.arange(4.0)])
    sim = torch.tensor([float("nan"), float("nan"), -1.0, float("nan")], dtype=torch.float64)
    out = constant_map_rule(sim, a, b, "zero_unless_equal")
    # identical constant maps -> 1; different, one constant -> 0; defined values kept;
    # a NaN without a constant map (not produced by a rank correlation) stays NaN
    assert out[0].item() == 1.0 and out[1].item() == 0.0 and out[2].item() == -1.0 and math.isnan(out[3])
    assert constant_map_rule(sim, a, b, "nan") is sim
    with pytest.raises(ConfigError):
        constant_map_rule(sim, a, b, "zero")
