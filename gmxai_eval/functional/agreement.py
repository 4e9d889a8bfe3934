"""Agreement between two sets of maps. Pure kernels on ``(B, H, W)`` pairs -> ``(B,)`` float64.

* :func:`spearman`: Spearman rank correlation (Pearson correlation of average ranks, ties share
  their mean rank, as ``scipy.stats.spearmanr``); NaN when either map is constant.
* :func:`top_k_iou`: intersection over union of the ``k`` highest pixels of each map (ties by
  pixel index).
"""

from __future__ import annotations

import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.similarity import spearman as _spearman


def _flat(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.ndim != 3 or a.shape != b.shape:
        raise ShapeError(f"expected two (B, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    n = a.shape[0]
    return a.detach().reshape(n, -1).double(), b.detach().reshape(n, -1).to(a.device).double()


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of every pair of maps -> ``(B,)`` (average ranks for ties;
    NaN when a map is constant). See :func:`gmxai_eval.functional.similarity.spearman`."""
    x, y = _flat(a, b)
    return _spearman(x, y)


def top_k_iou(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """IoU of the top-``k`` pixel sets of ``a`` and ``b`` -> ``(B,)``."""
    x, y = _flat(a, b)
    n = x.shape[1]
    if not 1 <= int(k) <= n:
        raise ConfigError(f"expected 1 <= k <= {n} (pixels per map), got {k}")

    def top(v: torch.Tensor) -> torch.Tensor:
        idx = torch.sort(v, dim=1, descending=True, stable=True).indices[:, : int(k)]
        return torch.zeros_like(v, dtype=torch.bool).scatter_(1, idx, True)

    ta, tb = top(x), top(y)
    return (ta & tb).sum(1).double() / (ta | tb).sum(1).double()
