"""Analytic oracles on the linear model ``logit_k = w_k . x + b_k``.

With the exact attribution ``a = sum_c w_t ⊙ x`` and the black (0) baseline, replacing a set S
of pixels lowers the target logit by exactly ``sum_{p in S} a_p``; every score below follows.
"""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.evaluators.base import EVALUATORS
from gmxai_eval.functional import perturbation as P
from gmxai_eval.models import MODELS


def _exact(model, x, t):
    w = model.head.fc.weight[t].view(x.shape)  # (B, C, H, W)
    return (w * x).sum(1)


@pytest.fixture
def lin(linear_model, toy_batch):
    x, t, ids = toy_batch
    return linear_model, x, t, _exact(linear_model, x, t).detach(), ids


def test_deletion_curve_is_logit_minus_prefix_sums(lin):
    model, x, t, a, ids = lin
    ev = EVALUATORS.create("deletion", steps=16, output="logit")
    r = ev(model, x, t, a, sample_ids=ids)
    srt = torch.sort(a.reshape(len(t), -1), 1, descending=True).values.double()
    counts = P.step_counts(32 * 32, steps=16)
    prefix = torch.cat([torch.zeros(len(t), 1, dtype=torch.float64), srt.cumsum(1)], 1)[:, counts]
    y = model(x)[torch.arange(len(t)), t].double().detach()
    torch.testing.assert_close(r.curves, y[:, None] - prefix, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(r.curve_x, counts.double() / 1024)
    expect = (r.curves.sum(1) - r.curves[:, 0] / 2 - r.curves[:, -1] / 2) / 16
    torch.testing.assert_close(r.scores, expect)


def test_morf_below_random_below_lerf_pointwise(lin):
    """Prefix sums of the descending order dominate those of any order: the MoRF logit curve is
    below every random-order curve, which is below LeRF, at every step."""
    model, x, t, a, ids = lin
    counts = P.step_counts(1024, steps=16)
    ranks = torch.stack([P.rank_map(a, o, sample_ids=ids) for o in ("morf", "random", "lerf")])
    fill = torch.zeros_like(x)[None]
    out = P.window_outputs(model, x, t, ranks, torch.zeros_like(counts), counts, fill, output="logit")[:, 0]
    morf, rnd, lerf = out
    assert (morf <= rnd + 1e-4).all() and (rnd <= lerf + 1e-4).all()
    auc = [P.curve_auc(c) for c in out]
    assert (auc[0] < auc[1]).all() and (auc[1] < auc[2]).all()


@pytest.mark.parametrize("name,kw", [
    ("faithfulness_correlation", {"subset_size": 64, "nr_runs": 20}),
    ("faithfulness_estimate", {"features_in_step": 64}),
    ("sensitivity_n", {"subset_fractions": (0.05, 0.3), "nr_runs": 10}),
])
def test_exact_attribution_has_correlation_one(lin, name, kw):
    model, x, t, a, ids = lin
    r = EVALUATORS.create(name, output="logit", baseline="black", **kw)(model, x, t, a, sample_ids=ids)
    torch.testing.assert_close(r.scores, torch.ones_like(r.scores), rtol=0, atol=1e-5)


def test_monotonicity_is_one_for_nonnegative_linear_attribution(toy_batch):
    """w >= 0, x >= 0: window drop d = sum of its (nonnegative) attributions and v = d^2/f(x)^2 is
    monotone in the window sum -> Spearman 1."""
    x, t, ids = toy_batch
    model = MODELS.create("linear", num_classes=4, seed=0)
    with torch.no_grad():
        model.head.fc.weight.abs_()
    a = _exact(model, x, t).detach()
    r = EVALUATORS.create("monotonicity_correlation", features_in_step=64, baseline="black", output="logit",
                          nr_samples=1)(model, x, t, a, sample_ids=ids)
    torch.testing.assert_close(r.scores, torch.ones_like(r.scores), rtol=0, atol=1e-9)


def test_infidelity_zero_for_gradient_of_single_channel_linear_model():
    model = MODELS.create("linear", num_classes=3, in_channels=1, size=8, seed=0)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 2])
    grad = model.head.fc.weight[t].view(3, 8, 8).detach()
    for normalize in (True, False):
        r = EVALUATORS.create("infidelity", normalize=normalize, n_perturb_samples=6)(model, x, t, grad)
        torch.testing.assert_close(r.scores, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-9)
    # a wrongly scaled map is penalised without normalize and forgiven with it
    r_raw = EVALUATORS.create("infidelity", normalize=False)(model, x, t, 3 * grad)
    r_norm = EVALUATORS.create("infidelity", normalize=True)(model, x, t, 3 * grad)
    assert (r_raw.scores > 1e-6).all()
    torch.testing.assert_close(r_norm.scores, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-9)


