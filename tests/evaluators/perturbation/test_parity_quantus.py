"""Parity with Quantus 0.6.0 and Captum 0.9 on identical inputs and settings.

Setup for every Quantus comparison: single-channel 16x16 inputs (a Quantus "feature" is a channel
element; with one channel it is a pixel), continuous random maps (no ties, so Quantus's unstable
argsort and our stable sort agree), ``abs=False, normalise=False`` passed explicitly (our scores are
invariant to Quantus's max-normalisation anyway), Quantus "black" = our ``"sample_min"``,
``batch_size >= N``, and identical random subsets where randomness is involved.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

quantus = pytest.importorskip("quantus")

from gmxai_eval.evaluators.base import EVALUATORS, EvalBatch  # noqa: E402
from gmxai_eval.functional import perturbation as P  # noqa: E402

RTOL = 1e-5


def _q_common(**kw):
    return dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False, **kw)


def _np(x, maps):
    return x.numpy().astype(np.float32), maps[:, None].numpy().astype(np.float32)


def test_pixel_flipping_curve_and_auc(gray_model, gray_batch):
    x, t, maps, ids = gray_batch
    xn, an = _np(x, maps)
    q = quantus.PixelFlipping(features_in_step=4, perturb_baseline="black", return_auc_per_sample=False,
                              **_q_common())
    q_curve = np.asarray(q(model=gray_model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=True,
                           device="cpu", batch_size=8))
    q_auc = np.asarray(quantus.PixelFlipping(features_in_step=4, perturb_baseline="black",
                                             return_auc_per_sample=True, **_q_common())(
        model=gray_model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=True, device="cpu", batch_size=8))
    ev = EVALUATORS.create("pixel_flipping", steps=None, features_in_step=4, include_start=False,
                           baseline="sample_min", output="probability", auc="trapz_unit")
    r = ev(gray_model, x, t, maps, sample_ids=ids)
    np.testing.assert_allclose(r.curves.numpy(), q_curve, rtol=RTOL)
    np.testing.assert_allclose(r.scores.numpy(), q_auc, rtol=RTOL)


def test_region_perturbation_curve(gray_model, gray_batch):
    x, t, maps, ids = gray_batch
    xn, an = _np(x, maps)
    q = quantus.RegionPerturbation(patch_size=4, order="morf", regions_evaluation=10, perturb_baseline="black",
                                   **_q_common())
    q_curve = np.asarray(q(model=gray_model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=True,
                           device="cpu", batch_size=8))
    ev = EVALUATORS.create("region_perturbation", patch_size=4, regions=10, baseline="sample_min",
                           output="probability", random_control=False)
    r = ev(gray_model, x, t, maps, sample_ids=ids)
    # Quantus returns float32 drops f(x) - f(x_k) of ~1e-4 (float32 cancellation): compare the
    # perturbed outputs f(x_k) themselves, then the AOPC from them.
    with torch.no_grad():
        y = torch.softmax(gray_model(x), 1)[torch.arange(4), t].double().numpy()
    ours_out = y[:, None] - r.curves[:, 1:].numpy()
    np.testing.assert_allclose(ours_out, y[:, None] - q_curve, rtol=RTOL)
    np.testing.assert_allclose(r.scores.numpy(), r.curves[:, 1:].numpy().sum(1) / 11, rtol=1e-12)


def test_faithfulness_correlation_identical_subsets(gray_model, gray_batch, monkeypatch):
    x, t, maps, ids = gray_batch
    xn, an = _np(x, maps)
    runs, size = 20, 16
    subsets = P.random_subsets(256, size, runs, ids, seed=0)  # (B, R, size)
    queue = [subsets[b, r].numpy() for r in range(runs) for b in range(len(ids))]  # Quantus: run-major
    monkeypatch.setattr(np.random, "choice", lambda *a, **k: queue.pop(0))
    q = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, perturb_baseline="black",
                                        return_aggregate=False, **_q_common())
    q_scores = np.asarray(q(model=gray_model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=False,
                            device="cpu", batch_size=8))
    assert not queue
    ev = EVALUATORS.create("faithfulness_correlation", nr_runs=runs, subset_size=size, baseline="sample_min",
                           output="logit")
    np.testing.assert_allclose(ev(gray_model, x, t, maps, sample_ids=ids, seed=0).scores.numpy(), q_scores,
                               rtol=RTOL)


def test_faithfulness_estimate(gray_model, gray_batch):
    x, t, maps, ids = gray_batch
    xn, an = _np(x, maps)
    q = quantus.FaithfulnessEstimate(features_in_step=8, perturb_baseline="black", **_q_common())
    q_scores = np.asarray(q(model=gray_model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=False,
                            device="cpu", batch_size=8))
    ev = EVALUATORS.create("faithfulness_estimate", features_in_step=8, baseline="sample_min", output="logit")
    np.testing.assert_allclose(ev(gray_model, x, t, maps, sample_ids=ids).scores.numpy(), q_scores, rtol=RTOL)


def test_monotonicity_correlation_deterministic_baseline(gray_batch):
    """Deterministic configuration (one draw of the sample-minimum baseline): Quantus's uniform
    noise is drawn from the global NumPy RNG at every call and cannot be reproduced draw by draw.
    A linear model: the toy CNN's squared output changes (~1e-8) tie or swap in Quantus's float32."""
    from gmxai_eval.models import MODELS

    gray_model = MODELS.create("linear", num_classes=4, in_channels=1, size=16, seed=0)
    x, t, maps, ids = gray_batch
    xn, an = _np(x, maps)
    q = quantus.MonotonicityCorrelation(nr_samples=1, features_in_step=8, eps=1e-5, perturb_baseline="black",
                                        **{**_q_common(), "abs": True})
    q_scores = np.asarray(q(model=gray_model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=True,
                            device="cpu", batch_size=8))
    ev = EVALUATORS.create("monotonicity_correlation", nr_samples=1, features_in_step=8, eps=1e-5,
                           baseline="sample_min", output="probability", abs=True)
    np.testing.assert_allclose(ev(gray_model, x, t, maps, sample_ids=ids).scores.numpy(), q_scores, rtol=RTOL)


@pytest.mark.parametrize("normalize", [True, False])
def test_infidelity_matches_captum(toy_model, toy_batch, normalize):
    from captum.metrics import infidelity

    x, t, ids = toy_batch
    maps = torch.randn(x.shape[0], *x.shape[2:], generator=torch.Generator().manual_seed(3))
    n, std = 8, 0.1
    noise = P.gaussian_perturbations(tuple(x.shape[1:]), n, std, ids, seed=0)  # (B, n, C, H, W)
    flat = noise.reshape(-1, *x.shape[1:])  # Captum repeat_interleaves inputs: sample-major

    def perturb(inputs):
        return flat, inputs - flat

    ref = infidelity(toy_model, perturb, x, maps[:, None].expand_as(x), target=t, n_perturb_samples=n,
                     normalize=normalize)
    ev = EVALUATORS.create("infidelity", n_perturb_samples=n, noise_std=std, normalize=normalize, output="logit")
    np.testing.assert_allclose(ev(toy_model, x, t, maps, sample_ids=ids, seed=0).scores.numpy(),
                               ref.double().numpy(), rtol=1e-4)


# -- Quantus defects: what they do, and what we do instead ------------------------------------
def test_quantus_sensitivity_n_uses_first_minibatch_only(gray_model, gray_batch):
    """Quantus 0.6.0 SensitivityN keeps ``evaluation_scores[0]``: with ``batch_size=2`` the result
    is that of the first two images alone. Ours (per-image, random subsets) is batch-independent."""
    x, t, maps, ids = gray_batch
    xn, an = _np(x, maps)
    mk = lambda: quantus.SensitivityN(features_in_step=16, n_max_percentage=0.8, perturb_baseline="black",  # noqa: E731
                                      return_aggregate=False, **_q_common())
    full = np.asarray(mk()(model=gray_model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=True,
                           device="cpu", batch_size=2))
    first = np.asarray(mk()(model=gray_model, x_batch=xn[:2], y_batch=t.numpy()[:2], a_batch=an[:2],
                            softmax=True, device="cpu", batch_size=2))
    np.testing.assert_allclose(full, first)  # the last two images never count
    ev = EVALUATORS.create("sensitivity_n", subset_fractions=(0.1, 0.3), nr_runs=8, baseline="sample_min")
    whole = ev(gray_model, x, t, maps, sample_ids=ids).scores
    half = ev(gray_model, x[2:], t[2:], maps[2:], sample_ids=ids[2:]).scores
    torch.testing.assert_close(whole[2:], half, rtol=1e-6, atol=1e-9)


def test_quantus_infidelity_fails_when_padding_is_needed(gray_model):
    """Quantus 0.6.0 Infidelity reshapes the unpadded image to the padded shape: an 18x18 image
    with 4x4 patches raises. Ours needs no patches (Captum's Gaussian perturbations)."""
    x = torch.rand(2, 1, 18, 18, generator=torch.Generator().manual_seed(0))
    maps = torch.randn(2, 18, 18, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 1])
    q = quantus.Infidelity(perturb_patch_sizes=[4], n_perturb_samples=1, perturb_baseline="black", **_q_common())
    with pytest.raises(ValueError):
        q(model=gray_model, x_batch=x.numpy(), y_batch=t.numpy(), a_batch=maps[:, None].numpy(), softmax=False,
          device="cpu", batch_size=8)
    r = EVALUATORS.create("infidelity", n_perturb_samples=4)(gray_model, x, t, maps)
    assert torch.isfinite(r.scores).all()


