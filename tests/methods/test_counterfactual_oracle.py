"""The counterfactual truth as a method (``counterfactual_oracle``): analytic maps on a toy
renderer + linear model, the binding of sample ids (also for re-explained rows and inside a
run), and the truth ranking first on the counterfactual evaluators of the default model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.base import EvalBatch, create_evaluator
from gmxai_eval.functional.counterfactual import importance_map, trait_mass
from gmxai_eval.methods import create_method, method_card
from gmxai_eval.runner.context import bind_masks

from counterfactual_toys import BLOCKS, S, W, BlockRenderer, block_score, default_truth_images


class ToyRenderer(BlockRenderer):
    """Image ``sid`` has the traits ``TRAITS[sid]``; a trait is its block set to 1, off = 0."""

    TRAITS = {"s0": ("a", "b", "c"), "s1": ("c", "a"), "s2": ("b",), "s3": ()}


class BlockModel(nn.Module):
    def forward(self, x):
        z = block_score(x)
        return torch.stack([-z, z], 1)


IDS = list(ToyRenderer.TRAITS)


def expected_map(sid: str, cls: int = 1) -> torch.Tensor:
    """Analytic truth: logit drop W[t] (class 1) or -W[t] (class 0) spread over the block."""
    m = torch.zeros(S, S)
    for t in ToyRenderer.TRAITS[sid]:
        blk = BLOCKS[t]
        area = (blk[0].stop - blk[0].start) * (blk[1].stop - blk[1].start)
        m[blk] += (W[t] if cls == 1 else -W[t]) / area
    return m


def toy():
    r = ToyRenderer()
    return BlockModel().eval(), r.render(IDS, [()] * len(IDS)), r


def test_card_is_a_counterfactual_reference():
    c = method_card("counterfactual_oracle")
    assert c.reference == "counterfactual" and c.signed and not c.control
    assert method_card("oracle").reference == "evidence"
    from gmxai_eval.report.aggregate import is_oracle, is_truth
    from gmxai_eval.runner.stages.write import card_dict

    assert is_oracle("x", card_dict(c)) and is_truth("x", card_dict(c))
    assert is_oracle("y", card_dict(method_card("oracle"))) and not is_truth("y", card_dict(method_card("oracle")))
    assert not is_oracle("z", card_dict(method_card("random")))


def test_analytic_map_for_both_classes_and_logit_output():
    model, x, r = toy()
    truth = create_method("counterfactual_oracle", output="logit")
    for cls in (0, 1):
        maps = truth(model, x, torch.full((4,), cls), samples=IDS, renderer=r)
        want = torch.stack([expected_map(s, cls) for s in IDS])
        torch.testing.assert_close(maps, want, rtol=1e-5, atol=1e-6)
    assert (maps[3] == 0).all()  # no traits -> an all-zero map


def test_probability_output_is_the_drop_in_softmax():
    model, x, r = toy()
    maps = create_method("counterfactual_oracle")(model, x, torch.ones(4, dtype=torch.long), samples=IDS, renderer=r)
    # image s2 has one trait b (logit 1 -> 0): p1 = sigmoid(2 z): sigmoid(2) - sigmoid(0) over b's 16 pixels
    drop = torch.sigmoid(torch.tensor(2.0)) - 0.5
    torch.testing.assert_close(maps[2][BLOCKS["b"]], torch.full((4, 4), float(drop) / 16), rtol=1e-5, atol=1e-7)


def test_kernel_mass_is_the_importance_without_overlap():
    masks = torch.zeros(2, 3, S, S, dtype=torch.bool)
    masks[0, 0, :2] = True
    masks[0, 1, 4:] = True
    masks[1, 0, :, :3] = True
    valid = torch.tensor([[True, True, False], [True, False, False]])
    imp = torch.tensor([[0.5, -0.2, float("nan")], [0.3, float("nan"), float("nan")]], dtype=torch.float64)
    m = importance_map(masks, valid, imp)
    mass = trait_mass(m, masks, valid, "signed")
    torch.testing.assert_close(mass[valid], imp[valid], rtol=1e-6, atol=1e-7)
    with pytest.raises(ShapeError, match="finite importance"):
        importance_map(masks, valid, torch.full((2, 3), float("nan"), dtype=torch.float64))


def test_truth_ranks_first_on_the_counterfactual_evaluators_of_the_toy():
    model, x, r = toy()
    y = torch.ones(4, dtype=torch.long)
    truth = create_method("counterfactual_oracle", output="logit")(model, x, y, samples=IDS, renderer=r)
    maps = {"truth": truth, "flat": x.mean(1), "random": create_method("random")(model, x, y)}
    batch = EvalBatch(model, x, y, maps, IDS, extra={"counterfactual": r})
    rr = create_evaluator("counterfactual_region_rank", output="logit").evaluate(batch)
    assert rr["truth"].scores[:2].tolist() == pytest.approx([1.0, 1.0])
    dl = create_evaluator("counterfactual_deletion", output="logit").evaluate(batch)
    # the truth's order is the importance order: its curve is the evaluator's own reference
    torch.testing.assert_close(dl["truth"].scores[:2], dl["truth"].extras["oracle"][:2].double())
    assert (dl["truth"].scores[:2] <= dl["flat"].scores[:2]).all()
    assert (dl["truth"].scores[:2] <= dl["random"].scores[:2]).all()


def test_needs_samples_and_a_renderer():
    model, x, r = toy()
    truth = create_method("counterfactual_oracle")
    y = torch.ones(4, dtype=torch.long)
    with pytest.raises(ConfigError, match="sample ids"):
        truth(model, x, y)
    with pytest.raises(ConfigError, match="counterfactual renderer"):
        truth(model, x, y, samples=IDS)
    with pytest.raises(ConfigError, match="without"):
        truth(model, x, y, samples=IDS, renderer=object())
    with pytest.raises(ShapeError, match="one sample id per row"):
        truth(model, x, y, samples=IDS[:3], renderer=r)
    bound = truth.with_samples(IDS, r)
    torch.testing.assert_close(bound(model, x, y), truth(model, x, y, samples=IDS, renderer=r))
    # chunking keeps ids and rows together
    torch.testing.assert_close(create_method("counterfactual_oracle", chunk_size=3)(model, x, y, samples=IDS, renderer=r),
                               bound(model, x, y))
    # bind_masks binds sample ids, and refuses a run without a renderer
    assert bind_masks({"t": truth}, None, IDS, r)["t"]._samples == IDS
    with pytest.raises(ConfigError, match="needs sample ids and a counterfactual renderer"):
        bind_masks({"t": truth}, None, IDS, None)


def test_renders_are_memoised_per_bound_copy():
    model, x, r = toy()
    y = torch.ones(4, dtype=torch.long)
    bound = create_method("counterfactual_oracle").with_samples(IDS, r)
    before = r.calls
    bound(model, x, y)
    first = r.calls
    assert first - before == 4 + 3 + 2 + 1  # each image itself + one render per trait
    bound(model, x, 1 - y)         # another class: new scores, no new renders
    assert r.calls == first


def test_reexplained_rows_get_their_own_sample_ids():
    model, x, r = toy()
    y = torch.ones(4, dtype=torch.long)
    truth = create_method("counterfactual_oracle", output="logit")
    batch = EvalBatch(model, x, y, {"t": truth(model, x, y, samples=IDS, renderer=r)}, IDS,
                      bind_masks({"t": truth}, None, IDS, r), extra={"counterfactual": r})
    rows = torch.tensor([2, 0, 0, 1, 3])
    noisy = x[rows] + 0.01  # the map comes from the sample ids, not from the pixels
    maps = batch.explain("t", model, noisy, y[rows], rows=rows)
    torch.testing.assert_close(maps, torch.stack([expected_map(IDS[i]) for i in rows.tolist()]))
    with pytest.raises(ShapeError, match="rows="):
        batch.explain("t", model, noisy, y[rows])


def test_reexplaining_evaluators_score_the_truth():
    """Input noise does not change the truth (sensitivity 0); another model or class changes it
    as its definition says (a logit twice as large drops twice as much)."""
    model, x, r = toy()
    model = nn.Sequential(nn.Conv2d(3, 3, 1), BlockModel()).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        model[0].bias.zero_()
    y = torch.ones(4, dtype=torch.long)
    truth = create_method("counterfactual_oracle", output="logit")
    batch = EvalBatch(model, x, y, {"t": truth(model, x, y, samples=IDS, renderer=r)}, IDS,
                      bind_masks({"t": truth}, None, IDS, r), extra={"counterfactual": r})
    sens = create_evaluator("max_sensitivity", n_samples=3).evaluate(batch)["t"]
    assert sens.scores[:3].tolist() == pytest.approx([0.0] * 3)
    # another model (MPRT) or another class (random logit) gets its own truth
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    torch.testing.assert_close(batch.explain("t", model, x, y), 2 * batch.maps["t"])
    torch.testing.assert_close(batch.explain("t", model, x, 1 - y), -2 * batch.maps["t"])


@pytest.fixture(scope="module")
def default_batch():
    model, ds, idx, x, _, ids, r = default_truth_images(16)
    masks = torch.stack([ds[i].evidence for i in idx])
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, ids, r, masks


def test_truth_beats_random_and_the_evidence_oracle_on_the_default_model(default_batch):
    model, x, y, ids, r, masks = default_batch
    maps = {"counterfactual_oracle": create_method("counterfactual_oracle")(model, x, y, samples=ids, renderer=r),
            "oracle": create_method("oracle")(model, x, y, masks=masks),
            "random": create_method("random")(model, x, y)}
    batch = EvalBatch(model, x, y, maps, ids, extra={"counterfactual": r})
    rr = create_evaluator("counterfactual_region_rank").evaluate(batch)
    dl = create_evaluator("counterfactual_deletion").evaluate(batch)
    mean = lambda res: float(np.nanmean(res.scores.numpy()))  # noqa: E731
    # region rank (higher is better): the truth reproduces the importance ranking
    assert mean(rr["counterfactual_oracle"]) > 0.7
    assert mean(rr["counterfactual_oracle"]) > mean(rr["oracle"]) + 0.3
    assert mean(rr["counterfactual_oracle"]) > mean(rr["random"]) + 0.3
    # counterfactual deletion (lower is better): the truth's order removes what the model uses first
    assert mean(dl["counterfactual_oracle"]) < mean(dl["oracle"]) - 0.02
    assert mean(dl["counterfactual_oracle"]) < mean(dl["random"]) - 0.02
    # (it need not reach the evaluator's own importance order exactly: phenotypes acting on
    # the same region share a mask, so their masses add up and the map cannot order them)
