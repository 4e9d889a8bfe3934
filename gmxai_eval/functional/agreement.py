"""Agreement between two sets of maps ``(B, H, W)`` -> ``(B,)`` float64.

Deprecated module: the kernels' one definition lives in :mod:`gmxai_eval.functional.stats`.

* :func:`spearman` is ``stats.spearman(a, b, constant="nan")`` (average ranks; NaN when either
  map is constant).
* :func:`top_k_iou` is ``stats.top_k_iou(a, b, k=k, relevance="signed", ties="index")``
  (the ``k`` highest signed values, ties by pixel index).

* :func:`krippendorff_alpha`: Krippendorff's alpha of a ``(raters, units)`` table with missing
  values (NaN) at the nominal, ordinal, interval or ratio level (Krippendorff, *Content
  Analysis*, 2004, ch. 11; computed from the coincidence matrix). The leaderboard uses it after
  Tomsett et al. (AAAI 2020): images are the raters, methods the units, a method's rank on an
  image the value.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional import stats


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 3 or a.shape != b.shape:
        raise ShapeError(f"expected two (B, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Deprecated alias of ``stats.spearman(a, b, constant="nan")`` for ``(B, H, W)`` maps."""
    _check(a, b)
    return stats.spearman(a.detach(), b.detach(), constant="nan")


def top_k_iou(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Deprecated alias of ``stats.top_k_iou(a, b, k=k, relevance="signed", ties="index")``."""
    _check(a, b)
    return stats.top_k_iou(a.detach(), b.detach(), k=k, relevance="signed", ties="index")


AlphaLevel = Literal["nominal", "ordinal", "interval", "ratio"]


def krippendorff_alpha(data: Any, level: AlphaLevel = "interval") -> float:
    """Krippendorff's alpha ``1 - D_o / D_e`` of a reliability table.

    Args:
        data: ``(R, U)`` values of ``R`` raters (coders) on ``U`` units; NaN = not rated. A
            tensor or an array.
        level: metric of the value differences: ``"nominal"`` (0/1), ``"ordinal"`` (squared
            difference of the cumulative value frequencies between two values, minus half of
            theirs), ``"interval"`` (squared difference), ``"ratio"`` (``((c - k) / (c + k))^2``).

    Returns:
        alpha (1 = perfect agreement, 0 = chance, < 0 = systematic disagreement); NaN when no
        unit has two ratings or every pairable value is the same (no expected disagreement).
    """
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().double().numpy()
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise ShapeError(f"expected a (raters, units) table, got shape {tuple(x.shape)}")
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ConfigError(f"expected level 'nominal', 'ordinal', 'interval' or 'ratio', got {level!r}")
    if np.isinf(x).any():
        raise ConfigError("expected finite values or NaN (missing) in the reliability table, got inf")
    m_u = np.isfinite(x).sum(0)
    x = x[:, m_u >= 2]  # only pairable units count
    m_u = m_u[m_u >= 2]
    if x.shape[1] == 0:
        return float("nan")
    values = np.unique(x[np.isfinite(x)])
    v = len(values)
    counts = np.zeros((x.shape[1], v))  # n_uc: how often unit u got value c
    units, raters = np.nonzero(np.isfinite(x.T))
    np.add.at(counts, (units, np.searchsorted(values, x[raters, units])), 1.0)
    w = 1.0 / (m_u - 1.0)
    # coincidences o_ck = sum_u n_uc (n_uk - [c == k]) / (m_u - 1)
    o = (counts * w[:, None]).T @ counts - np.diag((counts * w[:, None]).sum(0))
    n_c = o.sum(1)
    n = n_c.sum()
    if level == "nominal":
        delta = 1.0 - np.eye(v)
    elif level == "interval":
        delta = (values[:, None] - values[None, :]) ** 2
    elif level == "ratio":
        s = values[:, None] + values[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = np.where(s != 0, ((values[:, None] - values[None, :]) / s) ** 2, 0.0)
    else:  # ordinal
        cum = np.cumsum(n_c)
        lo = np.minimum.outer(np.arange(v), np.arange(v))
        hi = np.maximum.outer(np.arange(v), np.arange(v))
        between = cum[hi] - np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        delta = (between - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    d_o = float((o * delta).sum())
    d_e = float((np.outer(n_c, n_c) * delta).sum())
    if d_e <= 0:
        return float("nan")
    return 1.0 - (n - 1.0) * d_o / d_e
