"""Model-structure safety (reused / in-place / twice-called modules), similarity targets, TTA."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gmxai_eval.errors import ModelStateError
from gmxai_eval.methods import create_method
from gmxai_eval.methods.similarity import CosineTarget, EmbeddingModel, SimilarityModel, explain_pair
from gmxai_eval.methods.tta import TTAExplainer
from gmxai_eval.models.base import GalleryHead

CANNOT_COPE = ["deeplift", "deeplift_shap", "guided_backprop", "deconvolution", "guided_grad_cam"]


@pytest.fixture
def xt(toy_batch):
    x, t, _ = toy_batch
    return x[:3], t[:3]


@pytest.mark.parametrize("bad", ["reused_model", "inplace_model", "twice_model"])
@pytest.mark.parametrize("name", CANNOT_COPE)
def test_hook_unsafe_models_raise(name, bad, request, xt):
    model = request.getfixturevalue(bad)
    x, t = xt
    with pytest.raises(ModelStateError, match="needs each used once"):
        create_method(name)(model, x, t)


@pytest.mark.parametrize("name", ["lrp_epsilon", "lrp_epsilon_plus"])
def test_lrp_copes_with_reused_and_inplace_modules_in_its_copy(name, reused_model, xt):
    """LRP unshares a ReLU object registered under two names in its copy: the same map as the
    same weights with two ReLU objects."""
    x, t = xt
    a = create_method(name)(reused_model, x, t)
    separate = copy.deepcopy(reused_model)
    separate.backbone.features[3] = nn.ReLU().eval()
    torch.testing.assert_close(a, create_method(name)(separate, x, t))
    assert reused_model.backbone.features[1] is reused_model.backbone.features[3]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_shared_pool_is_fine_for_relu_only_methods(shared_pool_model, xt):
    """Guided backprop / deconvolution hook only ReLUs: a shared max-pool gives the same maps as
    a twin with separate pools; DeepLIFT hooks pooling too and refuses the model."""
    x, t = xt
    twin = copy.deepcopy(shared_pool_model)
    twin.backbone.features[5] = nn.MaxPool2d(2).eval()
    for name in ("guided_backprop", "deconvolution", "guided_grad_cam"):
        e = create_method(name)
        torch.testing.assert_close(e(shared_pool_model, x, t), e(twin, x, t))
    with pytest.raises(ModelStateError, match="registered once"):
        create_method("deeplift")(shared_pool_model, x, t)
    assert create_method("deeplift")(twin, x, t).shape == (3, 32, 32)


def test_gradient_methods_cope_with_reused_modules(reused_model, xt):
    """Plain gradients are unaffected by module reuse: same maps as a twin with separate ReLUs."""
    x, t = xt
    twin = copy.deepcopy(reused_model)
    twin.backbone.features[3] = nn.ReLU().eval()  # break the sharing, same weights
    configs = {"saliency": {}, "integrated_gradients": {"n_steps": 8}, "fullgrad": {}, "occlusion": {},
               "grad_cam": {"layer": "backbone.features.2"}}
    for name, kw in configs.items():
        e = create_method(name, **kw)
        torch.testing.assert_close(e(reused_model, x, t), e(twin, x, t))
    # a CAM at the shared module itself has no single activation
    with pytest.raises(ModelStateError, match="run once per forward"):
        create_method("grad_cam")(reused_model, x, t)


def test_cam_on_twice_called_layer_raises(twice_model, xt):
    x, t = xt
    for name in ("grad_cam", "hirescam", "score_cam"):
        with pytest.raises(ModelStateError, match="run once per forward"):
            create_method(name, layer="backbone.act")(twice_model, x, t)


def _gallery(toy_model):
    g = torch.Generator().manual_seed(9)
    gal = torch.rand(8, 3, 32, 32, generator=g)
    with torch.no_grad():
        emb = toy_model.embed(gal)
    return gal, emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def test_similarity_model_outputs_and_centroids(toy_model, xt):
    x, t = xt
    gal, emb, labels = _gallery(toy_model)
    sim = SimilarityModel(toy_model, emb)
    with torch.no_grad():
        ref = F.normalize(toy_model.embed(x), dim=1) @ F.normalize(emb, dim=1).t()
        torch.testing.assert_close(sim(x), ref)
        # class centroids reproduce GalleryHead's logits
        by_class = SimilarityModel.from_gallery(toy_model, emb, labels, 4)
        head_model = copy.deepcopy(toy_model)
        head_model.head = GalleryHead.from_gallery(emb, labels, 4)
        torch.testing.assert_close(by_class(x), head_model(x))
    # explaining the similarity to a class centroid = explaining the gallery head's logit
    for name in ("saliency", "grad_cam", "integrated_gradients"):
        e = create_method(name)
        torch.testing.assert_close(e(by_class, x, t), e(head_model.eval(), x, t), rtol=1e-5, atol=1e-7)
    assert sim.cam_layer == "model.backbone.features.3"


def test_cosine_target_per_sample_references(toy_model, xt):
    x, _ = xt
    gal, emb, _ = _gallery(toy_model)
    refs = emb[[5, 0, 2]]
    # oracle: the gradient of cos(embed(x_i), r_i) by hand
    xg = x.clone().requires_grad_(True)
    cos = F.cosine_similarity(toy_model.embed(xg), refs, dim=1)
    (g,) = torch.autograd.grad(cos.sum(), xg)
    model = EmbeddingModel(toy_model)
    for kw in ({}, {"chunk_size": 1}):
        maps = create_method("saliency", abs=False, reduce="sum", **kw)(model, x, CosineTarget(refs))
        torch.testing.assert_close(maps, g.sum(1))
    # Captum's expanded batches (IG) and the CAM layer prefix work with per-sample references
    ig = create_method("integrated_gradients", n_steps=8)
    one_by_one = torch.cat([ig(model, x[i:i + 1], CosineTarget(refs[i:i + 1])) for i in range(3)])
    torch.testing.assert_close(ig(model, x, CosineTarget(refs)), one_by_one, rtol=1e-5, atol=1e-7)
    cam = create_method("hirescam", relu=False)(model, x, CosineTarget(refs))
    assert cam.shape == (3, 32, 32)


def test_explain_pair_is_symmetric_by_construction(toy_model, xt):
    x, _ = xt
    gal, _, _ = _gallery(toy_model)
    ref = gal[:3]
    e = create_method("saliency", abs=False, reduce="sum")
    mq, mr = explain_pair(e, toy_model, x, ref)
    mr2, mq2 = explain_pair(e, toy_model, ref, x)
    torch.testing.assert_close(mq, mq2)
    torch.testing.assert_close(mr, mr2)
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():
        zr = toy_model.embed(ref)
    (g,) = torch.autograd.grad(F.cosine_similarity(toy_model.embed(xg), zr, dim=1).sum(), xg)
    torch.testing.assert_close(mq, g.sum(1))


class FlipInvariant(nn.Module):
    """f(x) = g(x) + g(flip(x)): gradient maps are flip-equivariant."""

    def __init__(self, g: nn.Module) -> None:
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(x) + self.g(torch.flip(x, dims=[-1]))


def test_tta_unflips_and_averages(toy_model, xt):
    x, t = xt
    inv = FlipInvariant(toy_model).eval()
    e = create_method("input_x_gradient")
    # on a flip-invariant model, the un-flipped map of the flipped input equals the map of x
    torch.testing.assert_close(TTAExplainer(e, grayscale=(False,))(inv, x, t), e(inv, x, t), rtol=1e-5, atol=1e-7)
    # a gray image is its own grayscale view
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(x)
    torch.testing.assert_close(TTAExplainer(e, flips=(False,))(toy_model, gray, t), e(toy_model, gray, t),
                               rtol=1e-5, atol=1e-7)
    # on a model that is not invariant, the 4-view map differs from the plain map
    assert not torch.allclose(TTAExplainer(e)(toy_model, x, t), e(toy_model, x, t))
    assert TTAExplainer(e).name == "tta(input_x_gradient)"
