"""Agreement between two sets of maps ``(B, H, W)`` -> ``(B,)`` float64.

Deprecated module: the kernels' one definition lives in :mod:`gmxai_eval.functional.stats`.

* :func:`spearman` is ``stats.spearman(a, b, constant="nan")`` (average ranks; NaN when either
  map is constant).
* :func:`top_k_iou` is ``stats.top_k_iou(a, b, k=k, relevance="signed", ties="index")``
  (the ``k`` highest signed values, ties by pixel index).
"""

from __future__ import annotations

import torch

from gmxai_eval.errors import ShapeError
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
