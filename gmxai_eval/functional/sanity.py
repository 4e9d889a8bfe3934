"""Input-dependence sanity check: does a map depend on the image, beyond the model's own noise?

A saliency map is supposed to explain *this* image. A method whose map is a function of the
explained class alone (deconvolution on a network without max-pooling: its backward pass
never looks at the forward activations) passes the model-randomisation tests as long as the
class weights change, yet it tells nothing about the image. This check compares two
dissimilarities of a method's map ``a_i`` of image ``i`` explained for class ``t_i``:

* **between images**: ``D_b(i) = mean_p (1 - s(a_i, a_{j_p}))`` over partner images ``j_p``
  explained for the *same* class ``t_i``;
* **under noise**: ``D_n(i) = mean_n (1 - s(a_i, a_i^{(n)}))`` over maps of the same image
  under the model's own noise (small input noise that keeps the prediction, as the "minor
  perturbation" of MetaQuantus; the evaluator draws it);

with ``s`` a registered map similarity (:data:`gmxai_eval.functional.similarity.SIMILARITIES`,
Spearman of ``|a|`` by default, as for MPRT). The score is

    ``input_dependence(i) = D_b(i) / (D_b(i) + D_n(i))``, in ``[0, 1]``, higher is better:

* ``0``: the maps of different images are identical (for every image of a class the same map),
  whatever the noise does; ``0 / 0`` (identical between images *and* under noise) is also 0,
  since such a map does not depend on the input at all;
* ``0.5``: maps differ between images only as much as they differ under noise (an input-
  dependent but unstable map, e.g. an i.i.d. random map keyed on the image content);
* ``1``: maps differ between images and are unchanged by the noise.

Dissimilarities below ``atol`` (rounding) count as 0. Rank similarities are NaN when a map is constant (a CAM that ReLU turns all-zero); then the
similarity is 1 when both maps are identical and 0 otherwise (MPRT's ``zero_unless_equal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.similarity import SIMILARITIES, MapSimilarity


@dataclass(frozen=True)
class InputDependence:
    """Per-image output of :func:`input_dependence`.

    Attributes:
        scores: ``(B,)`` float64 ``D_b / (D_b + D_n)`` (NaN without a partner or a noisy map).
        between: ``(B,)`` float64 ``D_b``, mean dissimilarity to the partners' maps.
        noise: ``(B,)`` float64 ``D_n``, mean dissimilarity to the noisy copies' maps.
    """

    scores: torch.Tensor
    between: torch.Tensor
    noise: torch.Tensor


def similarity_zero_unless_equal(fn: MapSimilarity, a: torch.Tensor, b: torch.Tensor,
                                 **options: Any) -> torch.Tensor:
    """``fn(a, b)`` ``(B,)`` float64 for maps ``(B, H, W)``, where a NaN caused by a constant map
    becomes 1 if ``a`` and ``b`` are identical and 0 otherwise."""
    v = fn(a, b, **options).to("cpu", torch.float64)
    fix = torch.isnan(v)
    if fix.any():
        fa, fb = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        const = ((fa == fa[:, :1]).all(1) | (fb == fb[:, :1]).all(1)).cpu()
        same = (fa == fb).all(1).cpu().to(v.dtype)
        v = torch.where(fix & const, same, v)
    return v


def _mean_dissimilarity(fn: MapSimilarity, a: torch.Tensor, others: torch.Tensor,
                        options: dict[str, Any], atol: float) -> torch.Tensor:
    """``(B,)`` mean over ``others (B, P, H, W)`` of ``1 - s(a_i, others_ip)`` (values ``<= atol``
    count as 0); NaN when ``P == 0``."""
    b, p = others.shape[:2]
    if p == 0:
        return torch.full((b,), float("nan"), dtype=torch.float64)
    ref = a.unsqueeze(1).expand_as(others).reshape(b * p, *a.shape[1:])
    s = similarity_zero_unless_equal(fn, ref, others.reshape(b * p, *a.shape[1:]), **options)
    d = 1.0 - s
    d = torch.where(d <= atol, torch.zeros_like(d), d)  # rounding of s = 1 (identical maps)
    return d.view(b, p).mean(1)


def input_dependence(maps: torch.Tensor, partner_maps: torch.Tensor, noisy_maps: torch.Tensor,
                     similarity: str | MapSimilarity = "spearman_abs", *, atol: float = 1e-6,
                     **options: Any) -> InputDependence:
    """Input dependence of maps relative to their variation under the model's own noise.

    Args:
        maps: ``(B, H, W)`` maps ``a_i`` of the images, explained for class ``t_i``.
        partner_maps: ``(B, P, H, W)`` maps of ``P`` *other* images, each explained for the
            same class ``t_i`` as row ``i`` (``P = 0``: scores NaN).
        noisy_maps: ``(B, N, H, W)`` maps of ``N`` noisy copies of image ``i`` (explained for
            ``t_i``); ``N = 0``: scores NaN.
        similarity: a name in :data:`~gmxai_eval.functional.similarity.SIMILARITIES` or an
            instance; ``1 - similarity`` is the dissimilarity.
        atol: dissimilarities ``<= atol`` count as 0: the correlation of two identical maps is 1
            only up to rounding (``1 - s`` of order 1e-16), and a ratio of two rounding errors
            would score an input-independent method anywhere in ``[0, 1]``.
        options: similarity options (``hog_pixels_per_cell``, ``topk_fraction`` ...).

    Returns:
        :class:`InputDependence` with ``scores = D_b / (D_b + D_n)`` (``0`` where both are 0).
    """
    if maps.ndim != 3:
        raise ShapeError(f"expected maps (B, H, W), got {tuple(maps.shape)}")
    for name, t in (("partner_maps", partner_maps), ("noisy_maps", noisy_maps)):
        if t.ndim != 4 or t.shape[0] != maps.shape[0] or tuple(t.shape[2:]) != tuple(maps.shape[1:]):
            raise ShapeError(f"expected {name} of shape ({maps.shape[0]}, n, {maps.shape[1]}, {maps.shape[2]}), "
                             f"got {tuple(t.shape)}")
    if isinstance(similarity, str):
        fn = SIMILARITIES.create(similarity)
    elif isinstance(similarity, MapSimilarity):
        fn = similarity
    else:
        raise ConfigError(f"expected similarity as a registered name or a MapSimilarity, got {similarity!r}")
    if not atol >= 0:
        raise ConfigError(f"expected atol >= 0, got {atol!r}")
    between = _mean_dissimilarity(fn, maps, partner_maps, options, float(atol))
    noise = _mean_dissimilarity(fn, maps, noisy_maps, options, float(atol))
    total = between + noise
    scores = torch.where(total > 0, between / torch.where(total > 0, total, torch.ones_like(total)),
                         torch.zeros_like(total))
    scores = torch.where(torch.isnan(total), total, scores)
    return InputDependence(scores, between, noise)
