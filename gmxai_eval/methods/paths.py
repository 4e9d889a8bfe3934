"""Reference-based methods: Integrated Gradients and DeepLIFT (both wrap Captum).

``baseline`` is the reference input in pixel space: ``"zero"`` (black), ``"blur"`` (Gaussian
blur, kernel 11, sigma 5), ``"mean"`` (per-image channel mean), a float, or any
:func:`~gmxai_eval.functional.baselines.make_baseline` spec. Completeness,
``sum(map) ~= f(x) - f(baseline)``, holds for IG up to the quadrature error of ``n_steps`` on any
network. For DeepLIFT it holds exactly on piecewise-linear networks without max-pooling (the
default ``gmx_small``, ``toy_cnn``), but **not** on max-pool networks: Captum's max-pool rule
breaks summation-to-delta (up to 20 % relative error on GestaltMatcher v1). DeepLIFT therefore
records the convergence delta of every map (``explainer.convergence_delta``, ``(B,)``, relative
to ``|f(x) - f(baseline)|``) and warns (:class:`CompletenessWarning`) when it exceeds
``delta_tolerance``.
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import DeepLift, IntegratedGradients
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.functional.baselines import make_baseline
from gmxai_eval.methods._common import captum_call, captum_forward, check_hook_safe
from gmxai_eval.methods.base import Explainer, Target, as_target_fn, register_method
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


class CompletenessWarning(UserWarning):
    """A completeness (summation-to-delta) property a method's docs promise does not hold on
    this model."""


@register_method
class DeepLiftMap(Explainer):
    """DeepLIFT, Rescale rule (Captum ``DeepLift``). Raises
    :class:`~gmxai_eval.errors.ModelStateError` on reused, in-place or twice-called modules."""

    card = MethodCard(
        name="deeplift", family="propagation", signed=True,
        paper="Shrikumar, Greenside & Kundaje, ICML 2017",
        default_config={"baseline": "zero", "delta_tolerance": 0.01},
        description="difference-from-reference propagation (Rescale rule); convergence delta recorded")

    #: ``(B,)`` relative convergence delta ``|sum(map) - (f(x) - f(base))| / |f(x) - f(base)|``
    #: of the maps of the last call (``None`` before the first).
    convergence_delta: torch.Tensor | None = None

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:  # type: ignore[override]
        self._deltas: list[torch.Tensor] = []
        maps = super().__call__(model, x, target)
        self.convergence_delta = torch.cat(self._deltas) if self._deltas else None
        tol = float(self.config["delta_tolerance"])
        if self.convergence_delta is not None and bool((self.convergence_delta > tol).any()):
            import warnings

            bad = self.convergence_delta > tol
            warnings.warn(f"method 'deeplift': summation-to-delta fails for {int(bad.sum())} of {len(bad)} maps "
                          f"(relative delta up to {float(self.convergence_delta.max()):.3g} > {tol}); "
                          "Captum's rules are not complete on this network (max-pooling?)",
                          CompletenessWarning, stacklevel=2)
        return maps

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        check_hook_safe(model, x, self.card.name)
        fwd, t = captum_forward(model, target, x.shape[0])
        base = reference_input(self.config["baseline"], x, int(self.config["seed"]))
        attr, delta = captum_call(DeepLift(fwd).attribute, x, baselines=base, target=t,
                                  return_convergence_delta=True)
        with torch.no_grad():
            out, ref = fwd(x), fwd(base)
            tf = as_target_fn(t, x.shape[0]) if isinstance(t, torch.Tensor) else (lambda o: o[:, 0])
            gap = (tf(out) - tf(ref)).abs().double()
        rel = delta.detach().abs().double().reshape(-1) / gap.clamp_min(1e-12)
        getattr(self, "_deltas", []).append(rel.cpu())
        return attr
