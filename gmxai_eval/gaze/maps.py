"""Fixation maps, fixation densities, centre bias and areas of interest (NumPy, float64).

* :func:`fixation_map`: ``(H, W)`` counts (or summed weights, e.g. durations) of fixations per
  pixel; the pixel of a fixation at ``(x, y)`` is ``(floor(y), floor(x))``.
* :func:`density_map`: the fixation map blurred with a Gaussian of ``sigma`` pixels
  (``scipy.ndimage.gaussian_filter``, ``mode="nearest"`` padding as in the Tübingen/MIT
  benchmark, truncated at 4 sigma), normalised to sum 1.
* :func:`centre_bias_map`: a Gaussian centred on the image, sum 1 (the floor model and the
  information-gain baseline).
* :class:`ImageGaze` / :func:`image_gaze`: everything the metrics need for one image.
* :func:`dwell_fractions` / :func:`attribution_mass`: share of dwell time / of positive
  attribution per facial region, directly comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

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


@dataclass(frozen=True)
class FixationPool:
    """Fixations of a whole study, shared by every :class:`ImageGaze` of it (the shuffled-AUC
    negatives) without one copy per image.

    Attributes:
        xy: ``(M, 2)`` fixations in relative coordinates ``(x / W, y / H)`` of their own image,
            grouped by image.
        spans: ``{image_id: (start, stop)}`` rows of each image in ``xy``.
    """

    xy: np.ndarray
    spans: Mapping[str, tuple[int, int]]

    def others(self, image_id: str, shape: tuple[int, int]) -> np.ndarray:
        """``(M', 2)`` pixel fixations of every image but ``image_id``, scaled to ``shape``."""
        a, b = self.spans.get(image_id, (0, 0))
        rel = np.concatenate([self.xy[:a], self.xy[b:]])
        size = np.array([shape[1], shape[0]], np.float64)
        return np.minimum(rel * size, np.nextafter(size, 0))  # rounding never lands on the edge


@dataclass(frozen=True)
class ImageGaze:
    """The gaze data of one image, as the metrics consume it.

    Attributes:
        image_id: id of the image.
        shape: ``(H, W)`` of the pixel grid the coordinates refer to.
        points: ``(N, 2)`` float64 fixations (x, y), ``N >= 1`` (all observers pooled).
        observers: ``(N,)`` observer id of each fixation.
        durations: ``(N,)`` fixation durations in ms.
        density: ``(H, W)`` empirical fixation density of ``points``, sum 1.
        others: ``(M, 2)`` fixations on *other* images, rescaled to ``shape`` (shuffled AUC), or
            ``None`` to take them from ``pool`` on demand (see :meth:`other_points`).
        baseline: ``(H, W)`` baseline density, sum 1 (centre bias; information gain).
        pool: the study's shared :class:`FixationPool` (used when ``others`` is ``None``).
    """

    image_id: str
    shape: tuple[int, int]
    points: np.ndarray
    observers: np.ndarray
    durations: np.ndarray
    density: np.ndarray
    others: np.ndarray | None
    baseline: np.ndarray
    pool: FixationPool | None = None

    def other_points(self) -> np.ndarray:
        """``(M, 2)`` fixations on the other images, in this image's pixels."""
        if self.others is not None:
            return self.others
        if self.pool is None:
            raise DataError(f"image {self.image_id!r} has no fixations of other images (others and pool are None)")
        return self.pool.others(self.image_id, self.shape)

    def __post_init__(self) -> None:
        h, w = self.shape
        for name in ("density", "baseline"):
            a = getattr(self, name)
            if a.shape != (h, w):
                raise ShapeError(f"expected ImageGaze.{name} of shape {(h, w)}, got {a.shape}")
        n = len(self.points)
        if n == 0:
            raise DataError(f"expected at least one fixation on image {self.image_id!r}, got none")
        if len(self.observers) != n or len(self.durations) != n:
            raise ShapeError(f"expected {n} observers and durations, got {len(self.observers)} "
                             f"and {len(self.durations)}")
        pixel_index(self.points, self.shape)

    def for_observers(self, keep: Sequence[str] | np.ndarray, sigma: float,
                      duration_weighted: bool = False) -> "ImageGaze":
        """The same image restricted to the fixations of the observers ``keep``."""
        m = np.isin(self.observers, np.asarray(keep))
        pts = self.points[m]
        dur = self.durations[m]
        return ImageGaze(self.image_id, self.shape, pts, self.observers[m], dur,
                         density_map(pts, self.shape, sigma, dur if duration_weighted else None),
                         self.others, self.baseline, self.pool)


def rescale_points(points: np.ndarray, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """Map ``(x, y)`` from an ``(H, W)`` image onto another size (pixel-area preserving)."""
    p = np.asarray(points, np.float64).reshape(-1, 2).copy()
    p[:, 0] *= to_shape[1] / from_shape[1]
    p[:, 1] *= to_shape[0] / from_shape[0]
    return p


def image_gaze_set(table: "FixationTable", shapes: Mapping[str, tuple[int, int]], sigma: float, *,  # noqa: F821
                   duration_weighted: bool = False, centre_sigma_frac: float = 0.25
                   ) -> dict[str, ImageGaze]:
    """Build :class:`ImageGaze` for every image of ``shapes`` that has fixations in ``table``.

    Args:
        table: validated fixations (:class:`~gmxai_eval.gaze.fixations.FixationTable`).
        shapes: ``{image_id: (H, W)}``.
        sigma: density sigma in pixels.
        duration_weighted: weight the empirical density by fixation duration.
        centre_sigma_frac: sigma of the centre-bias baseline as a fraction of the image size.
    Returns:
        ``{image_id: ImageGaze}``; the fixations of every other image of ``shapes``
        (rescaled to the image's size, as pysaliency does) are the shuffled-AUC negatives,
        held once in a shared :class:`FixationPool`.
    """
    d = table.data
    d = d[d["image_id"].isin(list(shapes))]
    groups = {k: g for k, g in d.groupby("image_id", sort=True)}
    rel, spans, start = [], {}, 0
    for iid, g in groups.items():
        h, w = shapes[iid]
        rel.append(g[["x", "y"]].to_numpy(np.float64) / np.array([w, h], np.float64))
        spans[iid] = (start, start + len(g))
        start += len(g)
    pool = FixationPool(np.concatenate(rel) if rel else np.zeros((0, 2)), spans)
    out: dict[str, ImageGaze] = {}
    for iid, g in groups.items():
        shape = (int(shapes[iid][0]), int(shapes[iid][1]))
        pts = g[["x", "y"]].to_numpy(np.float64)
        dur = g["duration_ms"].to_numpy(np.float64)
        out[iid] = ImageGaze(iid, shape, pts, g["observer_id"].to_numpy(str), dur,
                             density_map(pts, shape, sigma, dur if duration_weighted else None),
                             None, centre_bias_map(shape, centre_sigma_frac), pool)
    return out


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
