"""Methods from a Captum class/instance or a Quantus-style explain_func, checked against the
registered methods they duplicate (same maps), and the map conversion against hand reductions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradCam, Saliency

from gmxai_eval.errors import ConfigError, NonFiniteError, ShapeError
from gmxai_eval.methods import METHODS
from gmxai_eval.methods.interop import as_maps, from_captum, from_explain_func
from gmxai_eval.utils import module_by_name


def test_captum_class_reproduces_the_registered_method(toy_model, toy_batch):
    x, t, _ = toy_batch
    got = from_captum(Saliency, reduce="max_abs")(toy_model, x, t)
    want = METHODS.create("saliency")(toy_model, x, t)  # |grad| max over channels
    torch.testing.assert_close(got, want)
    ig = from_captum(IntegratedGradients, attribute_kwargs={"n_steps": 16})(toy_model, x, t)
    ref = METHODS.create("integrated_gradients", n_steps=16)(toy_model, x, t)
    torch.testing.assert_close(ig, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("as_module", [False, True])
def test_captum_layer_class_with_name_or_module_equals_grad_cam(toy_model, toy_batch, as_module):
    x, t, _ = toy_batch
    layer = "backbone.features.3"
    arg = module_by_name(toy_model, layer) if as_module else layer
    got = from_captum(LayerGradCam, layer=arg, relu=True)(toy_model, x, t)
    want = METHODS.create("grad_cam", layer=layer)(toy_model, x, t)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_captum_layer_class_without_layer_is_a_config_error():
    with pytest.raises(ConfigError, match="layer attribution; expected layer="):
        from_captum(LayerGradCam)


def test_captum_instance_is_used_as_built(toy_model, toy_batch):
    x, t, _ = toy_batch
    got = from_captum(Saliency(toy_model), name="sal")(toy_model, x, t)
    want = from_captum(Saliency)(toy_model, x, t)
    torch.testing.assert_close(got, want)


def _grad_x_input(model, inputs, targets):
    """A Quantus-style explain_func in NumPy: input x gradient, (B, C, H, W) float64."""
    x = torch.as_tensor(inputs, dtype=torch.float32).requires_grad_(True)
    out = model(x).gather(1, torch.as_tensor(targets).long().view(-1, 1)).sum()
    (g,) = torch.autograd.grad(out, x)
    return (g * x).detach().numpy().astype(np.float64)


def test_quantus_style_explain_func_equals_input_x_gradient(toy_model, toy_batch):
    x, t, _ = toy_batch
    ex = from_explain_func(_grad_x_input, numpy=True)
    assert ex.name == "_grad_x_input"
    got = ex(toy_model, x, t)
    want = METHODS.create("input_x_gradient")(toy_model, x, t)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_gradient_free_explain_func_and_registration(toy_model, toy_batch):
    x, t, _ = toy_batch

    def brightness(model, inputs, targets):  # no gradient, (B, 1, H, W) tensor
        return inputs.mean(1, keepdim=True)

    ex = from_explain_func(brightness, name="brightness_test", register=True)
    try:
        torch.testing.assert_close(ex(toy_model, x, t), x.mean(1))
        again = METHODS.create("brightness_test", reduce="sum")
        torch.testing.assert_close(again(toy_model, x, t), x.mean(1))
        assert METHODS.card("brightness_test").family == "user"
    finally:
        METHODS.unregister("brightness_test")


def test_callable_targets_are_refused_by_explain_funcs(toy_model, toy_batch):
    x, _, _ = toy_batch
    with pytest.raises(ConfigError, match="class-index targets"):
        from_explain_func(_grad_x_input)(toy_model, x, lambda out: out[:, 0])


@pytest.mark.parametrize("how", ["sum", "sum_abs", "max_abs", "mean"])
def test_as_maps_reduces_channels_like_the_hand_formula(how):
    a = np.random.default_rng(0).normal(size=(2, 3, 5, 5))
    want = {"sum": a.sum(1), "sum_abs": np.abs(a).sum(1), "max_abs": np.abs(a).max(1),
            "mean": a.mean(1)}[how]
    got = as_maps(a, 2, (5, 5), reduce=how)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    one = as_maps(torch.from_numpy(a[:, :1]).half(), 2, (5, 5))
    np.testing.assert_allclose(one.numpy(), a[:, 0], atol=2e-3)


@pytest.mark.parametrize("bad, err, msg", [
    (np.zeros((3, 5, 5)), ShapeError, r"expected maps of shape \(2, \[C,\] H, W\)"),
    (np.zeros((2, 4, 4)), ShapeError, r"input size \(5, 5\), got \(4, 4\)"),
    (np.full((2, 5, 5), np.nan), NonFiniteError, "NaN/inf"),
    (np.zeros((2, 5, 5), dtype=complex), ShapeError, "real-valued"),
    (np.array([["a"]]), ShapeError, "numeric array"),
    ([[0.0]], ShapeError, "tensor or NumPy array"),
])
def test_as_maps_rejects_bad_maps_with_typed_errors(bad, err, msg):
    with pytest.raises(err, match=msg):
        as_maps(bad, 2, (5, 5))
