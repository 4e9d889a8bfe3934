"""In-distribution patch removal (IDSDS, Hesse, Schaub-Meyer & Roth, NeurIPS 2024 D&B): the
kernels of the surrogate's training and of the evaluators on it. Pure functions of tensors.

* **Patch grid.** An image ``(H, W)`` is cut into ``grid x grid`` non-overlapping patches of
  ``ceil(H / grid) x ceil(W / grid)`` pixels (:func:`patch_index`; at 112 px and ``grid = 8``:
  64 patches of 14 x 14 px). Patch ``p`` covers the pixels with ``index == p`` (row-major).
* **Deletion** (:func:`delete_patches`): the pixels of the deleted patches take the
  substrate's values (a baseline image, :func:`gmxai_eval.functional.baselines.make_baseline`).
* **Training masks** (:func:`random_patch_masks`): per image a share ``u ~ U(0, max_fraction)``
  of its patches, drawn without replacement; the surrogate is fine-tuned on such images, so a
  deleted patch stays in its training distribution.
* **Single-patch interventional truth** (:func:`single_patch_drops`): the drop of the target
  logit when patch ``p`` alone is deleted, ``f_t(x) - f_t(x with p deleted)``, ``(B, P)``.
* **Patch-truth score** (:func:`patch_truth_score`): per image the Spearman rank correlation
  between the map's per-patch sums (:func:`patch_sums`; ``relevance="abs"`` sums ``|a|``) and
  the drops; a constant row (a constant map, a model that ignores every patch) gives NaN.
* **MoRF / LeRF on the surrogate** (:func:`cumulative_patch_curve`): cumulative deletion of the
  patches in the order of the map's per-patch sums; the evaluator takes the curve's area.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.perturbation import batched_outputs, step_counts
from gmxai_eval.functional.stats import spearman

#: ``relevance`` values of :func:`patch_sums` / :func:`patch_truth_score`.
RELEVANCE = ("signed", "abs")


def patch_index(h: int, w: int, grid: int) -> torch.Tensor:
    """``(H, W)`` int64 patch id of every pixel for a ``grid x grid`` patch grid.

    >>> patch_index(4, 4, 2)
    tensor([[0, 0, 1, 1],
            [0, 0, 1, 1],
            [2, 2, 3, 3],
            [2, 2, 3, 3]])
    """
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1 or grid > min(h, w):
        raise ConfigError(f"expected grid as an int in [1, {min(h, w)}] (patches per side), got {grid!r}")
    ph, pw = -(-h // grid), -(-w // grid)
    rows = torch.arange(h) // ph
    cols = torch.arange(w) // pw
    return rows[:, None] * grid + cols[None, :]


def patch_sums(maps: torch.Tensor, index: torch.Tensor, n_patches: int, relevance: str = "signed") -> torch.Tensor:
    """Per-patch sums ``(B, P)`` float64 of ``maps (B, H, W)`` (``"abs"``: of ``|maps|``).

    >>> patch_sums(torch.tensor([[[1., -2.], [3., 4.]]]), torch.tensor([[0, 0], [1, 1]]), 2)
    tensor([[-1.,  7.]], dtype=torch.float64)
    """
    if relevance not in RELEVANCE:
        raise ConfigError(f"expected relevance in {RELEVANCE}, got {relevance!r}")
    if maps.ndim != 3 or tuple(maps.shape[1:]) != tuple(index.shape):
        raise ShapeError(f"expected maps (B, {index.shape[0]}, {index.shape[1]}), got {tuple(maps.shape)}")
    a = maps.double().abs() if relevance == "abs" else maps.double()
    out = torch.zeros(a.shape[0], n_patches, dtype=torch.float64, device=a.device)
    return out.index_add_(1, index.to(a.device).reshape(-1), a.reshape(a.shape[0], -1))


def patch_pixels(deleted: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` bool pixel mask of the deleted patches ``deleted (B, P)`` bool."""
    return deleted[:, index.to(deleted.device)]


