"""Parity with Captum on identical models and inputs (index and callable targets)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import (
    Deconvolution,
    DeepLift,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    Saliency,
)

from gmxai_eval.methods import create_method


@pytest.fixture
def xt(toy_batch):
    x, t, _ = toy_batch
    return x, t


def _req(x):
    return x.clone().requires_grad_(True)


def _captum(name, model, x, t):
    layer = model.backbone.features[3]
    if name == "saliency":
        return Saliency(model).attribute(_req(x), target=t, abs=True).abs().amax(1)
    if name == "input_x_gradient":
        return InputXGradient(model).attribute(_req(x), target=t).sum(1)
    if name == "deconvolution":
        return Deconvolution(model).attribute(_req(x), target=t).sum(1)
    if name == "guided_backprop":
        return GuidedBackprop(model).attribute(_req(x), target=t).sum(1)
    if name == "integrated_gradients":
        return IntegratedGradients(model).attribute(_req(x), baselines=torch.zeros_like(x), target=t,
                                                    n_steps=50, method="gausslegendre").sum(1)
    if name == "deeplift":
        return DeepLift(model).attribute(_req(x), baselines=torch.zeros_like(x), target=t).sum(1)
    if name == "grad_cam":
        cam = LayerGradCam(model, layer).attribute(_req(x), target=t, relu_attributions=True)
        return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    if name == "guided_grad_cam":
        return GuidedGradCam(model, layer).attribute(_req(x), target=t, interpolate_mode="bilinear").sum(1)
    raise KeyError(name)


WRAPPED = ["saliency", "input_x_gradient", "deconvolution", "guided_backprop", "integrated_gradients",
           "deeplift", "grad_cam", "guided_grad_cam"]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", WRAPPED)
def test_equals_captum(name, toy_model, xt):
    x, t = xt
    ours = create_method(name)(toy_model, x, t)
    torch.testing.assert_close(ours, _captum(name, toy_model, x, t), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", WRAPPED)
def test_callable_target_equals_index_target(name, toy_model, xt):
    """A callable target (wrapped into a one-output model for Captum) gives the same map."""
    x, t = xt
    e = create_method(name)
    by_index = e(toy_model, x, t)
    by_callable = e(toy_model, x, lambda out: out.gather(1, t.view(-1, 1)).squeeze(1))
    torch.testing.assert_close(by_callable, by_index, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,stat", [("smoothgrad", "mean"), ("smoothgrad_sq", "sq"), ("vargrad", "var")])
def test_noise_tunnel_equals_captum_saliency_on_the_same_noise(name, stat, toy_model, xt):
    """NoiseTunnel semantics: the statistic of Captum's signed gradient over the same noisy copies."""
    x, t = xt
    e = create_method(name, n_samples=5, noise_level=0.2, reduce="sum")
    noise = e.noise(x)
    grads = torch.stack([Saliency(toy_model).attribute(_req(x + n), target=t, abs=False) for n in noise])
    ref = {"mean": grads.mean(0), "sq": (grads ** 2).mean(0),
           "var": (grads ** 2).mean(0) - grads.mean(0) ** 2}[stat].sum(1)
    torch.testing.assert_close(e(toy_model, x, t), ref, rtol=1e-4, atol=1e-9)
    # the noise is relative to each image's value range and keyed on the image, not its position
    std = noise.std(dim=(0, 2, 3, 4))
    rng = x.flatten(1).amax(1) - x.flatten(1).amin(1)
    torch.testing.assert_close(std / rng, torch.full_like(std, 0.2), rtol=0.05, atol=0)
    torch.testing.assert_close(e.noise(x.flip(0)), noise.flip(1))
