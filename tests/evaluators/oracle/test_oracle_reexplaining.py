"""The ground-truth oracle inside every evaluator that re-explains: it gets the evidence masks
of the right rows (also for perturbed, repeated and chunked inputs) and scores the value its
definition implies (its map ignores the model and the pixels)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.base import (
    EvalBatch,
    create_evaluator,
    evaluator_card,
    list_evaluators,
)
from gmxai_eval.methods import create_method

B, S = 4, 16


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)).eval()


def oracle_batch() -> EvalBatch:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 3, S, S, generator=g)
    masks = torch.zeros(B, S, S, dtype=torch.bool)
    for i in range(B):  # a different rectangle per image: a row mix-up changes the map
        masks[i, i:i + 5 + i, 2 * i:2 * i + 6] = True
    model = toy_model()
    target = model(x).argmax(1)
    oracle = create_method("oracle")
    return EvalBatch(model, x, target, {"oracle": oracle(model, x, target, masks=masks)},
                     [f"s{i}" for i in range(B)], {"oracle": oracle}, masks)


def _layers(name: str) -> dict:
    return {"layers": ["0", "2", "6"]} if "mprt" in name else {}


#: The value each re-explaining evaluator's definition gives a map that ignores the model and
#: the pixels: similarity 1 to the original map, zero sensitivity, zero complexity change.
EXPECTED = {
    "mprt_cascading": 1.0, "mprt_independent": 1.0, "smooth_mprt": 1.0, "random_logit": 1.0,
    "efficient_mprt": 0.0, "max_sensitivity": 0.0, "avg_sensitivity": 0.0, "local_lipschitz_estimate": 0.0,
}
SMALL = {"smooth_mprt": {"n_noise": 3}, "max_sensitivity": {"n_samples": 5, "max_batch": 3},
         "avg_sensitivity": {"n_samples": 5, "max_batch": 3},
         "local_lipschitz_estimate": {"n_samples": 5, "max_batch": 3}}


@pytest.mark.parametrize("name", [n for n in list_evaluators() if "explainer" in evaluator_card(n).needs])
def test_every_reexplaining_evaluator_runs_the_oracle(name):
    ev = create_evaluator(name, **_layers(name), **SMALL.get(name, {}))
    res = ev.evaluate(oracle_batch())["oracle"]
    assert res.scores.shape == (B,) and torch.isfinite(res.scores).all()
    if name in EXPECTED:
        assert res.scores.tolist() == pytest.approx([EXPECTED[name]] * B, abs=1e-6), name


def test_rows_bind_the_masks_of_repeated_inputs():
    b = oracle_batch()
    x = b.x.repeat_interleave(3, 0)
    rows = torch.arange(B).repeat_interleave(3)
    maps = b.explain("oracle", b.model, x, b.target.repeat_interleave(3), rows=rows)
    assert torch.equal(maps, b.masks.float().repeat_interleave(3, 0))
    with pytest.raises(ShapeError, match="rows="):
        b.explain("oracle", b.model, x, b.target.repeat_interleave(3))
    with pytest.raises(ShapeError, match="rows of length"):
        b.explain("oracle", b.model, x, b.target.repeat_interleave(3), rows=rows[:-1])
    # a subset keeps masks and rows together
    sub = b.subset(torch.tensor([2, 0]))
    assert torch.equal(sub.explain("oracle", sub.model, sub.x, sub.target), b.masks[[2, 0]].float())
    nomask = EvalBatch(b.model, b.x, b.target, b.maps, b.sample_ids, b.explainers)
    with pytest.raises(ConfigError, match="needs evidence masks"):
        nomask.explain("oracle", b.model, b.x, b.target)


def test_quantus_adapter_binds_masks_for_the_oracle():
    quantus = pytest.importorskip("quantus")
    ev = create_evaluator("quantus", metric=quantus.MaxSensitivity(nr_samples=3, disable_warnings=True))
    res = ev.evaluate(oracle_batch())["oracle"]
    assert res.scores.tolist() == pytest.approx([0.0] * B)
    assert not any(math.isnan(v) for v in res.scores.tolist())
