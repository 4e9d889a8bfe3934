"""The one-call evaluation equals the evaluators' own batch calls, whatever the input form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmxai_eval.errors import ConfigError, ShapeError, UnknownNameError
from gmxai_eval.evaluators import EVALUATORS
from gmxai_eval.evaluators.api import evaluate
from gmxai_eval.evaluators.base import EvalBatch
from gmxai_eval.methods import METHODS

EVS = ["deletion", "sparseness", "relevance_mass_accuracy"]


@pytest.fixture
def setup(toy_model, toy_batch):
    x, t, ids = toy_batch
    sal = METHODS.create("saliency")(toy_model, x, t)
    masks = torch.zeros(6, 32, 32, dtype=torch.bool)
    masks[:, 8:20, 8:20] = True
    return toy_model, x, t, ids, sal, masks


def test_scores_equal_the_evaluators_batch_calls(setup):
    model, x, t, ids, sal, masks = setup
    got = evaluate(model, x, t, maps={"sal": sal}, evaluators=EVS, masks=masks, sample_ids=ids)
    for name in EVS:
        ref = EVALUATORS.create(name).evaluate(EvalBatch(model, x, t, {"sal": sal}, ids, masks=masks))
        torch.testing.assert_close(got.results[(name, "sal")].scores, ref["sal"].scores)
    df = got.to_frame()
    assert len(df) == 6 * len(EVS) and set(df.method) == {"sal"}
    assert got.summary().loc["deletion", "sal"] == pytest.approx(df[df.evaluator == "deletion"].score.mean())


def test_numpy_uint8_images_batch_size_and_methods_by_name(setup):
    model, x, t, ids, sal, masks = setup
    x8 = (x * 255).round().to(torch.uint8)
    ref = evaluate(model, x8.float() / 255, t, methods=["saliency"], evaluators=["deletion"])
    got = evaluate(model, x8.numpy(), t.numpy().tolist(), methods=["saliency"], evaluators=["deletion"],
                   batch_size=4)
    torch.testing.assert_close(got.results[("deletion", "saliency")].scores,
                               ref.results[("deletion", "saliency")].scores)


def test_methods_as_explain_funcs_feed_re_explaining_evaluators(setup):
    model, x, t, ids, sal, masks = setup

    def grad(model, inputs, targets):
        inputs = inputs.clone().requires_grad_(True)
        out = model(inputs).gather(1, targets.view(-1, 1)).sum()
        return torch.autograd.grad(out, inputs)[0].abs().amax(1)

    got = evaluate(model, x, t, methods={"g": grad}, evaluators=["max_sensitivity"], sample_ids=ids)
    ref = evaluate(model, x, t, methods={"g": METHODS.create("saliency")}, evaluators=["max_sensitivity"],
                   sample_ids=ids)
    torch.testing.assert_close(got.results[("max_sensitivity", "g")].scores,
                               ref.results[("max_sensitivity", "g")].scores, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kw, err, msg", [
    (dict(x=np.zeros((6, 32, 32))), ShapeError, r"x: expected shape \(B, C, H, W\)"),
    (dict(x=np.zeros((6, 3, 32, 32), dtype=np.int32)), ShapeError, "float or uint8"),
    (dict(y=[0.5] * 6), ShapeError, "integer class indices"),
    (dict(y=[0, 1]), ShapeError, r"y: expected shape \(6,\)"),
    (dict(maps=None), ConfigError, "expected maps= or methods="),
    (dict(evaluators=["deletoin"]), UnknownNameError, "did you mean 'deletion'"),
])
def test_bad_inputs_are_typed_errors(setup, kw, err, msg):
    model, x, t, ids, sal, masks = setup
    args = dict(x=x, y=t, maps={"sal": sal}, evaluators=["deletion"])
    args.update(kw)
    with pytest.raises(err, match=msg):
        evaluate(model, args.pop("x"), args.pop("y"), **args)


def test_default_deletion_substrate_works_on_any_module(toy_batch):
    """A plain nn.Module has no Preprocess: its input space is pixel space, so the default
    'input_zero' substrate is 0 there, the same scores as baseline 'black'."""
    x, t, ids = toy_batch
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 4)).eval()
    maps = {"m": torch.rand(6, 32, 32, generator=torch.Generator().manual_seed(1))}
    default = evaluate(plain, x, t, maps=maps, evaluators=["deletion"], sample_ids=ids)
    black = evaluate(plain, x, t, maps=maps, evaluators={"deletion": EVALUATORS.create("deletion", baseline="black")},
                     sample_ids=ids)
    torch.testing.assert_close(default.results[("deletion", "m")].scores, black.results[("deletion", "m")].scores)
