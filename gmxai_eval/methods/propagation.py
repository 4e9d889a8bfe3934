"""Modified-backward methods: deconvolution and guided backpropagation (both wrap Captum).

Both replace the backward pass of every ``nn.ReLU`` module, so a model that reuses a ReLU
object, applies one in place or calls one twice per forward raises
:class:`~gmxai_eval.errors.ModelStateError` instead of risking a wrong map. Other reused modules
(GestaltMatcher's shared max-pool) are not hooked by these methods and are allowed; DeepLIFT,
which hooks pooling layers too, refuses any reused module.
"""

from __future__ import annotations

import torch
from captum.attr import Deconvolution, GuidedBackprop
from torch import nn

from gmxai_eval.methods._common import captum_call, captum_forward, check_hook_safe
from gmxai_eval.methods.base import Explainer, Target, register_method
from gmxai_eval.types import MethodCard


@register_method
class DeconvolutionMap(Explainer):
    """Deconvnet (Captum ``Deconvolution``): ReLU backward passes only positive gradients."""

    card = MethodCard(
        name="deconvolution", family="propagation", signed=True,
        paper="Zeiler & Fergus, ECCV 2014",
        description="ReLU backward = ReLU of the incoming gradient")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        check_hook_safe(model, x, self.card.name, kinds=(nn.ReLU,))
        fwd, t = captum_forward(model, target, x.shape[0])
        return captum_call(Deconvolution(fwd).attribute, x, target=t)


@register_method
class GuidedBackpropMap(Explainer):
    """Guided backpropagation (Captum ``GuidedBackprop``)."""

    card = MethodCard(
        name="guided_backprop", family="propagation", signed=True,
        paper="Springenberg et al., ICLR Workshop 2015",
        description="gradient masked by forward and backward ReLU signs")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        check_hook_safe(model, x, self.card.name, kinds=(nn.ReLU,))
        fwd, t = captum_forward(model, target, x.shape[0])
        return captum_call(GuidedBackprop(fwd).attribute, x, target=t)
