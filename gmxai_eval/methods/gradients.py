"""Gradient methods: saliency, input x gradient, SmoothGrad / SmoothGrad² / VarGrad.

``saliency`` and ``input_x_gradient`` wrap Captum. The noise-averaging family follows Captum's
``NoiseTunnel`` semantics (mean of the gradient, mean of its square, population variance) but
draws its own noise: per image from a generator keyed on ``(seed, image content)``, so maps are
deterministic given ``seed`` and do not depend on batch size, chunking or order (Captum draws
from the global RNG). The noise standard deviation is ``noise_level`` times the image's value
range (``max - min``, Smilkov et al.'s relative sigma) or absolute with ``noise_relative=False``.
"""

from __future__ import annotations

import torch
from captum.attr import InputXGradient, Saliency
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.methods._common import (
    CaptumMap,
    randn_like_per_sample,
    sample_generators,
    target_scores,
)
from gmxai_eval.methods.base import Explainer, Target, register_method
from gmxai_eval.types import MethodCard


@register_method
class SaliencyMap(CaptumMap):
    """Vanilla gradient ``d target / d x`` (Captum ``Saliency``).

    Config: ``abs`` (True: magnitudes, as Simonyan et al. and Captum's default). The default
    ``reduce="max_abs"`` gives Simonyan et al.'s max over channels."""

    card = MethodCard(
        name="saliency", family="gradient", signed=False,
        paper="Simonyan, Vedaldi & Zisserman, ICLR Workshop 2014",
        default_config={"abs": True, "reduce": "max_abs"},
        description="gradient of the target w.r.t. the input pixels")
    captum_class = Saliency

    def captum_kwargs(self) -> dict[str, object]:
        return {"abs": bool(self.config["abs"])}


@register_method
class InputXGradientMap(CaptumMap):
    """``x * d target / d x`` (Captum ``InputXGradient``), ``x`` in pixel space."""

    card = MethodCard(
        name="input_x_gradient", family="gradient", signed=True,
        paper="Shrikumar et al., arXiv 2016 (Not just a black box)",
        description="input times gradient")
    captum_class = InputXGradient


def input_gradients(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``d target / d x`` of ``(b, C, H, W)`` (each image's own target)."""
    xg = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(target_scores(model, xg, target).sum(), xg)
    return g


_NOISE_CONFIG = {"n_samples": 25, "noise_level": 0.15, "noise_relative": True,
                 "multiply_by_input": False}


class _NoiseTunnel(Explainer):
    """Shared SmoothGrad machinery; subclasses pick the statistic."""

    statistic = "mean"

    def __init__(self, **config: object) -> None:
        super().__init__(**config)
        if int(self.config["n_samples"]) < 1 or float(self.config["noise_level"]) < 0:
            raise ConfigError(f"expected n_samples >= 1 and noise_level >= 0, got "
                              f"{self.config['n_samples']!r}, {self.config['noise_level']!r}")

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(n_samples, b, C, H, W)`` noise added to ``x`` (deterministic per image)."""
        n = int(self.config["n_samples"])
        eps = randn_like_per_sample(x, sample_generators(x, int(self.config["seed"]), self.card.name), n)
        std = torch.full((x.shape[0],), float(self.config["noise_level"]), device=x.device, dtype=x.dtype)
        if self.config["noise_relative"]:
            flat = x.flatten(1)
            std = std * (flat.amax(1) - flat.amin(1))
        return eps * std.view(1, -1, 1, 1, 1)

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        total = torch.zeros_like(x)
        total_sq = torch.zeros_like(x)
        noise = self.noise(x)
        for eps in noise:
            xn = x + eps
            g = input_gradients(model, xn, target)
            if self.config["multiply_by_input"]:
                g = g * xn
            total += g
            total_sq += g * g
        n = noise.shape[0]
        mean, mean_sq = total / n, total_sq / n
        if self.statistic == "mean":
            return mean
        if self.statistic == "mean_sq":
            return mean_sq
        return (mean_sq - mean * mean).clamp_min(0)


@register_method
class SmoothGrad(_NoiseTunnel):
    """Mean gradient over Gaussian-noised copies of the input.

    Config: ``n_samples``, ``noise_level`` (sigma, relative to the image's value range unless
    ``noise_relative=False``), ``multiply_by_input`` (smooth input x gradient instead)."""

    card = MethodCard(
        name="smoothgrad", family="gradient", signed=True,
        paper="Smilkov et al., ICML Workshop 2017", default_config=_NOISE_CONFIG,
        description="mean gradient over noisy copies")
    statistic = "mean"


@register_method
class SmoothGradSq(_NoiseTunnel):
    """Mean squared gradient over noisy copies (NoiseTunnel ``smoothgrad_sq``)."""

    card = MethodCard(
        name="smoothgrad_sq", family="gradient", signed=False,
        paper="Hooker et al., NeurIPS 2019 (SmoothGrad-Squared)", default_config=_NOISE_CONFIG,
        description="mean squared gradient over noisy copies")
    statistic = "mean_sq"


@register_method
class VarGrad(_NoiseTunnel):
    """Variance of the gradient over noisy copies (NoiseTunnel ``vargrad``: E[g²] - E[g]²)."""

    card = MethodCard(
        name="vargrad", family="gradient", signed=False,
        paper="Adebayo et al., ICLR Workshop 2018", default_config=_NOISE_CONFIG,
        description="variance of the gradient over noisy copies")
    statistic = "var"