def test_region_aopc_exact_and_above_random(lin):
    model, x, t, a, ids = lin
    ev = EVALUATORS.create("region_perturbation", patch_size=8, regions=10, baseline="black", output="logit")
    r = ev(model, x, t, a, sample_ids=ids)
    sums = a.reshape(len(t), 4, 8, 4, 8).sum((2, 4)).reshape(len(t), -1).double()
    drops = torch.cat([torch.zeros(len(t), 1, dtype=torch.float64),
                       torch.sort(sums, 1, descending=True).values.cumsum(1)[:, :10]], 1)
    torch.testing.assert_close(r.curves, drops, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(r.scores, drops.mean(1), rtol=1e-5, atol=1e-4)
    assert (r.extras["aopc_minus_random"] > 0).all()
    torch.testing.assert_close(r.extras["aopc_minus_random"], r.scores - r.extras["aopc_random"])


@pytest.mark.parametrize("name,kw", [
    ("faithfulness_correlation", {"subset_size": 32, "nr_runs": 8}),
    ("faithfulness_estimate", {"features_in_step": 128}),
    ("monotonicity_correlation", {"features_in_step": 128, "nr_samples": 2}),
    ("sensitivity_n", {"subset_fractions": (0.1,), "nr_runs": 8}),
])
def test_constant_map_scores_zero(toy_model, toy_batch, name, kw):
    x, t, ids = toy_batch
    r = EVALUATORS.create(name, **kw)(toy_model, x, t, torch.full((6, 32, 32), 0.7), sample_ids=ids)
    torch.testing.assert_close(r.scores, torch.zeros(6, dtype=torch.float64))


def test_insertion_endpoints_are_blur_and_clean(toy_model, toy_batch):
    from gmxai_eval.functional.baselines import gaussian_blur

    x, t, ids = toy_batch
    a = torch.randn(6, 32, 32, generator=torch.Generator().manual_seed(0))
    r = EVALUATORS.create("insertion", steps=8)(toy_model, x, t, a, sample_ids=ids)
    p = lambda z: torch.softmax(toy_model(z), 1)[torch.arange(6), t].double()  # noqa: E731
    torch.testing.assert_close(r.curves[:, 0], p(gaussian_blur(x, 11, 5.0)))
    torch.testing.assert_close(r.curves[:, -1], p(x))


def test_element_unit_counts_each_channel():
    """Element unit with a broadcast map: on a 1-channel view it equals the pixel unit."""
    model = MODELS.create("linear", num_classes=4, in_channels=1, seed=0)
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    a = torch.randn(2, 32, 32, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([0, 1])
    pix = EVALUATORS.create("deletion", steps=8)(model, x, t, a)
    ele = EVALUATORS.create("deletion", steps=8, unit="element")(model, x, t, a)
    torch.testing.assert_close(pix.scores, ele.scores)
    r3 = P.rank_map(a, "morf", unit="element", channels=3)
    assert r3.shape == (2, 3, 32, 32) and torch.equal(r3.reshape(2, -1).sort(1).values,
                                                       torch.arange(3 * 1024).expand(2, -1))


def test_insertion_curve_on_linear_model_is_blur_plus_prefix_sums(linear_model, toy_batch):
    """From the blurred image b, restoring the pixel set S gives logit(b) + sum_S a with
    a = sum_c w ⊙ (x - b): the insertion logit curve is exact for that map."""
    from gmxai_eval.functional.baselines import gaussian_blur

    x, t, ids = toy_batch
    blur = gaussian_blur(x, 11, 5.0)
    w = linear_model.head.fc.weight[t].view(x.shape).detach()
    a = (w * (x - blur)).sum(1)
    r = EVALUATORS.create("insertion", steps=8, output="logit")(linear_model, x, t, a, sample_ids=ids)
    counts = P.step_counts(1024, steps=8)
    srt = torch.sort(a.reshape(6, -1), 1, descending=True).values.double()
    prefix = torch.cat([torch.zeros(6, 1, dtype=torch.float64), srt.cumsum(1)], 1)[:, counts]
    y0 = linear_model(blur)[torch.arange(6), t].double().detach()
    torch.testing.assert_close(r.curves, y0[:, None] + prefix, rtol=1e-5, atol=1e-4)
