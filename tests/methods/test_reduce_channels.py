"""``Reduce`` (the type) and ``reduce_channels`` (the function) accept one set of values."""

from __future__ import annotations

import typing

import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.methods.base import REDUCTIONS, Reduce, reduce_channels


def test_reduce_literal_and_function_agree():
    assert set(typing.get_args(Reduce)) == set(REDUCTIONS)
    a = torch.tensor([[[[1.0]], [[-3.0]], [[2.0]]]])  # (1, 3, 1, 1)
    want = {"sum": 0.0, "sum_abs": 6.0, "max_abs": 3.0, "mean": 0.0}  # analytic
    assert set(want) == set(REDUCTIONS)
    for how in REDUCTIONS:
        assert reduce_channels(a, how).item() == pytest.approx(want[how])
    with pytest.raises(ConfigError, match="none"):
        reduce_channels(a, "none")
