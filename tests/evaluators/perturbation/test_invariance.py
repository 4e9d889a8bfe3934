"""Invariances (batch size, chunking, order), sharing across evaluators, and bad input."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.errors import ConfigError, ModelStateError, NonFiniteError, ShapeError
from gmxai_eval.evaluators.base import EVALUATORS, EvalBatch
from gmxai_eval.utils import hooks

SMALL = {
    "deletion": {"steps": 6},
    "insertion": {"steps": 6},
    "pixel_flipping": {"steps": 6},
    "region_perturbation": {"patch_size": 8, "regions": 5},
    "faithfulness_correlation": {"subset_size": 32, "nr_runs": 6},
    "faithfulness_estimate": {"features_in_step": 256},
    "monotonicity_correlation": {"features_in_step": 256, "nr_samples": 2},
    "sensitivity_n": {"subset_fractions": (0.05, 0.2), "nr_runs": 5},
    "infidelity": {"n_perturb_samples": 5},
    "sufficiency": {"keep": (0.1, 0.5)},
    "monotonicity_arya": {"steps": 6, "score": "fraction"},
}
BATCH_SCOPE: set[str] = set()  # none: sufficiency's default estimator is per image too
NAMES = sorted(SMALL)


def test_every_registered_perturbation_evaluator_is_covered():
    from gmxai_eval.evaluators import perturbation as mod

    mine = {n for n in EVALUATORS.list() if getattr(EVALUATORS.get(n), "__module__", "") == mod.__name__}
    assert mine == set(NAMES)


@pytest.fixture
def batch(toy_model, toy_batch):
    x, t, ids = toy_batch
    g = torch.Generator().manual_seed(7)
    maps = {"a": torch.randn(6, 32, 32, generator=g), "b": torch.randn(6, 32, 32, generator=g)}
    return EvalBatch(toy_model, x, t, maps, ids, seed=3)


def _run(name, batch, **kw):
    return EVALUATORS.create(name, **{**SMALL[name], **kw}).evaluate(batch)


def _close(r1, r2):
    torch.testing.assert_close(r1.scores, r2.scores, rtol=1e-5, atol=1e-7)
    if r1.curves is not None:
        torch.testing.assert_close(r1.curves, r2.curves, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_batch_size_chunking_and_order(name, batch):
    full = _run(name, batch)
    # chunking: forward passes of at most 5 images
    chunk = {"max_batch": 5} if "max_batch" in EVALUATORS.card(name).default_config else {}
    for m, r in _run(name, EvalBatch(batch.model, batch.x, batch.target, batch.maps, batch.sample_ids,
                                     seed=3), **chunk).items():
        _close(full[m], r)
    # batch size: two halves
    if name not in BATCH_SCOPE:
        halves = [_run(name, batch.subset(torch.arange(i, i + 3))) for i in (0, 3)]
        for m in full:
            _close(full[m], type(full[m]).cat([h[m] for h in halves]))
    # order: a permuted batch gives permuted results
    perm = torch.tensor([4, 2, 0, 5, 1, 3])
    permuted = _run(name, batch.subset(perm))
    for m in full:
        torch.testing.assert_close(permuted[m].scores, full[m].scores[perm], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_multi_method_equals_single_method(name, batch):
    both = _run(name, batch)
    one = _run(name, EvalBatch(batch.model, batch.x, batch.target, {"b": batch.maps["b"]}, batch.sample_ids, seed=3))
    _close(both["b"], one["b"])


def test_deletion_and_pixel_flipping_share_one_curve(batch, counter):
    with hooks() as hs:
        hs.append(batch.model.register_forward_pre_hook(counter))
        d = EVALUATORS.create("deletion", steps=6).evaluate(batch)
        after_deletion = counter.images
        pf = EVALUATORS.create("pixel_flipping", steps=6).evaluate(batch)
    # deletion: clean (6) + fully replaced (6) + 5 inner steps x 2 methods x 6 images; then nothing
    assert after_deletion == 6 + 6 + 5 * 2 * 6
    assert counter.images == after_deletion
    fresh = EvalBatch(batch.model, batch.x, batch.target, batch.maps, batch.sample_ids, seed=3)
    unshared = EVALUATORS.create("pixel_flipping", steps=6).evaluate(fresh)
    for m in batch.maps:
        torch.testing.assert_close(pf[m].curves, d[m].curves)
        torch.testing.assert_close(pf[m].curves, unshared[m].curves, rtol=1e-6, atol=1e-9)


def test_shared_curve_is_reused_by_region_perturbation(toy_model, counter):
    """1x1 regions, every step: the AOPC curve is the pixel-flipping curve (8x8 images)."""
    g = torch.Generator().manual_seed(2)
    batch = EvalBatch(toy_model, torch.rand(3, 3, 8, 8, generator=g), torch.tensor([0, 1, 2]),
                      {"a": torch.randn(3, 8, 8, generator=g), "b": torch.randn(3, 8, 8, generator=g)}, seed=3)
    with hooks() as hs:
        hs.append(batch.model.register_forward_pre_hook(counter))
        EVALUATORS.create("pixel_flipping", steps=None, features_in_step=1).evaluate(batch)
        before = counter.images
        r = EVALUATORS.create("region_perturbation", patch_size=1, regions=64, baseline="input_zero",
                              random_control=False).evaluate(batch)
    assert counter.images == before
    fresh = EvalBatch(batch.model, batch.x, batch.target, batch.maps, batch.sample_ids, seed=3)
    r2 = EVALUATORS.create("region_perturbation", patch_size=1, regions=64, baseline="input_zero",
                           random_control=False).evaluate(fresh)
    for m in batch.maps:
        torch.testing.assert_close(r[m].scores, r2[m].scores, rtol=1e-6, atol=1e-9)


def test_random_subsets_are_shared_across_methods(batch, counter):
    with hooks() as hs:
        hs.append(batch.model.register_forward_pre_hook(counter))
        EVALUATORS.create("faithfulness_correlation", subset_size=32, nr_runs=6).evaluate(batch)
    assert counter.images == 6 + 6 * 6  # clean + runs x images, whatever the number of methods


def test_random_control_shared_and_method_independent(batch):
    r = _run("region_perturbation", batch)
    torch.testing.assert_close(r["a"].extras["aopc_random"], r["b"].extras["aopc_random"])


# -- bad input: typed errors before any forward pass --------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", ["shape", "nan", "training", "target"])
def test_bad_input_raises_before_forward(name, case, toy_model, toy_batch, counter):
    x, t, ids = toy_batch
    maps = torch.randn(6, 32, 32)
    err = {"shape": ShapeError, "nan": NonFiniteError, "training": ModelStateError, "target": ShapeError}[case]
    if case == "shape":
        maps = torch.randn(6, 3, 32, 32)
    elif case == "nan":
        maps[0, 0, 0] = float("nan")
    elif case == "training":
        toy_model.train()
    else:
        t = torch.tensor([0, 1, 2, 3, 4, 0])
    with hooks() as hs:
        hs.append(toy_model.register_forward_pre_hook(counter))
        with pytest.raises(err):
            EVALUATORS.create(name, **SMALL[name])(toy_model, x, t, maps, sample_ids=ids)
    assert counter.calls == 0


@pytest.mark.parametrize("kw", [{"output": "softmax"}, {"max_batch": 0}, {"unit": "voxel"}, {"nonsense": 1},
                                {"auc": "simpson"}, {"steps": None}, {"steps": 0},
                                {"steps": 4, "features_in_step": 2}])
def test_bad_config_raises(kw):
    name = "pixel_flipping"
    with pytest.raises(ConfigError):
        EVALUATORS.create(name, **kw)


def test_subset_larger_than_image_raises(toy_model, toy_batch):
    x, t, ids = toy_batch
    with pytest.raises(ConfigError):
        EVALUATORS.create("faithfulness_correlation", subset_size=5000)(toy_model, x, t, torch.randn(6, 32, 32))
