"""The known-order test (after F-Fidelity, ICLR 2025): explanations degraded by known amounts,
so the correct ranking of the degraded copies is known by construction and a sound evaluator
must recover it. Pure kernels (tensors / NumPy in, tensors / NumPy out).

* **Degradation** (:func:`degrade_maps`): at level ``l`` a random subset of ``round(l N)`` of a
  map's ``N`` pixels is drawn and their values are permuted among themselves; the other pixels
  keep theirs. The map's value distribution is kept exactly; level 0 is the map itself, level 1
  a random ranking with the map's values. The higher the level, the worse the copy.
* **Known-order tau** (:func:`known_order_tau`): Kendall's tau-b between an evaluator's
  direction-oriented mean scores of the copies of one base method and the known order
  (``-level``: less degraded = better); 1 when the evaluator orders every pair of copies
  correctly, -1 when it reverses them all. A pair with a non-finite mean is left out.
* **Over base methods** (:func:`known_order_statistic`): the mean of the per-base taus (NaN
  bases left out); its CI is the percentile interval over bootstrap resamples of the images
  (whole subjects when subjects repeat: the draws of
  :func:`gmxai_eval.functional.paired.bootstrap_means`, the same for every column).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.paired import bootstrap_means


def degrade_maps(maps: torch.Tensor, level: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """``maps (B, H, W)`` with the values of a random ``level`` share of each map's pixels
    permuted among those pixels (one generator per map).

    >>> m = torch.arange(16.).view(1, 4, 4)
    >>> bool((degrade_maps(m, 0.0, [torch.Generator().manual_seed(0)]) == m).all())
    True
    >>> d = degrade_maps(m, 1.0, [torch.Generator().manual_seed(0)])
    >>> bool((d.flatten().sort().values == m.flatten()).all())  # the values are kept
    True
    """
    if not 0.0 <= float(level) <= 1.0:
        raise ConfigError(f"expected level in [0, 1], got {level!r}")
    if maps.ndim != 3 or len(generators) != maps.shape[0]:
        raise ShapeError(f"expected maps (B, H, W) and B generators, got {tuple(maps.shape)} and {len(generators)}")
    b, h, w = maps.shape
    n = h * w
    k = int(round(float(level) * n))
    flat = maps.reshape(b, n).clone()
    for i, g in enumerate(generators):
        sub = torch.randperm(n, generator=g)[:k].to(maps.device)
        perm = torch.randperm(k, generator=g).to(maps.device)
        flat[i, sub] = flat[i, sub[perm]]
    return flat.view(b, h, w)


def known_order_tau(oriented: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Kendall tau-b between each row of ``oriented (..., L)`` (higher = better) and the known
    order ``-levels`` -> ``(...)``; NaN where fewer than two finite copies or all tied.

    >>> known_order_tau(np.array([[3., 2., 1.], [1., 2., 3.]]), [0.0, 0.5, 1.0])
    array([ 1., -1.])
    """
    a = np.asarray(oriented, float)
    lv = np.asarray(levels, float)
    if a.shape[-1] != len(lv) or len(set(lv.tolist())) != len(lv):
        raise ShapeError(f"expected {a.shape[-1]} distinct levels, got {list(lv)}")
    i, j = np.triu_indices(len(lv), 1)
    ok = np.isfinite(a[..., i]) & np.isfinite(a[..., j])
    with np.errstate(invalid="ignore"):
        dx = np.where(ok, np.sign(a[..., i] - a[..., j]), 0.0)
    dy = np.sign(lv[j] - lv[i])  # copy i is better when its level is lower
    n0 = ok.sum(-1)
    tx = (ok & (dx == 0)).sum(-1)
    denom = np.sqrt((n0 - tx).astype(float) * n0.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (dx * dy).sum(-1) / np.where(denom > 0, denom, 1.0), np.nan)


def _mean_over_series(taus: np.ndarray) -> np.ndarray:
    ok = np.isfinite(taus)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok.any(-1), np.where(ok, taus, 0.0).sum(-1) / ok.sum(-1), np.nan)


def known_order_statistic(values: np.ndarray, series: Sequence[Sequence[int]], levels: Sequence[Sequence[float]],
                          *, higher_is_better: bool = True, clusters: Sequence[Any] | None = None,
                          n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Known-order validity of one evaluator.

    Args:
        values: ``(N, M)`` per-sample scores of ``M`` methods (NaN = missing).
        series: per base method, the columns of its degraded copies.
        levels: per base method, the copies' degradation levels (same lengths as ``series``).
        higher_is_better: the evaluator's direction.
        clusters: ``N`` subject ids (or ``None``: images are the resampling units).

    Returns:
        ``{"tau", "ci_low", "ci_high", "per_series": [tau, ...], "n"}`` (floats or NaN).
    """
    v = np.asarray(values, float)
    if v.ndim != 2:
        raise ShapeError(f"expected values (N, M), got {v.shape}")
    if len(series) != len(levels) or any(len(s) != len(lv) for s, lv in zip(series, levels)) or not series:
        raise ShapeError("expected one list of levels per series of columns, of the same lengths")
    sign = 1.0 if higher_is_better else -1.0

    def stat(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # means (K, M) -> (K,), (K, S)
        per = np.stack([known_order_tau(sign * means[:, list(s)], lv) for s, lv in zip(series, levels)], -1)
        return _mean_over_series(per), per

    with np.errstate(invalid="ignore"):
        col_means = np.array([np.nanmean(v[:, j]) if np.isfinite(v[:, j]).any() else np.nan
                              for j in range(v.shape[1])])
    point, per = stat(col_means[None])
    lo = hi = math.nan
    if v.shape[0] >= 2:
        bt, _ = stat(bootstrap_means(v, clusters, n_boot=n_boot, seed=seed))
        bt = bt[np.isfinite(bt)]
        if len(bt):
            a = (1 - level) / 2
            lo, hi = (float(q) for q in np.quantile(bt, [a, 1 - a]))
    return {"tau": float(point[0]), "ci_low": lo, "ci_high": hi,
            "per_series": [float(t) for t in per[0]], "n": int(v.shape[0])}


__all__ = ["degrade_maps", "known_order_tau", "known_order_statistic"]
