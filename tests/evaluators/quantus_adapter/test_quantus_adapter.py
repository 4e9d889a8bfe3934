"""The Quantus adapter: equal to calling Quantus directly, card taken from the metric,
reproducible and free of global side effects."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators import EVALUATORS
from gmxai_eval.evaluators.quantus_adapter import QuantusMetric, explain_func_for


def test_equals_direct_quantus_call(seqnet, images, grad_input):
    target = torch.tensor([0, 1, 2, 3])
    maps = grad_input(seqnet, images, target)
    ev = EVALUATORS.create("quantus", metric="Complexity", metric_kwargs={"disable_warnings": True})
    ref = quantus.Complexity(disable_warnings=True)(model=seqnet, x_batch=images.numpy(), y_batch=target.numpy(),
                                                    a_batch=maps.numpy()[:, None].copy())
    np.testing.assert_allclose(ev(seqnet, images, target, maps).scores.numpy(), ref, rtol=1e-12)
    assert ev.higher_is_better is False and ev.card.category == "complexity" and not ev.card.needs


def test_explainer_metric_reproducible_and_rng_restored(seqnet, images, grad_input):
    target = torch.tensor([0, 1, 2, 3])
    maps = grad_input(seqnet, images, target)
    ev = QuantusMetric(metric=quantus.AvgSensitivity(nr_samples=2, disable_warnings=True))
    assert ev.card.needs == frozenset({"explainer"}) and ev.higher_is_better is False
    with pytest.raises(ConfigError, match="needs an explainer"):
        ev(seqnet, images, target, maps)
    np.random.seed(11)
    expected = np.random.rand(3)
    np.random.seed(11)
    a = ev(seqnet, images, target, maps, explainer=grad_input).scores
    assert np.array_equal(np.random.rand(3), expected)  # NumPy's global RNG restored
    b = ev(seqnet, images, target, maps, explainer=grad_input).scores
    assert torch.equal(a, b) and ev.metric.all_evaluation_scores == []
    c = ev(seqnet, images, target, maps, explainer=grad_input, seed=1).scores
    assert not torch.equal(a, c)


def test_direction_from_metric_or_user():
    assert QuantusMetric(metric="Sparseness", metric_kwargs={"disable_warnings": True}).higher_is_better is True
    with pytest.raises(ConfigError, match="higher_is_better=True"):
        QuantusMetric(metric="Sparseness", metric_kwargs={"disable_warnings": True}, higher_is_better=False)
    with pytest.raises(ConfigError, match="close matches"):
        QuantusMetric(metric="Sparsenes")
    with pytest.raises(ConfigError, match="got None"):
        QuantusMetric()

    class Undeclared(quantus.Metric):  # declares no score_direction
        evaluation_category = quantus.Sparseness.evaluation_category

    m = Undeclared(abs=True, normalise=False, normalise_func=None, normalise_func_kwargs=None,
                   return_aggregate=False, aggregate_func=None, default_plot_func=None, disable_warnings=True,
                   display_progressbar=False)
    with pytest.raises(ConfigError, match="declares no score_direction"):
        QuantusMetric(metric=m)
    ev = QuantusMetric(metric=m, higher_is_better=False)
    assert ev.higher_is_better is False and ev.card.category == "complexity"


def test_per_layer_output_is_rejected(seqnet, images, grad_input):
    target = torch.tensor([0, 1, 2, 3])
    ev = QuantusMetric(metric=quantus.MPRT(disable_warnings=True))
    with pytest.raises(ShapeError, match="return_average_correlation"):
        ev(seqnet, images, target, grad_input(seqnet, images, target), explainer=grad_input)


def test_explain_func_shape(seqnet, images, grad_input):
    out = explain_func_for(grad_input)(seqnet, images.numpy(), np.array([0, 1, 2, 3]))
    assert out.shape == (4, 1, 32, 32) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], grad_input(seqnet, images, torch.tensor([0, 1, 2, 3])).numpy())
