"""Paired statistics over per-sample score tables: the (cluster) bootstrap, paired method tests,
Holm's correction, rank bands from paired tests, minimal detectable differences and sample size.

Every kernel is pure (NumPy in, NumPy or float out, no hidden state). A score table is
``values`` ``(N, M)``: ``M`` methods scored on the same ``N`` samples (NaN = missing), so
methods are compared **paired**, sample by sample.

Conventions (one place; :mod:`gmxai_eval.report.aggregate` records them in ``results.json``):

* **Resampling unit.** ``clusters`` ``(N,)`` gives each sample's unit (a subject); ``None``
  resamples images. A drawn unit brings all its samples (cluster bootstrap).
* **Bootstrap.** ``idx = numpy.random.default_rng(seed).integers(0, G, size=(n_boot, G))`` over
  the ``G`` units; a resample's mean of a column is (sum of its finite values over the drawn
  units) / (their count). Every column uses the same draws (paired).
* **Paired test** (:func:`paired_bootstrap_test`): for methods ``i < j`` the per-sample
  difference ``d = v[:, i] - v[:, j]`` (NaN where either is missing) is bootstrapped with the
  draws above; the two-sided p-value is the Wald test on the bootstrap standard error,
  ``p = 2 (1 - Phi(|mean(d)| / se*))`` with ``se*`` the standard deviation (ddof 1) of the
  resampled means of ``d`` (``p = 1`` when ``mean(d) = 0``, ``p = 0`` when ``se* = 0`` and
  ``mean(d) != 0``). A percentile p-value cannot go below ``1 / (n_boot + 1)``, which Holm's
  first step over ``M (M - 1) / 2`` pairs would never pass (190 pairs at alpha 0.05 need
  ``p < 2.6e-4``); the bootstrap standard error has no such floor.
* **Holm** (:func:`holm`): step-down adjusted p-values ``p_(k) = max_{j <= k} min(1,
  (m - j + 1) p_(j))`` over the ``m`` finite p-values, in the input order (NaN stays NaN).
* **Paired rank band** (:func:`paired_rank_bands`): ``1 +`` the number of methods that are
  significantly better (Holm-adjusted ``p < alpha`` and a better mean difference).
* **Minimal detectable difference** (:func:`minimal_detectable_difference`): the true mean
  paired difference a two-sided test at level ``alpha`` detects with probability ``power``,
  normal approximation: ``MDD = (z_{1 - alpha/2} + z_{power}) * sd_d / sqrt(n)``, where
  ``sd_d`` is the standard deviation (ddof 1) of the per-unit differences and ``n`` the number
  of units (subjects when clustered: the differences are first averaged within a subject). At
  ``alpha = 0.05`` and ``power = 0.8`` the factor is ``1.960 + 0.842 = 2.802``. The normal
  approximation understates the MDD of a t-test by ~5 % at ``n = 16`` and ~1 % at ``n = 48``.
* **Required n** (:func:`required_n`): the smallest ``n`` whose MDD is at most ``delta``:
  ``ceil(((z_{1 - alpha/2} + z_{power}) sd_d / delta)^2)``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

from gmxai_eval.errors import ConfigError, ShapeError

_Z = NormalDist()


def _table(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ShapeError(f"expected scores of shape (N, M), got {tuple(v.shape)}")
    return v


def unit_codes(n: int, clusters: Sequence[Any] | None) -> np.ndarray:
    """``(N,)`` integer unit of every sample: ``arange(N)`` for images, else the index of its
    cluster among the sorted distinct cluster ids (compared as strings)."""
    if clusters is None:
        return np.arange(n)
    if len(clusters) != n:
        raise ShapeError(f"expected {n} cluster ids (one per sample), got {len(clusters)}")
    _, codes = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    return codes.reshape(-1)


def bootstrap_means(values: Sequence[np.ndarray] | np.ndarray, clusters: Sequence[Any] | None = None,
                    n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of the mean, paired over columns.

    Args:
        values: ``(N, M)`` scores of ``M`` methods on ``N`` samples (NaN = missing).
        clusters: ``N`` cluster ids (subjects) or ``None`` for an image-level bootstrap.
        n_boot: resamples.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(n_boot, M)`` resampled means (NaN-aware: a resample without any finite value is NaN).
    """
    from gmxai_eval.functional.stats import bootstrap_means as _one_bootstrap  # the one definition

    if int(n_boot) < 1:
        raise ConfigError(f"expected n_boot >= 1, got {n_boot}")
    return _one_bootstrap(_table(values), clusters, n_boot=int(n_boot), seed=seed)


