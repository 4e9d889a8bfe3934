"""Agreement between two sets of maps. Pure kernels on ``(B, H, W)`` pairs -> ``(B,)`` float64.

* :func:`spearman`: Spearman rank correlation (Pearson correlation of average ranks, ties share
  their mean rank, as ``scipy.stats.spearmanr``); NaN when either map is constant.
* :func:`top_k_iou`: intersection over union of the ``k`` highest pixels of each map (ties by
  pixel index).
"""

from __future__ import annotations

import torch

from gmxai_eval.errors import ConfigError, ShapeError


def _flat(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.ndim != 3 or a.shape != b.shape:
        raise ShapeError(f"expected two (B, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    n = a.shape[0]
    return a.detach().reshape(n, -1).double(), b.detach().reshape(n, -1).to(a.device).double()


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks ``1..N`` of ``v (B, N)``, ties sharing their mean rank."""
    n = v.shape[1]
    vals, order = torch.sort(v, dim=1, stable=True)
    pos = torch.arange(1, n + 1, device=v.device, dtype=torch.float64).expand_as(vals)
    new_run = torch.ones_like(vals, dtype=torch.bool)
    new_run[:, 1:] = vals[:, 1:] != vals[:, :-1]
    run = new_run.cumsum(1) - 1
    total = torch.zeros_like(pos).scatter_add_(1, run, pos)
    count = torch.zeros_like(pos).scatter_add_(1, run, torch.ones_like(pos))
    avg = (total / count.clamp_min(1)).gather(1, run)
    return torch.empty_like(avg).scatter_(1, order, avg)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of every pair of maps -> ``(B,)``."""
    x, y = _flat(a, b)
    rx, ry = average_ranks(x), average_ranks(y)
    rx = rx - rx.mean(1, keepdim=True)
    ry = ry - ry.mean(1, keepdim=True)
    den = rx.norm(dim=1) * ry.norm(dim=1)
    num = (rx * ry).sum(1)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)),
                       torch.full_like(num, float("nan")))


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
