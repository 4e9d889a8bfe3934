"""The gaze_* evaluators: one registered class per metric over its kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaze_toys import identical_observers

from gmxai_eval.data.gaze.maps import ImageGaze, image_gaze_set
from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.base import EVALUATORS, EvalBatch
from gmxai_eval.evaluators.gaze import GazeEvaluator
from gmxai_eval.evaluators.gaze_reference import DEFAULT_METRICS, score_maps
from gmxai_eval.functional import gaze as G
from gmxai_eval.functional.gaze_maps import centre_bias_map, density_map
from gmxai_eval.utils import numpy_rng_for

H, W = 24, 32




def _case(seed=0, n=12):
    r = np.random.default_rng(seed)
    pts = np.column_stack([r.uniform(0, W, n), r.uniform(0, H, n)])
    pts[1] = pts[0]
    smap = r.normal(size=(H, W))
    return pts, smap, density_map(pts, (H, W), 2.0)


def _gaze_evaluators() -> list[str]:
    return [n for n in EVALUATORS.list("gaze_*") if issubclass(EVALUATORS.get(n), GazeEvaluator)]


def test_every_gaze_evaluator_is_an_explicit_class_with_its_card():
    names = _gaze_evaluators()
    assert {f"gaze_{m}" for m in DEFAULT_METRICS} <= set(names)
    classes = {EVALUATORS.get(n) for n in names}
    assert len(classes) == len(names)  # one class per metric, not one class under several names
    for n in names:
        cls = EVALUATORS.get(n)
        assert cls.__module__ == "gmxai_eval.evaluators.gaze" and cls.card.name == f"gaze_{cls.metric}"
        assert cls.card.category == "gaze" and cls.card.needs == {"fixations"}
        assert cls.card.default_config["transform"] == "abs"


def test_registry_directions_and_unknown_option():
    assert [n for n in _gaze_evaluators() if not EVALUATORS.card(n).higher_is_better] == ["gaze_emd", "gaze_kl"]
    pts, s, dens = _case()
    g = ImageGaze("a", (H, W), pts, np.array(["o"] * len(pts)), np.full(len(pts), 200.0), dens, pts, centre_bias_map((H, W)))
    with pytest.raises(ConfigError, match="unknown"):
        EVALUATORS.create("gaze_nss", bins=3)
    with pytest.raises(ConfigError, match="seeded rng"):
        EVALUATORS.create("gaze_auc_borji").score_map(s, g, None)
    with pytest.raises(ConfigError, match="preset"):
        EVALUATORS.create("gaze_kl", preset="tuebingen")
    with pytest.raises(ShapeError, match="gaze resolution"):
        EVALUATORS.create("gaze_cc").score_map(s[:, :-1], g)


def test_score_map_is_the_kernel():
    # oracle: each kernel of functional.gaze called directly with the evaluator's config
    pts, s, dens = _case(3)
    base = centre_bias_map((H, W))
    others = _case(4)[0]
    g = ImageGaze("a", (H, W), pts, np.array(["o"] * len(pts)), np.full(len(pts), 200.0), dens, others, base)
    rng = lambda: np.random.default_rng(9)  # noqa: E731
    expected = {
        "gaze_nss": G.nss(s, pts, "fixation"), "gaze_auc_judd": G.auc_judd(s, pts, "mit"),
        "gaze_auc_borji": G.auc_borji(s, pts, rng(), 100, 0.1),
        "gaze_sauc": G.auc_shuffled(s, pts, others, "pysaliency"), "gaze_cc": G.cc(s, dens),
        "gaze_sim": G.sim(s, dens, "mit"), "gaze_kl": G.kl_div(s, dens, "mit"),
        "gaze_ig": G.information_gain(s, pts, base, 0.01), "gaze_emd": G.emd(s, dens, 8),
        "gaze_iou": G.iou_regions(s, dens, "duong2024")}
    assert set(expected) == set(_gaze_evaluators())
    for name, value in expected.items():
        ev = EVALUATORS.create(name)
        assert ev.score_map(s, g, rng() if ev.random else None) == value
    mit = EVALUATORS.create("gaze_sauc", preset="mit", n_splits=7)
    assert mit.random and mit.score_map(s, g, rng()) == G.auc_shuffled(s, pts, others, "mit", rng(), 7, 0.1)
    assert EVALUATORS.create("gaze_kl", preset="pysaliency").score_map(s, g) == G.kl_div(s, dens, "pysaliency")


def test_gaze_evaluators_match_the_kernels(toy_model):
    t = identical_observers(n_obs=2, n_img=3)
    shape = (32, 32)
    gazes = image_gaze_set(t, {i: shape for i in t.image_ids}, 1.5)
    ids = t.image_ids
    r = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=r)
    maps = torch.randn(3, 32, 32, generator=r)
    for evname in _gaze_evaluators():
        ev = EVALUATORS.create(evname)
        name = ev.metric
        assert ev.card.category == "gaze" and ev.card.needs == {"fixations"}
        res = ev(toy_model, x, torch.zeros(3, dtype=torch.long), maps, sample_ids=ids, seed=2, fixations=gazes)
        ref = score_maps({i: np.abs(maps[k].double().numpy()) for k, i in enumerate(ids)}, gazes,
                         metrics=(name,), seed=2)
        # random metrics draw from the same (seed, image id, metric) generator in both paths
        np.testing.assert_allclose(res.scores.numpy(), ref[name].to_numpy(), rtol=1e-9)
        # and from numpy_rng_for(seed, "gaze", metric, sample id), whatever the batch order
        direct = [ev.score_map(np.abs(maps[k].double().numpy()), gazes[i],
                               numpy_rng_for(2, "gaze", name, i) if ev.random else None) for k, i in enumerate(ids)]
        np.testing.assert_array_equal(res.scores.numpy(), direct)
    # subsetting keeps the id-keyed fixations valid
    ev = EVALUATORS.create("gaze_nss")
    b = EvalBatch(toy_model, x, torch.zeros(3, dtype=torch.long), {"m": maps}, ids, extra={"fixations": gazes})
    full = ev.evaluate(b)["m"].scores
    sub = ev.evaluate(b.subset(torch.tensor([2, 0])))["m"].scores
    np.testing.assert_allclose(sub.numpy(), full[[2, 0]].numpy())
    with pytest.raises(ShapeError, match="ImageGaze for every sample id"):
        ev(toy_model, x, torch.zeros(3, dtype=torch.long), maps, sample_ids=["a", "b", "c"], fixations=gazes)
    with pytest.raises(ShapeError, match="fixations"):
        ev(toy_model, x, torch.zeros(3, dtype=torch.long), maps, sample_ids=ids)
