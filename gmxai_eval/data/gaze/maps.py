"""The gaze data of each image, as the gaze evaluators consume it.

* :class:`ImageGaze`: one image's pooled fixations, observers, durations, fixation density and
  centre-bias baseline, plus the other images' fixations (shuffled-AUC negatives).
* :class:`FixationPool`: a study's fixations held once for every image's shuffled-AUC negatives.
* :func:`image_gaze_set`: ``{image_id: ImageGaze}`` from a validated
  :class:`~gmxai_eval.data.gaze.fixations.FixationTable`.

The map kernels (fixation maps, densities, centre bias, areas of interest) are pure functions
in :mod:`gmxai_eval.functional.gaze_maps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from gmxai_eval.errors import DataError, ShapeError
from gmxai_eval.functional.gaze_maps import centre_bias_map, density_map, pixel_index

if TYPE_CHECKING:
    from gmxai_eval.data.gaze.fixations import FixationTable


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


def image_gaze_set(table: FixationTable, shapes: Mapping[str, tuple[int, int]], sigma: float, *,
                   duration_weighted: bool = False, centre_sigma_frac: float = 0.25
                   ) -> dict[str, ImageGaze]:
    """Build :class:`ImageGaze` for every image of ``shapes`` that has fixations in ``table``.

    Args:
        table: validated fixations (:class:`~gmxai_eval.data.gaze.fixations.FixationTable`).
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
