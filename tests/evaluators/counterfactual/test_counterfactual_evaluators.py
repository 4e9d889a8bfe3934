"""Counterfactual evaluators: analytic values on a toy renderer + linear model, and the
ground-truth order beating random on the default model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EvalBatch, create_evaluator, evaluator_card

from counterfactual_toys import BLOCKS, S, W, BlockRenderer, block_score, default_truth_images


class ToyRenderer(BlockRenderer):
    """Image ``i`` has the traits ``TRAITS[i]``; a trait is its block set to 1, off = 0."""

    TRAITS = {"s0": ("a", "b", "c"), "s1": ("c", "a"), "s2": ("b",)}


class BlockModel(nn.Module):
    def forward(self, x):
        z = block_score(x)
        return torch.stack([torch.zeros_like(z), z], 1)


def toy_batch(maps, renderer=None):
    r = renderer or ToyRenderer()
    ids = list(ToyRenderer.TRAITS)
    x = r.render(ids, [()] * 3)
    return EvalBatch(BlockModel().eval(), x, torch.ones(3, dtype=torch.long), maps, ids, extra={"counterfactual": r})


def painted(order_weights):
    """Maps painting each trait's block with mass proportional to ``order_weights[t]``."""
    m = torch.zeros(3, S, S)
    for i, sid in enumerate(ToyRenderer.TRAITS):
        for t in ToyRenderer.TRAITS[sid]:
            blk = BLOCKS[t]
            area = (blk[0].stop - blk[0].start) * (blk[1].stop - blk[1].start)
            m[(i, *blk)] = order_weights[t] / area
    return m


def test_cards():
    for name in ("counterfactual_region_rank", "counterfactual_deletion"):
        c = evaluator_card(name)
        assert c.category == "counterfactual" and "counterfactual" in c.needs
    assert evaluator_card("counterfactual_region_rank").higher_is_better
    assert not evaluator_card("counterfactual_deletion").higher_is_better


def test_region_rank_analytic():
    maps = {"truth": painted(W), "reversed": painted({t: -v for t, v in W.items()}),
            "flat": painted({t: 1.0 for t in W})}
    out = create_evaluator("counterfactual_region_rank", output="logit", part="signed").evaluate(toy_batch(maps))
    assert out["truth"].scores[:2].tolist() == pytest.approx([1.0, 1.0])
    assert out["reversed"].scores[:2].tolist() == pytest.approx([-1.0, -1.0])
    assert out["flat"].scores[:2].isnan().all()  # a constant mass has no ranking
    for r in out.values():  # one trait: NaN, counted in n_traits
        assert r.scores[2].isnan() and r.extras["n_traits"].tolist() == [3, 2, 1]
    # with the positive part (default) the negative map has no mass at all -> NaN
    pos = create_evaluator("counterfactual_region_rank", output="logit").evaluate(toy_batch(maps))
    assert pos["reversed"].scores[:2].isnan().all()


def test_deletion_analytic_and_shared_renders():
    r = ToyRenderer()
    maps = {"truth": painted(W), "reversed": painted({t: 1.0 / v for t, v in W.items()})}
    out = create_evaluator("counterfactual_deletion", output="logit").evaluate(toy_batch(maps, r))
    # image 0, truth order a, c, b: logits 6, 3, 1, 0 -> area ((6+3) + (3+1) + (1+0)) / 2 / 3
    assert out["truth"].scores[0].item() == pytest.approx(14 / 6)
    # reversed order b, c, a: logits 6, 5, 3, 0 -> ((6+5) + (5+3) + (3+0)) / 6
    assert out["reversed"].scores[0].item() == pytest.approx(22 / 6)
    # image 1 (c, a): truth a first: 5, 2, 0 -> (7 + 2) / 4
    assert out["truth"].scores[1].item() == pytest.approx(9 / 4)
    assert out["truth"].scores[2].isnan()
    assert torch.allclose(out["truth"].extras["oracle"][:2], out["truth"].scores[:2].double())
    # renders are memoised per (sample, traits off): at most 2^T subsets per image (+ 3 for
    # the batch's own images)
    assert r.calls <= 2 ** 3 + 2 ** 2 + 2 ** 1 + 3


def test_missing_renderer_raises():
    batch = toy_batch({"m": painted(W)})
    batch.extra.pop("counterfactual")
    with pytest.raises(ConfigError, match="counterfactual renderer"):
        create_evaluator("counterfactual_deletion").evaluate(batch)


def test_scores_do_not_depend_on_batch_composition():
    maps = {"m": painted({"a": 1.0, "b": 1.0, "c": 1.0})}  # ties -> random tie-break per sample
    ev = create_evaluator("counterfactual_deletion", output="logit")
    full = ev.evaluate(toy_batch(maps))["m"]
    sub = ev.evaluate(toy_batch(maps).subset(torch.tensor([1, 0])))["m"]
    assert torch.equal(sub.scores, full.scores[[1, 0]])
    assert torch.equal(sub.extras["random"], full.extras["random"][[1, 0]])


@pytest.fixture(scope="module")
def default_batch():
    model, _, _, x, labels, ids, r = default_truth_images(16)
    return model, x, labels, ids, r


def test_truth_beats_random_on_the_default_model(default_batch):
    model, x, y, ids, r = default_batch
    batch = EvalBatch(model, x, y, {"sobel": x.mean(1)}, ids, extra={"counterfactual": r})
    dele = create_evaluator("counterfactual_deletion")
    res = dele.evaluate(batch)["sobel"]
    # the model uses the planted traits: all off removes most of the class probability
    all_off = r.render(ids, [r.traits(s) for s in ids])
    with torch.no_grad():
        p0 = model(x).softmax(1)[torch.arange(len(ids)), y].mean()
        p1 = model(all_off).softmax(1)[torch.arange(len(ids)), y].mean()
    assert p1 < 0.3 * p0
    # removing traits in the order of their interventional importance beats a random order
    assert res.extras["oracle"].mean() < res.extras["random"].mean() - 0.03
    # a map whose mass per trait is the importance ranks the traits as the truth does
    _, masks, _ = dele.traits(batch)
    imp = dele.importance(batch).nan_to_num()
    area = masks.sum((2, 3)).clamp(min=1)
    truth_map = (masks * (imp.clamp(min=0) / area)[..., None, None].float()).sum(1)
    rr = create_evaluator("counterfactual_region_rank").evaluate(
        EvalBatch(model, x, y, {"truth": truth_map.float()}, ids, extra={"counterfactual": r}))["truth"]
    assert np.nanmean(rr.scores.numpy()) > np.nanmean(rr.extras["random"].numpy()) + 0.4
