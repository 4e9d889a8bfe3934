"""Parity of the randomisation evaluators with Quantus 0.6.0 on identical work.

Quantus is set up to compute the same thing: a Sequential model without BatchNorm (its
registration order is then the execution order), the same explainer (wrapped as its
``explain_func``), no normalisation, its per-layer reset seed (``seed + 1``) substituted for ours,
and identical random classes / noise.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import quantus
import torch
from skimage.metrics import structural_similarity

import gmxai_eval.functional.randomisation as frand
from gmxai_eval.evaluators import EVALUATORS
from gmxai_eval.evaluators.base import EvalBatch
from gmxai_eval.evaluators.quantus_adapter import explain_func_for
from gmxai_eval.functional.similarity import minmax

QSEED = 42


@pytest.fixture
def quantus_seeds(monkeypatch):
    """Our per-layer seed replaced by Quantus' (torch.manual_seed(seed + 1) before each reset)."""
    monkeypatch.setattr(frand, "layer_seed", lambda seed, name: QSEED + 1)


def _batch(model, x, target, explainer, **kw):
    return EvalBatch(model, x, target, {"m": explainer(model, x, target)}, explainers={"m": explainer}, **kw)


@pytest.mark.parametrize("name,order", [("mprt_cascading", "top_down"), ("mprt_independent", "independent")])
def test_mprt_matches_quantus_per_layer(seqnet, images, grad_input, quantus_seeds, name, order):
    target = torch.tensor([0, 1, 2, 3])
    batch = _batch(seqnet, images, target, grad_input)
    ours = EVALUATORS.create(name, target="batch", similarities=["spearman_abs"], floor=False).evaluate(batch)["m"]
    q = quantus.MPRT(layer_order=order, seed=QSEED, abs=True, normalise=False, disable_warnings=True)
    ref = q(model=seqnet, x_batch=images.numpy(), y_batch=target.numpy(), a_batch=batch.maps["m"].numpy()[:, None],
            explain_func=explain_func_for(grad_input), batch_size=64)
    layers = [k for k in ref if k != "original"]
    assert list(ours.curve_labels) == layers
    for j, layer in enumerate(layers):
        np.testing.assert_allclose(ours.curves[:, j].numpy(), ref[layer], rtol=1e-5, err_msg=layer)
    np.testing.assert_allclose(ours.scores.numpy(), np.mean([ref[k] for k in layers], 0), rtol=1e-5)


def test_quantus_average_wrongly_includes_unrandomised_similarity(seqnet, images, grad_input, quantus_seeds):
    """Quantus 0.6.0 skips a key named 'orig' but stores 'original': its per-sample average
    includes the similarity of the unrandomised maps (1), biasing every score upwards."""
    target = torch.tensor([0, 1, 2, 3])
    batch = _batch(seqnet, images, target, grad_input)
    ours = EVALUATORS.create("mprt_cascading", target="batch", similarities=["spearman_abs"], floor=False).evaluate(batch)["m"]
    kw = dict(model=seqnet, x_batch=images.numpy(), y_batch=target.numpy(), a_batch=batch.maps["m"].numpy()[:, None],
              explain_func=explain_func_for(grad_input), batch_size=64)
    per_layer = quantus.MPRT(seed=QSEED, abs=True, normalise=False, disable_warnings=True)(**kw)
    avg = quantus.MPRT(seed=QSEED, abs=True, normalise=False, disable_warnings=True, return_average_correlation=True)(**kw)
    np.testing.assert_allclose(per_layer["original"], 1.0, rtol=1e-12)
    L = ours.curves.shape[1]
    np.testing.assert_allclose(avg, (1.0 + ours.curves.sum(1).numpy()) / (L + 1), rtol=1e-5)
    assert np.all(np.asarray(avg) > ours.scores.numpy() + 1e-3)


