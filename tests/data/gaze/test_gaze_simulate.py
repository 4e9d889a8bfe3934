"""Simulated clinician gaze: determinism and analytic / invariance oracles."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

from gmxai_eval.data.gaze.fixations import read_fixations
from gmxai_eval.data.gaze.simulate import (ObserverProfile, make_observers, simulate_fixations, simulate_study,
                                           write_simulated_study)
from gmxai_eval.data.gaze.study import load_study

EXACT = ObserverProfile("exact", expertise=0.0, centre=0.0, triangle=(1, 1, 1, 1), offset=(0.0, 0.0), spread=0.0)


def test_deterministic_and_order_independent(faces):
    a = simulate_fixations(faces, 3, seed=7)
    b = simulate_fixations(faces[::-1], 3, seed=7)
    key = ["observer_id", "image_id", "onset_ms"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True))
    assert not a.equals(simulate_fixations(faces, 3, seed=8))


def test_realistic_counts_and_durations(faces):
    df = simulate_fixations(faces, 6, seed=0)
    per_trial = df.groupby("trial").size()
    assert per_trial.min() >= 5 and per_trial.max() <= 25  # plausibility of the design (3-5 s trials)
    last = df.groupby("trial").apply(lambda g: (g.onset_ms + g.duration_ms).max(), include_groups=False)
    assert (last <= 5000).all()
    onsets_sorted = df.groupby("trial")["onset_ms"].apply(lambda s: bool(np.all(np.diff(s.to_numpy()) > 0)))
    assert onsets_sorted.all()


def test_zero_spread_triangle_observer_fixates_exactly_on_landmarks(faces):
    df = simulate_fixations(faces, [EXACT], seed=0, first_at_centre=False)
    for s in faces:
        lm = s.landmarks.double().numpy()
        targets = np.stack([lm[0], lm[1], lm[2], 0.5 * (lm[3] + lm[4])])
        pts = df[df.image_id == s.image_id][["x", "y"]].to_numpy()
        d = np.abs(pts[:, None, :] - targets[None]).max(-1).min(1)
        np.testing.assert_allclose(d, 0.0, atol=1e-12)


def test_full_expertise_observer_fixates_only_inside_the_evidence(faces):
    expert = dataclasses.replace(EXACT, observer_id="expert", expertise=1.0)
    df = simulate_fixations(faces, [expert], seed=0, first_at_centre=False)
    for s in faces:
        pts = df[df.image_id == s.image_id][["x", "y"]].to_numpy()
        ev = s.evidence.numpy()
        assert ev[np.floor(pts[:, 1]).astype(int), np.floor(pts[:, 0]).astype(int)].all()


def test_fixations_translate_with_the_face(face_factory):
    make_face = face_factory
    obs = [dataclasses.replace(p, centre=0.0) for p in make_observers(3, seed=1)]
    base = simulate_fixations([make_face("x", size=64)], obs, seed=2, first_at_centre=False)
    moved = simulate_fixations([make_face("x", size=64, shift=(5, 3))], obs, seed=2, first_at_centre=False)
    inside = (base.x > 1) & (base.y > 1) & (base.x < 58) & (base.y < 60)  # no clipping in either image
    # landmarks are float32: the shift is exact up to float32 rounding of the landmark coordinates
    np.testing.assert_allclose(moved.x[inside] - base.x[inside], 5.0, atol=1e-5)
    np.testing.assert_allclose(moved.y[inside] - base.y[inside], 3.0, atol=1e-5)
    assert inside.mean() > 0.9


def test_expertise_shares_follow_the_mixture_weights(faces):
    # expertise is the mixture weight of the evidence region: 0 -> never inside (the landmarks
    # lie outside the evidence box), 1 -> always inside
    obs = [dataclasses.replace(EXACT, observer_id=f"e{k}", expertise=e) for k, e in enumerate((0.0, 0.5, 1.0))]
    df = simulate_fixations(faces * 1, obs, seed=0, first_at_centre=False)
    share = []
    for o in obs:
        d = df[df.observer_id == o.observer_id]
        hit = [faces[int(i[1:])].evidence.numpy()[int(y), int(x)] for i, x, y in zip(d.image_id, d.x, d.y)]
        share.append(np.mean(hit))
    assert share[0] == 0.0 and share[2] == 1.0  # landmarks are outside the evidence box; all inside


def test_written_study_is_labelled_simulated_and_valid(tmp_path, faces):
    fx, st = write_simulated_study(faces, tmp_path, observers=2, seed=0)
    study = load_study(st)
    assert study.simulated is True and "SIMULATED" in study.description
    assert json.loads(st.read_text())["simulated"] is True
    sizes = {s.image_id: tuple(s.image.shape[1:]) for s in faces}
    t = read_fixations(fx, known_images=sizes, image_sizes=sizes)
    t2, _ = simulate_study(faces, 2, seed=0)
    np.testing.assert_allclose(t.data[["x", "y"]].to_numpy(), t2.data[["x", "y"]].to_numpy(), atol=1e-3)
