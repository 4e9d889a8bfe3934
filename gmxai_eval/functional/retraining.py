"""Kernels of the retraining benchmarks: ROAR / KAR (Hooker et al., NeurIPS 2019) and the
mask-leakage diagnostic (Rong et al., ROAD, ICML 2022).

* :func:`pixel_order`: pixels of each map, most relevant first; ties are broken by a random
  permutation drawn per image (an all-zero map, e.g. the oracle on an unaffected face, gives a
  random order instead of "top-left first").
* :func:`removal_masks`: ROAR removes the ``floor(t * H * W)`` top pixels; KAR keeps them and
  removes the rest (the same counting as ROAD's MoRF / LeRF levels, :func:`road_masks`).
* :func:`impute`: ``"mean"`` fills removed pixels with the per-channel training mean (ROAR);
  ``"noisy_linear"`` uses ROAD's noisy linear imputation kernel unchanged; both clip to [0, 1].
* :func:`area_between`: trapezoidal area between a method's accuracy curve and the random
  control's, ``sum_t (acc_random - acc_method)`` over the fraction axis. Positive = the method's
  removal hurts the retrained model more than random removal (ROAR: better); for KAR the sign is
  flipped by the caller (keeping the top pixels should hurt less than keeping random ones).
* :func:`mask_leakage`: macro top-1 of a multinomial logistic regression that predicts the
  class from the *removal mask alone* (average-pooled), minus chance ``1 / K``. Large values mean
  the mask's shape carries the class, so a ROAR score may come from the mask, not the pixels.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.road import noisy_linear_impute, road_masks

#: Imputations of removed pixels.
IMPUTATIONS: tuple[str, ...] = ("mean", "noisy_linear")
#: ``roar``: remove the top-t pixels; ``kar``: keep the top-t pixels, remove the rest.
MODES: tuple[str, ...] = ("roar", "kar")


def pixel_order(maps: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Pixel indices by decreasing map value, ties in a random order.

    Args:
        maps: ``(B, H, W)`` (already reduced over channels).
        generators: one CPU generator per map (keyed per image by the caller).

    Returns:
        ``(B, H*W)`` int64, most relevant pixel first.
    """
    if maps.ndim != 3:
        raise ShapeError(f"expected maps (B, H, W), got {tuple(maps.shape)}")
    if len(generators) != maps.shape[0]:
        raise ConfigError(f"expected {maps.shape[0]} generators, got {len(generators)}")
    flat = maps.detach().reshape(maps.shape[0], -1).to("cpu", torch.float64)
    n = flat.shape[1]
    perm = torch.stack([torch.randperm(n, generator=g) for g in generators])
    o = torch.argsort(-flat.gather(1, perm), dim=1, stable=True)
    return perm.gather(1, o)


