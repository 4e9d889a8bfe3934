"""Batched similarity kernels between two sets of attribution maps.

Every kernel takes two tensors of the same shape, batch first, and returns ``(B,)`` float64:

* :func:`spearman` / :func:`pearson` / :func:`rankdata`: re-exported from
  :mod:`gmxai_eval.functional.stats` (their one definition); NaN for a constant row by default.
* :func:`ssim`: ``(B, H, W)``, the structural similarity of Wang et al. (2004) with the same
  conventions as ``skimage.metrics.structural_similarity`` (mean over the valid region only).
* :func:`hog_features`: ``(B, H, W) -> (B, F)`` histogram-of-oriented-gradients features that
  reproduce ``skimage.feature.hog`` (hard orientation binning, L2-Hys block normalisation).
* :func:`topk_iou`: deprecated alias of :func:`gmxai_eval.functional.stats.top_k_iou` with
  ``relevance="abs", ties="topk"`` (the convention of the ``topk_iou`` similarity).

``SIMILARITIES`` registers the map similarities used by the randomisation sanity checks
(``spearman_abs``, ``spearman``, ``ssim``, ``hog``, ``topk_iou``) as :class:`MapSimilarity`
classes: ``SIMILARITIES.create(name)(a (B, H, W), b (B, H, W), **options) -> (B,)``, or
``compare(prepare(a), prepare(b))`` to prepare one side once.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.stats import pearson, rankdata, spearman, top_k_iou, top_k_mask  # noqa: F401  (re-exported)
from gmxai_eval.registry import Registry

#: Map similarities: ``SIMILARITIES.create(name)(a, b, **options) -> (B,)`` (:class:`MapSimilarity`).
SIMILARITIES: Registry = Registry("similarity")


def _pair(a: torch.Tensor, b: torch.Tensor, ndim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        raise ShapeError(f"expected two tensors of the same shape, got "
                         f"{getattr(a, 'shape', type(a).__name__)} and {getattr(b, 'shape', type(b).__name__)}")
    if ndim is not None and a.ndim != ndim:
        raise ShapeError(f"expected {ndim}-D tensors, got shape {tuple(a.shape)}")
    return a.to(torch.float64), b.to(torch.float64)


def minmax(a: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max scaling of ``(B, ...)`` to ``[0, 1]``; a constant sample becomes 0."""
    a = a.to(torch.float64)
    flat = a.reshape(a.shape[0], -1)
    lo = flat.min(1).values.view(-1, *([1] * (a.ndim - 1)))
    hi = flat.max(1).values.view(-1, *([1] * (a.ndim - 1)))
    rng = hi - lo
    return torch.where(rng > 0, (a - lo) / torch.where(rng > 0, rng, torch.ones_like(rng)), torch.zeros_like(a))


