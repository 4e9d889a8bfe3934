"""load_gaze: one call for the fixations, the study and the per-image gaze of a set of samples."""

from __future__ import annotations

import numpy as np
import pytest

from gmxai_eval.data.gaze.fixations import read_fixations
from gmxai_eval.data.gaze.load import load_gaze
from gmxai_eval.data.gaze.maps import image_gaze_set
from gmxai_eval.data.gaze.simulate import simulate_study, write_simulated_study
from gmxai_eval.data.gaze.study import load_study
from gmxai_eval.errors import ConfigError, DataError


def test_simulated_is_the_simulation_on_the_samples(faces):
    got = load_gaze("simulated", faces, seed=4, observers=3)
    table, study = simulate_study(faces, 3, seed=4)  # oracle: the two steps written out
    want = image_gaze_set(table, {s.image_id: tuple(s.image.shape[1:]) for s in faces}, study.sigma_px)
    assert got.study == study and got.study.simulated and got.fixations.data.equals(table.data)
    assert list(got.gazes) == list(want)
    for k, g in want.items():
        np.testing.assert_array_equal(got.gazes[k].points, g.points)
        np.testing.assert_array_equal(got.gazes[k].density, g.density)


def test_files_give_the_gaze_that_was_written(faces, tmp_path):
    fx, st = write_simulated_study(faces, tmp_path, 2, seed=1)
    got = load_gaze(fx, faces, study=st, duration_weighted=True)
    # oracle: the files read and turned into per-image gaze step by step
    shapes = {s.image_id: tuple(s.image.shape[1:]) for s in faces}
    want = image_gaze_set(read_fixations(fx, known_images=shapes, image_sizes=shapes), shapes,
                          load_study(st).sigma_px, duration_weighted=True)
    assert got.study == load_study(st) and list(got.gazes) == list(want)
    for k, g in want.items():
        np.testing.assert_array_equal(got.gazes[k].points, g.points)
        np.testing.assert_array_equal(got.gazes[k].density, g.density)
    # and they are the simulated gaze, up to the file's 3-decimal coordinates
    sim = load_gaze("simulated", faces, seed=1, observers=2)
    assert got.study == sim.study
    for k, g in sim.gazes.items():
        np.testing.assert_allclose(got.gazes[k].points, g.points, rtol=0, atol=5e-4 + 1e-9)
    with pytest.raises(ConfigError, match="study file"):
        load_gaze(fx, faces)
    with pytest.raises(DataError, match="unknown_image|image"):
        load_gaze(fx, faces[:2], study=st)  # fixations on images that are not among the samples
    assert len(load_gaze(fx, faces[:2], study=st, on_invalid="drop").gazes) == 2
