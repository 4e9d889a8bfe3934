"""Robustness evaluators against Quantus 0.6.0 and Captum 0.9 on identical perturbations,
plus analytic values and invariances."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from captum.metrics import sensitivity_max

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import EVALUATORS
from gmxai_eval.evaluators.base import EvalBatch
from gmxai_eval.evaluators.quantus_adapter import explain_func_for

N = 6


def _batch(model, x, target, explainer, ids=None):
    return EvalBatch(model, x, target, {"m": explainer(model, x, target)}, sample_ids=ids,
                     explainers={"m": explainer}, seed=5)


def _quantus_noise(draw, b, shape):
    """The draws Quantus makes: one (B, D) array per step, from NumPy's global RNG."""
    np.random.seed(7)
    steps = [draw((b, int(np.prod(shape)))) for _ in range(N)]
    return torch.as_tensor(np.stack(steps, 1).reshape(b, N, *shape), dtype=torch.float32)


@pytest.mark.parametrize("name,qcls", [("max_sensitivity", quantus.MaxSensitivity),
                                       ("avg_sensitivity", quantus.AvgSensitivity)])
def test_sensitivity_matches_quantus(seqnet, images, grad_input, monkeypatch, name, qcls):
    target = torch.tensor([0, 1, 2, 3])
    r = 0.05
    noise = _quantus_noise(lambda s: np.random.uniform(-r, r, s), 4, images.shape[1:])
    monkeypatch.setattr(EVALUATORS.get(name), "noise", lambda self, batch: noise)
    batch = _batch(seqnet, images, target, grad_input)
    ours = EVALUATORS.create(name, preset="quantus", radius=r, n_samples=N, max_batch=10).evaluate(batch)["m"]
    np.random.seed(7)
    ref = qcls(nr_samples=N, lower_bound=r, normalise=False, abs=False, disable_warnings=True)(
        model=seqnet, x_batch=images.numpy(), y_batch=target.numpy(), a_batch=batch.maps["m"].numpy()[:, None],
        explain_func=explain_func_for(grad_input), batch_size=64)
    np.testing.assert_allclose(ours.scores.numpy(), ref, rtol=1e-5)


def test_local_lipschitz_matches_quantus(seqnet, images, grad_input, monkeypatch):
    target = torch.tensor([0, 1, 2, 3])
    noise = _quantus_noise(lambda s: np.random.normal(0.0, 0.1, s), 4, images.shape[1:])
    monkeypatch.setattr(EVALUATORS.get("local_lipschitz_estimate"), "noise", lambda self, batch: noise)
    batch = _batch(seqnet, images, target, grad_input)
    ours = EVALUATORS.create("local_lipschitz_estimate", n_samples=N, std=0.1).evaluate(batch)["m"]
    np.random.seed(7)
    ref = quantus.LocalLipschitzEstimate(nr_samples=N, perturb_std=0.1, perturb_mean=0.0, normalise=False, abs=False,
                                         disable_warnings=True)(
        model=seqnet, x_batch=images.numpy(), y_batch=target.numpy(), a_batch=batch.maps["m"].numpy()[:, None],
        explain_func=explain_func_for(grad_input), batch_size=64)
    np.testing.assert_allclose(ours.scores.numpy(), ref, rtol=1e-5)


def test_max_sensitivity_matches_captum(seqnet, images, grad_input):
    target = torch.tensor([0, 1, 2, 3])
    ev = EVALUATORS.create("max_sensitivity", n_samples=N)  # captum preset: radius 0.02
    batch = _batch(seqnet, images, target, grad_input)
    noise = ev.noise(batch)
    ours = ev.evaluate(batch)["m"]

    def perturb(inputs, perturb_radius=None):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        return inputs + noise.reshape(-1, *inputs.shape[1:])  # Captum repeats each input n times, contiguously

    def expl(inputs, target):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        return (grad_input(seqnet, inputs, target),)

    ref = sensitivity_max(expl, images, perturb_func=perturb, n_perturb_samples=N, target=target)
    np.testing.assert_allclose(ours.scores.numpy(), ref.numpy(), rtol=1e-5)
    assert noise.abs().max() <= 0.02