def _gaussian_kernel1d(sigma: float, truncate: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, *, gaussian: bool = True, sigma: float = 1.5,
         win_size: int | None = None, data_range: float | None = 1.0, sample_covariance: bool | None = None,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean structural similarity of ``a, b (B, H, W)`` -> ``(B,)``.

    Conventions are those of ``skimage.metrics.structural_similarity``: a Gaussian window
    (``sigma``, truncated at 3.5 sigma, i.e. 11x11 for sigma 1.5) or a uniform ``win_size``
    window (default 7); ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with ``L = data_range``
    (``None``: the joint range ``max(a, b) - min(a, b)`` per sample); covariances use the
    unbiased ``N/(N-1)`` factor when ``sample_covariance`` (default: only for the uniform
    window, as Wang et al. for Gaussian weights); the SSIM map is averaged over the positions
    where the window fits entirely in the image (skimage crops the padded border the same way).
    """
    a, b = _pair(a, b, 3)
    if gaussian:
        k = _gaussian_kernel1d(sigma, 3.5, a.dtype, a.device)
        ws = k.numel()
    else:
        ws = 7 if win_size is None else int(win_size)
        if ws < 3 or ws % 2 == 0:
            raise ConfigError(f"expected an odd win_size >= 3, got {ws}")
        kernel = torch.full((1, 1, ws, ws), 1.0 / ws**2, dtype=a.dtype, device=a.device)
    if a.shape[-1] < ws or a.shape[-2] < ws:
        raise ShapeError(f"expected maps of at least {ws}x{ws} for SSIM, got {tuple(a.shape[-2:])}")
    if sample_covariance is None:
        sample_covariance = not gaussian
    npix = ws * ws
    cov_norm = npix / (npix - 1) if sample_covariance else 1.0
    if data_range is None:
        flat = torch.cat([a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)], 1)
        L = (flat.max(1).values - flat.min(1).values).view(-1, 1, 1)
    else:
        L = torch.as_tensor(float(data_range), dtype=a.dtype, device=a.device)
    c1 = (k1 * L) ** 2
    c2 = (k2 * L) ** 2
    stack = torch.stack([a, b, a * a, b * b, a * b], 1).reshape(-1, 1, *a.shape[-2:])  # (B*5, 1, H, W)
    if gaussian:  # separable: rows then columns
        filt = F.conv2d(F.conv2d(stack, k.view(1, 1, -1, 1)), k.view(1, 1, 1, -1))
    else:
        filt = F.conv2d(stack, kernel)
    filt = filt.reshape(a.shape[0], 5, *[s - ws + 1 for s in a.shape[-2:]])
    ux, uy, uxx, uyy, uxy = filt.unbind(1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2))


def hog_features(a: torch.Tensor, *, pixels_per_cell: int = 16, cells_per_block: int = 3,
                 orientations: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """HOG features of ``a (B, H, W)`` -> ``(B, F)`` (float64), as ``skimage.feature.hog`` with
    ``block_norm="L2-Hys"``, ``transform_sqrt=False``, ``feature_vector=True``.

    Gradients are central differences (zero on the image border); each pixel adds its gradient
    magnitude to the one unsigned orientation bin (``orientations`` bins over [0, 180) degrees)
    containing its angle; cell histograms are magnitude sums divided by the cell area; blocks of
    ``cells_per_block`` x ``cells_per_block`` cells (stride one cell) are L2-normalised, clipped
    at 0.2 and L2-normalised again. If the image has fewer cells per side than
    ``cells_per_block``, the block shrinks to the number of cells (this is not skimage's
    behaviour, which returns no features) -- callers record the effective block size.
    """
    if not isinstance(a, torch.Tensor) or a.ndim != 3:
        raise ShapeError(f"expected maps (B, H, W), got {getattr(a, 'shape', type(a).__name__)}")
    a = a.to(torch.float64)
    B, H, W = a.shape
    c = int(pixels_per_cell)
    ncr, ncc = H // c, W // c
    if ncr < 1 or ncc < 1:
        raise ShapeError(f"expected maps of at least {c}x{c} pixels for HOG cells of {c}, got {(H, W)}")
    gr = torch.zeros_like(a)
    gc = torch.zeros_like(a)
    gr[:, 1:-1, :] = a[:, 2:, :] - a[:, :-2, :]
    gc[:, :, 1:-1] = a[:, :, 2:] - a[:, :, :-2]
    mag = torch.hypot(gc, gr)
    ang = torch.rad2deg(torch.atan2(gr, gc)) % 180.0
    width = 180.0 / orientations
    # bin i holds [i*width, (i+1)*width), exactly as skimage's comparisons
    edges = width * torch.arange(orientations + 1, dtype=torch.float64, device=a.device)
    idx = (torch.bucketize(ang, edges, right=True) - 1).clamp(0, orientations - 1)
    mag = mag[:, : ncr * c, : ncc * c]
    idx = idx[:, : ncr * c, : ncc * c]
    onehot = F.one_hot(idx, orientations).to(torch.float64) * mag[..., None]  # (B, H', W', O)
    hist = onehot.reshape(B, ncr, c, ncc, c, orientations).sum(dim=(2, 4)) / (c * c)
    bl = min(int(cells_per_block), ncr, ncc)
    nbr, nbc = ncr - bl + 1, ncc - bl + 1
    blocks = hist.unfold(1, bl, 1).unfold(2, bl, 1)  # (B, nbr, nbc, O, bl, bl)
    blocks = blocks.permute(0, 1, 2, 4, 5, 3).reshape(B, nbr, nbc, -1)
    out = blocks / torch.sqrt((blocks**2).sum(-1, keepdim=True) + eps**2)
    out = out.clamp(max=0.2)
    out = out / torch.sqrt((out**2).sum(-1, keepdim=True) + eps**2)
    return out.reshape(B, -1)


def topk_iou(a: torch.Tensor, b: torch.Tensor, *, fraction: float = 0.1) -> torch.Tensor:
    """Deprecated alias: ``stats.top_k_iou(a, b, fraction=fraction, relevance="abs", ties="topk")``
    (IoU of the ``ceil(fraction * N)`` largest ``|a|`` and ``|b|`` of ``(B, ...)`` maps -> ``(B,)``)."""
    _pair(a, b)
    return top_k_iou(a, b, fraction=fraction, relevance="abs", ties="topk")


# -- the registered map similarities used by the sanity checks --------------------------------------

class MapSimilarity:
    """A map similarity split in two steps so that one side can be prepared once and compared
    with many others (the unrandomised map against every randomised model):
    ``compare(prepare(a), prepare(b)) == self(a, b)``, ``(B,)`` float64.

    Subclasses implement :meth:`prepare` (``(B, H, W)`` -> any per-sample tensor) and
    :meth:`compare`; options (``hog_pixels_per_cell``, ``topk_fraction`` ...) are keywords of
    ``prepare`` / ``__call__``; unknown options are ignored so one option set serves every entry.
    """

    name: str = ""

    def prepare(self, a: torch.Tensor, **options: Any) -> torch.Tensor:
        raise NotImplementedError

    def compare(self, pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, a: torch.Tensor, b: torch.Tensor, **options: Any) -> torch.Tensor:
        _pair(a, b, 3)
        return self.compare(self.prepare(a, **options), self.prepare(b, **options))


def _standardised_ranks(v: torch.Tensor) -> torch.Tensor:
    # (rank - mean) / norm per row, so that a dot product is stats.spearman(constant="nan")
    r = rankdata(v.reshape(v.shape[0], -1))
    r = r - r.mean(1, keepdim=True)
    n = r.norm(dim=1, keepdim=True)
    return torch.where(n > 0, r / torch.where(n > 0, n, torch.ones_like(n)), torch.full_like(r, float("nan")))


class _RankCorrelation(MapSimilarity):
    def compare(self, pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
        return (pa * pb).sum(1)


@SIMILARITIES.register(name="spearman_abs")
class SpearmanAbs(_RankCorrelation):
    """Spearman rank correlation of ``|a|`` and ``|b|``."""

    def prepare(self, a: torch.Tensor, **_: Any) -> torch.Tensor:
        return _standardised_ranks(a.abs())


@SIMILARITIES.register(name="spearman")
class SpearmanSigned(_RankCorrelation):
    """Spearman rank correlation of the signed maps."""

    def prepare(self, a: torch.Tensor, **_: Any) -> torch.Tensor:
        return _standardised_ranks(a)


@SIMILARITIES.register(name="ssim")
class SSIMSimilarity(MapSimilarity):
    """SSIM (Gaussian weights, sigma 1.5, data range 1) of the per-map min-max scaled ``|a|``."""

    def prepare(self, a: torch.Tensor, **_: Any) -> torch.Tensor:
        return minmax(a.abs())

    def compare(self, pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
        return ssim(pa, pb, gaussian=True, data_range=1.0)


@SIMILARITIES.register(name="hog")
class HOGSimilarity(_RankCorrelation):
    """Spearman rank correlation of the HOG features of the min-max scaled ``|a|``."""

    def prepare(self, a: torch.Tensor, *, hog_pixels_per_cell: int = 16, hog_cells_per_block: int = 3,
                **_: Any) -> torch.Tensor:
        return _standardised_ranks(hog_features(minmax(a.abs()), pixels_per_cell=hog_pixels_per_cell,
                                                cells_per_block=hog_cells_per_block))


@SIMILARITIES.register(name="topk_iou")
class TopKIoU(MapSimilarity):
    """IoU of the top ``topk_fraction`` pixels by ``|map|`` (ties: ``torch.topk``'s choice); equals
    ``stats.top_k_iou(a, b, fraction=f, relevance="abs", ties="topk")``."""

    def prepare(self, a: torch.Tensor, *, topk_fraction: float = 0.1, **_: Any) -> torch.Tensor:
        if not 0.0 < float(topk_fraction) <= 1.0:
            raise ConfigError(f"expected topk fraction in (0, 1], got {topk_fraction!r}")
        v = a.reshape(a.shape[0], -1).abs()
        k = max(1, math.ceil(float(topk_fraction) * v.shape[1]))
        return top_k_mask(v, k, ties="topk")

    def compare(self, pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
        return (pa & pb).sum(1).to(torch.float64) / (pa | pb).sum(1).to(torch.float64)
