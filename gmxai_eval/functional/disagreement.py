"""Why a pixel-perturbation evaluator disagrees with the interventional truth (pure kernels).

Two measured reasons (Hooker et al., NeurIPS 2019; Rong et al., ICML 2022; Hesse et al.,
NeurIPS 2024):

* **out-of-distribution gap**: the class score after the planted traits' pixels are replaced by
  an evaluator's substrate minus the score after the same traits are re-rendered away in
  distribution (:func:`paste`); a substrate that removes the evidence as the truth does has gap
  0, a positive gap means the substrate leaves (or creates) evidence the model still uses. A
  same-area region shifted off the traits (:func:`shifted_region`) filled by the same substrate
  is the control: its drop is what the substrate does to the model wherever it lands.
* **mask leakage**: the class information carried by the removal masks alone (which pixels a
  method removes, not what they showed): a small classifier trained on downsampled masks
  (:func:`removal_masks`, :func:`leakage_accuracy`) against the accuracy of guessing the
  majority class of the training folds (ROAR's and ROAD's check).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gmxai_eval.errors import ConfigError, ShapeError

#: Shifts tried by :func:`shifted_region`, as fractions of (H, W).
SHIFTS = ((0.0, 0.5), (0.5, 0.0), (0.5, 0.5), (0.0, 0.25), (0.25, 0.0), (0.25, 0.25), (-0.25, 0.25))


def paste(x: torch.Tensor, fill: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)``: ``fill`` where ``mask (B, H, W)`` bool, ``x`` elsewhere."""
    if x.shape != fill.shape or mask.shape != (x.shape[0], *x.shape[2:]) or mask.dtype != torch.bool:
        raise ShapeError(f"expected x and fill (B, C, H, W) and a bool mask (B, H, W), got {tuple(x.shape)}, "
                         f"{tuple(fill.shape)}, {mask.dtype} {tuple(mask.shape)}")
    return torch.where(mask[:, None].to(x.device), fill, x)


def shifted_region(mask: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` bool: each ``mask (B, H, W)`` rolled (circularly, so its area is kept
    exactly) by the shift of :data:`SHIFTS` that overlaps the original least (first on ties).

    >>> m = torch.zeros(1, 4, 4, dtype=torch.bool); m[0, :2, :2] = True
    >>> s = shifted_region(m); int(s.sum()), bool((s & m).any())
    (4, False)
    """
    if mask.ndim != 3 or mask.dtype != torch.bool:
        raise ShapeError(f"expected a bool mask (B, H, W), got {mask.dtype} {tuple(mask.shape)}")
    h, w = mask.shape[1:]
    out = torch.empty_like(mask)
    for i in range(mask.shape[0]):
        best, best_ov = mask[i], None
        for fy, fx in SHIFTS:
            cand = torch.roll(mask[i], (int(round(fy * h)), int(round(fx * w))), (0, 1))
            ov = int((cand & mask[i]).sum())
            if best_ov is None or ov < best_ov:
                best, best_ov = cand, ov
        out[i] = best
    return out


def removal_masks(maps: torch.Tensor, fraction: float, absolute: bool = False) -> torch.Tensor:
    """``(B, H, W)`` bool: the ``floor(fraction H W)`` most relevant pixels of each map (MoRF
    order of ``maps`` or ``|maps|``; ties by flat index, the stable sort)."""
    if maps.ndim != 3:
        raise ShapeError(f"expected maps (B, H, W), got {tuple(maps.shape)}")
    if not 0 < fraction < 1:
        raise ConfigError(f"expected 0 < fraction < 1, got {fraction}")
    a = maps.abs() if absolute else maps
    b, h, w = a.shape
    k = int(math.floor(fraction * h * w))
    order = torch.argsort(a.reshape(b, -1).to(torch.float64), dim=1, descending=True, stable=True)[:, :k]
    out = torch.zeros(b, h * w, dtype=torch.bool)
    out.scatter_(1, order.cpu(), True)
    return out.view(b, h, w)


def _fit_predict(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, classes: int, l2: float) -> torch.Tensor:
    """Multinomial logistic regression (L2 ``l2`` on the weights, L-BFGS, full batch)."""
    wt = torch.zeros(xtr.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([wt, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ wt + bias, ytr) + l2 * (wt ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return (xte @ wt + bias).argmax(1)


def leakage_accuracy(masks: torch.Tensor, labels: torch.Tensor, *, folds: int = 5, size: int = 14,
                     l2: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-validated class information in removal masks.

    Masks ``(N, H, W)`` bool are average-pooled to ``size x size`` (the share of removed pixels
    per cell) and a multinomial logistic regression predicts ``labels (N,)`` from them; folds
    are the images' positions modulo ``folds`` (deterministic). Returns ``(correct, chance)``,
    both ``(N,)`` bool: whether each held-out image was classified correctly, and whether the
    majority label of its training folds (the best guess without the masks) is its label.
    """
    if masks.ndim != 3 or masks.dtype != torch.bool or labels.shape != (masks.shape[0],):
        raise ShapeError(f"expected bool masks (N, H, W) and labels (N,), got {masks.dtype} "
                         f"{tuple(masks.shape)} and {tuple(labels.shape)}")
    n = masks.shape[0]
    if n < 2 * folds:
        raise ConfigError(f"expected at least {2 * folds} images for {folds}-fold leakage, got {n}")
    feats = F.adaptive_avg_pool2d(masks[:, None].to(torch.float64), size).reshape(n, -1)
    feats = feats - feats.mean(0)
    y = labels.long().cpu()
    uniq, yi = torch.unique(y, return_inverse=True)
    fold = torch.arange(n) % folds
    correct = torch.zeros(n, dtype=torch.bool)
    chance = torch.zeros(n, dtype=torch.bool)
    for k in range(folds):
        te, tr = fold == k, fold != k
        pred = _fit_predict(feats[tr], yi[tr], feats[te], len(uniq), l2)
        correct[te] = pred == yi[te]
        chance[te] = yi[te] == torch.bincount(yi[tr], minlength=len(uniq)).argmax()
    return correct, chance


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``k / n`` (``(nan, nan)`` for ``n = 0``).

    >>> [round(v, 4) for v in wilson(8, 10)]
    [0.4902, 0.9433]
    """
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mid - half, mid + half


__all__ = ["SHIFTS", "leakage_accuracy", "paste", "removal_masks", "shifted_region", "wilson"]