def test_sensitivity_n_single_size_equals_faithfulness_correlation(gray_model, gray_batch):
    """Same subsets (keyed on size, runs, sample id) and output -> identical per-image Pearson."""
    x, t, maps, ids = gray_batch
    sn = EVALUATORS.create("sensitivity_n", subset_fractions=(16 / 256,), nr_runs=12, output="logit")
    fc = EVALUATORS.create("faithfulness_correlation", subset_size=16, nr_runs=12, output="logit")
    b = EvalBatch(gray_model, x, t, {"m": maps}, ids)
    torch.testing.assert_close(sn.evaluate(b)["m"].scores, fc.evaluate(b)["m"].scores)


def test_sufficiency():
    """12 images so that several share a predicted class and some maps are neighbours (a linear
    model: its predicted classes vary with the input)."""
    from gmxai_eval.models import MODELS

    gray_model = MODELS.create("linear", num_classes=4, in_channels=1, size=16, seed=0)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(12, 1, 16, 16, generator=g)
    base = torch.randn(3, 16, 16, generator=g)
    maps = base[torch.arange(12) % 3] + 0.3 * torch.randn(12, 16, 16, generator=g)
    t = torch.zeros(12, dtype=torch.long)
    xn, an = _np(x, maps)
    q = quantus.Sufficiency(threshold=0.6, distance_func="seuclidean", **{**_q_common(), "abs": True})
    q_scores = np.asarray(q(model=gray_model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=True,
                            device="cpu", batch_size=16))
    r = EVALUATORS.create("sufficiency", estimator="quantus_batch", threshold=0.6, abs=True)(gray_model, x, t, maps)
    np.testing.assert_allclose(r.scores.numpy(), q_scores, rtol=RTOL)
    assert len(set(q_scores.round(6).tolist())) > 1  # a non-degenerate case


