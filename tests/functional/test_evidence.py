"""The all-traits-off drop kernel: analytic mean, the CI from the shared bootstrap draws, subjects
as the resampling unit, images without traits left out, typed errors."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import gmxai_eval.functional.evidence as evidence
from gmxai_eval.errors import ShapeError
from gmxai_eval.functional.evidence import all_off_drop
from gmxai_eval.functional.paired import bootstrap_means


def test_the_doctests_pass():
    res = doctest.testmod(evidence)
    assert res.attempted > 0 and res.failed == 0


def test_mean_and_ci_are_the_bootstrap_of_the_drops_of_images_with_traits():
    rng = np.random.default_rng(0)
    clean, off = rng.uniform(0.5, 1, 40), rng.uniform(0, 0.6, 40)
    k = np.r_[np.zeros(5, int), rng.integers(1, 4, 35)]
    subjects = [f"p{i // 2}" for i in range(40)]
    r = all_off_drop(clean, off, k, subjects, n_boot=500, seed=3)
    d = (clean - off)[5:]
    assert r["drop"] == pytest.approx(d.mean()) and r["n"] == 35 and r["resampling_unit"] == "subject"
    boot = bootstrap_means(d, subjects[5:], n_boot=500, seed=3)[:, 0]
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    assert r["n_units"] == 18 and r["uses_evidence"] is (r["ci_low"] > 0)


def test_a_model_that_ignores_the_traits_is_not_shown_to_use_them():
    rng = np.random.default_rng(1)
    clean = rng.uniform(0, 1, 64)
    r = all_off_drop(clean, clean + rng.normal(0, 0.05, 64), np.ones(64), n_boot=500)
    assert r["ci_low"] < 0 < r["ci_high"] and r["uses_evidence"] is False
    none = all_off_drop([0.5], [0.1], [0])
    assert none["drop"] is None and none["n"] == 0 and none["uses_evidence"] is False


def test_bad_shapes_are_typed_errors():
    with pytest.raises(ShapeError, match="one length"):
        all_off_drop([0.5, 0.4], [0.1], [1, 1])
    with pytest.raises(ShapeError, match="cluster ids"):
        all_off_drop([0.5], [0.1], [1], ["a", "b"])
