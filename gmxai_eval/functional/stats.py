"""The one home of the statistics every kernel and report uses.

Row-wise correlations (batch first, ``(B, ...)`` flattened to ``(B, N)`` -> ``(B,)`` float64):

* :func:`rankdata`: ranks ``1..N`` with ties given their average rank (``scipy.stats.rankdata``).
* :func:`pearson`: Pearson correlation.
* :func:`spearman`: Pearson correlation of average ranks (``scipy.stats.spearmanr``).

Vector statistics (1-D, NumPy, used by the report):

* :func:`kendall_tau_b`: Kendall's tau-b of two equally long vectors (``scipy.stats.kendalltau``).
* :func:`bootstrap_means`: bootstrap distribution of the mean, paired over columns, by image or by
  cluster (subject).
* :func:`bootstrap_ci`: percentile bootstrap CI of the mean.
* :func:`top_k_iou`: intersection over union of the top-``k`` elements of two sets of maps.

Constant inputs
---------------
A correlation with a constant row (zero variance: a constant map, a flat curve) is undefined.
Callers choose what it gives with ``constant``:

* ``"nan"``: NaN (SciPy's convention; a degenerate map is *not scored*, and the NaN is counted);
* ``"zero"``: 0 (no linear association can be measured; a degenerate map scores as "no
  correlation"). The perturbation correlations (faithfulness correlation / estimate,
  monotonicity correlation, sensitivity-n) use ``"zero"``; map similarities and agreements use
  ``"nan"``. Each caller states its choice in its card or conventions.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, ShapeError

#: Allowed values of every ``constant=`` argument.
CONSTANT_CONVENTIONS = ("nan", "zero")
#: Allowed values of :func:`top_k_iou`'s ``relevance``.
IOU_RELEVANCE = ("signed", "abs")
#: Allowed values of :func:`top_k_iou`'s ``ties``.
IOU_TIES = ("index", "topk")


def _check_constant(constant: str) -> None:
    if constant not in CONSTANT_CONVENTIONS:
        raise ConfigError(f"expected constant in {CONSTANT_CONVENTIONS}, got {constant!r}")


def _rows(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ShapeError(f"expected two tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.ndim < 1 or b.ndim < 1 or a.shape[0] != b.shape[0] or a.numel() != b.numel():
        raise ShapeError(f"expected two (B, ...) tensors with the same batch size and row length, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    return a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1).to(a.device)


def rankdata(a: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks ``1..N`` of ``a (B, N)`` with ties given their average rank -> ``(B, N)``
    float64; sorted in ``a``'s own dtype (ties are ties in the dtype the values were computed in)."""
    if not isinstance(a, torch.Tensor) or a.ndim != 2:
        raise ShapeError(f"expected a (B, N) tensor, got {getattr(a, 'shape', type(a).__name__)}")
    n = a.shape[1]
    s, idx = a.sort(dim=1)
    j = torch.arange(n, device=a.device).expand_as(s)
    change = s[:, 1:] != s[:, :-1]
    edge = torch.ones_like(change[:, :1])
    first = torch.where(torch.cat([edge, change], 1), j, torch.zeros_like(j)).cummax(1).values
    last = torch.where(torch.cat([change, edge], 1), j, torch.full_like(j, n - 1)).flip(1).cummin(1).values.flip(1)
    return torch.empty(a.shape, dtype=torch.float64, device=a.device).scatter_(
        1, idx, (first + last).to(torch.float64) / 2.0 + 1.0)


def pearson(a: torch.Tensor, b: torch.Tensor, *, constant: str = "nan") -> torch.Tensor:
    """Row-wise Pearson correlation of ``a, b (B, ...)`` -> ``(B,)`` float64.

    ``constant``: what a row with zero variance in ``a`` or ``b`` gives, ``"nan"`` or ``"zero"``
    (see the module docstring). A row with a NaN/inf value gives NaN whatever ``constant``."""
    _check_constant(constant)
    a, b = _rows(a, b)
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    den = torch.sqrt((a * a).sum(1) * (b * b).sum(1))
    num = (a * b).sum(1)
    fill = torch.full_like(den, math.nan) if constant == "nan" else torch.zeros_like(den)
    out = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), fill)
    return torch.where(torch.isfinite(a).all(1) & torch.isfinite(b).all(1), out, torch.full_like(out, math.nan))


def spearman(a: torch.Tensor, b: torch.Tensor, *, constant: str = "nan") -> torch.Tensor:
    """Row-wise Spearman rank correlation of ``a, b (B, ...)`` -> ``(B,)`` float64: Pearson
    correlation of average ranks (``scipy.stats.spearmanr``); ``constant`` as :func:`pearson`."""
    a, b = _rows(a, b)
    finite = torch.isfinite(a).all(1) & torch.isfinite(b).all(1)
    out = pearson(rankdata(a), rankdata(b), constant=constant)
    return torch.where(finite.to(out.device), out, torch.full_like(out, math.nan))


