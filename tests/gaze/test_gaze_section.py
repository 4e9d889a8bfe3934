"""The transitional gaze section: maps computed once, numbers from gaze_section_data."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from gmxai_eval.data.gaze.simulate import simulate_study
from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.evaluators.gaze_reference import CEILING_ROW, FLOOR_ROW
from gmxai_eval.gaze.section import gaze_section
from gmxai_eval.methods.base import METHODS


def test_gaze_section_simulates_when_no_study_is_given(faces, toy_model):
    explainers = {"saliency": METHODS.create("saliency")}
    kw = dict(seed=5, metrics=("nss", "auc_borji"), n_boot=20, n_observers=3)
    a = gaze_section(toy_model, faces, explainers, **kw)
    assert list(a.index) == ["saliency", CEILING_ROW, FLOOR_ROW]
    assert a["simulated"].all() and "SIMULATED" in a.attrs["caption"]
    pd.testing.assert_frame_equal(a, gaze_section(toy_model, faces, explainers, **kw))  # deterministic
    with pytest.raises(ConfigError, match="both fixations and study"):
        gaze_section(toy_model, faces, explainers, study=object(), seed=0)  # type: ignore[arg-type]


def test_study_image_size_must_match_the_images(faces, toy_model):
    table, study = simulate_study(faces, 2, seed=0)
    wrong = dataclasses.replace(study, image_size=(112, 112))
    with pytest.raises(DataError, match="image_size"):
        gaze_section(toy_model, faces, {"saliency": METHODS.create("saliency")}, study=wrong, fixations=table)