def pair_index(m: int) -> tuple[np.ndarray, np.ndarray]:
    """``(i, j)`` of every pair ``i < j`` of ``m`` methods, row-major (``numpy.triu_indices``)."""
    i, j = np.triu_indices(int(m), 1)
    return i, j


def paired_differences(values: Any) -> np.ndarray:
    """``(N, P)`` per-sample differences ``v[:, i] - v[:, j]`` for the pairs of :func:`pair_index`
    (NaN where either score is missing)."""
    v = _table(values)
    i, j = pair_index(v.shape[1])
    return v[:, i] - v[:, j]


def _nanmean_cols(v: np.ndarray) -> np.ndarray:
    fin = np.isfinite(v)
    cnt = fin.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.where(fin, v, 0.0).sum(0) / np.maximum(cnt, 1), np.nan)


def paired_bootstrap_test(values: Any, clusters: Sequence[Any] | None = None, n_boot: int = 2000,
                          seed: int = 0) -> dict[str, np.ndarray]:
    """Paired bootstrap test of every method pair (see the module docstring).

    Args:
        values: ``(N, M)`` scores (NaN = missing).
        clusters: ``N`` subject ids, or ``None`` to resample images.
        n_boot, seed: bootstrap resamples and seed (the draws of :func:`bootstrap_means`).

    Returns:
        ``{"i", "j"}`` ``(P,)`` method indices of the pairs ``i < j``; ``"diff"`` ``(P,)`` mean
        paired difference (``mean_i - mean_j`` over samples where both are finite); ``"se"``
        ``(P,)`` bootstrap standard error of it; ``"p"`` ``(P,)`` two-sided p-values (NaN when a
        pair has no common sample).
    """
    v = _table(values)
    i, j = pair_index(v.shape[1])
    d = v[:, i] - v[:, j]
    diff = _nanmean_cols(d)
    if d.shape[1] == 0 or d.shape[0] == 0:
        empty = np.full(d.shape[1], np.nan)
        return {"i": i, "j": j, "diff": diff, "se": empty, "p": empty.copy()}
    boots = bootstrap_means(d, clusters, n_boot=n_boot, seed=seed)
    ok = np.isfinite(boots)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = ok.sum(0)
        mu = np.where(ok, boots, 0.0).sum(0) / np.maximum(k, 1)
        var = np.where(ok, (boots - mu) ** 2, 0.0).sum(0) / np.maximum(k - 1, 1)
    se = np.where(k > 1, np.sqrt(var), np.where(k == 1, 0.0, np.nan))
    # a difference within float noise of zero is zero (identical columns summed in another order)
    scale = np.max(np.where(np.isfinite(v), np.abs(v), 0.0), axis=0, initial=0.0)
    noise = 1e-12 * np.maximum(1.0, np.maximum(np.nan_to_num(scale[i]), np.nan_to_num(scale[j])))
    se = np.where(se <= noise, 0.0, se)
    absd = np.where(np.abs(diff) <= noise, 0.0, np.abs(diff))
    p = np.full(len(diff), np.nan)
    for q in range(len(diff)):
        if not (np.isfinite(diff[q]) and np.isfinite(se[q])):
            continue
        if absd[q] == 0.0:
            p[q] = 1.0
        elif se[q] == 0.0:
            p[q] = 0.0
        else:
            p[q] = 2.0 * (1.0 - _Z.cdf(absd[q] / se[q]))
    return {"i": i, "j": j, "diff": diff, "se": se, "p": p}