def test_random_logit_matches_quantus(seqnet, images, grad_input, monkeypatch):
    k = 5
    target = torch.tensor([0, 1, 4, 3])
    np.random.seed(QSEED)
    offsets = torch.as_tensor(np.random.randint(0, k - 1, len(target)))
    monkeypatch.setattr(EVALUATORS.get("random_logit"), "offsets", lambda self, batch, n: offsets)
    batch = _batch(seqnet, images, target, grad_input)
    ours = EVALUATORS.create("random_logit", target="batch").evaluate(batch)["m"]

    def sk_ssim(a, b, batched=True, **_):  # 2-D Gaussian SSIM of min-max scaled |map| (our convention)
        h, w = images.shape[-2:]
        aa = minmax(torch.as_tensor(np.abs(a)).reshape(-1, h, w)).numpy()
        bb = minmax(torch.as_tensor(np.abs(b)).reshape(-1, h, w)).numpy()
        return [structural_similarity(u, v, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=1.0) for u, v in zip(aa, bb)]

    q = quantus.RandomLogit(num_classes=k, seed=QSEED, abs=False, normalise=False, similarity_func=sk_ssim,
                            disable_warnings=True)
    ref = q(model=seqnet, x_batch=images.numpy(), y_batch=target.numpy(), a_batch=batch.maps["m"].numpy()[:, None],
            explain_func=explain_func_for(grad_input), batch_size=64)
    np.testing.assert_allclose(ours.scores.numpy(), ref, rtol=1e-5)
    assert (ours.extras["other_class"] != target).all()


def test_efficient_mprt_matches_quantus(seqnet, images, grad_input, quantus_seeds):
    target = torch.tensor([0, 1, 2, 3])
    batch = _batch(seqnet, images, target, grad_input)
    ours = EVALUATORS.create("efficient_mprt", target="batch", n_bins=100).evaluate(batch)["m"]
    q = quantus.EfficientMPRT(complexity_func_kwargs={"n_bins": 100}, layer_order="bottom_up", seed=QSEED,
                              skip_layers=True, abs=False, normalise=False, disable_warnings=True)
    ref = q(model=seqnet, x_batch=images.numpy(), y_batch=target.numpy(), a_batch=batch.maps["m"].numpy()[:, None],
            explain_func=explain_func_for(grad_input), batch_size=64)
    np.testing.assert_allclose(ours.scores.numpy(), ref, rtol=1e-5)


def test_smooth_mprt_matches_quantus(seqnet, images, grad_input, quantus_seeds, monkeypatch):
    n = 4
    target = torch.tensor([0, 1, 2, 3])
    batch = _batch(seqnet, images, target, grad_input)
    ev = EVALUATORS.create("smooth_mprt", target="batch", n_noise=n, noise_magnitude=0.1,
                           similarities=["spearman_abs"], floor=False)
    z = ev.noise(batch).numpy().astype(np.float64)  # (B, n-1, C, H, W), the draws Quantus will replay
    ours = ev.evaluate(batch)["m"]

    calls = {"i": 0}

    def randn(*shape):
        k = calls["i"] % (n - 1)
        calls["i"] += 1
        assert shape == z[:, k].shape
        return z[:, k]

    import quantus.metrics.randomisation.smooth_mprt as qs
    monkeypatch.setattr(qs, "np", types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__") and k != "random"},
                                                        random=types.SimpleNamespace(randn=randn)))
    fn = explain_func_for(grad_input)
    monkeypatch.setattr(quantus, "explain", lambda model, inputs, targets, **kw: fn(model, inputs, targets))
    q = quantus.SmoothMPRT(layer_order="bottom_up", seed=QSEED, nr_samples=n, noise_magnitude=0.1, abs=True,
                           normalise=False, disable_warnings=True)
    ref = q(model=seqnet, x_batch=images.numpy(), y_batch=target.numpy(), a_batch=None, explain_func=fn, batch_size=64)
    layers = [k for k in ref if k != "original"]
    assert list(ours.curve_labels) == layers
    for j, layer in enumerate(layers):
        np.testing.assert_allclose(ours.curves[:, j].numpy(), ref[layer], rtol=1e-5, err_msg=layer)
