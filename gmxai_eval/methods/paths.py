"""Reference-based methods: Integrated Gradients and DeepLIFT (both wrap Captum).

``baseline`` is the reference input in pixel space: ``"zero"`` (black), ``"blur"`` (Gaussian
blur, kernel 11, sigma 5), ``"mean"`` (per-image channel mean), a float, or any
:func:`~gmxai_eval.functional.baselines.make_baseline` spec. Both satisfy completeness:
``sum(map) ~= f(x) - f(baseline)`` (IG up to the quadrature error of ``n_steps``).
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import DeepLift, IntegratedGradients
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.functional.baselines import make_baseline
from gmxai_eval.methods._common import captum_call, captum_forward, check_hook_safe
from gmxai_eval.methods.base import Explainer, Target, register_method
from gmxai_eval.types import MethodCard

_ALIASES = {"mean": "image_mean"}


def reference_input(spec: Any, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The baseline ``(b, C, H, W)`` for ``x`` (``"mean"`` = per-image channel mean)."""
    return make_baseline(_ALIASES.get(spec, spec) if isinstance(spec, str) else spec, x, seed=seed)


@register_method
class IntegratedGradientsMap(Explainer):
    """Integrated Gradients (Captum, Gauss-Legendre quadrature).

    Config: ``baseline``, ``n_steps``, ``internal_batch_size`` (interpolated images per forward;
    None = all ``n_steps * b`` at once)."""

    card = MethodCard(
        name="integrated_gradients", family="path", signed=True,
        paper="Sundararajan, Taly & Yan, ICML 2017",
        default_config={"baseline": "zero", "n_steps": 50, "internal_batch_size": None},
        description="path integral of gradients from a baseline")

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if int(self.config["n_steps"]) < 1:
            raise ConfigError(f"expected n_steps >= 1, got {self.config['n_steps']!r}")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        fwd, t = captum_forward(model, target, x.shape[0])
        base = reference_input(self.config["baseline"], x, int(self.config["seed"]))
        ibs = self.config["internal_batch_size"]
        return captum_call(IntegratedGradients(fwd).attribute, x, baselines=base, target=t,
                           n_steps=int(self.config["n_steps"]), method="gausslegendre",
                           internal_batch_size=None if ibs is None else int(ibs))


@register_method
class DeepLiftMap(Explainer):
    """DeepLIFT, Rescale rule (Captum ``DeepLift``). Raises
    :class:`~gmxai_eval.errors.ModelStateError` on reused, in-place or twice-called modules."""

    card = MethodCard(
        name="deeplift", family="propagation", signed=True,
        paper="Shrikumar, Greenside & Kundaje, ICML 2017",
        default_config={"baseline": "zero"},
        description="difference-from-reference propagation (Rescale rule)")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        check_hook_safe(model, x, self.card.name)
        fwd, t = captum_forward(model, target, x.shape[0])
        base = reference_input(self.config["baseline"], x, int(self.config["seed"]))
        return captum_call(DeepLift(fwd).attribute, x, baselines=base, target=t)
