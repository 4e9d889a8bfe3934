"""Pure gaze map kernels: fixation maps, fixation densities, centre bias, areas of interest.

NumPy float64 in, NumPy float64 out, no state (the gaze metrics in :mod:`gmxai_eval.functional.gaze`
and the data side in :mod:`gmxai_eval.data.gaze` build on them).

* :func:`pixel_index`: the pixel of each fixation, checked to lie inside the image.
* :func:`fixation_map`: ``(H, W)`` counts (or summed weights, e.g. durations) of fixations per
  pixel; the pixel of a fixation at ``(x, y)`` is ``(floor(y), floor(x))``.
* :func:`density_map`: the fixation map blurred with a Gaussian of ``sigma`` pixels
  (``scipy.ndimage.gaussian_filter``, ``mode="nearest"`` padding as in the Tübingen/MIT
  benchmark, truncated at 4 sigma), normalised to sum 1.
* :func:`centre_bias_map`: a Gaussian centred on the image, sum 1 (the floor model and the
  information-gain baseline).
* :func:`rescale_points`: fixations of one image size mapped onto another.
* :func:`dwell_fractions` / :func:`attribution_mass`: share of dwell time / of positive
  attribution per facial region, directly comparable.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from gmxai_eval.errors import DataError, ShapeError


def pixel_index(points: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` int64 of ``points (N, 2)`` (x, y) in an image of ``shape (H, W)``.

    Raises:
        ShapeError: points not ``(N, 2)`` or outside ``[0, W) x [0, H)``.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) if np.size(points) else np.zeros((0, 2))
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ShapeError(f"expected points of shape (N, 2), got {np.shape(points)}")
    c = np.floor(pts[:, 0]).astype(np.int64)
    r = np.floor(pts[:, 1]).astype(np.int64)
    h, w = shape
    if len(pts) and (c.min() < 0 or r.min() < 0 or c.max() >= w or r.max() >= h):
        raise ShapeError(f"expected fixations inside the {h}x{w} image (0 <= x < {w}, 0 <= y < {h}), "
                         f"got x in [{pts[:, 0].min():g}, {pts[:, 0].max():g}], "
                         f"y in [{pts[:, 1].min():g}, {pts[:, 1].max():g}]")
    return r, c


def fixation_map(points: np.ndarray, shape: tuple[int, int], weights: np.ndarray | None = None) -> np.ndarray:
    """``(H, W)`` float64: number of fixations (or the sum of ``weights``) per pixel."""
    r, c = pixel_index(points, shape)
    m = np.zeros(shape, np.float64)
    np.add.at(m, (r, c), 1.0 if weights is None else np.asarray(weights, np.float64))
    return m


def density_map(points: np.ndarray, shape: tuple[int, int], sigma: float,
                weights: np.ndarray | None = None) -> np.ndarray:
    """``(H, W)`` float64 fixation density, sum 1.

    Args:
        points: ``(N, 2)`` fixations (x, y) in pixels, ``N >= 1``.
        shape: ``(H, W)``.
        sigma: Gaussian sigma in pixels (use :meth:`Study.deg_to_px` for degrees); ``0`` gives
            the normalised fixation map.
        weights: optional ``(N,)`` non-negative weights (durations for dwell-weighted maps).

    Raises:
        DataError: no fixations / zero total weight.
    """
    if sigma < 0:
        raise ShapeError(f"expected sigma >= 0 pixels, got {sigma}")
    m = fixation_map(points, shape, weights)
    if m.sum() <= 0:
        raise DataError(f"expected at least one fixation with positive weight to build a density, "
                        f"got {len(np.atleast_2d(points)) if np.size(points) else 0} fixations")
    if sigma > 0:
        m = gaussian_filter(m, sigma, mode="nearest", truncate=4.0)
    return m / m.sum()


def centre_bias_map(shape: tuple[int, int], sigma_frac: float | tuple[float, float] = 0.25,
                    centre: tuple[float, float] | None = None) -> np.ndarray:
    """``(H, W)`` float64 Gaussian centre-bias density, sum 1.

    Args:
        sigma_frac: sigma as a fraction of ``(H, W)`` (one number for both axes).
        centre: ``(x, y)`` pixels; default the image centre ``((W-1)/2, (H-1)/2)``.
    """
    h, w = shape
    sy, sx = (sigma_frac, sigma_frac) if np.isscalar(sigma_frac) else sigma_frac  # type: ignore[misc]
    cx, cy = ((w - 1) / 2.0, (h - 1) / 2.0) if centre is None else centre
    yy = (np.arange(h) - cy)[:, None] / (sy * h)
    xx = (np.arange(w) - cx)[None, :] / (sx * w)
    g = np.exp(-0.5 * (xx ** 2 + yy ** 2))
    return g / g.sum()


def rescale_points(points: np.ndarray, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """Map ``(x, y)`` from an ``(H, W)`` image onto another size (pixel-area preserving)."""
    p = np.asarray(points, np.float64).reshape(-1, 2).copy()
    p[:, 0] *= to_shape[1] / from_shape[1]
    p[:, 1] *= to_shape[0] / from_shape[0]
    return p


def dwell_fractions(points: np.ndarray, durations: np.ndarray, region_masks: np.ndarray,
                    region_names: Sequence[str]) -> dict[str, float]:
    """Share of total dwell time per facial region (areas of interest).

    Args:
        points: ``(N, 2)`` fixations (x, y).
        durations: ``(N,)`` ms.
        region_masks: ``(R, H, W)`` bool.
        region_names: ``R`` names.
    Returns:
        ``{name: fraction}`` plus ``"outside"`` (dwell on no region). Regions may overlap, so the
        fractions of overlapping regions can sum to more than 1; each value is
        ``dwell inside region / total dwell``.
    """
    masks = np.asarray(region_masks, bool)
    if masks.ndim != 3 or masks.shape[0] != len(region_names):
        raise ShapeError(f"expected region_masks (R, H, W) with R = {len(region_names)}, got {masks.shape}")
    r, c = pixel_index(points, masks.shape[1:])  # type: ignore[arg-type]
    dur = np.asarray(durations, np.float64)
    total = dur.sum()
    if total <= 0:
        raise DataError("expected a positive total dwell time, got 0")
    inside = masks[:, r, c]  # (R, N)
    out = {n: float((inside[i] * dur).sum() / total) for i, n in enumerate(region_names)}
    out["outside"] = float((dur * ~inside.any(0)).sum() / total)
    return out


def attribution_mass(smap: np.ndarray, region_masks: np.ndarray, region_names: Sequence[str]) -> dict[str, float]:
    """Share of the positive attribution mass per region (same layout as :func:`dwell_fractions`)."""
    a = np.clip(np.asarray(smap, np.float64), 0, None)
    masks = np.asarray(region_masks, bool)
    if masks.shape[1:] != a.shape:
        raise ShapeError(f"expected region_masks (R, {a.shape[0]}, {a.shape[1]}), got {masks.shape}")
    total = a.sum()
    if total <= 0:
        return {**{n: float("nan") for n in region_names}, "outside": float("nan")}
    out = {n: float(a[masks[i]].sum() / total) for i, n in enumerate(region_names)}
    out["outside"] = float(a[~masks.any(0)].sum() / total)
    return out