def top_k_iou(a: torch.Tensor, b: torch.Tensor, *, k: int | None = None, fraction: float | None = None,
              relevance: str = "signed", ties: str = "index") -> torch.Tensor:
    """IoU of the top-``k`` elements of ``a`` and of ``b`` (``(B, ...)`` -> ``(B,)`` float64).

    Args:
        k: the number of elements per map (``1 <= k <= N``), or
        fraction: ``k = max(1, ceil(fraction * N))`` with ``0 < fraction <= 1`` (exactly one of the two).
        relevance: ``"signed"`` ranks the values as they are, ``"abs"`` ranks ``|a|``.
        ties: ``"index"`` breaks ties by the lower flat index (stable sort, deterministic);
            ``"topk"`` keeps ``torch.topk``'s choice (the randomisation checks' historical rule).
    """
    if (k is None) == (fraction is None):
        raise ConfigError(f"expected exactly one of k / fraction, got {k!r} / {fraction!r}")
    if relevance not in IOU_RELEVANCE:
        raise ConfigError(f"expected relevance in {IOU_RELEVANCE}, got {relevance!r}")
    if ties not in IOU_TIES:
        raise ConfigError(f"expected ties in {IOU_TIES}, got {ties!r}")
    x, y = _rows(a, b)
    x, y = x.double(), y.double()
    if relevance == "abs":
        x, y = x.abs(), y.abs()
    n = x.shape[1]
    if fraction is not None:
        if not 0.0 < float(fraction) <= 1.0:
            raise ConfigError(f"expected topk fraction in (0, 1], got {fraction!r}")
        k = max(1, math.ceil(float(fraction) * n))
    if isinstance(k, bool) or not 1 <= int(k) <= n:  # type: ignore[arg-type]
        raise ConfigError(f"expected 1 <= k <= {n} (elements per map), got {k}")
    k = int(k)  # type: ignore[arg-type]
    ta, tb = top_k_mask(x, k, ties), top_k_mask(y, k, ties)
    return (ta & tb).sum(1).double() / (ta | tb).sum(1).double()


def top_k_mask(v: torch.Tensor, k: int, ties: str = "index") -> torch.Tensor:
    """``(B, N)`` bool mask of the ``k`` largest values per row (``ties`` as :func:`top_k_iou`)."""
    if ties == "topk":
        idx = v.topk(k, dim=1).indices
    elif ties == "index":
        idx = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k]
    else:
        raise ConfigError(f"expected ties in {IOU_TIES}, got {ties!r}")
    return torch.zeros_like(v, dtype=torch.bool).scatter_(1, idx, True)


# --------------------------------------------------------------------------------------------
# vector statistics (NumPy)
# --------------------------------------------------------------------------------------------
def kendall_tau_b(a: Sequence[float], b: Sequence[float], *, constant: str = "nan") -> float:
    """Kendall's tau-b of two equally long vectors; pairs with a non-finite value are dropped.

    With fewer than two pairs, or when either vector is constant (tau-b's denominator is 0),
    the result is NaN (``constant="nan"``, SciPy) or 0.0 (``constant="zero"``)."""
    _check_constant(constant)
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ShapeError(f"expected two 1-D vectors of one length, got {x.shape} and {y.shape}")
    undefined = math.nan if constant == "nan" else 0.0
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 2:
        return undefined
    iu = np.triu_indices(n, 1)
    dx = np.sign(x[:, None] - x[None, :])[iu]
    dy = np.sign(y[:, None] - y[None, :])[iu]
    n0 = len(dx)
    tx, ty = np.sum(dx == 0), np.sum(dy == 0)
    denom = math.sqrt((n0 - tx) * (n0 - ty))
    return float(np.sum(dx * dy) / denom) if denom > 0 else undefined


def bootstrap_means(values: Sequence[np.ndarray] | np.ndarray, clusters: Sequence[Any] | None = None,
                    n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of the mean, paired over columns.

    Args:
        values: ``(N, M)`` scores of ``M`` methods on ``N`` samples (NaN = missing, dropped from
            every mean the same way), or ``(N,)``.
        clusters: ``N`` cluster ids (subjects; whole clusters are resampled) or ``None`` for an
            image-level bootstrap.
        n_boot: resamples; seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(n_boot, M)`` resampled means (a resample without any finite value is NaN).
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"expected n_boot as a positive int, got {n_boot!r}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    n = v.shape[0]
    if clusters is None:
        codes = np.arange(n)
    else:
        if len(clusters) != n:
            raise ShapeError(f"expected {n} cluster ids, got {len(clusters)}")
        _, codes = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    g = int(codes.max()) + 1 if n else 0
    finite = np.isfinite(v)
    sums = np.zeros((g, v.shape[1]))
    cnts = np.zeros((g, v.shape[1]))
    np.add.at(sums, codes, np.where(finite, v, 0.0))
    np.add.at(cnts, codes, finite.astype(np.float64))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g, size=(n_boot, g))
    out = np.empty((n_boot, v.shape[1]))
    step = max(1, 2**23 // max(g, 1))  # bound the (step, G) count matrix
    with np.errstate(invalid="ignore", divide="ignore"):
        for s in range(0, n_boot, step):
            ix = idx[s:s + step]
            k = len(ix)
            # how often each unit is drawn in each resample, then one matrix product
            w = np.bincount((ix + g * np.arange(k)[:, None]).ravel(), minlength=k * g).reshape(k, g)
            out[s:s + step] = (w @ sums) / (w @ cnts)
    return out


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: percentile bootstrap CI of the mean of a 1-D vector (non-finite values
    dropped; all NaN when none is left)."""
    if not 0 < level < 1:
        raise ConfigError(f"expected 0 < level < 1, got {level}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"expected n_boot as a positive int, got {n_boot!r}")
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (math.nan,) * 3
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))
