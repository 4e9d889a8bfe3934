"""Shared builders of the gaze evaluator tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gmxai_eval.data.gaze.fixations import validate_fixations

SHAPE = (20, 24)


def identical_observers(n_obs: int = 3, n_img: int = 3, seed: int = 0):
    """Fixations where every observer looks at the same 7 points of each image (so the human
    ceiling is as high as it gets)."""
    r = np.random.default_rng(seed)
    rows = []
    for i in range(n_img):
        pts = np.column_stack([r.uniform(0, SHAPE[1], 7), r.uniform(0, SHAPE[0], 7)])
        for o in range(n_obs):
            rows += [dict(observer_id=f"o{o}", image_id=f"im{i}", x=x, y=y, onset_ms=k * 250.0,
                          duration_ms=200.0) for k, (x, y) in enumerate(pts)]
    return validate_fixations(pd.DataFrame(rows))
