"""Aggregation of per-sample scores: means, bootstrap CIs, ranks, paired rank bands, minimal
detectable differences, aliases, families, the oracle reference, metric agreement, validity and
control flags.

Conventions (all stated in ``results.json`` under ``aggregation``):

* A sample's score is first averaged over run seeds; NaN scores are dropped (and counted).
* **Bootstrap CI**: percentile interval (2.5 %, 97.5 %) of the mean over ``n_boot`` resamples
  drawn by ``numpy.random.default_rng(seed)``: ``idx = rng.integers(0, G, size=(n_boot, G))``
  over the ``G`` resampling units. The units are images, or **subjects** (cluster bootstrap:
  a drawn subject brings all its images) when the ``subject`` column is filled and some subject
  has more than one image. The same draws are used for every method of an evaluator (paired);
  the kernel is :func:`gmxai_eval.functional.paired.bootstrap_means`.
* **Oracle**: a method whose card is the ``oracle`` (name ``"oracle"``, or a control with
  ``needs_masks``) is a *reference row*: it is ranked against the other methods (its rank is
  ``1 +`` the number of non-oracle methods with a strictly better mean) but the ranks, bands,
  family and overall ranks of the other methods ignore it, it is not a control for the control
  flags, and it gets no overall rank (``rankings.reference`` holds its mean ranks).
* **Rank**: 1 = best by the mean, with the evaluator card's ``higher_is_better``; ties share
  the smallest rank ("min" ranking). A method without a finite mean (every sample NaN) gets
  **no rank** (``None`` in ``results.json``, "no rank" in the tables), never the last one, and
  is not counted in the other methods' ranks. NaN is dropped the same way for the mean, the CI
  (a resample's mean over its finite values) and the rank; ``n_nan`` counts the dropped samples.
* **Paired test** (default band rule ``"paired"``): every pair of methods is compared on the
  per-sample differences with the paired bootstrap of
  :func:`gmxai_eval.functional.paired.paired_bootstrap_test` (Wald test on the bootstrap
  standard error, same draws and units as the CIs); p-values are Holm-adjusted over the pairs
  of non-oracle methods of one evaluator (the oracle's pairs form their own Holm family).
* **Rank band**, rule ``"paired"``: ``1 +`` the number of methods significantly better
  (Holm-adjusted ``p < alpha``). Rule ``"ci_overlap"`` (the rule of 0.1): ``1 +`` the number of
  methods whose interval lies entirely on the better side of this method's interval. A method
  without a finite mean gets no band (``None``). ``aggregation.band_rule`` records the rule.
* **Minimal detectable difference** (``statistics.<ev>.mdd``): the median over pairs of
  non-oracle methods of ``(z_{1-alpha/2} + z_{power}) sd_d / sqrt(n)`` (paired differences per
  unit, alpha 0.05, power 0.8; see :mod:`gmxai_eval.functional.paired`); ``mdd_relative`` divides
  it by the spread (max - min) of the non-oracle methods' means.
* **Aliases**: an evaluator whose seed-averaged per-sample scores equal an earlier evaluator's
  (same samples, methods and direction; ``numpy.allclose(rtol=1e-6, atol=1e-9)``, NaN equal to
  NaN) computes the same quantity under the run's settings: it keeps its own row but is counted
  once (``rankings.aliases`` maps the first evaluator to its aliases).
* **Family / overall rank**: a method's family mean rank is the mean of its per-evaluator ranks
  over the family's (card ``category``) evaluators, aliases counted once; the overall mean rank
  is the mean of the family mean ranks (every family weighs the same); both then ranked ("min").
  Evaluators (families) on which a method has no rank are left out of its mean (``n`` of ``of``
  counted in the record); a method without any rank in a family (overall) gets no rank there.
* **Agreement**: Kendall tau-b between two evaluators' direction-oriented method means
  (non-oracle methods).
* **Control flag**: an evaluator is flagged when a control method (card ``control=True``, not
  the oracle) has a strictly better mean than a real method.
* **Oracle flag**: an evaluator is flagged when a non-oracle method has a strictly better mean
  than the evidence oracle (an oracle without a score on the evaluator has no rank in
  ``oracle_flags`` and raises no flag); ``truth_flag`` is the same for the counterfactual truth
  (``counterfactual_oracle``, card ``reference = "counterfactual"``), whose rank the validity
  table shows as "ranks truth first".
* **Validity**: see :mod:`gmxai_eval.report.validity`.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from gmxai_eval.functional.stats import kendall_tau_b  # noqa: F401  (the one definition; re-exported)
from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.functional.paired import (bootstrap_means, difference_sd, holm,
                                          minimal_detectable_difference, paired_bootstrap_test,
                                          paired_rank_bands)

__all__ = ["bootstrap_means", "rank_min", "rank_bands", "kendall_tau_b", "summarise", "is_oracle", "is_truth",
           "ranking_conventions", "find_aliases", "BAND_RULES"]

BandRule = Literal["paired", "ci_overlap"]
BAND_RULES = ("paired", "ci_overlap")
ALIAS_RTOL, ALIAS_ATOL = 1e-6, 1e-9


def rank_min(oriented: Sequence[float]) -> np.ndarray:
    """Ranks (1 = largest) of ``oriented`` ``(M,)`` values with "min" tie handling.

    A non-finite value (NaN: no score) gets **no rank**: NaN in the ``(M,)`` float output, and it
    is not counted in the ranks of the others (``[0.3, nan, 0.9]`` -> ``[2, nan, 1]``).
    """
    a = np.asarray(oriented, dtype=np.float64).reshape(-1)
    fin = np.isfinite(a)
    return np.array([1.0 + float(np.sum(a[fin] > x)) if ok else np.nan for x, ok in zip(a, fin)])


def rank_bands(lo: Sequence[float], hi: Sequence[float], higher_is_better: bool) -> np.ndarray:
    """Band of each method ``(M,)``: 1 + number of methods whose CI is entirely better than its CI;
    NaN (no band) for a method whose CI is not finite (no score)."""
    lo_, hi_ = np.asarray(lo, float), np.asarray(hi, float)
    out = []
    for i in range(len(lo_)):
        if not (np.isfinite(lo_[i]) and np.isfinite(hi_[i])):
            out.append(np.nan)
            continue
        better = lo_ > hi_[i] if higher_is_better else hi_ < lo_[i]  # NaN compares False
        out.append(1.0 + float(np.sum(better)))
    return np.array(out, dtype=np.float64)


def _i(x: Any) -> int | None:
    """A rank or band as an int, ``None`` for no rank (NaN)."""
    return None if x is None or not math.isfinite(float(x)) else int(x)




def _f(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def is_oracle(label: str, card: Mapping[str, Any]) -> bool:
    """Whether a method is a ground-truth reference (a reference row, not a ranked method): the
    ``oracle``, a card with a non-empty ``reference`` (e.g. ``counterfactual_oracle``), or a
    control with ``needs_masks``."""
    name = card.get("name", label)
    return name == "oracle" or bool(card.get("reference")) or \
        bool(card.get("control", False) and card.get("needs_masks", False))


#: ``MethodCard.reference`` of the interventional truth (the ``counterfactual_oracle``).
TRUTH_REFERENCE = "counterfactual"


def is_truth(label: str, card: Mapping[str, Any]) -> bool:
    """Whether a method is the counterfactual truth (card ``reference == "counterfactual"``):
    the validity table says per evaluator whether it ranks this method first."""
    return str(card.get("reference", "")) == TRUTH_REFERENCE


#: keys of an evaluator's ``conventions`` that change its ranking, as
#: ``{shown name: (keys tried in order)}`` (see :func:`ranking_conventions`).
RANKING_CONVENTION_KEYS: dict[str, tuple[str, ...]] = {
    "relevance": ("relevance", "abs", "signed"),
    "substrate": ("baseline", "substrate", "imputation"),
    "unit": ("unit",),
    "output": ("output",),
    "images": ("images",),  # an evaluator that scores only the run's first k images
}


def ranking_conventions(conventions: Mapping[str, Any] | None) -> dict[str, str]:
    """The ranking-relevant conventions of one evaluator (signed/absolute relevance, substrate,
    pixel/patch unit, model output), as short strings; keys absent from ``conventions`` are
    left out.

    ``abs`` (bool) becomes ``"absolute"``/``"signed"``; a ``"patch"`` unit gets its
    ``patch_size`` (``"patch 8"``).
    """
    conv = dict(conventions or {})
    out: dict[str, str] = {}
    for shown, keys in RANKING_CONVENTION_KEYS.items():
        for k in keys:
            if k not in conv or conv[k] is None:
                continue
            v = conv[k]
            if k == "abs":
                v = "absolute" if bool(v) else "signed"
            elif k == "signed":
                v = "signed" if bool(v) else "absolute"
            elif k == "unit" and str(v) == "patch" and conv.get("patch_size") is not None:
                v = f"patch {conv['patch_size']}"
            out[shown] = str(v)
            break
    return out


def find_aliases(per: Mapping[str, pd.DataFrame], higher_is_better: Mapping[str, bool], *,
                 rtol: float = ALIAS_RTOL, atol: float = ALIAS_ATOL) -> dict[str, str]:
    """``{alias: canonical}`` for evaluators whose per-sample tables equal an earlier one's.

    Args:
        per: ``{evaluator: (samples x methods) DataFrame}`` in spec order.
        higher_is_better: score direction per evaluator (aliases share it).
        rtol, atol: ``numpy.allclose`` tolerances (NaN equals NaN).
    """
    canon: list[str] = []
    alias: dict[str, str] = {}
    for ev, tab in per.items():
        for c in canon:
            ref = per[c]
            if (bool(higher_is_better[c]) != bool(higher_is_better[ev]) or ref.shape != tab.shape
                    or list(ref.index) != list(tab.index) or list(ref.columns) != list(tab.columns)):
                continue
            a, b = ref.to_numpy(np.float64), tab.to_numpy(np.float64)
            if np.array_equal(np.isfinite(a), np.isfinite(b)) and np.allclose(a, b, rtol=rtol, atol=atol,
                                                                                equal_nan=True):
                alias[ev] = c
                break
        else:
            canon.append(ev)
    return alias


def _subset_test(test: Mapping[str, np.ndarray], keep: Sequence[int]) -> dict[str, np.ndarray]:
    """The pairs of ``test`` whose two methods are in ``keep``, re-indexed to ``keep``'s order."""
    pos = {k: n for n, k in enumerate(keep)}
    sel = [q for q, (a, b) in enumerate(zip(test["i"], test["j"])) if a in pos and b in pos]
    return {"i": np.array([pos[test["i"][q]] for q in sel], dtype=int),
            "j": np.array([pos[test["j"][q]] for q in sel], dtype=int),
            **{k: np.asarray(test[k])[sel] for k in ("diff", "se", "p")}}