def test_weight_free_map_has_analytic_sensitivity(seqnet, images, input_control):
    """phi(x) = mean_c x is linear: ||phi(x) - phi(x + d)|| / ||phi(x)|| = ||mean_c d|| / ||mean_c x||."""
    target = torch.zeros(4, dtype=torch.long)
    ev = EVALUATORS.create("avg_sensitivity", n_samples=N)
    batch = _batch(seqnet, images, target, input_control)
    d = ev.noise(batch).double()
    expected = d.mean(2).flatten(2).norm(dim=2) / images.double().mean(1).flatten(1).norm(dim=1)[:, None]
    res = ev.evaluate(batch)["m"]
    np.testing.assert_allclose(res.extras["ratios"].numpy(), expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(res.scores.numpy(), expected.mean(1).numpy(), rtol=1e-5)
    lle = EVALUATORS.create("local_lipschitz_estimate", n_samples=N)
    res = lle.evaluate(batch)["m"]
    d = lle.noise(batch).double()  # ||mean_c d|| / ||d|| <= 1/sqrt(C), equality iff d equal over channels
    expected = d.mean(2).flatten(2).norm(dim=2) / d.flatten(2).norm(dim=2)
    np.testing.assert_allclose(res.scores.numpy(), expected.amax(1).numpy(), rtol=1e-5)


@pytest.mark.parametrize("name", ["max_sensitivity", "local_lipschitz_estimate"])
def test_invariant_to_batch_order_size_and_chunking(seqnet, images, grad_input, name):
    target = torch.tensor([0, 1, 2, 3])
    ids = ["p", "q", "r", "s"]
    ev = EVALUATORS.create(name, n_samples=3)
    full = ev.evaluate(_batch(seqnet, images, target, grad_input, ids))["m"]
    perm = [3, 1, 0, 2]
    shuf = EVALUATORS.create(name, n_samples=3, max_batch=5).evaluate(
        _batch(seqnet, images[perm], target[perm], grad_input, [ids[i] for i in perm]))["m"]
    np.testing.assert_allclose(shuf.scores.numpy(), full.scores[perm].numpy(), rtol=1e-6)
    one = ev.evaluate(_batch(seqnet, images[2:3], target[2:3], grad_input, ids[2:3]))["m"]
    np.testing.assert_allclose(one.scores.numpy(), full.scores[2:3].numpy(), rtol=1e-6)


def test_presets_and_zero_norm(seqnet, images):
    ev = EVALUATORS.create("max_sensitivity", preset="quantus")
    assert ev.conventions()["radius"] == 0.2 and ev.conventions()["n_samples"] == 200
    with pytest.raises(ConfigError, match="preset"):
        EVALUATORS.create("max_sensitivity", preset="zennit").conventions()
    from gmxai_eval.functional.robustness import sensitivity
    a = torch.zeros(1, 2, 2)
    p = torch.ones(1, 1, 2, 2)
    assert sensitivity(a, p, zero_norm="one").item() == 2.0
    assert torch.isnan(sensitivity(a, p, zero_norm="nan")).all()


def test_max_and_avg_sensitivity_share_one_set_of_noisy_maps(seqnet, images, grad_input):
    """The two reduce the same ratios: in one batch memo the second explains nothing again,
    and each equals its value computed alone."""
    calls = []

    def counting(model, x, target):
        calls.append(x.shape[0])
        return grad_input(model, x, target)

    target = torch.tensor([0, 1, 2, 3])
    ids = [f"s{i}" for i in range(4)]
    batch = _batch(seqnet, images, target, counting, ids)
    mx = EVALUATORS.create("max_sensitivity", n_samples=3).evaluate(batch)["m"]
    after_max = sum(calls)
    av = EVALUATORS.create("avg_sensitivity", n_samples=3).evaluate(batch)["m"]
    assert after_max == 4 + 4 * 3 and sum(calls) == after_max  # the second evaluator explained nothing
    assert torch.equal(mx.extras["ratios"], av.extras["ratios"])
    alone = EVALUATORS.create("avg_sensitivity", n_samples=3).evaluate(_batch(seqnet, images, target, grad_input, ids))["m"]
    torch.testing.assert_close(av.scores, alone.scores, rtol=0, atol=0)
    # another sample count is other work
    EVALUATORS.create("avg_sensitivity", n_samples=2).evaluate(batch)
    assert sum(calls) == after_max + 4 * 2
