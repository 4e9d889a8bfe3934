"""Analytic oracles: linear models, completeness identities, CAM equalities."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gmxai_eval.methods import create_method
from gmxai_eval.methods.fullgrad import _post_process, completeness_gap, fullgrad_terms
from gmxai_eval.models import MODELS


def _w(linear_model, t):
    """Per-sample weight images ``(B, C, H, W)`` of the target class."""
    return linear_model.head.fc.weight[t].detach().view(len(t), 3, 32, 32)


def test_linear_saliency_is_abs_weight(linear_model, toy_batch):
    x, t, _ = toy_batch
    w = _w(linear_model, t)
    torch.testing.assert_close(create_method("saliency")(linear_model, x, t), w.abs().amax(1))
    torch.testing.assert_close(create_method("saliency", reduce="sum")(linear_model, x, t), w.abs().sum(1))
    torch.testing.assert_close(create_method("saliency", abs=False, reduce="sum")(linear_model, x, t), w.sum(1))


def test_linear_input_x_gradient_and_paths(linear_model, toy_batch):
    x, t, _ = toy_batch
    w = _w(linear_model, t)
    torch.testing.assert_close(create_method("input_x_gradient")(linear_model, x, t), (w * x).sum(1))
    torch.testing.assert_close(create_method("input_x_gradient", reduce="mean")(
        linear_model, x, t), (w * x).mean(1))
    # IG and DeepLIFT are exact on a linear model: w * (x - baseline)
    for name in ("integrated_gradients", "deeplift"):
        torch.testing.assert_close(create_method(name)(linear_model, x, t), (w * x).sum(1), rtol=1e-4, atol=1e-6)
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(create_method("integrated_gradients", baseline="mean", n_steps=4)(linear_model, x, t),
                               (w * (x - mean)).sum(1), rtol=1e-4, atol=1e-6)


def test_linear_noise_tunnel(linear_model, toy_batch):
    """A constant gradient: SmoothGrad = w, SmoothGrad² = w², VarGrad = 0."""
    x, t, _ = toy_batch
    w = _w(linear_model, t)
    kw = {"n_samples": 4, "reduce": "sum"}
    torch.testing.assert_close(create_method("smoothgrad", **kw)(linear_model, x, t), w.sum(1))
    torch.testing.assert_close(create_method("smoothgrad_sq", **kw)(linear_model, x, t), (w * w).sum(1))
    torch.testing.assert_close(create_method("vargrad", **kw)(linear_model, x, t), torch.zeros(6, 32, 32),
                               atol=1e-9, rtol=0)


@pytest.mark.parametrize("baseline", ["zero", "blur", "mean"])
def test_integrated_gradients_completeness(toy_model, toy_batch, baseline):
    from gmxai_eval.methods.paths import reference_input

    x, t, _ = toy_batch
    x, t = x[:3], t[:3]
    with torch.no_grad():
        toy_model.head.fc.weight.mul_(50)   # larger logit differences: a stricter identity
    a = create_method("integrated_gradients", baseline=baseline, n_steps=64)(toy_model, x, t)
    with torch.no_grad():
        fx = toy_model(x).gather(1, t.view(-1, 1)).squeeze(1)
        fb = toy_model(reference_input(baseline, x)).gather(1, t.view(-1, 1)).squeeze(1)
    diff = fx - fb
    assert diff.abs().min() > 1e-2  # a non-trivial identity
    torch.testing.assert_close(a.sum((1, 2)), diff, rtol=0.01, atol=1e-6)


def test_deeplift_completeness(toy_model, toy_batch):
    x, t, _ = toy_batch
    a = create_method("deeplift")(toy_model, x, t)
    with torch.no_grad():
        diff = (toy_model(x) - toy_model(torch.zeros_like(x))).gather(1, t.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(a.sum((1, 2)), diff, rtol=1e-4, atol=1e-6)


def test_fullgrad_completeness_and_map(pl_model, toy_batch):
    x, t, _ = toy_batch
    inp, biases, scores = fullgrad_terms(pl_model, x, t)
    # conv (2) + BN (2) + linear (1) + the preprocess's affine normalisation (1)
    assert len(biases) == 6
    total = inp.sum((1, 2, 3)) + sum(b.flatten(1).sum(1) for b in biases)
    torch.testing.assert_close(total, scores, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        logits = pl_model(x).gather(1, t.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(scores, logits)
    torch.testing.assert_close(completeness_gap(pl_model, x, t), torch.zeros(6), atol=1e-5, rtol=0)
    # the map is built from exactly those terms (official post-processing)
    ref = _post_process(inp).sum(1)
    for b in biases:
        if b.ndim == 4:
            ref = ref + F.interpolate(_post_process(b), size=(32, 32), mode="bilinear", align_corners=True).sum(1)
    torch.testing.assert_close(create_method("fullgrad")(pl_model, x, t), ref)


def _layer_acts(model, layer, x):
    acts = []
    h = layer.register_forward_hook(lambda m, i, o: acts.append(o.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return acts[0]


def test_gap_head_cam_equals_gradcam_equals_hirescam(toy_model, toy_batch):
    """toy_cnn: GAP + linear head, so CAM = Grad-CAM = HiResCAM at features.3 (signed)."""
    x, t, _ = toy_batch
    a = _layer_acts(toy_model, toy_model.backbone.features[3], x)         # (B, K, 32, 32)
    w = toy_model.head.fc.weight[t].detach()                              # (B, K)
    cam = (w[:, :, None, None] * a).sum(1) / (a.shape[-2] * a.shape[-1])  # classic CAM (per GAP)
    maps = {n: create_method(n, relu=False)(toy_model, x, t) for n in ("grad_cam", "hirescam")}
    torch.testing.assert_close(maps["grad_cam"], cam, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(maps["hirescam"], cam, rtol=1e-4, atol=1e-7)
    relu = create_method("grad_cam")(toy_model, x, t)
    torch.testing.assert_close(relu, cam.clamp_min(0), rtol=1e-4, atol=1e-7)


def test_gestaltmatcher_v1_cam_equalities():
    """GestaltMatcher v1: the embedding is the global average of base.13 (a plain conv), so
    CAM = Grad-CAM = HiResCAM there, despite the shared max-pool elsewhere in the network."""
    torch.manual_seed(0)
    model = MODELS.create("gestaltmatcher_v1", num_classes=5).eval()
    x = torch.rand(2, 3, 100, 100, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([1, 4])
    a = _layer_acts(model, model.get_submodule(model.cam_layer), x)            # (2, 320, 7, 7)
    w = model.head.fc.weight[t].detach()
    cam = F.interpolate(((w[:, :, None, None] * a).sum(1) / 49)[:, None], size=(100, 100),
                        mode="bilinear", align_corners=False)[:, 0]
    for name in ("grad_cam", "hirescam"):
        torch.testing.assert_close(create_method(name, relu=False)(model, x, t), cam, rtol=1e-4, atol=1e-6)


def test_flatten_head_hirescam_sums_to_target_minus_constant(flatten_model):
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 16, 16, generator=g)
    t = torch.tensor([0, 1, 2])
    with torch.no_grad():
        logits = flatten_model(x).gather(1, t.view(-1, 1)).squeeze(1)
    explained = logits - flatten_model.head.fc.bias[t].detach()
    hires = create_method("hirescam", relu=False)(flatten_model, x, t)     # layer at input resolution
    torch.testing.assert_close(hires.sum((1, 2)), explained, rtol=1e-4, atol=1e-5)
    grad = create_method("grad_cam", relu=False)(flatten_model, x, t)
    assert ((grad.sum((1, 2)) - explained).abs() > 0.05 * explained.abs()).all()


def test_layer_cam_and_score_cam_equal_naive(toy_model, toy_batch):
    x, t, _ = toy_batch
    layer = toy_model.backbone.features[1]
    a = _layer_acts(toy_model, layer, x)
    xg = x.clone()
    acts = []
    h = layer.register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        out = toy_model(xg).gather(1, t.view(-1, 1)).sum()
    finally:
        h.remove()
    (g,) = torch.autograd.grad(out, acts[0])
    ref = (g.clamp_min(0) * a).sum(1).clamp_min(0)
    torch.testing.assert_close(create_method("layer_cam", layer="backbone.features.1")(toy_model, x, t), ref)
    # Score-CAM, one masked forward per image and channel
    ref = torch.zeros(6, 32, 32)
    for i in range(6):
        for k in range(a.shape[1]):
            m = a[i, k]
            m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)
            with torch.no_grad():
                p = toy_model(x[i:i + 1] * m).softmax(1)[0, t[i]]
            ref[i] += p * a[i, k]
    ours = create_method("score_cam", layer="backbone.features.1", max_batch=5)(toy_model, x, t)
    torch.testing.assert_close(ours, ref.clamp_min(0), rtol=1e-5, atol=1e-6)
