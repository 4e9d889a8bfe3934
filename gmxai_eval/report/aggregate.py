"""Aggregation of per-sample scores: means, bootstrap CIs, ranks, rank bands, families,
metric agreement and control flags.

Conventions (all stated in ``results.json``):

* A sample's score is first averaged over run seeds; NaN scores are dropped (and counted).
* **Bootstrap CI**: percentile interval (2.5 %, 97.5 %) of the mean over ``n_boot`` resamples
  drawn by ``numpy.random.default_rng(seed)``: ``idx = rng.integers(0, G, size=(n_boot, G))``
  over the ``G`` resampling units. The units are images, or **subjects** (cluster bootstrap:
  a drawn subject brings all its images) when the ``subject`` column is filled and some subject
  has more than one image. The same draws are used for every method of an evaluator (paired).
* **Rank**: 1 = best by the mean, with the evaluator card's ``higher_is_better``; ties share
  the smallest rank ("min" ranking); a method without a finite mean is ranked last.
* **Rank band**: ``1 +`` the number of methods whose interval lies entirely on the better side
  of this method's interval (a method without a finite mean gets the last band). Methods with overlapping intervals share a band unless a third
  method separates them from only one of the two.
* **Family / overall rank**: the mean of a method's per-evaluator ranks over the evaluators of
  a family (card ``category``) or over all evaluators, then ranked ("min").
* **Agreement**: Kendall tau-b between two evaluators' direction-oriented method means.
* **Control flag**: an evaluator is flagged when a control method (card ``control=True``)
  has a strictly better mean than a real method.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from gmxai_eval.errors import DataError


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
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    n = v.shape[0]
    if clusters is None:
        codes = np.arange(n)
    else:
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


def rank_min(oriented: Sequence[float]) -> np.ndarray:
    """Ranks (1 = largest) of ``oriented`` values with "min" tie handling; NaN ranks last."""
    a = np.asarray(oriented, dtype=np.float64)
    key = np.where(np.isfinite(a), a, -np.inf)
    return np.array([1 + int(np.sum(key > k)) if np.isfinite(x) else len(a) for k, x in zip(key, a)])


def rank_bands(lo: Sequence[float], hi: Sequence[float], higher_is_better: bool) -> np.ndarray:
    """Band of each method: 1 + number of methods whose CI is entirely better than its CI."""
    lo_, hi_ = np.asarray(lo, float), np.asarray(hi, float)
    out = []
    for i in range(len(lo_)):
        if higher_is_better:
            better = lo_ > hi_[i]
        else:
            better = hi_ < lo_[i]
        out.append(1 + int(np.sum(better)))
    return np.array(out)


def kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long vectors (NaN pairs dropped; NaN if undefined)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 2:
        return math.nan
    iu = np.triu_indices(n, 1)
    dx = np.sign(x[:, None] - x[None, :])[iu]
    dy = np.sign(y[:, None] - y[None, :])[iu]
    n0 = len(dx)
    tx, ty = np.sum(dx == 0), np.sum(dy == 0)
    denom = math.sqrt((n0 - tx) * (n0 - ty))
    return float(np.sum(dx * dy) / denom) if denom > 0 else math.nan


def _f(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def summarise(table: pd.DataFrame, evaluator_cards: Mapping[str, Mapping[str, Any]],
              method_cards: Mapping[str, Mapping[str, Any]], *, n_boot: int = 2000, seed: int = 0,
              curve_labels: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Aggregate a per-sample table (see :mod:`gmxai_eval.runner.store`).

    Args:
        table: rows ``evaluator, method, seed, sample_id, subject, score[, curve, curve_x]``.
        evaluator_cards: ``{evaluator label: card dict}`` with ``higher_is_better`` and ``category``.
        method_cards: ``{method label: card dict}`` with ``control``.
        n_boot, seed: bootstrap resamples and seed.
        curve_labels: optional ``{evaluator: tick labels}`` for curve figures.

    Returns:
        a JSON-able dict with ``aggregates`` (one record per evaluator x method),
        ``rankings`` (``by_evaluator``, ``by_family``, ``overall``), ``agreement``,
        ``control_flags``, ``curves`` and ``aggregation`` (the conventions above).
    """
    for col in ("evaluator", "method", "sample_id", "score"):
        if col not in table.columns:
            raise DataError(f"expected a column {col!r} in the per-sample table, got {list(table.columns)}")
    evaluators = [e for e in evaluator_cards if e in set(table["evaluator"])]
    methods = [m for m in method_cards if m in set(table["method"])]
    records: list[dict[str, Any]] = []
    by_ev: dict[str, dict[str, int]] = {}
    oriented_means: dict[str, list[float]] = {}
    clusters_used: dict[str, str] = {}
    for ev in evaluators:
        card = evaluator_cards[ev]
        hib = bool(card.get("higher_is_better", True))
        sub = table[table["evaluator"] == ev]
        has_subject = "subject" in sub.columns
        per = sub.groupby(["sample_id", "method"], sort=True)["score"].mean().unstack("method")
        per = per.reindex(columns=methods)
        ids = list(per.index)
        clusters = None
        if has_subject:
            subj = sub.drop_duplicates("sample_id").set_index("sample_id")["subject"].astype(str)
            subj = subj.reindex(ids).fillna("")
            if (subj != "").all() and subj.nunique() < len(subj):
                clusters = list(subj)
        clusters_used[ev] = "subject" if clusters is not None else "image"
        vals = per.to_numpy(dtype=np.float64)
        boots = bootstrap_means(vals, clusters, n_boot=n_boot, seed=seed)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN on purpose
            means = np.array([np.nanmean(vals[:, j]) if np.isfinite(vals[:, j]).any() else np.nan
                              for j in range(len(methods))])
            lo = np.nanpercentile(boots, 2.5, axis=0) if len(boots) else means
            hi = np.nanpercentile(boots, 97.5, axis=0) if len(boots) else means
        sign = 1.0 if hib else -1.0
        ranks = rank_min(sign * means)
        bands = rank_bands(lo, hi, hib)
        bands = np.where(np.isfinite(means), bands, len(methods))  # no score: last band
        by_ev[ev] = {m: int(r) for m, r in zip(methods, ranks)}
        oriented_means[ev] = list(sign * means)
        for j, m in enumerate(methods):
            col = vals[:, j]
            records.append({
                "evaluator": ev, "method": m, "mean": _f(means[j]), "ci_low": _f(lo[j]),
                "ci_high": _f(hi[j]), "std": _f(np.nanstd(col)) if np.isfinite(col).any() else None,
                "n": int(np.isfinite(col).sum()), "n_nan": int((~np.isfinite(col)).sum()),
                "rank": int(ranks[j]), "band": int(bands[j]), "higher_is_better": hib,
                "category": card.get("category", ""),
                "control": bool(method_cards[m].get("control", False)),
                "resampling_unit": clusters_used[ev],
            })

    # families and overall
    def mean_rank(evs: Sequence[str]) -> dict[str, dict[str, float]]:
        mr = {m: float(np.mean([by_ev[e][m] for e in evs])) for m in methods}
        r = rank_min([-mr[m] for m in methods])
        return {m: {"mean_rank": mr[m], "rank": int(k)} for m, k in zip(methods, r)}

    families: dict[str, list[str]] = {}
    for ev in evaluators:
        families.setdefault(str(evaluator_cards[ev].get("category", "")), []).append(ev)
    by_family = {fam: mean_rank(evs) for fam, evs in families.items()}
    overall = mean_rank(evaluators) if evaluators else {}

    # agreement
    tau = [[kendall_tau_b(oriented_means[a], oriented_means[b]) if a != b else 1.0 for b in evaluators]
           for a in evaluators]

    # control flags
    controls = [m for m in methods if method_cards[m].get("control", False)]
    real = [m for m in methods if m not in controls]
    flags = {}
    for ev in evaluators:
        om = dict(zip(methods, oriented_means[ev]))
        beats = {c: [m for m in real if np.isfinite(om[c]) and np.isfinite(om[m]) and om[c] > om[m]]
                 for c in controls}
        beats = {c: v for c, v in beats.items() if v}
        flags[ev] = {"flag": bool(beats), "beats": beats}

    # mean curves
    curves: dict[str, dict[str, Any]] = {}
    if "curve" in table.columns:
        for (ev, m), g in table[table["curve"].astype(str) != ""].groupby(["evaluator", "method"], sort=False):
            arr = np.array([json.loads(c) for c in g["curve"]], dtype=np.float64)
            if arr.ndim != 2:
                continue
            xs = g["curve_x"].iloc[0] if "curve_x" in g.columns else ""
            x = json.loads(xs) if isinstance(xs, str) and xs else list(range(arr.shape[1]))
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                curves.setdefault(ev, {})[m] = {
                    "x": [float(v) for v in x], "mean": [_f(v) for v in np.nanmean(arr, 0)],
                    "std": [_f(v) for v in np.nanstd(arr, 0)],
                    "labels": list((curve_labels or {}).get(ev, []))}

    return {
        "aggregates": records,
        "rankings": {"by_evaluator": by_ev, "by_family": by_family, "overall": overall,
                     "families": families},
        "agreement": {"evaluators": evaluators, "kendall_tau": [[_f(v) for v in row] for row in tau]},
        "control_flags": flags,
        "curves": curves,
        "aggregation": {"n_boot": n_boot, "seed": seed, "ci": "percentile 95%",
                        "resampling_unit": clusters_used, "rank": "min", "band": "1 + #methods with a "
                        "strictly better, non-overlapping CI", "overall": "mean of per-evaluator ranks"},
    }
