"""Sufficiency: batch-size / composition invariance of the default estimator (issue: it changed
for 95 % of the methods when the batch was halved), and an analytic oracle of its kernel."""

from __future__ import annotations

import torch
from torch import nn

from gmxai_eval.evaluators import EVALUATORS, EvalBatch
from gmxai_eval.functional import perturbation as P


class PatchClassifier(nn.Module):
    """Predicts class 1 iff the mean of the top-left 4x4 patch exceeds 0.5 (else class 0):
    only those 16 pixels matter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, :, :4, :4].mean((1, 2, 3))
        return torch.stack([0.5 - v, v - 0.5], 1) * 10.0


def _batch(n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=g)
    x[: n // 2, :, :4, :4] = 0.9  # half predicted 1, half 0
    x[n // 2:, :, :4, :4] = 0.1
    return x, torch.zeros(n, dtype=torch.long), [f"img{i}" for i in range(n)]


def test_kernel_keeping_the_evidence_keeps_the_prediction():
    """Oracle: a map that ranks the 16 decisive pixels first keeps them at every level
    (p * 256 >= 16), so every draw keeps the prediction -> 1. A map that ranks them last replaces
    them at every level below p = 1 - 16/256 by the fill (0.5 grey is at the decision boundary;
    a fill of 0 flips class 1 to 0)."""
    model = PatchClassifier().eval()
    x, _, _ = _batch()
    pred = model(x).argmax(1)
    good = torch.zeros(8, 16, 16)
    good[:, :4, :4] = 1.0
    fills = torch.zeros(1, *x.shape)
    s_good, c_good = P.sufficiency(model, x, pred, good, fills, keep=(0.1, 0.5))
    assert torch.equal(s_good, torch.ones(8, dtype=torch.float64))
    s_bad, c_bad = P.sufficiency(model, x, pred, -good, fills, keep=(0.1, 0.5))
    # class-1 images lose their evidence (filled with 0 -> class 0); class-0 images stay class 0
    assert torch.equal(s_bad, torch.tensor([0.0] * 4 + [1.0] * 4, dtype=torch.float64))
    assert c_bad.shape == (8, 2)


def _scores(ev, model, x, t, maps, ids):
    return ev.evaluate(EvalBatch(model, x, t, {"m": maps}, ids, seed=1))["m"].scores


def test_default_scores_do_not_depend_on_the_batch():
    """Halving the batch, evaluating each image alone, or evaluating it next to other images
    gives the same per-image scores; the Quantus estimator (the oracle that this test can fail)
    does change."""
    model = PatchClassifier().eval()
    x, t, ids = _batch()
    g = torch.Generator().manual_seed(3)
    good = torch.zeros(8, 16, 16)
    good[:, :4, :4] = 1.0
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, -1.0, 1.0]).view(-1, 1, 1)
    maps = sign * good + 0.1 * torch.randn(8, 16, 16, generator=g)
    for kw in ({"baseline": "black", "abs": False}, {"baseline": "uniform", "nr_samples": 3, "abs": False}):
        ev = EVALUATORS.create("sufficiency", **kw)
        full = _scores(ev, model, x, t, maps, ids)
        halves = torch.cat([_scores(ev, model, x[i:i + 4], t[:4], maps[i:i + 4], ids[i:i + 4]) for i in (0, 4)])
        alone = torch.cat([_scores(ev, model, x[i:i + 1], t[:1], maps[i:i + 1], ids[i:i + 1]) for i in range(8)])
        x2, _, _ = _batch(seed=9)
        mixed = _scores(ev, model, torch.cat([x[:3], x2[:5]]), t, torch.cat([maps[:3], torch.randn(5, 16, 16)]),
                        ids[:3] + [f"other{i}" for i in range(5)])[:3]
        torch.testing.assert_close(halves, full, rtol=0, atol=0)
        torch.testing.assert_close(alone, full, rtol=0, atol=0)
        torch.testing.assert_close(mixed, full[:3], rtol=0, atol=0)
        assert len(set(full.tolist())) > 1  # not a degenerate constant score
    q = EVALUATORS.create("sufficiency", estimator="quantus_batch", threshold=0.9)
    q_full = _scores(q, model, x, t, maps, ids)
    q_halves = torch.cat([_scores(q, model, x[i:i + 4], t[:4], maps[i:i + 4], ids[i:i + 4]) for i in (0, 4)])
    assert not torch.equal(q_full, q_halves)