def _noise_perturb(noise_flat: np.ndarray, n_draws: int = 1):
    """A Quantus ``perturb_func`` writing our noise images: call ``k`` uses draw ``k % n_draws``
    (Quantus calls it once per step, or ``nr_samples`` times per window, in that order)."""
    calls = [0]

    def perturb(arr, indices, **kwargs):
        out = arr.copy()
        d = calls[0] % n_draws
        calls[0] += 1
        rows = np.arange(arr.shape[0])[:, None]
        out[rows, indices] = noise_flat[d][rows, indices]
        return out
    return perturb


def test_region_perturbation_uniform_noise(gray_model, gray_batch):
    """Samek's uniform-noise replacement: Quantus driven with our per-sample noise images."""
    from gmxai_eval.functional.baselines import make_baseline

    x, t, maps, ids = gray_batch
    xn, an = _np(x, maps)
    noise = make_baseline("uniform", x, sample_ids=ids, seed=0).numpy().reshape(1, 4, -1)
    q = quantus.RegionPerturbation(patch_size=4, order="morf", regions_evaluation=16,
                                   perturb_func=_noise_perturb(noise), **_q_common())
    q_curve = np.asarray(q(model=gray_model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=False,
                           device="cpu", batch_size=8))
    r = EVALUATORS.create("region_perturbation", patch_size=4, regions=16, baseline="uniform", output="logit",
                          random_control=False)(gray_model, x, t, maps, sample_ids=ids, seed=0)
    with torch.no_grad():
        y = gray_model(x)[torch.arange(4), t].double().numpy()
    np.testing.assert_allclose(y[:, None] - r.curves[:, 1:].numpy(), y[:, None] - q_curve, rtol=RTOL)


