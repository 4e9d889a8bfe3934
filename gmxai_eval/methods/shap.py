"""Gradient-based SHAP approximations over a baseline distribution: GradientSHAP (Expected
Gradients) and DeepLiftShap (both wrap Captum).

Both average over a *distribution* of reference images instead of one baseline. Expected
Gradients (Erion et al.) draws the references from the training data; an explainer here sees
only the images it explains, so the distribution is named by ``baselines``:

* ``"uniform"`` (default): ``n_baselines`` images of uniform noise in ``[0, 1]`` (pixel space),
  drawn per image from a generator keyed on ``(seed, method, image content)``;
* ``"black_white"``: the all-black and the all-white image (Captum's tutorial distribution);
* ``"blur_uniform"``: the Gaussian-blurred image (kernel 11, sigma 5) plus ``n_baselines - 1``
  uniform-noise images.

``GradientSHAP`` (Captum ``GradientShap``): ``n_samples`` draws of a random reference ``r`` and
a random point ``r + a (x - r)``, ``a ~ U(0, 1)``, input noise ``stdevs`` (Captum's default 0);
the map is the mean of ``(x - r) * grad``: a Monte-Carlo estimate of the expected gradients.
Captum draws from the global NumPy and torch RNGs; each image is explained alone under
:class:`~gmxai_eval.methods._common.seeded_global_rngs`, seeded from the same key.
``DeepLiftShap`` (Captum ``DeepLiftShap``): DeepLIFT (Rescale) against every reference, averaged
(deterministic given the references); like DeepLIFT it refuses models with reused, in-place or
twice-called modules (:class:`~gmxai_eval.errors.ModelStateError`).

Forward + backward passes per image: GradientSHAP ``n_samples``; DeepLiftShap ``2 *
n_baselines`` (inputs and references in one batch).
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import DeepLiftShap, GradientShap
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.functional.baselines import gaussian_blur
from gmxai_eval.methods._common import (
    captum_call,
    captum_forward,
    check_hook_safe,
    image_seeds,
    sample_generators,
    seeded_global_rngs,
)
from gmxai_eval.methods.base import Explainer, Target, _select_target, register_method
from gmxai_eval.types import MethodCard

#: Named reference distributions (see the module docstring).
DISTRIBUTIONS = ("uniform", "black_white", "blur_uniform")


class _DistributionExplainer(Explainer):
    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config["baselines"] not in DISTRIBUTIONS:
            raise ConfigError(f"method {self.card.name!r}: expected baselines in {DISTRIBUTIONS}, got "
                              f"{self.config['baselines']!r}")
        if int(self.config["n_baselines"]) < 1:
            raise ConfigError(f"method {self.card.name!r}: expected n_baselines >= 1, got "
                              f"{self.config['n_baselines']!r}")

    def references(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, R, C, H, W)`` reference images of every image of ``x (B, C, H, W)``."""
        kind, n = self.config["baselines"], int(self.config["n_baselines"])
        if kind == "black_white":
            return torch.stack([torch.zeros_like(x), torch.ones_like(x)], 1)
        gens = sample_generators(x, int(self.config["seed"]), f"{self.card.name}-references")
        k = n if kind == "uniform" else n - 1
        noise = torch.stack([torch.rand((k, *x.shape[1:]), generator=g) for g in gens]).to(x.device, x.dtype)
        if kind == "uniform":
            return noise
        return torch.cat([gaussian_blur(x).unsqueeze(1), noise], 1)


_REFS = {"baselines": "uniform", "n_baselines": 20}


@register_method
class GradientShapMap(_DistributionExplainer):
    """GradientSHAP / Expected Gradients (Captum ``GradientShap``); see the module docstring.

    Config: ``n_samples`` (50 gradient evaluations per image), ``stdevs`` (input noise, 0),
    ``baselines`` / ``n_baselines`` (the reference distribution)."""

    card = MethodCard(
        name="gradient_shap", family="path", signed=True,
        paper="Lundberg & Lee, NeurIPS 2017 (GradientSHAP); Erion et al., Nature Machine Intelligence 2021 "
              "(Expected Gradients)",
        default_config={**_REFS, "n_samples": 50, "stdevs": 0.0},
        description="expected gradients over random references and random path points")

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if int(self.config["n_samples"]) < 1 or float(self.config["stdevs"]) < 0:
            raise ConfigError(f"method 'gradient_shap': expected n_samples >= 1 and stdevs >= 0, got "
                              f"{self.config['n_samples']!r}, {self.config['stdevs']!r}")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        refs = self.references(x)
        seeds = image_seeds(x, int(self.config["seed"]), self.card.name)
        out = []
        for i in range(x.shape[0]):
            fwd, t = captum_forward(model, _select_target(target, torch.tensor([i])), 1)
            with seeded_global_rngs(seeds[i]):
                a = captum_call(GradientShap(fwd).attribute, x[i:i + 1], baselines=refs[i], target=t,
                                n_samples=int(self.config["n_samples"]), stdevs=float(self.config["stdevs"]))
            out.append(a.detach())
        return torch.cat(out)


@register_method
class DeepLiftShapMap(_DistributionExplainer):
    """DeepLiftShap (Captum ``DeepLiftShap``): DeepLIFT Rescale averaged over the references.

    Raises :class:`~gmxai_eval.errors.ModelStateError` on reused, in-place or twice-called
    modules (DeepLIFT's rules need each module used once)."""

    card = MethodCard(
        name="deeplift_shap", family="propagation", signed=True,
        paper="Lundberg & Lee, NeurIPS 2017 (DeepSHAP); Shrikumar et al., ICML 2017",
        default_config=dict(_REFS),
        description="DeepLIFT averaged over a distribution of references")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        check_hook_safe(model, x, self.card.name)
        refs = self.references(x)
        out = []
        for i in range(x.shape[0]):
            fwd, t = captum_forward(model, _select_target(target, torch.tensor([i])), 1)
            out.append(captum_call(DeepLiftShap(fwd).attribute, x[i:i + 1], baselines=refs[i], target=t).detach())
        return torch.cat(out)
