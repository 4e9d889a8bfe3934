"""Analytic oracles and invariances of the randomisation evaluators."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import EVALUATORS
from gmxai_eval.evaluators.base import EvalBatch
from gmxai_eval.functional.randomisation import (
    execution_order, random_other_class, random_pairs, randomised_models)

SMALL = {"hog_pixels_per_cell": 8, "hog_cells_per_block": 2}


def _batch(model, x, explainers, target=None, ids=None):
    target = torch.zeros(len(x), dtype=torch.long) if target is None else target
    return EvalBatch(model, x, target, {k: e(model, x, target) for k, e in explainers.items()},
                     sample_ids=ids, explainers=explainers, seed=3)


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.modules())


@pytest.mark.parametrize("name", ["mprt_cascading", "mprt_independent"])
def test_weight_independent_map_fails_the_check_and_gradient_passes(seqnet, images, grad_input, input_control, name):
    res = EVALUATORS.create(name, **SMALL).evaluate(_batch(seqnet, images, {"gi": grad_input, "x": input_control}))
    for s in ("spearman_abs", "spearman", "ssim", "hog", "topk_iou"):
        np.testing.assert_allclose(res["x"].extras[f"layers_{s}"].numpy(), 1.0, atol=1e-12, err_msg=s)
    assert (res["gi"].curves < 0.95).all()
    assert res["x"].curves.shape == (4, 3) and res["x"].curve_labels == res["gi"].curve_labels


def test_cascading_order_is_output_to_input_in_execution_order():
    class Swapped(nn.Module):  # registers `late` before `early`, runs `early` first
        def __init__(self):
            super().__init__()
            self.late = nn.Linear(4, 2)
            self.early = nn.Conv2d(3, 4, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.late(self.pool(self.early(x)).flatten(1))

    torch.manual_seed(0)
    m = Swapped().eval()
    x = torch.rand(2, 3, 16, 16)
    assert execution_order(m, x) == ["early", "late"]
    assert [n for n, _ in m.named_modules() if n and list(m.get_submodule(n).parameters(False))] == ["late", "early"]
    assert [n for n, _ in randomised_models(m, execution_order(m, x), "top_down", 0)] == ["late", "early"]


def test_cascading_is_cumulative_and_independent_restores(seqnet):
    layers = ["0", "2", "6"]
    orig = copy.deepcopy(seqnet.state_dict())
    changed = lambda mm: [n for n in layers if not torch.equal(mm.get_submodule(n).weight, orig[f"{n}.weight"])]  # noqa: E731
    assert [changed(m) for _, m in randomised_models(seqnet, layers, "top_down", 0)] == [["6"], ["2", "6"], ["0", "2", "6"]]
    assert [changed(m) for _, m in randomised_models(seqnet, layers, "independent", 0)] == [["0"], ["2"], ["6"]]
    # the same layer gets the same random weights in every order
    w = {n: m.get_submodule(n).weight.clone() for n, m in randomised_models(seqnet, layers, "independent", 0)}
    for n, m in randomised_models(seqnet, layers, "top_down", 0):
        assert torch.equal(m.get_submodule(n).weight, w[n])


def test_users_model_unchanged_and_global_rng_untouched(toy_model, toy_batch, grad_input):
    x, target, ids = toy_batch
    state = copy.deepcopy(toy_model.state_dict())
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    EVALUATORS.create("mprt_cascading", **SMALL).evaluate(_batch(toy_model, x, {"gi": grad_input}, target, ids))
    assert torch.equal(torch.rand(3), expected_next)
    after = toy_model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert not toy_model.training and _no_hooks(toy_model)


def test_no_hook_left_after_an_exception(seqnet, images, grad_input):
    class Boom(Exception):
        pass

    class Failing(type(grad_input)):
        calls = 0

        def _attribute(self, model, x, target):
            Failing.calls += 1
            if Failing.calls > 2:
                raise Boom()
            return super()._attribute(model, x, target)

    ex = Failing()
    batch = EvalBatch(seqnet, images, torch.zeros(4, dtype=torch.long), {"f": torch.zeros(4, 32, 32)},
                      explainers={"f": ex})
    with pytest.raises(Boom):
        EVALUATORS.create("mprt_cascading", **SMALL).evaluate(batch)
    assert _no_hooks(seqnet)

    class Exploding(nn.Module):  # fails inside the probe forward pass that records the order
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            self.lin(x.mean((2, 3)))
            raise Boom()

    bad = Exploding().eval()
    with pytest.raises(Boom):
        execution_order(bad, images)
    assert _no_hooks(bad)


@pytest.mark.parametrize("name", ["mprt_cascading", "random_logit", "efficient_mprt"])
def test_invariant_to_batch_order_and_size(seqnet, images, grad_input, name):
    ev = EVALUATORS.create(name, **(SMALL if name.startswith("mprt") else {}))
    ids = ["a", "b", "c", "d"]
    full = ev.evaluate(_batch(seqnet, images, {"m": grad_input}, ids=ids))["m"]
    perm = [2, 0, 3, 1]
    shuffled = ev.evaluate(_batch(seqnet, images[perm], {"m": grad_input}, ids=[ids[i] for i in perm]))["m"]
    np.testing.assert_allclose(shuffled.scores.numpy(), full.scores[perm].numpy(), rtol=1e-10)
    for k in full.extras:  # the random-pair floor too: pairing depends on ids, not positions
        np.testing.assert_allclose(shuffled.extras[k].numpy(), full.extras[k][perm].numpy(), rtol=1e-10, err_msg=k)
    if name == "mprt_cascading":  # the floor pairs images within the batch: none for a single image
        single = ev.evaluate(_batch(seqnet, images[:1], {"m": grad_input}, ids=ids[:1]))["m"]
        assert torch.isnan(single.extras["floor_ssim"]).all()
        np.testing.assert_allclose(single.scores.numpy(), full.scores[:1].numpy(), rtol=1e-10)
    halves = [ev.evaluate(_batch(seqnet, images[i:i + 2], {"m": grad_input}, ids=ids[i:i + 2]))["m"] for i in (0, 2)]
    np.testing.assert_allclose(torch.cat([h.scores for h in halves]).numpy(), full.scores.numpy(), rtol=1e-10)


def test_predicted_class_is_explained_by_default(seqnet, images, grad_input):
    pred = seqnet(images).argmax(1)
    wrong = (pred + 1) % 5
    batch = _batch(seqnet, images, {"m": grad_input}, target=wrong)
    a = EVALUATORS.create("mprt_cascading", similarities=["spearman"], floor=False).evaluate(batch)["m"]
    b = EVALUATORS.create("mprt_cascading", similarities=["spearman"], floor=False).evaluate(
        _batch(seqnet, images, {"m": grad_input}, target=pred))["m"]
    np.testing.assert_allclose(a.scores.numpy(), b.scores.numpy(), rtol=1e-12)


def test_random_other_class_and_pairs():
    t = torch.tensor([0, 2, 4, 4])
    np.testing.assert_array_equal(random_other_class(t, 5, torch.tensor([0, 2, 3, 0])).numpy(), [1, 3, 3, 0])
    p = random_pairs(["a", "b", "c", "d", "e"], 0)
    assert sorted(p.tolist()) == list(range(5)) and all(p[i] != i for i in range(5))
    assert random_pairs(["x"], 0).tolist() == [0]


def test_config_errors(seqnet, images, grad_input):
    batch = _batch(seqnet, images, {"m": grad_input})
    with pytest.raises(ConfigError, match="unknown"):
        EVALUATORS.create("mprt_cascading", layers=["nope"]).evaluate(batch)
    with pytest.raises(ConfigError, match="target"):
        EVALUATORS.create("mprt_cascading", target="true").evaluate(batch)
    with pytest.raises(ConfigError, match="unknown config"):
        EVALUATORS.create("mprt_cascading", similaritee="ssim")
    with pytest.raises(ConfigError, match="needs an explainer"):
        EVALUATORS.create("random_logit").evaluate(EvalBatch(seqnet, images, torch.zeros(4, dtype=torch.long),
                                                             {"m": torch.zeros(4, 32, 32)}))


def test_constant_randomised_map_convention(seqnet, images, grad_input):
    class ZeroAfterRandomisation(type(grad_input)):
        """gradient x input of the trained model, all-zero for any other model."""

        def _attribute(self, model, x, target):
            out = super()._attribute(model, x, target)
            return out if model is seqnet else torch.zeros_like(out)

    ex = ZeroAfterRandomisation()
    batch = _batch(seqnet, images, {"z": ex})
    default = EVALUATORS.create("mprt_cascading", similarities=["spearman", "hog"], **SMALL).evaluate(batch)["z"]
    np.testing.assert_array_equal(default.curves.numpy(), 0.0)
    np.testing.assert_array_equal(default.extras["layers_hog"].numpy(), 0.0)
    raw = EVALUATORS.create("mprt_cascading", similarities=["spearman"], constant_maps="nan").evaluate(batch)["z"]
    assert torch.isnan(raw.curves).all()
