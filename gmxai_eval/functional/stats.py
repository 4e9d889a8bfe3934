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

Reliability of a ranking of means (NumPy, used by the report):

* :func:`spearman_brown`: the Spearman-Brown step-up ``r_n = k r / (1 + (k - 1) r)``.
* :func:`split_half_reliability`: split-half reliability of the method ranking of a score
  matrix ``(N images, M methods)`` (random halves of the resampling units, Spearman's rho between
  the two halves' mean rankings, stepped up to the full ``n``), with its split interval.
* :func:`rank_stability`: each method's rank interval and the share of bootstrap draws in which
  it keeps its rank.

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
    sums, cnts = _unit_sums(v, clusters, "cluster ids")
    g = sums.shape[0]
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



# --------------------------------------------------------------------------------------------
# reliability of a ranking of means (NumPy)
# --------------------------------------------------------------------------------------------
def spearman_brown(r: Any, k: float = 2.0) -> Any:
    """Spearman-Brown step-up of a reliability ``r`` measured on ``1/k`` of the data to all of
    it: ``k r / (1 + (k - 1) r)`` (``k = 2``: a split-half correlation to the full length).

    A negative correlation has no reliability to step up; values below -1 are clipped to -1
    (``r`` near -1 would diverge). NaN stays NaN.

    >>> float(spearman_brown(0.5))
    0.6666666666666666
    >>> float(spearman_brown(1.0)), float(spearman_brown(0.0)), float(spearman_brown(-0.9))
    (1.0, 0.0, -1.0)
    """
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = k * r / (1.0 + (k - 1.0) * r)
    out = np.where(np.isfinite(r) & (r <= -1.0 / (k - 1.0) + 1e-12), -1.0, out)
    return np.where(np.isfinite(out), np.maximum(out, -1.0), np.where(np.isnan(r), np.nan, -1.0))


#: relative tolerance under which two means tie in :func:`spearman_rows` (means of identical
#: scores summed in another order differ in the last bits; they must still tie)
TIE_RTOL = 1e-12


def _avg_ranks_rows(x: np.ndarray, rtol: float = TIE_RTOL) -> np.ndarray:
    """Average ranks (1 = smallest, ties share their mean rank) of every row of ``x (R, M)``
    over its finite entries, values within ``rtol`` (relative) tying; NaN where ``x`` is not
    finite."""
    fin = np.isfinite(x)
    a, b = x[:, :, None], x[:, None, :]
    with np.errstate(invalid="ignore"):
        tol = rtol * np.maximum(np.abs(a), np.abs(b))
        tie = np.abs(b - a) <= tol
        less = ((b < a) & ~tie & fin[:, None, :]).sum(2)
        same = (tie & fin[:, None, :]).sum(2)
    return np.where(fin, 1.0 + less + (same - 1) / 2.0, np.nan)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of every row pair of ``a, b (R, M)`` over the columns finite in both
    (average ranks, values within :data:`TIE_RTOL` tying; NaN when fewer than 2 such columns or
    a row is constant there).

    >>> float(spearman_rows(np.array([[1., 2, 3, np.nan]]), np.array([[3., 2, 1, 0]]))[0])
    -1.0
    """
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape != b.shape:
        raise ShapeError(f"expected two (R, M) arrays of one shape, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    ra, rb = _avg_ranks_rows(np.where(ok, a, np.nan)), _avg_ranks_rows(np.where(ok, b, np.nan))
    n = ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ca = np.where(ok, ra - np.nansum(ra, 1, keepdims=True) / n[:, None], 0.0)
        cb = np.where(ok, rb - np.nansum(rb, 1, keepdims=True) / n[:, None], 0.0)
        den = np.sqrt((ca * ca).sum(1) * (cb * cb).sum(1))
        return np.where((n >= 2) & (den > 0), (ca * cb).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def _unit_sums(v: np.ndarray, units: Sequence[Any] | None,
               what: str = "unit ids (one per row)") -> tuple[np.ndarray, np.ndarray]:
    """``(sums, counts)`` ``(G, M)`` of the finite values of ``v (N, M)`` per unit; units are the
    sorted distinct ids of ``units`` (compared as strings), rows in their order when ``None``
    (``what`` names the ids in the error of a length mismatch)."""
    n = v.shape[0]
    if units is None:
        codes = np.arange(n)
    else:
        if len(units) != n:
            raise ShapeError(f"expected {n} {what}, got {len(units)}")
        _, codes = np.unique(np.asarray([str(u) for u in units]), return_inverse=True)
        codes = codes.reshape(-1)
    g = int(codes.max()) + 1 if n else 0
    fin = np.isfinite(v)
    sums, cnts = np.zeros((g, v.shape[1])), np.zeros((g, v.shape[1]))
    np.add.at(sums, codes, np.where(fin, v, 0.0))
    np.add.at(cnts, codes, fin.astype(np.float64))
    return sums, cnts


def split_half_reliability(values: Any, units: Sequence[Any] | None = None, *, n_splits: int = 200,
                           level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Split-half reliability of the ranking of methods by their mean score (the permutation
    split-half estimate of Parsons, Kruijt & Fox, AMPPS 2019, applied to a ranking of means).

    Definition: the ``G`` resampling units (images, or subjects: a unit brings all its images)
    are split at random (``numpy.random.default_rng(seed)``, one permutation per split) into
    halves of ``floor(G / 2)`` and ``G - floor(G / 2)`` units; each half ranks the methods by
    their mean over its images (NaN dropped per method; a method without a finite value in a
    half is left out of that split); ``rho_s`` is Spearman's rank correlation (average ranks)
    between the two halves' means, stepped up to the full ``n`` by Spearman-Brown,
    ``r_s = 2 rho_s / (1 + rho_s)`` (clipped below at -1). The **reliability** is the mean of
    ``r_s`` over the ``n_splits`` splits (splits whose ``rho`` is undefined, e.g. a constant
    half, are left out). The score direction does not matter (both halves flip alike).

    **Interval**: the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of ``r_s`` over the
    splits (Parsons et al.'s split distribution): how much the estimate depends on which units
    fall into which half. It is not a bootstrap interval over new samples of images (a
    bootstrap resample repeats units, which lowers a split-half estimate: its percentiles
    would sit below the estimate).

    Args:
        values: ``(N, M)`` scores of ``M`` methods on ``N`` images (NaN: missing).
        units: ``N`` resampling-unit ids (image ids, or subjects); the splits are drawn over the
            sorted distinct ids, so the result does not depend on the row order. ``None``: the
            rows are the units, in their order.
        n_splits, level, seed: as above.

    Returns:
        ``{"reliability", "ci_low", "ci_high", "rho_halves" (mean rho_s before the step-up),
        "n_units", "n_methods", "n_splits", "n_valid_splits", "level"}``; NaN values when fewer
        than 2 units or 2 methods with scores.

    >>> v = np.add.outer(np.zeros(10), np.arange(5.0))   # a fixed method effect, no noise
    >>> split_half_reliability(v)["reliability"]
    1.0
    """
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 1:
        raise ConfigError(f"expected n_splits as a positive int, got {n_splits!r}")
    if not 0 < level < 1:
        raise ConfigError(f"expected 0 < level < 1, got {level}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ShapeError(f"expected scores of shape (N, M), got {tuple(v.shape)}")
    sums, cnts = _unit_sums(v, units)
    g = sums.shape[0]
    out: dict[str, Any] = {"reliability": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                           "rho_halves": math.nan, "n_units": int(g), "n_methods": int((cnts.sum(0) > 0).sum()),
                           "n_splits": n_splits, "n_valid_splits": 0, "level": level}
    if g < 2 or out["n_methods"] < 2:
        return out
    rng = np.random.default_rng(seed)
    halves = np.zeros((n_splits, g), dtype=bool)
    for s in range(n_splits):
        halves[s, rng.permutation(g)[: g // 2]] = True
    with np.errstate(invalid="ignore", divide="ignore"):
        a, b = halves.astype(np.float64), (~halves).astype(np.float64)
        rho = spearman_rows((a @ sums) / (a @ cnts), (b @ sums) / (b @ cnts))
    rho = rho[np.isfinite(rho)]
    if not len(rho):
        return out
    r = spearman_brown(rho)
    q = (1 - level) / 2 * 100
    lo, hi = np.percentile(r, [q, 100 - q])
    out.update(reliability=float(np.mean(r)), rho_halves=float(np.mean(rho)), ci_low=float(lo),
               ci_high=float(hi), n_valid_splits=int(len(rho)))
    return out


def rank_min_rows(oriented: np.ndarray) -> np.ndarray:
    """Row-wise "min" ranks of ``oriented (B, M)`` (1 = largest, ties share the best rank;
    NaN: no rank, not counted for the others).

    >>> rank_min_rows(np.array([[0.3, np.nan, 0.9, 0.9]])).tolist()
    [[3.0, nan, 1.0, 1.0]]
    """
    x = np.atleast_2d(np.asarray(oriented, np.float64))
    fin = np.isfinite(x)
    key = np.where(fin, x, -np.inf)
    ranks = 1.0 + (key[:, None, :] > key[:, :, None]).sum(2)
    return np.where(fin, ranks, np.nan)


def rank_stability(boot_oriented: Any, observed: Any, *, level: float = 0.95) -> dict[str, list[Any]]:
    """How stable each method's rank is over bootstrap resamples.

    Args:
        boot_oriented: ``(B, M)`` resampled method means, oriented so that larger is better.
        observed: ``(M,)`` the observed ranks ("min" ranks of the full-sample means; NaN: none).
        level: the rank interval's coverage.

    Returns:
        ``{"interval": [[lo, hi] or None per method], "p_same": [share or None]}``: the rank's
        percentile interval (observed ranks, ``inverted_cdf``) over the draws in which the method
        has a rank, and the share of all draws in which its rank equals the observed one.

    >>> r = rank_stability(np.array([[2., 1.], [2., 1.], [1., 2.]]), [1, 2])
    >>> r["p_same"]
    [0.6666666666666666, 0.6666666666666666]
    """
    b = np.atleast_2d(np.asarray(boot_oriented, np.float64))
    obs = np.asarray(observed, np.float64).reshape(-1)
    if b.shape[1] != len(obs):
        raise ShapeError(f"expected {len(obs)} methods in the draws, got {b.shape}")
    ranks = rank_min_rows(b)
    a = (1 - level) / 2 * 100
    iv: list[Any] = []
    same: list[Any] = []
    for j in range(len(obs)):
        col = ranks[:, j][np.isfinite(ranks[:, j])]
        ok = len(col) and math.isfinite(obs[j])
        iv.append([int(q) for q in np.percentile(col, [a, 100 - a], method="inverted_cdf")] if ok else None)
        same.append(float(np.mean(ranks[:, j] == obs[j])) if ok else None)
    return {"interval": iv, "p_same": same}
