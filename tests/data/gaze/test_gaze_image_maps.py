"""Per-image gaze data: the shared fixation pool of the shuffled-AUC negatives."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gmxai_eval.data.gaze.fixations import validate_fixations
from gmxai_eval.data.gaze.maps import image_gaze_set


def test_image_gaze_set_others_are_the_rescaled_fixations_of_other_images():
    df = pd.DataFrame({"observer_id": ["o"] * 4, "image_id": ["a", "a", "b", "c"],
                       "x": [1.0, 2.0, 10.0, 3.0], "y": [1.0, 2.0, 5.0, 7.5],
                       "onset_ms": [0.0] * 4, "duration_ms": [100.0] * 4})
    shapes = {"a": (8, 8), "b": (16, 16), "c": (8, 8)}
    g = image_gaze_set(validate_fixations(df), shapes, 1.0)
    np.testing.assert_allclose(g["a"].other_points(), [[5.0, 2.5], [3.0, 7.5]])  # b halved, c as is
    np.testing.assert_allclose(g["b"].other_points(), [[2.0, 2.0], [4.0, 4.0], [6.0, 15.0]])
    assert g["a"].pool is g["b"].pool  # one shared pool, not a copy per image
