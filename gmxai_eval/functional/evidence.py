"""Does a model use the planted evidence? The all-traits-off drop (pure kernel, NumPy in / out).

On images with planted traits, the **all-traits-off drop** of image ``i`` is
``d_i = s_i(x) - s_i(x with every planted trait re-rendered off)``: the explained class's score
(softmax probability) of the image minus the score of its counterfactual render in which no
trait is left (the same renders as the counterfactual truth,
:mod:`gmxai_eval.functional.counterfactual`). The statistic is the mean drop over the images
with at least one trait, with a 95 % percentile CI over bootstrap resamples of the images (of
whole subjects when ``clusters`` is given; the draws of
:func:`gmxai_eval.functional.paired.bootstrap_means`). A model **uses the planted evidence**
when the CI lies above 0 (``ci_low > 0``): switching the traits off lowers the score it gives
the explained class. A model that ignores the traits has drops around 0 and no such CI; on it a
truth built from the traits is not the model's truth, so its validity table does not count.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.paired import bootstrap_means


def all_off_drop(clean: Any, all_off: Any, n_traits: Any, clusters: Sequence[Any] | None = None, *,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """The all-traits-off drop of a model on a set of images (see the module docstring).

    Args:
        clean: ``(N,)`` score of the explained class on each image.
        all_off: ``(N,)`` score of the explained class on the image with every trait off.
        n_traits: ``(N,)`` number of planted traits of each image; images with none are left out.
        clusters: ``N`` subject ids (whole subjects are resampled) or ``None`` (images).
        n_boot, level, seed: the percentile bootstrap of the mean.

    Returns:
        ``{"drop", "ci_low", "ci_high", "n", "n_units", "resampling_unit", "uses_evidence"}``;
        ``drop`` and the CI are ``None`` (and ``uses_evidence`` False) when no image has a trait.

    >>> r = all_off_drop([0.9, 0.8, 0.5], [0.1, 0.2, 0.5], [2, 1, 0])
    >>> round(r["drop"], 6), r["n"], r["uses_evidence"]
    (0.7, 2, True)
    >>> all_off_drop([0.5, 0.5], [0.5, 0.5], [1, 1])["uses_evidence"]  # no drop: not above 0
    False
    """
    if not 0 < level < 1:
        raise ConfigError(f"expected 0 < level < 1, got {level}")
    c, o = np.asarray(clean, np.float64).ravel(), np.asarray(all_off, np.float64).ravel()
    k = np.asarray(n_traits).ravel()
    if not (c.shape == o.shape == k.shape):
        raise ShapeError(f"expected clean, all_off and n_traits of one length, got {c.shape}, {o.shape}, {k.shape}")
    if clusters is not None and len(clusters) != len(c):
        raise ShapeError(f"expected {len(c)} cluster ids, got {len(clusters)}")
    keep = (k > 0) & np.isfinite(c) & np.isfinite(o)
    d = (c - o)[keep]
    cl = None if clusters is None else [str(clusters[i]) for i in np.flatnonzero(keep)]
    if cl is not None and len(set(cl)) == len(cl):
        cl = None  # one image per subject: the units are the images
    n_units = len(d) if cl is None else len(set(cl))
    out: dict[str, Any] = {"drop": None, "ci_low": None, "ci_high": None, "n": int(len(d)), "n_units": int(n_units),
                           "resampling_unit": "image" if cl is None else "subject", "uses_evidence": False}
    if not len(d):
        return out
    boot = bootstrap_means(d, cl, n_boot=n_boot, seed=seed)[:, 0]
    boot = boot[np.isfinite(boot)]
    a = (1 - level) / 2
    lo, hi = (float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))) if len(boot) else (math.nan, math.nan)
    out.update(drop=float(d.mean()), ci_low=lo, ci_high=hi, uses_evidence=bool(lo > 0))
    return out
