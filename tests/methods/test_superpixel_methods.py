"""Superpixel methods (LIME, KernelSHAP, Shapley value sampling, feature ablation): parity with
Captum on identical inputs, segments and seeds; KernelSHAP and Shapley sampling against exact
Shapley values by enumeration; LIME's surrogate fit (R²) and its stability across seeds."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import FeatureAblation, KernelShap, Lime, ShapleyValueSampling
from scipy.stats import spearmanr
from torch import nn

from gmxai_eval.functional.superpixels import segment_mean_image
from gmxai_eval.methods import create_method
from gmxai_eval.methods._common import image_seeds
from gmxai_eval.methods.superpixel import lime_kernel
from gmxai_eval.models.base import ClassifierHead, GMXModel, Preprocess

FAST = {"n_segments": 16}


def _captum_ref(name: str, model: nn.Module, x: torch.Tensor, t: torch.Tensor, e) -> torch.Tensor:
    """Captum called directly, one image at a time, with the explainer's segments, baseline and
    per-image seed (torch and NumPy global RNGs seeded by hand)."""
    seg = e.segments(x)
    base = segment_mean_image(x, seg) if e.config["baseline"] == "segment_mean" else torch.full_like(x, e.config["baseline"])
    seeds = image_seeds(x, e.config["seed"], name)
    out = []
    for i in range(x.shape[0]):
        torch.manual_seed(seeds[i])
        np.random.seed(seeds[i] % 2 ** 32)
        mask = seg[i:i + 1].unsqueeze(1).expand_as(x[i:i + 1]).contiguous()
        kw = dict(baselines=base[i:i + 1], target=t[i:i + 1], feature_mask=mask,
                  perturbations_per_eval=e.config["max_batch"])
        if name == "lime":
            algo = Lime(model, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=lime_kernel(0.25))
            kw["n_samples"] = e.config["n_samples"]
        elif name == "kernel_shap":
            algo, kw["n_samples"] = KernelShap(model), e.config["n_samples"]
        elif name == "shapley_sampling":
            algo, kw["n_samples"] = ShapleyValueSampling(model), e.config["n_samples"]
        else:
            algo = FeatureAblation(model)
        out.append(algo.attribute(x[i:i + 1], **kw)[:, 0])
    return torch.cat(out)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name,extra", [("lime", {"n_samples": 120}), ("kernel_shap", {"n_samples": 120}),
                                        ("shapley_sampling", {"n_samples": 3}), ("feature_ablation", {})])
def test_equals_captum(name, extra, toy_model, toy_batch):
    x, t, _ = toy_batch
    x, t = x[:3], t[:3]
    e = create_method(name, **FAST, **extra)
    ours = e(toy_model, x, t)
    torch.testing.assert_close(ours, _captum_ref(name, toy_model, x, t, e), rtol=1e-5, atol=1e-6)
    # the caller's global RNG state is untouched
    state = torch.random.get_rng_state()
    e(toy_model, x, t)
    assert torch.equal(state, torch.random.get_rng_state())


class QuadrantGame(nn.Module):
    """``f`` of the four quadrant means ``q`` of channel 0: ``q0 + 2 q1 q2 - q3² + q0 q3``
    (interactions, so Shapley values differ from leave-one-out drops); 2 outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1] // 2
        c = x[:, 0]
        q = [c[:, :h, :h].mean((1, 2)), c[:, :h, h:].mean((1, 2)), c[:, h:, :h].mean((1, 2)), c[:, h:, h:].mean((1, 2))]
        f = q[0] + 2 * q[1] * q[2] - q[3] ** 2 + q[0] * q[3]
        return torch.stack([f, -f], 1)


def _quadrants(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    s = torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.long)
    s[:, :h, h:], s[:, h:, :h], s[:, h:, h:] = 1, 2, 3
    return s


