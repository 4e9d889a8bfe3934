import pytest
import torch
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import create_evaluator
from gmxai_eval.functional.baselines import input_zero_of, make_baseline
from gmxai_eval.models import ClassifierHead, GMXModel, Preprocess


@pytest.mark.parametrize("pre", [Preprocess(), Preprocess(mean=(0.2, 0.4, 0.6), std=(0.1, 0.2, 0.3)),
                                 Preprocess(mean=(0.3,), std=(0.5,), grayscale=True)])
def test_input_zero_is_zero_in_the_models_input_space(pre):
    model = GMXModel(nn.Flatten(), ClassifierHead(1, 2), pre)
    x = torch.rand(2, 3, 8, 8)
    fill = make_baseline("input_zero", x, input_zero=input_zero_of(model))
    torch.testing.assert_close(pre(fill), torch.zeros_like(pre(fill)), atol=1e-6, rtol=0)


def test_input_zero_needs_a_preprocess_module():
    with pytest.raises(ConfigError, match="input_zero"):
        make_baseline("input_zero", torch.rand(1, 3, 4, 4), input_zero=input_zero_of(nn.Linear(2, 2)))


def test_deletion_default_substrate_is_rise_zero_in_normalised_space(toy_model, toy_batch):
    # toy_model normalises with mean 0, std 1: RISE's substrate is black there, so the default
    # and an explicit black substrate give identical scores; with mean 0.5 it is grey.
    x, target, ids = toy_batch
    maps = {"m": x.sum(1)}
    a = create_evaluator("deletion", steps=4)(toy_model, x, target, maps["m"], sample_ids=ids)
    b = create_evaluator("deletion", steps=4, baseline="black")(toy_model, x, target, maps["m"], sample_ids=ids)
    torch.testing.assert_close(a.scores, b.scores)
    toy_model.preprocess = Preprocess().eval()  # mean 0.5
    c = create_evaluator("deletion", steps=4)(toy_model, x, target, maps["m"], sample_ids=ids)
    d = create_evaluator("deletion", steps=4, baseline=0.5)(toy_model, x, target, maps["m"], sample_ids=ids)
    torch.testing.assert_close(c.scores, d.scores)
