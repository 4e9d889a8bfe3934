"""The gaze of a spec's ``[gaze]`` table, as the gaze command's runner spec loads it: a study
whose ``image_size`` is not the images' size is refused, and a fixation file may name images
that a run leaves out (``known``)."""

from __future__ import annotations

import json

import pytest

from gmxai_eval.data.gaze.fixations import write_fixations
from gmxai_eval.data.gaze.load import load_gaze
from gmxai_eval.data.gaze.simulate import simulate_study
from gmxai_eval.errors import DataError


def _files(tmp_path, faces, **study_changes):
    table, study = simulate_study(faces, 2, seed=0)
    fx = write_fixations(table, tmp_path / "fixations.csv")
    (tmp_path / "study.json").write_text(json.dumps({**study.to_dict(), **study_changes}))
    return fx, tmp_path / "study.json"


def test_study_image_size_must_match_the_images(tmp_path, faces):
    fx, st = _files(tmp_path, faces, image_size=[112, 112])
    with pytest.raises(DataError, match="image_size"):
        load_gaze(fx, faces, study=st)


def test_fixations_of_images_left_out_are_valid_with_known(tmp_path, faces):
    fx, st = _files(tmp_path, faces)
    with pytest.raises(DataError, match="unknown_image|image id"):
        load_gaze(fx, faces[:2], study=st)  # the other two images' rows name unknown images
    got = load_gaze(fx, faces[:2], study=st, known=faces)
    assert sorted(got.gazes) == sorted(s.image_id for s in faces[:2])
    # the scored images' gaze is the gaze of the full file restricted to them
    full = load_gaze(fx, faces, study=st)
    for iid, g in got.gazes.items():
        assert (g.points == full.gazes[iid].points).all() and (g.density == full.gazes[iid].density).all()
