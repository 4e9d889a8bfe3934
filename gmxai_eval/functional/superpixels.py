"""Superpixels and IROF (Iterative Removal Of Features, Rieger & Hansen 2020) kernels.

* :func:`slic_segments`: SLIC superpixels of every image (scikit-image), labels ``0..S-1``.
* :func:`segment_order`: segments sorted by mean relevance, most relevant first.
* :func:`segment_mean_image`: every superpixel filled with its mean colour (LIME's
  ``hide_color=None`` replacement).
* :func:`irof_images`: the cumulatively perturbed images, built lazily in chunks.
* :func:`irof_aoc`: area over the normalised curve, under two named rules.
* :func:`irof`: the IROF metric itself (its one definition), over a ``forward`` callback.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, ShapeError


def slic_segments(x: torch.Tensor, *, n_segments: int = 100, compactness: float = 10.0,
                  sigma: float = 0.0, max_num_iter: int = 10) -> torch.Tensor:
    """SLIC superpixels of ``x (B, C, H, W)`` -> ``(B, H, W)`` int64 labels ``0..S_b-1``.

    Runs ``skimage.segmentation.slic`` on the channel-last float64 image with ``start_label=0``
    (a 3-channel image is converted to CIELAB first, scikit-image's default); labels are
    relabelled to be contiguous (order preserved)."""
    from skimage.segmentation import slic

    if x.ndim != 4:
        raise ShapeError(f"expected x (B, C, H, W), got {tuple(x.shape)}")
    xs = x.detach().to("cpu", torch.float64).numpy()
    out = []
    for img in xs:
        seg = slic(np.moveaxis(img, 0, -1), n_segments=n_segments, compactness=compactness, sigma=sigma,
                   max_num_iter=max_num_iter, start_label=0, channel_axis=-1)
        _, inv = np.unique(seg, return_inverse=True)
        out.append(inv.reshape(seg.shape))
    return torch.from_numpy(np.stack(out).astype(np.int64))


def segment_means(maps: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Mean of ``maps (B, H, W)`` over every segment of ``segments (B, H, W)`` -> ``(B, S_max)``
    (NaN for labels an image does not have)."""
    if maps.shape != segments.shape:
        raise ShapeError(f"expected maps and segments of one shape, got {tuple(maps.shape)} and {tuple(segments.shape)}")
    b = maps.shape[0]
    s_max = int(segments.max()) + 1
    seg = segments.reshape(b, -1).to(maps.device)
    sums = torch.zeros(b, s_max, dtype=torch.float64, device=maps.device).scatter_add_(1, seg, maps.reshape(b, -1).double())
    cnt = torch.zeros(b, s_max, dtype=torch.float64, device=maps.device).scatter_add_(1, seg, torch.ones(seg.shape, dtype=torch.float64, device=maps.device))
    return torch.where(cnt > 0, sums / cnt.clamp_min(1), torch.full_like(sums, float("nan")))


def segment_mean_image(x: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """``x (B, C, H, W)`` with every pixel replaced by the per-channel mean of its superpixel
    in ``segments (B, H, W)`` (the ``lime`` package's image replacement when
    ``hide_color=None``).

    >>> x = torch.tensor([[[[0., 2.], [4., 6.]]]])
    >>> segment_mean_image(x, torch.tensor([[[0, 0], [1, 1]]]))
    tensor([[[[1., 1.],
              [5., 5.]]]])
    """
    if x.ndim != 4 or segments.shape != (x.shape[0], *x.shape[-2:]):
        raise ShapeError(f"expected x (B, C, H, W) and segments (B, H, W), got {tuple(x.shape)} and "
                         f"{tuple(segments.shape)}")
    b, c = x.shape[:2]
    seg = segments.reshape(b, 1, -1).to(x.device).expand(b, c, -1)
    s_max = int(segments.max()) + 1
    flat = x.reshape(b, c, -1)
    sums = torch.zeros(b, c, s_max, dtype=x.dtype, device=x.device).scatter_add_(2, seg, flat)
    cnt = torch.zeros(b, c, s_max, dtype=x.dtype, device=x.device).scatter_add_(2, seg, torch.ones_like(flat))
    means = sums / cnt.clamp_min(1)
    return means.gather(2, seg).view_as(x)


def segment_order(maps: torch.Tensor, segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank of every segment by mean relevance (0 = most relevant, removed first; ties by label).

    Returns ``(pixel_rank (B, H, W) int64, n_segments (B,) int64)``: the removal step at which
    each pixel disappears (``pixel_rank < k`` is removed after ``k`` steps)."""
    means = segment_means(maps, segments)
    n_seg = torch.isfinite(means).sum(1)
    key = torch.where(torch.isfinite(means), means, torch.full_like(means, -float("inf")))
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    b = maps.shape[0]
    pix = rank.gather(1, segments.reshape(b, -1).to(rank.device)).view_as(segments)
    return pix, n_seg


def irof_images(x: torch.Tensor, baseline: torch.Tensor, pixel_rank: torch.Tensor, n_segments: torch.Tensor,
                chunk: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(images (n, C, H, W), row (n,), step (n,))`` for every image ``row`` and removal
    step ``k = 1..S_row`` (the first ``k`` segments replaced by ``baseline``), ``chunk`` at a time."""
    rows = torch.repeat_interleave(torch.arange(x.shape[0]), n_segments.cpu())
    steps = torch.cat([torch.arange(1, int(s) + 1) for s in n_segments.cpu()])
    for i in range(0, rows.shape[0], chunk):
        r, k = rows[i:i + chunk], steps[i:i + chunk]
        rd, kd = r.to(x.device), k.to(x.device)
        gone = (pixel_rank[rd] < kd.view(-1, 1, 1)).unsqueeze(1)
        yield torch.where(gone, baseline[rd], x[rd]), r, k


def _trapz(y: torch.Tensor, dx: float = 1.0) -> torch.Tensor:
    return dx * (y[1:] + y[:-1]).sum() / 2


#: AOC rules over the normalised curve ``c_k = f(x_k) / f(x)`` (``c_0 = 1``):
#: ``"normalised"``: ``1 - trapz(c_0..c_S)`` on an x-axis scaled to ``[0, 1]`` (comparable across
#: images with different numbers of segments); ``"quantus"``: ``S - trapz(c_1..c_S, dx=1)``
#: (Quantus 0.6.0; grows with the number of segments, omits the clean point).
AOC_RULES = ("normalised", "quantus")


def irof_aoc(curve: torch.Tensor, rule: str = "normalised") -> torch.Tensor:
    """AOC of one curve ``(S + 1,)`` = ``c_0 .. c_S`` (``c_0 = 1``)."""
    s = curve.shape[0] - 1
    if rule == "normalised":
        return 1.0 - _trapz(curve, 1.0 / s)
    if rule == "quantus":
        return s - _trapz(curve[1:], 1.0)
    raise ConfigError(f"expected an AOC rule in {AOC_RULES}, got {rule!r}")


def resample_curves(curves: Sequence[torch.Tensor], points: int) -> torch.Tensor:
    """Linear interpolation of curves of different lengths (``c_0..c_S`` at ``k / S``) onto
    ``points`` equally spaced fractions in ``[0, 1]`` -> ``(B, points)``."""
    grid = np.linspace(0.0, 1.0, points)
    return torch.tensor(np.stack([np.interp(grid, np.linspace(0.0, 1.0, c.shape[0]), c.cpu().numpy())
                                  for c in curves]), dtype=torch.float64)


def irof(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: torch.Tensor,
         maps: torch.Tensor, segments: torch.Tensor, baseline: torch.Tensor, clean_probability: torch.Tensor, *,
         aoc: str = "normalised", curve_points: int = 21, forward_batch: int = 32
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IROF (Rieger & Hansen 2020): its one definition.

    Segments are removed cumulatively by mean relevance (most relevant first, ties by label),
    each replaced by ``baseline``; the curve is the target's softmax probability after ``k``
    removals divided by the clean probability (``c_0 = 1 .. c_S``); the score is its AOC under
    ``aoc`` (:data:`AOC_RULES`).

    Args:
        forward: ``images (n, C, H, W) -> logits (n, K)``, called with ``forward_batch`` images.
        x: ``(B, C, H, W)``; target: ``(B,)``; maps: ``(B, H, W)``; segments: ``(B, H, W)`` labels;
        baseline: ``(B, C, H, W)`` replacement values; clean_probability: ``(B,)`` ``p(target | x)``.

    Returns:
        ``scores (B,)`` float64 (NaN where a forward pass gave non-finite logits), ``curves
        (B, curve_points)`` resampled onto fractions ``[0, 1]``, ``n_segments (B,)``.
    """
    if aoc not in AOC_RULES:
        raise ConfigError(f"expected aoc in {AOC_RULES}, got {aoc!r}")
    rank, n_seg = segment_order(maps, segments)
    f0 = clean_probability.detach().double().cpu()
    vals = [torch.empty(int(s) + 1, dtype=torch.float64) for s in n_seg]
    for i in range(len(vals)):
        vals[i][0] = f0[i]
    for imgs, rows, steps in irof_images(x, baseline, rank, n_seg, int(forward_batch)):
        logits = forward(imgs).detach()
        t = target[rows.to(target.device)].to(logits.device)
        y = torch.softmax(logits.double(), 1).gather(1, t.view(-1, 1)).squeeze(1)
        y = torch.where(torch.isfinite(logits).all(1), y, torch.full_like(y, float("nan"))).cpu()
        for r, k, v in zip(rows.tolist(), steps.tolist(), y.tolist()):
            vals[r][k] = v
    curves = [v / v[0] for v in vals]
    scores = torch.stack([irof_aoc(cv, aoc) for cv in curves])
    return scores, resample_curves(curves, int(curve_points)), n_seg.cpu()