def test_monotonicity_correlation_uniform_noise_draws():
    """Several noise draws per window: Quantus driven with our draws in its call order."""
    from gmxai_eval.functional.baselines import make_baseline
    from gmxai_eval.models import MODELS

    model = MODELS.create("linear", num_classes=4, in_channels=1, size=16, seed=0)
    g = torch.Generator().manual_seed(9)
    x, maps, t, ids = torch.rand(4, 1, 16, 16, generator=g), torch.randn(4, 16, 16, generator=g), \
        torch.tensor([0, 1, 2, 3]), [f"u{i}" for i in range(4)]
    draws = 3
    noise = np.stack([make_baseline("uniform", x, sample_ids=ids, seed=(0, "draw", s)).numpy().reshape(4, -1)
                      for s in range(draws)])
    xn, an = _np(x, maps)
    q = quantus.MonotonicityCorrelation(nr_samples=draws, features_in_step=16, eps=1e-5,
                                        perturb_func=_noise_perturb(noise, draws), **{**_q_common(), "abs": True})
    q_scores = np.asarray(q(model=model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=True,
                            device="cpu", batch_size=8))
    ev = EVALUATORS.create("monotonicity_correlation", nr_samples=draws, features_in_step=16, eps=1e-5,
                           baseline="uniform", output="probability", abs=True)
    np.testing.assert_allclose(ev(model, x, t, maps, sample_ids=ids, seed=0).scores.numpy(), q_scores, rtol=RTOL)


def test_monotonicity_arya_vs_corrected_quantus_and_defect():
    """Quantus 0.6.0 Monotonicity is True for every input (it writes the baseline into the
    baseline image). With a perturb_func that restores image values instead, it agrees with ours."""
    from gmxai_eval.models import MODELS

    model = MODELS.create("linear", num_classes=4, in_channels=1, size=16, seed=0)
    with torch.no_grad():  # class 0: every restored pixel raises the logit; class 1: lowers it
        model.head.fc.weight[0].abs_()
        model.head.fc.weight[1] = -model.head.fc.weight[1].abs()
    g = torch.Generator().manual_seed(11)
    x, t = torch.rand(6, 1, 16, 16, generator=g), torch.tensor([0, 1, 2, 3, 0, 1])
    maps = torch.randn(6, 16, 16, generator=g)
    xn, an = _np(x, maps)
    kw = dict(model=model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=False, device="cpu", batch_size=8)
    common = {**_q_common(), "abs": False}
    defective = np.asarray(quantus.Monotonicity(features_in_step=32, perturb_baseline="black", **common)(**kw))
    assert defective.all()  # the defect: always True

    x_flat = xn.reshape(6, -1)

    def restore(arr, indices, **_):
        out = arr.copy()
        rows = np.arange(arr.shape[0])[:, None]
        out[rows, indices] = x_flat[rows, indices]
        return out

    fixed = np.asarray(quantus.Monotonicity(features_in_step=32, perturb_baseline="black", perturb_func=restore,
                                            **common)(**kw))
    ours = EVALUATORS.create("monotonicity_arya", steps=None, features_in_step=32, include_start=False,
                             baseline="sample_min", output="logit", abs=False)(model, x, t, maps)
    np.testing.assert_array_equal(ours.scores.numpy(), fixed.astype(np.float64))
    assert ours.scores[[0, 4]].eq(1).all() and ours.scores[[1, 5]].eq(0).all()  # analytic outcomes


def test_selectivity_is_patch_pixel_flipping(gray_model, gray_batch):
    """Quantus's Selectivity (Montavon et al. 2018) = pixel flipping over 4x4 patches, every
    patch one step, no start point: ``pixel_flipping(unit="patch", features_in_step=1)``."""
    x, t, maps, ids = gray_batch
    xn, an = _np(x, maps)
    q = quantus.Selectivity(patch_size=4, perturb_baseline="black", **_q_common())
    q_curve = np.asarray(q(model=gray_model, x_batch=xn, y_batch=t.numpy(), a_batch=an, softmax=True,
                           device="cpu", batch_size=8))
    ev = EVALUATORS.create("pixel_flipping", unit="patch", patch_size=4, steps=None, features_in_step=1,
                           include_start=False, baseline="sample_min", output="probability")
    np.testing.assert_allclose(ev(gray_model, x, t, maps, sample_ids=ids).curves.numpy(), q_curve, rtol=RTOL)