def holm(pvalues: Any) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order.

    Args:
        pvalues: ``(m,)`` p-values; NaN entries are not counted in ``m`` and stay NaN.

    Returns:
        ``(m,)`` adjusted p-values ``max_{j <= k} min(1, (m - j + 1) p_(j))`` (sorted order ``k``).
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    fin = np.flatnonzero(np.isfinite(p))
    if len(fin) == 0:
        return out
    if np.any((p[fin] < 0) | (p[fin] > 1)):
        raise ConfigError(f"expected p-values in [0, 1], got min {p[fin].min()} and max {p[fin].max()}")
    m = len(fin)
    order = fin[np.argsort(p[fin], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def paired_rank_bands(oriented_means: Any, test: dict[str, np.ndarray], alpha: float = 0.05,
                      adjusted: np.ndarray | None = None) -> np.ndarray:
    """Band of every method: ``1 +`` the number of methods significantly better than it.

    Args:
        oriented_means: ``(M,)`` means with larger = better (NaN = no score: no band, NaN).
        test: :func:`paired_bootstrap_test` output on the same ``M`` columns.
        alpha: level of the Holm-adjusted p-values.
        adjusted: ``(P,)`` adjusted p-values (default ``holm(test["p"])``).

    Returns:
        ``(M,)`` bands (whole numbers as float; NaN where the method has no score).
    """
    om = np.asarray(oriented_means, dtype=np.float64).reshape(-1)
    m = len(om)
    adj = holm(test["p"]) if adjusted is None else np.asarray(adjusted, dtype=np.float64)
    better = np.zeros((m, m), dtype=bool)  # better[a, b]: a is significantly better than b
    for q, (a, b) in enumerate(zip(test["i"], test["j"])):
        if not (np.isfinite(adj[q]) and adj[q] < alpha and np.isfinite(om[a]) and np.isfinite(om[b])):
            continue
        if om[a] > om[b]:
            better[a, b] = True
        elif om[b] > om[a]:
            better[b, a] = True
    bands = 1 + better.sum(0)
    return np.where(np.isfinite(om), bands.astype(np.float64), np.nan)


def _z_sum(alpha: float, power: float) -> float:
    if not 0 < float(alpha) < 1:
        raise ConfigError(f"expected 0 < alpha < 1, got {alpha}")
    if not 0 < float(power) < 1:
        raise ConfigError(f"expected 0 < power < 1, got {power}")
    return _Z.inv_cdf(1 - float(alpha) / 2) + _Z.inv_cdf(float(power))


def unit_differences(values: Any, clusters: Sequence[Any] | None = None) -> np.ndarray:
    """``(G, P)`` paired differences per resampling unit: per-sample differences
    (:func:`paired_differences`), averaged within a cluster when ``clusters`` is given
    (NaN-aware; NaN for a unit without a common sample)."""
    d = paired_differences(values)
    if clusters is None:
        return d
    codes = unit_codes(d.shape[0], clusters)
    g = int(codes.max()) + 1 if len(codes) else 0
    fin = np.isfinite(d)
    sums = np.zeros((g, d.shape[1]))
    cnts = np.zeros((g, d.shape[1]))
    np.add.at(sums, codes, np.where(fin, d, 0.0))
    np.add.at(cnts, codes, fin.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnts > 0, sums / np.maximum(cnts, 1), np.nan)


def difference_sd(values: Any, clusters: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(sd, n)`` ``(P,)`` each: standard deviation (ddof 1) of the per-unit paired differences of
    every pair and the number of units where it is defined (NaN sd when ``n < 2``)."""
    u = unit_differences(values, clusters)
    fin = np.isfinite(u)
    n = fin.sum(0)
    mu = _nanmean_cols(u)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(fin, (u - mu) ** 2, 0.0).sum(0) / (n - 1)
    sd = np.sqrt(var)
    # a constant difference computed in floating point is exactly constant
    scale = np.max(np.where(fin, np.abs(u), 0.0), axis=0, initial=0.0)
    sd = np.where(sd <= 1e-12 * np.maximum(1.0, scale), 0.0, sd)
    return np.where(n >= 2, sd, np.nan), n


def minimal_detectable_difference(sd: Any, n: Any, alpha: float = 0.05, power: float = 0.8) -> np.ndarray:
    """``(z_{1 - alpha/2} + z_{power}) * sd / sqrt(n)`` elementwise (NaN where ``n < 2``).

    Args:
        sd: standard deviation(s) of the paired differences per unit.
        n: number(s) of units.
        alpha: two-sided level.
        power: probability of detecting a true difference of this size.
    """
    k = _z_sum(alpha, power)
    s, nn = np.asarray(sd, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(nn >= 2, k * s / np.sqrt(nn), np.nan)


def required_n(sd: Any, delta: Any, alpha: float = 0.05, power: float = 0.8) -> np.ndarray:
    """Units needed so that a true paired difference ``delta`` is detected with ``power``:
    ``ceil(((z_{1 - alpha/2} + z_{power}) sd / |delta|)^2)``, at least 2; ``inf`` for
    ``delta = 0``, NaN for an undefined ``sd``. Float array (``inf`` is not an int)."""
    k = _z_sum(alpha, power)
    s, d = np.asarray(sd, dtype=np.float64), np.abs(np.asarray(delta, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = (k * s / d) ** 2
        out = np.where(d > 0, np.maximum(2.0, np.ceil(raw - 1e-9)), np.inf)
    return np.where(np.isfinite(s) & np.isfinite(d), out, np.nan)


def power_at(delta: float, sd: float, n: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired z-test at level ``alpha`` for a true difference ``delta``
    (normal approximation, the inverse of :func:`minimal_detectable_difference`)."""
    if not (sd > 0 and n >= 1):
        return math.nan
    z = _Z.inv_cdf(1 - alpha / 2)
    shift = abs(delta) * math.sqrt(n) / sd
    return (1 - _Z.cdf(z - shift)) + _Z.cdf(-z - shift)
