"""The counterfactual oracle inside every evaluator that re-explains: it gets the sample ids of
the rows it explains (perturbed, repeated, partner and chunked inputs included) and scores what
its definition implies (its map depends on the model and the class, never on the pixels)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gmxai_eval.evaluators.base import EvalBatch, create_evaluator, evaluator_card, list_evaluators
from gmxai_eval.methods import create_method
from gmxai_eval.runner.context import bind_masks

B, S = 4, 16


class Quadrants:
    """Image ``s{i}`` is row ``i`` of the batch; its traits are its four quadrants (off = 0)."""

    cache_key = "quadrants-v1"

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.clone()

    def traits(self, sid):
        return ("tl", "tr", "bl", "br")

    def trait_masks(self, sid):
        m = torch.zeros(4, S, S, dtype=torch.bool)
        h = S // 2
        m[0, :h, :h], m[1, :h, h:], m[2, h:, :h], m[3, h:, h:] = True, True, True, True
        return m

    def render(self, ids, off):
        out = torch.stack([self.x[int(s[1:])].clone() for s in ids])
        for i, (sid, o) in enumerate(zip(ids, off)):
            for k, t in enumerate(self.traits(sid)):
                if t in o:
                    out[i][:, self.trait_masks(sid)[k]] = 0.0
        return out


def truth_batch() -> EvalBatch:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 3, S, S, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)).eval()
    target = model(x).argmax(1)
    ids = [f"s{i}" for i in range(B)]
    r = Quadrants(x)
    truth = create_method("counterfactual_oracle", output="logit")
    return EvalBatch(model, x, target, {"truth": truth(model, x, target, samples=ids, renderer=r)}, ids,
                     bind_masks({"truth": truth}, None, ids, r), extra={"counterfactual": r})


def _layers(name: str) -> dict:
    return {"layers": ["0", "2", "6"]} if "mprt" in name else {}


SMALL = {"smooth_mprt": {"n_noise": 3}, "max_sensitivity": {"n_samples": 5, "max_batch": 3},
         "avg_sensitivity": {"n_samples": 5, "max_batch": 3},
         "local_lipschitz_estimate": {"n_samples": 5, "max_batch": 3}}
#: input noise never changes the truth (it is rendered from the sample id)
ZERO = ("max_sensitivity", "avg_sensitivity", "local_lipschitz_estimate")


@pytest.mark.parametrize("name", [n for n in list_evaluators() if "explainer" in evaluator_card(n).needs])
def test_every_reexplaining_evaluator_runs_the_truth(name):
    ev = create_evaluator(name, **_layers(name), **SMALL.get(name, {}))
    res = ev.evaluate(truth_batch())["truth"]
    assert res.scores.shape == (B,)
    if name in ZERO:
        assert res.scores.tolist() == pytest.approx([0.0] * B, abs=1e-6), name


def test_noisy_copies_get_their_rows_truth():
    b = truth_batch()
    rows = torch.arange(B).repeat_interleave(2)
    maps = b.explain("truth", b.model, b.x[rows] + 0.05, b.target[rows], rows=rows)
    torch.testing.assert_close(maps, b.maps["truth"][rows])
