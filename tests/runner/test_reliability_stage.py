"""The reliability stage: invariances and a hand-computed input-noise change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmxai_eval.evaluators.base import EvalResult, Evaluator
from gmxai_eval.methods.base import Explainer
from gmxai_eval.runner.stages.reliability import metric_reliability, perturb_input, perturb_model
from gmxai_eval.types import EvaluatorCard, MethodCard


class InputMean(Explainer):
    """Model-independent: the map is the channel mean of the image (times a per-method scale)."""

    card = MethodCard(name="input_mean", family="control", signed=True, paper="test",
                      default_config={"scale": 1.0})

    def _attribute(self, model, x, target):
        return x.mean(1) * float(self.config["scale"])


class MapMean(Evaluator):
    card = EvaluatorCard(name="map_mean", category="complexity", higher_is_better=True, paper="test")

    def _evaluate(self, batch, method):
        return EvalResult(batch.maps[method].double().mean((1, 2)))


def setup(toy_model):
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    target = toy_model(x).argmax(1)
    ex = {"a": InputMean(scale=1.0), "b": InputMean(scale=2.0)}
    return x, target, ex, {"map_mean": MapMean()}


def test_model_noise_does_not_move_a_model_independent_pipeline(toy_model):
    x, t, ex, evs = setup(toy_model)
    ids = [f"s{i}" for i in range(5)]
    out = metric_reliability(toy_model, x, t, ids, ex, evs, minor_input_sigma=0.0, disruptive_input_sigma=0.0,
                             minor_model_sigma=0.05, disruptive_model_sigma=2.0)["evaluators"]["map_mean"]
    assert out["minor_change"] == 0.0 and out["disruptive_change"] == 0.0
    assert out["minor_tau"] == pytest.approx(1.0)


def test_input_noise_change_by_hand(toy_model):
    x, t, ex, evs = setup(toy_model)
    ids = [f"s{i}" for i in range(5)]
    res = metric_reliability(toy_model, x, t, ids, ex, evs, minor_input_sigma=0.0, disruptive_input_sigma=0.3,
                             minor_model_sigma=0.0, disruptive_model_sigma=0.0, seed=4)
    out = res["evaluators"]["map_mean"]
    base = {m: (x.mean(1) * s).double().mean((1, 2)).numpy() for m, s in (("a", 1.0), ("b", 2.0))}
    sd = np.concatenate(list(base.values())).std()
    xp = perturb_input(x, 0.3, 4, "input_disruptive", 0)
    pert = {m: (xp.mean(1) * s).double().mean((1, 2)).numpy() for m, s in (("a", 1.0), ("b", 2.0))}
    input_change = np.mean(np.concatenate([np.abs(pert[m] - base[m]) / sd for m in ("a", "b")]))
    # the disruptive change averages the input (hand-computed) and model (0: model-independent) kinds
    assert out["disruptive_change"] == pytest.approx(input_change / 2, rel=1e-6)
    assert out["minor_change"] == 0.0 and out["ratio"] == float("inf") and out["n_kept"] == 5
    assert res["settings"]["disruptive_input_sigma"] == 0.3


def test_perturb_model_is_a_copy_with_multiplicative_noise(toy_model):
    before = {k: v.clone() for k, v in toy_model.state_dict().items()}
    m = perturb_model(toy_model, 0.0, 0, "k", 0)
    for k, v in toy_model.state_dict().items():
        assert torch.equal(v, before[k]) and torch.equal(m.state_dict()[k], v)
    m2 = perturb_model(toy_model, 0.5, 0, "k", 0)
    w0, w2 = toy_model.head.fc.weight, m2.head.fc.weight
    assert not torch.equal(w0, w2) and torch.equal(torch.sign(w0) * 0, torch.sign(w2) * 0)
    assert torch.equal(toy_model.head.fc.weight, before["head.fc.weight"])
