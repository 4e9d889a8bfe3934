"""Test-time augmentation of explanations (GestaltMatcher's flip x grayscale TTA).

:class:`TTAExplainer` explains every augmented copy of the input with the wrapped explainer,
maps each map back to the original geometry (a map of a flipped input is flipped back) and
averages::

    tta = TTAExplainer(create_method("integrated_gradients"))       # 4 views: flip x gray
    maps = tta(model, x, target)

Grayscale views replace every channel with the ITU-R 601 luma, so the model's input shape is
unchanged. It is a wrapper, not a registry entry (it needs an explainer to wrap).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import torch
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.methods.base import Explainer, Target, check_inputs
from gmxai_eval.types import MethodCard


class TTAExplainer:
    """Average of ``explainer`` over flip x grayscale views, un-flipped.

    Args:
        explainer: any :class:`Explainer` (or a callable with its signature).
        flips: which horizontal-flip states to use (default both).
        grayscale: which grayscale states to use (default both).
    """

    def __init__(self, explainer: Explainer, flips: tuple[bool, ...] = (False, True),
                 grayscale: tuple[bool, ...] = (False, True)) -> None:
        if not flips or not grayscale:
            raise ConfigError(f"expected at least one flip and one grayscale state, got {flips}, {grayscale}")
        self.explainer = explainer
        self.views = list(itertools.product(tuple(flips), tuple(grayscale)))
        inner: MethodCard = explainer.card
        self.card = dataclasses.replace(inner, name=f"tta({inner.name})",
                                        description=f"flip x grayscale TTA of {inner.name}")
        self.config: dict[str, Any] = {"flips": tuple(flips), "grayscale": tuple(grayscale)}

    @property
    def name(self) -> str:
        return self.card.name

    @staticmethod
    def view(x: torch.Tensor, flip: bool, gray: bool) -> torch.Tensor:
        """The augmented input ``(B, C, H, W)``."""
        if gray:
            w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1) if x.shape[1] == 3 else None
            g = (x * w).sum(1, keepdim=True) if w is not None else x.mean(1, keepdim=True)
            x = g.expand_as(x).contiguous()
        return torch.flip(x, dims=[-1]) if flip else x

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        check_inputs(model, x, owner=f"method {self.name!r}")
        total = None
        for flip, gray in self.views:
            m = self.explainer(model, self.view(x, flip, gray), target)
            m = torch.flip(m, dims=[-1]) if flip else m
            total = m if total is None else total + m
        return total / len(self.views)
