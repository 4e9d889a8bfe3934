"""Occlusion agreement: kernels against scipy / analytic values, shared occlusion maps,
the whole pipeline against a naive local occlusion."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr

import gmxai_eval.evaluators.agreement as agreement_mod
from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import EvalBatch, create_evaluator
from gmxai_eval.functional.agreement import spearman, top_k_iou
from gmxai_eval.models import MODELS


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def naive_occlusion(model, x, target, patch, stride):
    """Loop over windows (Captum's positions: the last one clipped to the border), baseline 0,
    drop of the target logit, mean over the windows covering a pixel."""
    b, _, h, w = x.shape
    total = torch.zeros(b, h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    with torch.no_grad():
        full = model(x).double()[torch.arange(b), target]
        for i in range(math.ceil((h - patch) / stride) + 1):
            for j in range(math.ceil((w - patch) / stride) + 1):
                xo = x.clone()
                xo[:, :, i * stride:i * stride + patch, j * stride:j * stride + patch] = 0.0
                drop = full - model(xo).double()[torch.arange(b), target]
                total[:, i * stride:i * stride + patch, j * stride:j * stride + patch] += drop.view(b, 1, 1)
                count[i * stride:i * stride + patch, j * stride:j * stride + patch] += 1
    return total / count


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 9, 9), generator=g).double()
    b = a + torch.randn(4, 9, 9, generator=g, dtype=torch.float64)
    ref = torch.tensor([spearmanr(a[i].flatten(), b[i].flatten()).statistic for i in range(4)], dtype=torch.float64)
    torch.testing.assert_close(spearman(a, b), ref)
    assert torch.isnan(spearman(torch.ones(1, 3, 3), torch.rand(1, 3, 3))).all()  # constant: no ranking


def test_top_k_iou_analytic():
    a = torch.arange(16.0).view(1, 4, 4)
    assert float(top_k_iou(a, a, 4)) == 1.0
    assert float(top_k_iou(a, -a, 4)) == 0.0
    b = a.clone().flatten()
    b[15], b[0] = b[0].item(), b[15].item()  # swap the top pixel with the bottom one
    assert float(top_k_iou(a, b.view(1, 4, 4), 4)) == pytest.approx(3 / 5)
    with pytest.raises(ConfigError):
        top_k_iou(a, a, 17)


@pytest.fixture
def setup():
    model = MODELS.create("toy_cnn", num_classes=4, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    return model, x, torch.tensor([0, 1, 2, 3]), torch.rand(4, 32, 32, generator=g)


def test_occlusion_maps_match_naive_and_self_agreement_is_perfect(setup):
    model, x, t, a = setup
    ev = create_evaluator("occlusion_agreement", patches=(8, 16))
    batch = EvalBatch(model, x, t, {"random": a})
    ev.evaluate(batch)
    occ8 = ev.occlusion_maps(batch, 8)
    torch.testing.assert_close(occ8.double(), naive_occlusion(model, x, t, 8, 4), atol=1e-5, rtol=1e-4)
    r = ev.evaluate(EvalBatch(model, x, t, {"occ": occ8}))["occ"]
    torch.testing.assert_close(r.extras["spearman/p8"], torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(r.extras["iou/p8"], torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(r.scores, (1 + r.extras["spearman/p16"]) / 2)


def test_occlusion_computed_once_per_batch(setup, monkeypatch):
    model, x, t, a = setup
    calls = []
    real = agreement_mod.create_method
    monkeypatch.setattr(agreement_mod, "create_method", lambda *ar, **kw: calls.append(kw["patch"]) or real(*ar, **kw))
    batch = EvalBatch(model, x, t, {"a": a, "b": -a, "c": a ** 2})
    out = create_evaluator("occlusion_agreement").evaluate(batch)
    create_evaluator("occlusion_agreement", k=50).evaluate(batch)  # another instance reuses them
    assert sorted(calls) == [8, 16]
    torch.testing.assert_close(out["b"].extras["spearman/p8"], -out["a"].extras["spearman/p8"])


def test_agreement_batch_order_invariance(setup):
    model, x, t, a = setup
    ev = create_evaluator("occlusion_agreement", patches=(8,))
    full = ev(model, x, t, a)
    perm = torch.tensor([2, 0, 3, 1])
    got = ev(model, x[perm], t[perm], a[perm])
    torch.testing.assert_close(got.scores, full.scores[perm], atol=1e-9, rtol=0)
    with pytest.raises(ConfigError):
        create_evaluator("occlusion_agreement", stride_ratio=1.5)
