"""GradientSHAP and DeepLiftShap against Captum on identical inputs, references and seeds; LRP
composites against conservation and gradient x input; RISE against its closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import DeepLiftShap, GradientShap
from torch import nn

from gmxai_eval.errors import ModelStateError
from gmxai_eval.methods import create_method
from gmxai_eval.methods._common import image_seeds
from gmxai_eval.methods.lrp import lrp_copy
from gmxai_eval.models import MODELS
from gmxai_eval.models.base import ClassifierHead, GMXModel, Preprocess

# ---------------------------------------------------------------------------- GradientSHAP


@pytest.mark.parametrize("baselines", ["uniform", "black_white", "blur_uniform"])
def test_gradient_shap_equals_captum(baselines, toy_model, toy_batch):
    x, t, _ = toy_batch
    e = create_method("gradient_shap", baselines=baselines, n_samples=8, n_baselines=5)
    ours = e(toy_model, x, t)
    refs = e.references(x)
    seeds = image_seeds(x, 0, "gradient_shap")
    ref = []
    for i in range(x.shape[0]):
        torch.manual_seed(seeds[i])
        np.random.seed(seeds[i] % 2 ** 32)
        ref.append(GradientShap(toy_model).attribute(x[i:i + 1].clone().requires_grad_(), baselines=refs[i],
                                                     target=t[i:i + 1], n_samples=8, stdevs=0.0).sum(1))
    torch.testing.assert_close(ours, torch.cat(ref), rtol=1e-5, atol=1e-7)
    assert refs.shape[:2] == (x.shape[0], 2 if baselines == "black_white" else 5)


def test_gradient_shap_references_are_keyed_on_the_image(toy_batch):
    x, _, _ = toy_batch
    e = create_method("gradient_shap")
    torch.testing.assert_close(e.references(x.flip(0)), e.references(x).flip(0))
    r = e.references(x)
    assert 0 <= float(r.min()) and float(r.max()) <= 1 and abs(float(r.mean()) - 0.5) < 0.01


def test_gradient_shap_on_a_linear_model_is_input_minus_mean_reference_times_weight(linear_model, toy_batch):
    """Linear model: every gradient is w, so the map is (x - mean of the drawn references) * w;
    with the black/white pair drawn uniformly its expectation is (x - 1/2) * w."""
    x, t, _ = toy_batch
    e = create_method("gradient_shap", baselines="black_white", n_samples=4000)
    a = e(linear_model, x[:1], t[:1])
    w = linear_model.head.fc.weight[t[0]].view(3, 32, 32)
    torch.testing.assert_close(a[0], ((x[0] - 0.5) * w).sum(0), rtol=0, atol=0.05 * float(w.abs().max()))


# ---------------------------------------------------------------------------- DeepLiftShap


def test_deeplift_shap_equals_captum(toy_model, toy_batch):
    x, t, _ = toy_batch
    e = create_method("deeplift_shap", n_baselines=4)
    ours = e(toy_model, x, t)
    refs = e.references(x)
    ref = torch.cat([DeepLiftShap(toy_model).attribute(x[i:i + 1].clone().requires_grad_(), baselines=refs[i],
                                                       target=t[i:i + 1]).sum(1) for i in range(x.shape[0])])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_deeplift_shap_refuses_reused_modules(shared_pool_model, toy_batch):
    x, t, _ = toy_batch
    with pytest.raises(ModelStateError, match="several names"):
        create_method("deeplift_shap", n_baselines=2)(shared_pool_model, x, t % 4)


# ---------------------------------------------------------------------------- LRP


class BiasFreeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.features(x)))


def _bias_free(mean: float = 0.0, std: float = 1.0) -> GMXModel:
    torch.manual_seed(7)
    head = ClassifierHead(8, 3)
    head.fc.bias = None
    return GMXModel(BiasFreeNet(), head, Preprocess((mean,) * 3, (std,) * 3)).eval()


@pytest.mark.parametrize("name", ["lrp_epsilon", "lrp_epsilon_plus", "lrp_epsilon_gamma"])
@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (0.5, 0.5)])
def test_lrp_conserves_relevance_on_a_bias_free_relu_net(name, mean, std, toy_batch):
    """Sum of the map = the explained logit (every composite, with and without a normalising
    preprocessing: its shift absorbs no relevance)."""
    x, _, _ = toy_batch
    model = _bias_free(mean, std)
    with torch.no_grad():
        out = model(x)
    t = out.argmax(1)   # positive logits, so the z+ rule has relevance to pass
    a = create_method(name)(model, x, t)
    torch.testing.assert_close(a.sum((1, 2)), out.gather(1, t.view(-1, 1)).squeeze(1), rtol=1e-4, atol=1e-6)


def test_lrp_epsilon_is_gradient_times_input_on_a_bias_free_relu_net(toy_batch):
    """Known identity (Ancona et al. 2018): LRP-epsilon with epsilon -> 0 equals gradient x input
    on ReLU networks without bias (max-pool: the winner takes all, as the gradient does)."""
    x, t, _ = toy_batch
    model = _bias_free()
    t = t % 3
    a = create_method("lrp_epsilon", epsilon=1e-9)(model, x, t)
    ixg = create_method("input_x_gradient")(model, x, t)
    torch.testing.assert_close(a, ixg, rtol=1e-3, atol=1e-6)


def test_lrp_composites_differ(toy_batch):
    x, _, _ = toy_batch
    model = _bias_free()
    t = torch.zeros(x.shape[0], dtype=torch.long)
    maps = [create_method(n)(model, x, t) for n in ("lrp_epsilon", "lrp_epsilon_plus", "lrp_epsilon_gamma")]
    assert not torch.allclose(maps[0], maps[1]) and not torch.allclose(maps[1], maps[2])


def test_lrp_flat_first_layer_ignores_the_input_pattern():
    """Flat rule on a 1x1 first layer: every input channel of a pixel gets the same share of
    that pixel's relevance, whatever the channel values (epsilon would weight them by w x)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = GMXModel(net, ClassifierHead(4, 2), Preprocess((0.0,) * 3, (1.0,) * 3)).eval()
    model.head.fc.bias = None
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    a = create_method("lrp_epsilon_plus", reduce="sum")(model, x, torch.tensor([0]))
    per_channel = create_method("lrp_epsilon_plus", reduce="max_abs")(model, x, torch.tensor([0]))
    torch.testing.assert_close(per_channel * 3, a.abs(), rtol=1e-5, atol=1e-8)