def summarise(table: pd.DataFrame, evaluator_cards: Mapping[str, Mapping[str, Any]],
              method_cards: Mapping[str, Mapping[str, Any]], *, n_boot: int = 2000, seed: int = 0,
              curve_labels: Mapping[str, Sequence[str]] | None = None,
              band_rule: BandRule = "paired", alpha: float = 0.05, power: float = 0.8,
              conventions: Mapping[str, Mapping[str, Any]] | None = None,
              reliability_threshold: float | None = None,
              truth: Sequence[str] | None = None) -> dict[str, Any]:
    """Aggregate a per-sample table (see :mod:`gmxai_eval.runner.store`).

    Args:
        table: rows ``evaluator, method, seed, sample_id, subject, score[, curve, curve_x]``.
        evaluator_cards: ``{evaluator label: card dict}`` with ``higher_is_better`` and ``category``.
        method_cards: ``{method label: card dict}`` with ``control`` (and ``name`` for the oracle).
        n_boot, seed: bootstrap resamples and seed.
        curve_labels: optional ``{evaluator: tick labels}`` for curve figures.
        band_rule: ``"paired"`` (Holm-corrected paired tests) or ``"ci_overlap"`` (0.1's rule).
        alpha, power: level of the paired tests and the power of the minimal detectable difference.
        conventions: optional ``{evaluator: conventions dict}`` (the evaluators' results'
            ``conventions``); their ranking-relevant part goes to ``ranking_conventions``.
        reliability_threshold: Krippendorff's α below which the validity table marks an evaluator
            unreliable (default :data:`gmxai_eval.report.validity.ALPHA_THRESHOLD`).
        truth: the truth evaluators of the validity table (default: category ``"counterfactual"``).

    Returns:
        a JSON-able dict with ``aggregates`` (one record per evaluator x method),
        ``rankings`` (``by_evaluator``, ``by_family``, ``overall``, ``families``, ``aliases``,
        ``reference``), ``agreement``, ``control_flags``, ``oracle_flags``, ``statistics``,
        ``validity``, ``ranking_conventions``, ``curves`` and ``aggregation`` (the conventions).
    """
    from gmxai_eval.report.validity import ALPHA_THRESHOLD, validity_table

    for col in ("evaluator", "method", "sample_id", "score"):
        if col not in table.columns:
            raise DataError(f"expected a column {col!r} in the per-sample table, got {list(table.columns)}")
    if band_rule not in BAND_RULES:
        raise ConfigError(f"expected band_rule one of {list(BAND_RULES)}, got {band_rule!r}")
    present_e, present_m = set(table["evaluator"].unique()), set(table["method"].unique())
    evaluators = [e for e in evaluator_cards if e in present_e]
    methods = [m for m in method_cards if m in present_m]
    oracles = [m for m in methods if is_oracle(m, method_cards[m])]
    truths = [m for m in oracles if is_truth(m, method_cards[m])]
    ranked = [m for m in methods if m not in oracles]  # real methods and controls
    r_idx = [methods.index(m) for m in ranked]
    records: list[dict[str, Any]] = []
    by_ev: dict[str, dict[str, int]] = {}
    oriented_means: dict[str, dict[str, float]] = {}
    clusters_used: dict[str, str] = {}
    per_tables: dict[str, pd.DataFrame] = {}
    subjects: dict[str, dict[str, str]] = {}
    statistics: dict[str, dict[str, Any]] = {}
    oracle_ranks: dict[str, dict[str, int]] = {}
    boots_ranked: dict[str, np.ndarray] = {}
    for ev in evaluators:
        card = evaluator_cards[ev]
        hib = bool(card.get("higher_is_better", True))
        sub = table[table["evaluator"] == ev]
        per = sub.groupby(["sample_id", "method"], sort=True)["score"].mean().unstack("method")
        per = per.reindex(columns=methods)
        per_tables[ev] = per
        ids = list(per.index)
        clusters = None
        if "subject" in sub.columns:
            subj = sub.drop_duplicates("sample_id").set_index("sample_id")["subject"].astype(str)
            subj = subj.reindex(ids).fillna("")
            if (subj != "").all() and subj.nunique() < len(subj):
                clusters = list(subj)
                subjects[ev] = dict(zip(ids, clusters))
        clusters_used[ev] = "subject" if clusters is not None else "image"
        vals = per.to_numpy(dtype=np.float64)
        boots = bootstrap_means(vals, clusters, n_boot=n_boot, seed=seed)
        boots_ranked[ev] = boots[:, r_idx]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN on purpose
            means = np.array([np.nanmean(vals[:, j]) if np.isfinite(vals[:, j]).any() else np.nan
                              for j in range(len(methods))])
            lo = np.nanpercentile(boots, 2.5, axis=0) if len(boots) else means
            hi = np.nanpercentile(boots, 97.5, axis=0) if len(boots) else means
        sign = 1.0 if hib else -1.0
        om = sign * means
        ranks = np.full(len(methods), np.nan)  # NaN: no rank (no finite mean)
        ranks[r_idx] = rank_min(om[r_idx])
        key = om[r_idx][np.isfinite(om[r_idx])]
        for o in oracles:
            k = methods.index(o)
            ranks[k] = 1 + int(np.sum(key > om[k])) if np.isfinite(om[k]) else np.nan

        # paired tests: Holm over the non-oracle pairs, and separately over the oracle's pairs
        test = paired_bootstrap_test(vals, clusters, n_boot=n_boot, seed=seed)
        in_r = np.isin(test["i"], r_idx) & np.isin(test["j"], r_idx)
        adj = np.full(len(test["p"]), np.nan)
        adj[in_r] = holm(test["p"][in_r])
        adj[~in_r] = holm(test["p"][~in_r])
        bands = np.full(len(methods), np.nan)  # NaN: no band (no finite mean)
        if band_rule == "paired":
            sub_t = _subset_test(test, r_idx)
            bands[r_idx] = paired_rank_bands(om[r_idx], sub_t, alpha, adjusted=adj[in_r])
        else:
            bands[r_idx] = rank_bands(lo[r_idx], hi[r_idx], hib)
            bands[r_idx] = np.where(np.isfinite(means[r_idx]), bands[r_idx], np.nan)
        for o in oracles:
            k = methods.index(o)
            if not np.isfinite(om[k]):
                continue
            if band_rule == "paired":
                sig = [(a if b == k else b) for q, (a, b) in enumerate(zip(test["i"], test["j"]))
                       if k in (a, b) and (a if b == k else b) in r_idx and np.isfinite(adj[q])
                       and adj[q] < alpha and om[a if b == k else b] > om[k]]
                bands[k] = 1 + len(sig)
            else:
                better = (lo[r_idx] > hi[k]) if hib else (hi[r_idx] < lo[k])
                bands[k] = 1 + int(np.sum(better))

        # minimal detectable difference over the non-oracle pairs
        sd, n_units = difference_sd(vals, clusters)
        mdd = minimal_detectable_difference(sd, n_units, alpha=alpha, power=power)
        mdd_r = mdd[in_r]
        spread = (float(np.nanmax(means[r_idx]) - np.nanmin(means[r_idx]))
                  if np.isfinite(means[r_idx]).any() else math.nan)
        med = float(np.nanmedian(mdd_r)) if np.isfinite(mdd_r).any() else math.nan
        statistics[ev] = {
            "mdd": _f(med), "mdd_relative": _f(med / spread) if spread and math.isfinite(spread) else None,
            "spread": _f(spread), "n_units": int(np.nanmax(n_units)) if len(n_units) else 0,
            "resampling_unit": clusters_used[ev],
            "pairs_separated": int(np.sum(in_r & (adj < alpha))), "n_pairs": int(np.sum(in_r)),
            "pairs": {"a": [methods[q] for q in test["i"]], "b": [methods[q] for q in test["j"]],
                      "diff": [_f(v) for v in test["diff"]], "se": [_f(v) for v in test["se"]],
                      "sd": [_f(v) for v in sd], "n_units": [int(v) for v in n_units],
                      "p": [_f(v) for v in test["p"]], "p_holm": [_f(v) for v in adj]},
        }
        by_ev[ev] = {m: _i(r) for m, r in zip(methods, ranks)}
        oriented_means[ev] = dict(zip(methods, om))
        # an oracle without a score on this evaluator has no rank to show
        oracle_ranks[ev] = {o: int(ranks[methods.index(o)]) for o in oracles if np.isfinite(om[methods.index(o)])}
        for j, m in enumerate(methods):
            col = vals[:, j]
            records.append({
                "evaluator": ev, "method": m, "mean": _f(means[j]), "ci_low": _f(lo[j]),
                "ci_high": _f(hi[j]), "std": _f(np.nanstd(col)) if np.isfinite(col).any() else None,
                "n": int(np.isfinite(col).sum()), "n_nan": int((~np.isfinite(col)).sum()),
                "rank": _i(ranks[j]), "band": _i(bands[j]), "higher_is_better": hib,
                "category": card.get("category", ""),
                "control": bool(method_cards[m].get("control", False)),
                "reference": m in oracles,
                "resampling_unit": clusters_used[ev],
            })

    # aliases, families and overall (every family weighs the same; the oracle is a reference)
    alias_of = find_aliases(per_tables, {e: bool(evaluator_cards[e].get("higher_is_better", True))
                                         for e in evaluators})
    aliases: dict[str, list[str]] = {}
    for a, c in alias_of.items():
        aliases.setdefault(c, []).append(a)
    counted = [e for e in evaluators if e not in alias_of]
    families: dict[str, list[str]] = {}
    for ev in evaluators:
        families.setdefault(str(evaluator_cards[ev].get("category", "")), []).append(ev)
    counted_fam = {f: [e for e in evs if e in counted] for f, evs in families.items()}
    counted_fam = {f: evs for f, evs in counted_fam.items() if evs}

    def mean_of(vals: Sequence[float | int | None]) -> tuple[float | None, int]:
        got = [float(v) for v in vals if v is not None]  # no rank: left out of the mean
        return (float(np.mean(got)) if got else None), len(got)

    def fam_means(ms: Sequence[str]) -> dict[str, dict[str, tuple[float | None, int, int]]]:
        return {f: {m: (*mean_of([by_ev[e][m] for e in evs]), len(evs)) for m in ms}
                for f, evs in counted_fam.items()}

    def ranked_of(mr: Mapping[str, tuple[float | None, int, int]]) -> dict[str, dict[str, Any]]:
        r = rank_min([-mr[m][0] if mr[m][0] is not None else np.nan for m in ranked])
        return {m: {"mean_rank": mr[m][0], "rank": _i(k), "n": mr[m][1], "of": mr[m][2]}
                for m, k in zip(ranked, r)}

    fm = fam_means(ranked)
    by_family = {f: ranked_of(fm[f]) for f in counted_fam}
    overall = ranked_of({m: (*mean_of([fm[f][m][0] for f in counted_fam]), len(counted_fam))
                         for m in ranked}) if counted_fam else {}
    fo = fam_means(oracles)
    reference = {o: {"by_family": {f: fo[f][o][0] for f in counted_fam if fo[f][o][0] is not None},
                     "mean_rank": mean_of([fo[f][o][0] for f in counted_fam])[0]}
                 for o in oracles}

    # agreement over the non-oracle methods
    tau = [[kendall_tau_b([oriented_means[a][m] for m in ranked], [oriented_means[b][m] for m in ranked])
            if a != b else 1.0 for b in evaluators] for a in evaluators]

    # control flags (the oracle is not a control) and oracle flags
    controls = [m for m in ranked if method_cards[m].get("control", False)]
    real = [m for m in ranked if m not in controls]
    flags, oracle_flags = {}, {}
    for ev in evaluators:
        om = oriented_means[ev]
        beats = {c: [m for m in real if np.isfinite(om[c]) and np.isfinite(om[m]) and om[c] > om[m]]
                 for c in controls}
        beats = {c: v for c, v in beats.items() if v}
        flags[ev] = {"flag": bool(beats), "beats": beats}
        if oracles:
            beaten = {o: [m for m in ranked if np.isfinite(om[m]) and np.isfinite(om[o]) and om[m] > om[o]]
                      for o in oracles}
            oracle_flags[ev] = {"flag": any(v for o, v in beaten.items() if o not in truths),
                                "rank": oracle_ranks[ev], "n_methods": len(ranked) + 1,
                                "beaten_by": {o: v for o, v in beaten.items() if v},
                                "truth_flag": any(v for o, v in beaten.items() if o in truths)}

    validity = validity_table({e: per_tables[e][ranked] for e in evaluators}, subjects, evaluator_cards,
                              ranked, oracle_ranks, n_boot=n_boot, seed=seed,
                              threshold=ALPHA_THRESHOLD if reliability_threshold is None else reliability_threshold,
                              truth=truth, boots=boots_ranked, truth_methods=truths)

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
                    "min": [_f(v) for v in np.nanmin(arr, 0)], "max": [_f(v) for v in np.nanmax(arr, 0)],
                    "labels": list((curve_labels or {}).get(ev, []))}

    band_text = {"paired": f"1 + #methods significantly better in a paired bootstrap test (Wald on the "
                           f"bootstrap SE of the mean per-sample difference), Holm-adjusted p < {alpha:g} "
                           f"over the non-oracle pairs of the evaluator",
                 "ci_overlap": "1 + #methods with a strictly better, non-overlapping CI"}[band_rule]
    return {
        "aggregates": records,
        "rankings": {"by_evaluator": by_ev, "by_family": by_family, "overall": overall,
                     "families": families, "counted": counted, "aliases": aliases,
                     "alias_of": alias_of, "reference": reference},
        "agreement": {"evaluators": evaluators, "kendall_tau": [[_f(v) for v in row] for row in tau]},
        "control_flags": flags,
        "oracle_flags": oracle_flags,
        "statistics": statistics,
        "validity": validity,
        "ranking_conventions": {e: ranking_conventions((conventions or {}).get(e)) for e in evaluators}
        if conventions is not None else {},
        "curves": curves,
        "aggregation": {"n_boot": n_boot, "seed": seed, "ci": "percentile 95%",
                        "resampling_unit": clusters_used, "rank": "min (oracle: 1 + #non-oracle methods "
                        "strictly better); no finite mean: no rank (null), NaN dropped alike for the mean, "
                        "the CI and the rank", "band_rule": band_rule, "band": band_text,
                        "alpha": alpha, "power": power, "multiple_comparisons": "holm",
                        "mdd": "median over non-oracle pairs of (z_{1-alpha/2} + z_power) * sd(paired "
                               "differences per unit) / sqrt(units), normal approximation",
                        "aliases": f"identical per-sample scores (numpy.allclose rtol={ALIAS_RTOL:g}, "
                                   f"atol={ALIAS_ATOL:g}), counted once",
                        "overall": "mean over families (equal weight) of the family mean of per-evaluator "
                                   "ranks; aliases counted once; oracle excluded (reference row)",
                        "oracle": oracles},
    }