def delete_patches(x: torch.Tensor, deleted: torch.Tensor, index: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """``x (B, C, H, W)`` with the patches ``deleted (B, P)`` bool replaced by ``fill`` (same shape).

    >>> x = torch.ones(1, 1, 2, 2)
    >>> delete_patches(x, torch.tensor([[True, False]]), torch.tensor([[0, 0], [1, 1]]), torch.zeros_like(x))
    tensor([[[[0., 0.],
              [1., 1.]]]])
    """
    if fill.shape != x.shape:
        raise ShapeError(f"expected fill of shape {tuple(x.shape)}, got {tuple(fill.shape)}")
    m = patch_pixels(deleted, index)[:, None]
    return torch.where(m, fill, x)


def random_patch_masks(n_patches: int, generators: Sequence[torch.Generator], max_fraction: float = 1.0) -> torch.Tensor:
    """``(B, P)`` bool training masks: for image ``i`` (drawn from ``generators[i]``) a share
    ``u ~ U(0, max_fraction)`` of the ``P`` patches, ``round(u P)`` of them, chosen at random."""
    if not 0.0 < float(max_fraction) <= 1.0:
        raise ConfigError(f"expected max_fraction in (0, 1], got {max_fraction!r}")
    out = torch.zeros(len(generators), n_patches, dtype=torch.bool)
    for i, g in enumerate(generators):
        k = int(round(float(torch.rand((), generator=g)) * max_fraction * n_patches))
        out[i, torch.randperm(n_patches, generator=g)[:k]] = True
    return out


@torch.no_grad()
def single_patch_drops(model: nn.Module, x: torch.Tensor, target: torch.Tensor, index: torch.Tensor,
                       n_patches: int, fill: torch.Tensor, *, max_batch: int = 128) -> torch.Tensor:
    """``(B, P)`` float64 drops ``f_t(x) - f_t(x with patch p deleted)`` of the target logit.

    ``fill (B, C, H, W)``: the substrate; ``max_batch``: images per forward pass."""
    b = x.shape[0]
    dev = x.device
    idx = index.to(dev)
    clean = batched_outputs(model, b, lambda j: x[j], lambda j: target[j], "logit", max_batch, dev)

    def build(j: torch.Tensor) -> torch.Tensor:
        img, p = j // n_patches, j % n_patches
        m = (idx[None] == p.view(-1, 1, 1))[:, None]
        return torch.where(m, fill[img], x[img])

    deleted = batched_outputs(model, b * n_patches, build, lambda j: target.to(dev)[j // n_patches], "logit",
                              max_batch, dev)
    return (clean[:, None] - deleted.view(b, n_patches)).double()


def patch_truth_score(maps: torch.Tensor, drops: torch.Tensor, index: torch.Tensor,
                      relevance: str = "signed") -> torch.Tensor:
    """``(B,)`` float64 Spearman correlation between the per-patch sums of ``maps (B, H, W)``
    and ``drops (B, P)`` (NaN for a constant row).

    A map that ranks the patches as the drops do scores 1:

    >>> idx = torch.tensor([[0, 1], [2, 3]])
    >>> patch_truth_score(torch.tensor([[[4., 3.], [2., 1.]]]), torch.tensor([[0.9, 0.5, 0.1, 0.0]]), idx)
    tensor([1.], dtype=torch.float64)
    """
    if drops.ndim != 2 or drops.shape[0] != maps.shape[0]:
        raise ShapeError(f"expected drops ({maps.shape[0]}, P), got {tuple(drops.shape)}")
    return spearman(patch_sums(maps, index, drops.shape[1], relevance), drops.double())


@torch.no_grad()
def cumulative_patch_curve(model: nn.Module, x: torch.Tensor, target: torch.Tensor, maps: torch.Tensor,
                           index: torch.Tensor, n_patches: int, fill: torch.Tensor, *, order: str = "morf",
                           steps: int = 16, output: str = "probability", max_batch: int = 128
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """MoRF / LeRF with patches: delete the patches cumulatively in the order of their summed
    attribution (``"morf"``: largest sum first; ``"lerf"``: smallest first; ties by patch id)
    and record the target's ``output`` after ``round(k P / steps)`` deletions, ``k = 0..steps``.

    Returns ``(curves (B, steps + 1) float64, fraction deleted (steps + 1,))``."""
    if order not in ("morf", "lerf"):
        raise ConfigError(f"expected order 'morf' or 'lerf', got {order!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= n_patches:
        raise ConfigError(f"expected steps as an int in [1, {n_patches}], got {steps!r}")
    sums = patch_sums(maps, index, n_patches)
    first = torch.sort(sums, dim=1, descending=order == "morf", stable=True).indices
    rank = torch.empty_like(first).scatter_(1, first, torch.arange(n_patches, device=first.device).expand_as(first))
    counts = step_counts(n_patches, steps=steps).to(x.device)
    pix = rank[:, index.to(rank.device)].to(x.device)  # (B, H, W) deletion rank of each pixel
    b, t = x.shape[0], counts.shape[0]

    def build(j: torch.Tensor) -> torch.Tensor:
        img, k = j // t, j % t
        m = (pix[img] < counts[k].view(-1, 1, 1))[:, None]
        return torch.where(m, fill[img], x[img])

    out = batched_outputs(model, b * t, build, lambda j: target.to(x.device)[j // t], output, max_batch, x.device)
    return out.view(b, t).double(), counts.double().cpu() / n_patches


__all__ = ["RELEVANCE", "patch_index", "patch_sums", "patch_pixels", "delete_patches", "random_patch_masks",
           "single_patch_drops", "patch_truth_score", "cumulative_patch_curve"]
