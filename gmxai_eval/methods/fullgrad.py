"""FullGrad (Srinivas & Fleuret, NeurIPS 2019), following the official implementation.

Full-gradient decomposition of the explained score ``y``::

    y = sum(x * dy/dx) + sum over biased modules of sum(dy/dz * b)     (piecewise-linear nets)

where ``z`` is a module's output and ``b`` its (effective) bias, broadcast over the channel
axis. Biased modules: ``Conv*d`` and ``Linear`` with a bias, ``BatchNorm*d`` in eval mode
(effective bias ``beta - running_mean * gamma / sqrt(running_var + eps)``) and the model's
:class:`~gmxai_eval.models.base.Preprocess` (``-mean / std``: the model's own normalisation is
affine, and ``x`` is in pixel space). :func:`fullgrad_terms` returns the terms, so the
completeness identity can be checked.

The map (official post-processing): each term with spatial axes is post-processed
(``abs``, then per image min-max over all its elements jointly: ``(t - min) / (max + 1e-6)``),
upsampled bilinearly with ``align_corners=True`` to the input size, summed over channels, and
the input term and all bias terms are added. Terms without spatial axes (``Linear``,
``BatchNorm1d``) enter completeness but not the map, as in the official code. Modules that run
several times per forward contribute one term per call (no gradient is overridden, so reused
modules are fine).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gmxai_eval.errors import ModelStateError
from gmxai_eval.methods._common import target_scores
from gmxai_eval.methods.base import Explainer, Target, register_method
from gmxai_eval.models.base import Preprocess
from gmxai_eval.types import MethodCard

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def effective_bias(module: nn.Module) -> torch.Tensor | None:
    """Per-channel bias ``(K,)`` of an affine module, or None for modules without one."""
    if isinstance(module, _CONV):
        return None if module.bias is None else module.bias.detach()
    if isinstance(module, _NORM):
        if module.training or module.running_mean is None or module.running_var is None:
            raise ModelStateError("fullgrad: expected BatchNorm in eval mode with running statistics, "
                                  f"got training={module.training}, track_running_stats={module.track_running_stats}")
        scale = torch.rsqrt(module.running_var + module.eps)
        gamma = module.weight.detach() if module.weight is not None else torch.ones_like(scale)
        beta = module.bias.detach() if module.bias is not None else torch.zeros_like(scale)
        return beta - module.running_mean * gamma * scale
    if isinstance(module, Preprocess):
        return (-module.mean / module.std).flatten()
    return None


def fullgrad_terms(model: nn.Module, x: torch.Tensor, target: Target
                   ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """``(input_term (b, C, H, W), bias_terms [(b, K, ...)], scores (b,))``.

    ``input_term = x * dy/dx``; each bias term is ``dy/dz * b`` of one module call. For a
    piecewise-linear network whose biases all sit in the modules listed in the module
    docstring, ``input_term.sum() + sum(t.sum() for t in bias_terms) == scores.sum()``."""
    from gmxai_eval.utils import hooks

    outs: list[tuple[torch.Tensor, torch.Tensor]] = []
    with hooks() as hs:
        for m in model.modules():
            bias = effective_bias(m)
            if bias is not None:
                def hook(_m: nn.Module, _i: Any, out: Any, bias: torch.Tensor = bias) -> None:
                    outs.append((out, bias))
                hs.append(m.register_forward_hook(hook))
        xg = x.detach().clone().requires_grad_(True)
        scores = target_scores(model, xg, target)
    grads = torch.autograd.grad(scores.sum(), [xg] + [o for o, _ in outs], allow_unused=True)
    bias_terms = []
    for (out, bias), g in zip(outs, grads[1:]):
        if g is None:
            continue
        shape = (1, -1) + (1,) * (out.ndim - 2)
        bias_terms.append(g * bias.to(g).view(shape))
    return (grads[0] * x).detach(), [t.detach() for t in bias_terms], scores.detach()


def _post_process(t: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    t = t.abs()
    lo = t.flatten(1).amin(1).view(-1, *(1,) * (t.ndim - 1))
    t = t - lo
    hi = t.flatten(1).amax(1).view(-1, *(1,) * (t.ndim - 1))
    return t / (hi + eps)


@register_method
class FullGrad(Explainer):
    """FullGrad saliency (official post-processing; see the module docstring)."""

    card = MethodCard(
        name="fullgrad", family="gradient", signed=False,
        paper="Srinivas & Fleuret, NeurIPS 2019",
        description="input-gradient and bias-gradient terms of every layer, post-processed and summed")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        inp, biases, _ = fullgrad_terms(model, x, target)
        size = tuple(x.shape[-2:])
        cam = _post_process(inp).sum(1)
        for t in biases:
            if t.ndim == 4:
                up = F.interpolate(_post_process(t), size=size, mode="bilinear", align_corners=True)
                cam = cam + up.sum(1)
        return cam


def completeness_gap(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``(b,)`` residual ``y - (sum(x * dy/dx) + sum of bias terms)`` of every image.

    Zero (up to float error) for piecewise-linear networks whose biases all sit in the modules
    FullGrad knows; a clearly non-zero gap flags layers the decomposition misses (smooth
    activations, normalisations of the embedding, biases in custom modules)."""
    inp, biases, scores = fullgrad_terms(model, x, target)
    total = inp.flatten(1).sum(1)
    for t in biases:
        total = total + t.flatten(1).sum(1)
    return scores - total
