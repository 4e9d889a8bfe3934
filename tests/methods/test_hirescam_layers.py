"""HiResCAM vs Grad-CAM on the default model (Draelos & Carin): they coincide at the GAP layer
(``backbone.base.6``, followed only by global average pooling and a linear head) and differ one
layer earlier (``backbone.base.5``), where only HiResCAM sums to the class score. The default
spec lists both methods at ``backbone.base.5`` for that reason, and Grad-CAM alone at the GAP
layer."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.methods import create_method, list_methods
from gmxai_eval.methods.base import METHODS
from gmxai_eval.models import MODELS
from gmxai_eval.runner.spec import preset_spec


@pytest.fixture(scope="module")
def default_batch():
    from gmxai_eval.models.default import load_default
    from gmxai_eval.runner.stages.load import select_samples

    torch.set_num_threads(1)
    model, splits, _ = load_default(progress=False)
    x = torch.stack([s.image for s in select_samples(splits.test, "test", 8, "stratified")])
    with torch.no_grad():
        t = model(x).argmax(1)
    return model, x, t


def _logit_without_layer(model, x, t, layer):
    """The target logit with ``layer``'s output replaced by zeros (the affine tail's offset)."""
    mod = dict(model.named_modules())[layer]
    h = mod.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    try:
        with torch.no_grad():
            return model(x).gather(1, t[:, None])[:, 0]
    finally:
        h.remove()


@pytest.mark.slow
def test_grad_cam_equals_hirescam_at_the_gap_layer(default_batch):
    model, x, t = default_batch
    g = METHODS.create("grad_cam", layer="backbone.base.6")(model, x, t)
    h = METHODS.create("hirescam", layer="backbone.base.6")(model, x, t)
    assert torch.allclose(g, h, rtol=1e-4, atol=1e-6 * float(g.abs().max()))


@pytest.mark.slow
def test_they_differ_one_layer_earlier_where_only_hirescam_sums_to_the_score(default_batch):
    """After ``backbone.base.5`` the model is affine (conv, GAP, linear), so
    ``y = sum_{k,hw} G * A + y(A = 0)``: the un-clipped HiResCAM map sums exactly to
    ``y - y(A = 0)``; Grad-CAM's spatially averaged gradients do not. Bilinear upsampling by an
    integer factor (7 -> 112, align_corners=False) preserves the mean, so the layer map's sum is
    ``49 * mean`` of the returned map."""
    model, x, t = default_batch
    layer = "backbone.base.5"
    with torch.no_grad():
        y = model(x).gather(1, t[:, None])[:, 0]
    offset = _logit_without_layer(model, x, t, layer)
    h = METHODS.create("hirescam", layer=layer, relu=False)(model, x, t)
    g = METHODS.create("grad_cam", layer=layer, relu=False)(model, x, t)
    assert torch.allclose(49 * h.mean((1, 2)), y - offset, rtol=1e-3, atol=1e-3)
    assert not torch.allclose(49 * g.mean((1, 2)), y - offset, rtol=0.05)
    # and the default (ReLU-clipped) maps differ: median relative L2 distance 0.24 measured on 16 images
    hr = METHODS.create("hirescam", layer=layer)(model, x, t)
    gr = METHODS.create("grad_cam", layer=layer)(model, x, t)
    rel = (hr - gr).flatten(1).norm(dim=1) / gr.flatten(1).norm(dim=1).clamp_min(1e-12)
    assert float(rel.median()) > 0.1


def test_the_default_spec_scores_both_cams_where_they_differ_and_one_where_they_are_equal():
    got = [(m.name, m.config.get("layer")) for m in preset_spec("default").methods]
    for name in ("grad_cam", "hirescam"):
        assert (name, "backbone.base.5") in got
    at_gap = [n for n, layer in got if n in ("grad_cam", "hirescam") and layer in (None, "backbone.base.6")]
    assert at_gap == ["grad_cam"]  # HiResCAM there would repeat Grad-CAM's row


@pytest.mark.parametrize("name", [n for n in list_methods() if "layer" in METHODS.get(n).card.default_config])
def test_layer_as_module_object_equals_the_dotted_name(name, toy_model):
    """Every method with a ``layer`` takes the module object as Captum does: the same map as its
    dotted name; a module of another model or a non-module is a one-line ConfigError."""
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2])
    by_name = create_method(name, layer="backbone.features.2")(toy_model, x, t)
    by_module = create_method(name, layer=toy_model.backbone.features[2])(toy_model, x, t)
    assert torch.equal(by_name, by_module)
    other = MODELS.create("toy_cnn", num_classes=4, seed=1)
    with pytest.raises(ConfigError, match="expected layer to be a submodule"):
        create_method(name, layer=other.backbone.features[2])(toy_model, x, t)
    with pytest.raises(ConfigError, match="expected layer as a dotted module name or an nn.Module"):
        create_method(name, layer=3)(toy_model, x, t)
