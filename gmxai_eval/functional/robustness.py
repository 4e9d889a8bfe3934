"""Kernels of the explanation robustness metrics (Yeh et al. 2019; Alvarez-Melis & Jaakkola 2018).

All take the original maps ``a (B, ...)`` and the maps of ``n`` perturbed copies of each input
``a_pert (B, n, ...)`` and return per-perturbation ratios ``(B, n)`` float64; evaluators reduce
them (max, mean) over ``n``.
"""

from __future__ import annotations

import torch

from gmxai_eval.errors import ConfigError, ShapeError


def uniform_linf_noise(shape: tuple[int, ...], radius: float, generator: torch.Generator) -> torch.Tensor:
    """Noise uniform in the L-infinity ball of ``radius``: ``U[-radius, radius)`` per element."""
    return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2.0 - 1.0) * float(radius)


def _check(a: torch.Tensor, a_pert: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a_pert.ndim != a.ndim + 1 or a_pert.shape[0] != a.shape[0] or a_pert.shape[2:] != a.shape[1:]:
        raise ShapeError(f"expected a (B, ...) and a_pert (B, n, ...), got {tuple(a.shape)} and {tuple(a_pert.shape)}")
    b, n = a_pert.shape[:2]
    return a.reshape(b, 1, -1).to(torch.float64), a_pert.reshape(b, n, -1).to(torch.float64)


def sensitivity(a: torch.Tensor, a_pert: torch.Tensor, *, zero_norm: str = "one") -> torch.Tensor:
    """``||a - a_pert||_F / ||a||_F`` -> ``(B, n)``.

    ``zero_norm``: what divides when ``||a|| = 0``: ``"one"`` (Captum: the denominator becomes 1)
    or ``"nan"`` (the ratio is undefined)."""
    a, p = _check(a, a_pert)
    num = (a - p).norm(dim=2)
    den = a.norm(dim=2)
    if zero_norm == "one":
        den = torch.where(den == 0, torch.ones_like(den), den)
    elif zero_norm == "nan":
        den = torch.where(den == 0, torch.full_like(den, float("nan")), den)
    else:
        raise ConfigError(f"expected zero_norm 'one' or 'nan', got {zero_norm!r}")
    return num / den


def lipschitz_ratio(a: torch.Tensor, a_pert: torch.Tensor, x: torch.Tensor, x_pert: torch.Tensor,
                    *, eps: float = 1e-10) -> torch.Tensor:
    """``||a - a_pert||_2 / (||x - x_pert||_2 + eps)`` -> ``(B, n)`` (the local Lipschitz
    quotient of Alvarez-Melis & Jaakkola 2018, whose maximum over ``n`` estimates the constant)."""
    a, p = _check(a, a_pert)
    xa, xp = _check(x, x_pert)
    return (a - p).norm(dim=2) / ((xa - xp).norm(dim=2) + float(eps))