def test_lrp_runs_on_a_safe_copy_of_gestaltmatcher(toy_batch):
    """GestaltMatcher v1 shares one max-pool object at four depths: LRP unshares it in a copy
    (same outputs as the model), folds its BatchNorm layers, and leaves the model untouched."""
    model = MODELS.create("gestaltmatcher_v1", num_classes=3) if "gestaltmatcher_v1" in MODELS else None
    if model is None:
        pytest.skip("gestaltmatcher_v1 not registered")
    x = torch.rand(1, 3, 100, 100, generator=torch.Generator().manual_seed(2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = lrp_copy(model, x, "epsilon")
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    a = create_method("lrp_epsilon_plus")(model, x, torch.tensor([0]))
    assert a.shape == (1, 100, 100) and torch.isfinite(a).all()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(hasattr(m, "rule") for m in model.modules())


def test_lrp_refuses_layers_without_a_rule(toy_batch):
    x, t, _ = toy_batch
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.PReLU(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = GMXModel(net, ClassifierHead(4, 4), Preprocess((0.0,) * 3, (1.0,) * 3)).eval()
    with pytest.raises(ModelStateError, match="PReLU"):
        create_method("lrp_epsilon")(model, x, t)


def test_lrp_refuses_a_module_called_twice(twice_model, toy_batch):
    x, t, _ = toy_batch
    with pytest.raises(ModelStateError, match="called several times"):
        create_method("lrp_epsilon")(twice_model, x, t % 4)


def test_lrp_handles_inplace_relu_in_its_copy(inplace_model, toy_batch):
    """In-place ReLUs are made out-of-place in the copy: same map as the same net without them."""
    x, t, _ = toy_batch
    a = create_method("lrp_epsilon")(inplace_model, x, t % 4)
    for m in inplace_model.modules():
        if isinstance(m, nn.ReLU):
            assert m.inplace          # the model itself is unchanged
            m.inplace = False
    torch.testing.assert_close(a, create_method("lrp_epsilon")(inplace_model, x, t % 4))


# ---------------------------------------------------------------------------- RISE


def test_rise_equals_its_closed_form_on_a_linear_model(linear_model, toy_batch):
    """Linear model, logit output: f(M x + (1 - M) b) = w . (M x + (1 - M) b) + c in closed form,
    so the map is 1 / (N p) sum_i (w . x_i + c) M_i with the explainer's own masks."""
    x, t, _ = toy_batch
    e = create_method("rise", n_masks=300, grid=4, p=0.5, output="logit", baseline=0.0)
    a = e(linear_model, x, t)
    m = e.masks((32, 32))                                                       # (N, H, W)
    w = linear_model.head.fc.weight.view(-1, 3, 32, 32)
    c = linear_model.head.fc.bias
    for i in range(x.shape[0]):
        f = (m.unsqueeze(1) * x[i] * w[t[i]]).sum((1, 2, 3)) + c[t[i]]          # (N,)
        ref = (f.view(-1, 1, 1) * m).sum(0) / (300 * 0.5)
        torch.testing.assert_close(a[i], ref, rtol=1e-4, atol=1e-5)


def test_rise_masks_have_mean_p_and_the_paper_shape():
    """Bilinear upsampling of Bernoulli(p) cells keeps E[M] = p at every pixel (so a constant
    model's map is that constant); masks are smooth (not binary) and shifted."""
    e = create_method("rise", n_masks=4000, grid=7, p=0.3)
    m = e.masks((112, 112))
    assert m.shape == (4000, 112, 112) and 0 <= float(m.min()) and float(m.max()) <= 1
    assert abs(float(m.mean()) - 0.3) < 0.01
    assert float(m.mean(0).sub(0.3).abs().max()) < 0.06
    assert ((m > 0) & (m < 1)).float().mean() > 0.2


def test_rise_constant_model_map_is_the_constant(toy_batch):
    """E[f M] / p = f for a model whose output does not depend on the input (probability 1/4)."""
    x, t, _ = toy_batch

    class Const(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 4) + 0 * x.flatten(1).sum(1, keepdim=True)

    a = create_method("rise", n_masks=4000)(Const().eval(), x[:1], t[:1])
    assert abs(float(a.mean()) - 0.25) < 0.01


def test_rise_is_seed_reproducible(toy_model, toy_batch):
    x, t, _ = toy_batch
    a = create_method("rise", n_masks=200, seed=3)(toy_model, x, t)
    torch.testing.assert_close(create_method("rise", n_masks=200, seed=3)(toy_model, x, t), a, rtol=0, atol=0)
    assert not torch.allclose(create_method("rise", n_masks=200, seed=4)(toy_model, x, t), a)


def test_lrp_copy_of_the_default_architecture_computes_the_same_function():
    """gmx_small (conv without bias -> BatchNorm -> ReLU blocks): after folding every BatchNorm
    into its convolution the copy's logits equal the model's."""
    model = MODELS.create("gmx_small", num_classes=5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(5))
    net = lrp_copy(model, x, "epsilon_gamma")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 0
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-4, atol=1e-5)