def exact_shapley(model: nn.Module, x: torch.Tensor, seg: torch.Tensor, base: float = 0.0) -> torch.Tensor:
    """Shapley values of the 4 superpixels by enumerating every coalition."""
    m = int(seg.max()) + 1

    def v(coal: tuple[int, ...]) -> float:
        keep = torch.zeros_like(seg, dtype=torch.bool)
        for k in coal:
            keep |= seg == k
        xi = torch.where(keep.unsqueeze(1), x, torch.full_like(x, base))
        with torch.no_grad():
            return float(model(xi)[0, 0])

    phi = torch.zeros(m, dtype=torch.float64)
    for i in range(m):
        rest = [k for k in range(m) if k != i]
        for r in range(m):
            for s in itertools.combinations(rest, r):
                w = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
                phi[i] += w * (v(tuple(s) + (i,)) - v(s))
    return phi


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name,n,tol", [("kernel_shap", 4000, 0.03), ("shapley_sampling", 400, 0.03)])
def test_equals_exact_shapley_values(name, n, tol):
    """Sampling estimators converge to the exact Shapley values of a 4-superpixel game with
    interactions (tolerance: 3 % of the largest |value|); KernelSHAP's efficiency constraint
    makes the values sum to f(x) - f(baseline) exactly."""
    model = QuadrantGame().eval()
    g = torch.Generator().manual_seed(3)
    x = 0.5 + 0.5 * torch.rand(1, 3, 8, 8, generator=g)
    e = create_method(name, n_samples=n, baseline=0.0)
    e.segments = _quadrants  # type: ignore[method-assign]  # a known segmentation
    a = e(model, x, torch.tensor([0]))[0]
    seg = _quadrants(x)[0]
    est = torch.stack([a[seg == k].mean() for k in range(4)]).double()  # every pixel holds its value
    assert all(float(a[seg == k].std()) < 1e-6 for k in range(4))
    phi = exact_shapley(model, x, _quadrants(x))
    assert (est - phi).abs().max() <= tol * phi.abs().max(), (est, phi)
    if name == "kernel_shap":
        with torch.no_grad():
            gap = float(model(x)[0, 0] - model(torch.zeros_like(x))[0, 0])
        assert abs(float(est.sum()) - gap) < 1e-3 * abs(gap)


def _gmx(backbone: nn.Module, d: int) -> GMXModel:
    return GMXModel(backbone, ClassifierHead(d, 2), Preprocess((0.0,) * 3, (1.0,) * 3)).eval()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lime_r2_is_the_surrogate_fit():
    """R² is ~1 where the model is linear in the superpixels (any linear model is, with a
    constant replacement) and ~0 where the model is a pure interaction (an XOR of two
    superpixels, uniform sample weights)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    x = 0.5 + 0.5 * torch.rand(2, 3, 8, 8, generator=g)
    lin = _gmx(nn.Flatten(), 3 * 64)
    e = create_method("lime", n_samples=600, baseline=0.0)
    e.segments = _quadrants  # type: ignore[method-assign]
    e(lin, x, torch.tensor([0, 1]))
    assert e.surrogate_r2.shape == (2,) and (e.surrogate_r2 > 0.97).all()

    class Product(nn.Module):
        """``(a - 1/2)(b - 1/2)`` of two quadrants' on/off states: an XOR, nothing linear."""

        def forward(self, x):
            h = x.shape[-1] // 2
            a = (x[:, 0, :h, :h].mean((1, 2)) > 0.25).float()
            b = (x[:, 0, h:, h:].mean((1, 2)) > 0.25).float()
            f = 4 * (a - 0.5) * (b - 0.5)
            return torch.stack([f, -f], 1)

    # with uniform sample weights (a very wide kernel) an XOR has no linear part at all
    e = create_method("lime", n_samples=600, baseline=0.0, kernel_width=1e3)
    e.segments = _quadrants  # type: ignore[method-assign]
    e(Product().eval(), x, torch.tensor([0, 1]))
    assert (e.surrogate_r2 < 0.1).all(), e.surrogate_r2


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lime_is_stable_across_seeds(toy_model, toy_batch):
    """Stated tolerance (the ``lime`` defaults: 1000 samples, kernel width 0.25): across seeds
    0..3 the superpixel weights of each image keep a Spearman correlation >= 0.9 with seed 0's
    and the surrogate R² varies by less than 0.05."""
    x, t, _ = toy_batch
    x, t = x[:2], t[:2]
    runs = []
    r2 = []
    for seed in range(4):
        e = create_method("lime", n_segments=16, seed=seed)
        runs.append(e(toy_model, x, t))
        r2.append(e.surrogate_r2)
    seg = create_method("lime", n_segments=16).segments(x)
    for i in range(2):
        ref = [float(runs[0][i][seg[i] == k].mean()) for k in range(int(seg[i].max()) + 1)]
        for s in range(1, 4):
            other = [float(runs[s][i][seg[i] == k].mean()) for k in range(int(seg[i].max()) + 1)]
            assert spearmanr(ref, other).statistic >= 0.9
    r2 = torch.stack(r2)
    assert (r2.amax(0) - r2.amin(0) < 0.05).all(), r2
    assert not torch.equal(runs[0], runs[1])  # the seed matters
