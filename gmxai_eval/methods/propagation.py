"""Modified-backward methods: deconvolution and guided backpropagation (both wrap Captum).

Both replace the backward pass of every ``nn.ReLU`` module, so a model that reuses a ReLU
object, applies one in place or calls one twice per forward raises
:class:`~gmxai_eval.errors.ModelStateError` instead of risking a wrong map. Other reused modules
(GestaltMatcher's shared max-pool) are not hooked by these methods and are allowed; DeepLIFT,
which hooks pooling layers too, refuses any reused module.
"""

from __future__ import annotations

from captum.attr import Deconvolution, GuidedBackprop
from torch import nn

from gmxai_eval.methods._common import CaptumMap
from gmxai_eval.methods.base import register_method
from gmxai_eval.types import MethodCard


@register_method
class DeconvolutionMap(CaptumMap):
    """Deconvnet (Captum ``Deconvolution``): ReLU backward passes only positive gradients."""

    card = MethodCard(
        name="deconvolution", family="propagation", signed=True,
        paper="Zeiler & Fergus, ECCV 2014",
        description="ReLU backward = ReLU of the incoming gradient")
    captum_class = Deconvolution
    hook_kinds = (nn.ReLU,)


@register_method
class GuidedBackpropMap(CaptumMap):
    """Guided backpropagation (Captum ``GuidedBackprop``)."""

    card = MethodCard(
        name="guided_backprop", family="propagation", signed=True,
        paper="Springenberg et al., ICLR Workshop 2015",
        description="gradient masked by forward and backward ReLU signs")
    captum_class = GuidedBackprop
    hook_kinds = (nn.ReLU,)