def removal_masks(order: torch.Tensor, fraction: float, mode: str, shape: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W)`` bool, True = removed, for ROAR (``mode="roar"``) or KAR (``"kar"``)."""
    if mode not in MODES:
        raise ConfigError(f"expected mode in {MODES}, got {mode!r}")
    return road_masks(order, [fraction], "morf" if mode == "roar" else "lerf", shape)[:, 0]


def impute(x: torch.Tensor, remove: torch.Tensor, imputation: str, *, channel_mean: torch.Tensor,
           generators: Sequence[torch.Generator] | None = None, noise: float = 0.01) -> torch.Tensor:
    """Replace the removed pixels.

    Args:
        x: ``(B, C, H, W)`` in ``[0, 1]``.
        remove: ``(B, H, W)`` bool.
        imputation: ``"mean"`` or ``"noisy_linear"``.
        channel_mean: ``(C,)`` per-channel training mean (``"mean"``).
        generators: one per image (``"noisy_linear"`` noise).
        noise: sd of the noisy-linear noise.

    Returns:
        ``(B, C, H, W)`` clipped to ``[0, 1]``.
    """
    if remove.shape != (x.shape[0], *x.shape[-2:]) or remove.dtype != torch.bool:
        raise ShapeError(f"expected remove bool {(x.shape[0], *x.shape[-2:])}, got "
                         f"{remove.dtype} {tuple(remove.shape)}")
    if imputation == "mean":
        if channel_mean.shape != (x.shape[1],):
            raise ShapeError(f"expected channel_mean ({x.shape[1]},), got {tuple(channel_mean.shape)}")
        fill = channel_mean.to(x.dtype).view(1, -1, 1, 1).expand_as(x)
        out = torch.where(remove.unsqueeze(1), fill, x)
    elif imputation == "noisy_linear":
        if not bool(remove.any()):
            return x.clone()
        out = x.clone()
        rows = remove.flatten(1).any(1)
        keep_any = (~remove).flatten(1).any(1)
        if not bool(keep_any.all()):
            raise ShapeError("expected at least one kept pixel per image for noisy_linear, got an "
                             "image with every pixel removed")
        ix = rows.nonzero().flatten()
        gens = None if generators is None else [generators[i] for i in ix.tolist()]
        out[ix] = noisy_linear_impute(x[ix], remove[ix], noise=noise, generators=gens)
    else:
        raise ConfigError(f"expected imputation in {IMPUTATIONS}, got {imputation!r}")
    return out.clamp_(0, 1)


def area_between(curve: torch.Tensor, reference: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Trapezoidal ``integral (reference - curve) d fraction``.

    Args:
        curve / reference: ``(R, T)`` accuracies per repeat and fraction (paired by repeat).
        fractions: ``(T,)`` increasing.

    Returns:
        ``(R,)`` float64.
    """
    if curve.shape != reference.shape or curve.shape[-1] != fractions.shape[0]:
        raise ShapeError(f"expected curve and reference (R, {fractions.shape[0]}), got "
                         f"{tuple(curve.shape)} and {tuple(reference.shape)}")
    d = (reference.double() - curve.double())
    return torch.trapezoid(d, fractions.double(), dim=-1)


def mask_leakage(train_masks: torch.Tensor, train_labels: torch.Tensor, test_masks: torch.Tensor,
                 test_labels: torch.Tensor, num_classes: int, *, pool: int = 4, steps: int = 300,
                 lr: float = 0.05, weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Class information in the removal masks alone: macro test top-1 minus chance ``1/K``.

    A multinomial logistic regression on the ``pool x pool`` average-pooled masks (fraction
    removed per cell), full-batch Adam for ``steps`` steps from a seeded zero-mean init.

    Args:
        train_masks / test_masks: ``(N, H, W)`` bool removal masks.
        train_labels / test_labels: ``(N,)`` int64.

    Returns:
        ``top1 - 1/K'`` with ``K'`` the classes present in the training labels (0 = no leakage;
        slightly negative values are chance); ``num_classes`` is the number of outputs.
    """
    if train_masks.ndim != 3 or test_masks.ndim != 3:
        raise ShapeError(f"expected masks (N, H, W), got {tuple(train_masks.shape)}, {tuple(test_masks.shape)}")
    def feats(m: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(m.float().unsqueeze(1), pool).flatten(1)

    xtr, xte = feats(train_masks), feats(test_masks)
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(xtr.shape[1], num_classes, generator=g) * 0.01).requires_grad_(True)
    b = torch.zeros(num_classes, requires_grad=True)
    cw = torch.bincount(train_labels, minlength=num_classes).float().clamp_min(1).reciprocal()
    cw = cw / cw[train_labels].mean()
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(xtr @ w + b, train_labels, weight=cw)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        hit = ((xte @ w + b).argmax(1) == test_labels).double()
    present = test_labels.unique()
    top1 = torch.stack([hit[test_labels == c].mean() for c in present]).mean()  # macro over classes
    return float(top1) - 1.0 / len(train_labels.unique())


__all__ = ["IMPUTATIONS", "MODES", "pixel_order", "removal_masks", "impute", "area_between",
           "mask_leakage"]
