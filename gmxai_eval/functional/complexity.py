"""Complexity of attribution maps: sparseness (Gini index) and entropy.

Both take ``a (B, ...)`` (any sign; ``|a|`` is used) and return ``(B,)`` float64.
"""

from __future__ import annotations

import torch


def gini(a: torch.Tensor, *, eps: float = 0.0) -> torch.Tensor:
    """Gini index of ``|a| + eps`` per sample (Chalasani et al. 2020; Hurley & Rickard 2009):
    with values sorted ascending, ``G = sum_i (2i - n - 1) v_i / (n sum_i v_i)``, ``i = 1..n``.
    A constant map gives 0, a one-hot map ``1 - 1/n``; an all-zero map (``eps = 0``) gives NaN.
    Quantus 0.6.0 uses ``eps = 1e-7``."""
    v = a.reshape(a.shape[0], -1).to(torch.float64).abs() + float(eps)
    n = v.shape[1]
    v, _ = v.sort(dim=1)
    i = torch.arange(1, n + 1, dtype=torch.float64, device=v.device)
    return ((2 * i - n - 1) * v).sum(1) / (n * v.sum(1))


def entropy(a: torch.Tensor, *, eps: float = 0.0) -> torch.Tensor:
    """Shannon entropy (nats) of ``p = |a| / sum |a|`` per sample (Bhatt et al. 2020):
    ``-sum p log(p + eps)`` with ``0 log 0 = 0`` when ``eps = 0``. A uniform map gives ``log n``,
    a one-hot map 0, an all-zero map NaN. Quantus 0.6.0 uses ``eps = 1e-12``."""
    v = a.reshape(a.shape[0], -1).to(torch.float64).abs()
    p = v / v.sum(1, keepdim=True)
    if eps:
        return -(p * torch.log(p + float(eps))).sum(1)
    return -torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), p * 0).sum(1)
