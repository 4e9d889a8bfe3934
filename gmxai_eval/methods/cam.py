"""Class activation maps: Grad-CAM, HiResCAM, Guided Grad-CAM, Score-CAM, LayerCAM.

Every CAM method takes ``layer`` (a dotted module name; default: the model's ``cam_layer``
attribute, e.g. ``GMXModel.cam_layer``) and returns maps upsampled **bilinearly**
(``align_corners=False``) from the layer's resolution to the input size. ``relu=True`` (the
papers' default) clips the map at zero; ``relu=False`` keeps the signed map. The layer must
run exactly once per forward pass (a reused module has no single activation).

With ``A`` the layer's activations ``(K, h, w)`` and ``G = d target / d A``:

* ``grad_cam`` (Captum ``LayerGradCam``): ``sum_k mean_hw(G_k) A_k``;
* ``hirescam``: ``sum_k G_k * A_k`` (element-wise; exact for heads linear in ``A``);
* ``layer_cam``: ``sum_k relu(G_k) * A_k``;
* ``score_cam``: ``sum_k s_k Up(A_k)`` where ``s_k`` is the target score (after softmax by
  default) of the input masked by the min-max normalised upsampled ``A_k``;
* ``guided_grad_cam`` (Captum ``GuidedGradCam``): guided backprop times the upsampled
  Grad-CAM, per channel.
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import GuidedGradCam, LayerGradCam
from torch import nn

from gmxai_eval.methods._common import (
    capture_layer,
    captum_call,
    captum_forward,
    check_hook_safe,
    check_layer_once,
    resolve_layer,
    score_copies,
    upsample,
)
from gmxai_eval.methods.base import Explainer, Target, register_method
from gmxai_eval.types import MethodCard
from gmxai_eval.utils import check_chunk, device_chunk

_CAM_CONFIG = {"layer": None, "relu": True}


class _CAM(Explainer):
    """Gradient CAMs computed from ``(A, G)``; subclasses implement :meth:`combine`."""

    def combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``(b, K, h, w)`` activations and gradients -> ``(b, h, w)`` layer map."""
        raise NotImplementedError

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        layer = resolve_layer(model, self.config["layer"], self.card.name)
        a, g, _ = capture_layer(model, layer, x, target, self.card.name)
        cam = self.combine(a, g)
        if self.config["relu"]:
            cam = cam.clamp_min(0)
        return upsample(cam, tuple(x.shape[-2:]))


@register_method
class GradCAM(_CAM):
    """Grad-CAM via Captum's ``LayerGradCam`` (``relu`` maps to ``relu_attributions``)."""

    card = MethodCard(
        name="grad_cam", family="cam", signed=False, needs_layer=True,
        paper="Selvaraju et al., ICCV 2017", default_config=_CAM_CONFIG,
        description="channel weights = spatially averaged gradients")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        layer = resolve_layer(model, self.config["layer"], self.card.name)
        check_layer_once(model, layer, x, self.card.name)
        fwd, t = captum_forward(model, target, x.shape[0])
        cam = captum_call(LayerGradCam(fwd, layer).attribute, x, target=t,
                          relu_attributions=bool(self.config["relu"]))
        return upsample(cam[:, 0], tuple(x.shape[-2:]))


@register_method
class HiResCAM(_CAM):
    """HiResCAM: element-wise gradient times activation, summed over channels."""

    card = MethodCard(
        name="hirescam", family="cam", signed=False, needs_layer=True,
        paper="Draelos & Carin, arXiv 2020 (Use HiResCAM instead of Grad-CAM)",
        default_config=_CAM_CONFIG, description="sum_k dY/dA_k * A_k")

    def combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (g * a).sum(1)


@register_method
class LayerCAM(_CAM):
    """LayerCAM: positive gradients weight the activations element-wise."""

    card = MethodCard(
        name="layer_cam", family="cam", signed=False, needs_layer=True,
        paper="Jiang et al., IEEE TIP 2021", default_config=_CAM_CONFIG,
        description="sum_k relu(dY/dA_k) * A_k")

    def combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (g.clamp_min(0) * a).sum(1)


@register_method
class GuidedGradCAM(Explainer):
    """Guided Grad-CAM via Captum's ``GuidedGradCam`` (bilinear upsampling, per-channel map).

    Uses guided backprop, so models with reused / in-place / twice-called modules raise
    :class:`~gmxai_eval.errors.ModelStateError`."""

    card = MethodCard(
        name="guided_grad_cam", family="cam", signed=True, needs_layer=True,
        paper="Selvaraju et al., ICCV 2017", default_config={"layer": None},
        description="guided backprop x upsampled Grad-CAM")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        layer = resolve_layer(model, self.config["layer"], self.card.name)
        check_hook_safe(model, x, self.card.name, kinds=(nn.ReLU,))
        check_layer_once(model, layer, x, self.card.name)
        fwd, t = captum_forward(model, target, x.shape[0])
        return captum_call(GuidedGradCam(fwd, layer).attribute, x, target=t, interpolate_mode="bilinear")


@register_method
class ScoreCAM(Explainer):
    """Score-CAM: channel weights are the target scores of the input masked by each
    (upsampled, min-max normalised) activation map; no gradients.

    Config: ``softmax`` (apply softmax to the model output before the target, as the paper's
    code does; set False for similarity outputs), ``max_batch`` (masked copies per forward;
    ``None``: by device, :func:`gmxai_eval.utils.device_chunk`)."""

    card = MethodCard(
        name="score_cam", family="cam", signed=False, needs_layer=True,
        paper="Wang et al., CVPR Workshops 2020",
        default_config={"layer": None, "relu": True, "softmax": True, "max_batch": None},
        description="activation maps weighted by the score of the masked input")

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        check_chunk(f"method {self.card.name!r}", self.config["max_batch"])

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        layer = resolve_layer(model, self.config["layer"], self.card.name)
        a, _, _ = capture_layer(model, layer, x, target, self.card.name, grads=False)
        b, k = a.shape[:2]
        up = upsample(a, tuple(x.shape[-2:]))                     # (b, K, H, W)
        flat = up.flatten(2)
        lo, hi = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
        masks = ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(up)
        owners = torch.arange(b, device=x.device).repeat_interleave(k)

        def make(j: torch.Tensor) -> torch.Tensor:
            return x[owners[j]] * masks.view(b * k, 1, *x.shape[-2:])[j]

        transform = (lambda o: o.softmax(1)) if self.config["softmax"] else None
        scores = score_copies(model, make, owners, target, device_chunk(x.device, self.config["max_batch"]), transform)
        cam = (scores.view(b, k, 1, 1) * up).sum(1)
        return cam.clamp_min(0) if self.config["relu"] else cam
