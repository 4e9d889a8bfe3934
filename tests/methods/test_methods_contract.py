"""Contract tests parametrised over every registered method (a new entry is tested on sight)."""

from __future__ import annotations

import pytest
import torch
from counterfactual_toys import HalvesRenderer
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.methods import METHODS, create_method, list_methods, method_card
from gmxai_eval.methods.base import Explainer, register_method
from gmxai_eval.types import MethodCard

#: Small configurations so the whole contract runs in seconds.
FAST = {
    "smoothgrad": {"n_samples": 3}, "smoothgrad_sq": {"n_samples": 3}, "vargrad": {"n_samples": 3},
    "integrated_gradients": {"n_steps": 6}, "occlusion": {"patch": 8, "stride": 4, "max_batch": 20},
    "score_cam": {"max_batch": 7},
    "lime": {"n_samples": 40, "n_segments": 16}, "kernel_shap": {"n_samples": 40, "n_segments": 16},
    "shapley_sampling": {"n_samples": 2, "n_segments": 16}, "feature_ablation": {"n_segments": 16},
    "gradient_shap": {"n_samples": 4, "n_baselines": 3}, "deeplift_shap": {"n_baselines": 3},
    "rise": {"n_masks": 100, "max_batch": 64},
}
B, H = 4, 32


def make(name: str, **extra) -> Explainer:
    return create_method(name, **{**FAST.get(name, {}), **extra})


def call(e: Explainer, model, x, target, masks):
    if getattr(e, "needs_masks", False):
        return e(model, x, target, masks=masks)
    if getattr(e, "needs_samples", False):
        return e(model, x, target, samples=[str(i) for i in range(x.shape[0])],
                 renderer=HalvesRenderer(x, "methods-contract-halves-v1"))
    return e(model, x, target)


def hooks_empty(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
               and not m._backward_pre_hooks for m in model.modules())


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(11)
    x = torch.rand(B, 3, H, H, generator=g)
    masks = torch.rand(B, H, H, generator=g) > 0.7
    return x, torch.tensor([0, 1, 2, 3]), masks


@pytest.mark.parametrize("head", ["classifier", "gallery"])
@pytest.mark.parametrize("name", list_methods())
def test_contract(name, head, batch, toy_model, gallery_model):
    model = toy_model if head == "classifier" else gallery_model
    x, target, masks = batch
    model.backbone.features[0].weight.requires_grad_(False)   # a frozen parameter must stay frozen
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    e = make(name)
    a = call(e, model, x, target, masks)
    assert a.shape == (B, H, H) and a.dtype == torch.float32 and torch.isfinite(a).all()
    # deterministic given the seed, and independent of chunking
    torch.testing.assert_close(call(make(name), model, x, target, masks), a, rtol=0, atol=0)
    torch.testing.assert_close(call(make(name, chunk_size=3), model, x, target, masks), a,
                               rtol=1e-5, atol=1e-6)
    # callers may hold autograd off (evaluators scoring under no_grad): same maps
    if head == "classifier":
        with torch.no_grad():
            torch.testing.assert_close(call(make(name), model, x, target, masks), a, rtol=0, atol=0)
    # state restored, no hook left
    assert not model.training and not any(m.training for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert hooks_empty(model)
    # non-control methods depend on the target; controls ignore it
    other = call(make(name), model, x, (target + 1) % 4, masks)
    if method_card(name).control:
        torch.testing.assert_close(other, a)
    else:
        assert not torch.allclose(other, a)


class Boom(RuntimeError):
    pass


def _exploding_target(out: torch.Tensor) -> torch.Tensor:
    raise Boom("injected")


@pytest.mark.parametrize("name", list_methods())
def test_no_hook_or_state_leak_after_exception(name, batch, toy_model):
    x, _, masks = batch
    e = make(name)
    toy_model.backbone.features[2].bias.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in toy_model.named_parameters()}
    if method_card(name).control:
        # controls never touch the model: a model whose forward raises is never called
        toy_model.forward = _exploding_target  # type: ignore[method-assign]
        a = call(e, toy_model, x, torch.zeros(B, dtype=torch.long), masks)
        assert a.shape == (B, H, H)
    else:
        with pytest.raises(Boom):
            call(e, toy_model, x, _exploding_target, masks)
    assert hooks_empty(toy_model)
    assert not any(m.training for m in toy_model.modules())
    assert {n: p.requires_grad for n, p in toy_model.named_parameters()} == flags


@pytest.mark.parametrize("name", list_methods())
def test_card_and_config(name):
    card = method_card(name)
    assert isinstance(card, MethodCard) and card.name == name
    assert card.control == (card.family == "control")
    e = create_method(name, **dict(card.default_config))       # every default is accepted
    assert e.name == name
    with pytest.raises(ConfigError, match="unknown config key"):
        create_method(name, not_an_option=1)


def test_bad_target_raises_before_any_work(toy_model, batch):
    x, _, _ = batch
    with pytest.raises(ShapeError, match=r"expected target of shape \(4,\)"):
        create_method("saliency")(toy_model, x, torch.tensor([0, 1]))


def test_entry_point_registration(monkeypatch):
    """A third-party package registers a method through the ``gmxai_eval.methods`` group."""
    import importlib.metadata as md

    class PluginMethod(Explainer):
        card = MethodCard(name="plugin_test_method", family="gradient", signed=True, paper="-")

        def _attribute(self, model, x, target):
            return torch.ones(x.shape[0], *x.shape[-2:])

    class FakeEP:
        name, group = "plugin", "gmxai_eval.methods"

        def load(self):
            register_method(PluginMethod)
            return PluginMethod

    seen = []

    def fake_entry_points(**kw):
        seen.append(kw.get("group"))
        return [FakeEP()] if kw.get("group") == "gmxai_eval.methods" else []

    monkeypatch.setattr(md, "entry_points", fake_entry_points)
    monkeypatch.setattr(METHODS, "_entry_points_loaded", False)
    try:
        assert "plugin_test_method" in list_methods()
        assert seen == ["gmxai_eval.methods"]
        assert isinstance(create_method("plugin_test_method"), PluginMethod)
    finally:
        if "plugin_test_method" in METHODS._entries:
            METHODS.unregister("plugin_test_method")
