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
  The overall rank is **not** a faithfulness rank: it weighs complexity, robustness, gaze and
  localisation like faithfulness (see :mod:`gmxai_eval.report.verdict` for the verdict).
* **Ranking reliability** (``ranking_reliability.<ev>``, the ``‡`` mark): split-half
  reliability of the evaluator's ranking of the non-oracle methods by their means
  (:func:`gmxai_eval.functional.stats.split_half_reliability`: 200 seeded random halves of the
  resampling units, the CIs' units; Spearman rho between the halves' mean rankings,
  Spearman-Brown step-up per split, mean over splits; interval: percentiles of the split
  values). Its unit is the *ranking of means*, what the leaderboard shows; Krippendorff's alpha
  in the validity table is a *per-image* agreement and does not set the mark. An evaluator is
  ``unreliable`` below :data:`RELIABILITY_THRESHOLD` (0.8, Nunnally & Bernstein 1994's level
  for research comparing groups). **Rank stability** per method (aggregate records):
  ``rank_ci_low`` / ``rank_ci_high``, the 2.5 / 97.5 percentiles of its rank over the CI's
  bootstrap draws, and ``p_same_rank``, the share of draws in which it keeps its rank.
* **Agreement**: Kendall tau-b between two evaluators' direction-oriented method means
  (non-oracle methods).
* **Control flag**: an evaluator is flagged when a control method (card ``control=True``, not
  the oracle) is inside its top band (band 1) or has a strictly better mean than the median
  real method; ``controls`` names it and the condition, ``beats`` lists the real methods it
  beats (information, not the flag).
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
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from gmxai_eval.functional.stats import kendall_tau_b  # noqa: F401  (the one definition; re-exported)
from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.functional.paired import (bootstrap_means, difference_sd, holm,
                                          minimal_detectable_difference, paired_bootstrap_test,
                                          paired_rank_bands)
from gmxai_eval.functional.stats import rank_stability, split_half_reliability
from gmxai_eval.report.ranks import as_rank, mean_of_ranks, mean_rank_table, rank_min

__all__ = ["bootstrap_means", "rank_min", "mean_rank_table", "rank_bands", "kendall_tau_b", "summarise", "is_oracle", "is_truth",
           "ranking_conventions", "find_aliases", "BAND_RULES"]

BandRule = Literal["paired", "ci_overlap"]
#: split-half reliability of a method ranking below which an evaluator is marked unreliable
#: (Nunnally & Bernstein, *Psychometric Theory*, 3rd ed. 1994, p. 265: 0.80 for basic research
#: that compares groups; 0.90 where a decision about individuals rests on the score)
RELIABILITY_THRESHOLD = 0.8
#: seeded random splits of the split-half reliability
RELIABILITY_SPLITS = 200
RELIABILITY_TEXT = ("split-half reliability of the method ranking (non-oracle methods): {n} seeded random "
                    "halves of the resampling units (subject or image, as the CIs), Spearman rho between "
                    "the halves' mean rankings, Spearman-Brown step-up 2 rho / (1 + rho) per split, mean "
                    "over splits; interval: 2.5 and 97.5 percentiles of the stepped-up split values "
                    "(Parsons et al. 2019); unit: the ranking of means (not a per-image agreement); "
                    "unreliable (‡) below {t:g}")
BAND_RULES = ("paired", "ci_overlap")
ALIAS_RTOL, ALIAS_ATOL = 1e-6, 1e-9


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


@dataclass(frozen=True)
class Layout:
    """Who is who in a run: evaluators and methods in spec order and their roles."""
    evaluators: list[str]
    methods: list[str]
    oracles: list[str]       # reference rows (the oracle, the counterfactual truth)
    truths: list[str]        # the reference rows that are the counterfactual truth
    ranked: list[str]        # real methods and controls
    controls: list[str]
    real: list[str]

    @property
    def r_idx(self) -> list[int]:
        return [self.methods.index(m) for m in self.ranked]


@dataclass(frozen=True)
class EvaluatorStats:
    """What :func:`summarise` derives from one evaluator's per-sample table (methods in
    :attr:`Layout.methods` order; NaN: no value)."""
    name: str
    hib: bool
    category: str
    per: pd.DataFrame              # (samples x methods) seed-averaged scores
    clusters: list[str] | None     # the subject of each sample when subjects are the unit
    boots: np.ndarray              # (n_boot, M) bootstrap means
    means: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    ranks: np.ndarray
    bands: np.ndarray
    test: dict[str, np.ndarray]    # paired tests (functional.paired.paired_bootstrap_test)
    adj: np.ndarray                # Holm-adjusted p of the pairs
    in_r: np.ndarray               # pairs of two ranked (non-oracle) methods

    @property
    def om(self) -> np.ndarray:
        """Direction-oriented means (larger is better)."""
        return (1.0 if self.hib else -1.0) * self.means

    @property
    def unit(self) -> str:
        return "subject" if self.clusters is not None else "image"

    @property
    def units(self) -> list[str]:
        """The resampling unit of every sample (its subject, or its own id)."""
        return list(self.clusters) if self.clusters is not None else [str(s) for s in self.per.index]


def _layout(table: pd.DataFrame, evaluator_cards: Mapping[str, Mapping[str, Any]],
            method_cards: Mapping[str, Mapping[str, Any]]) -> Layout:
    present_e, present_m = set(table["evaluator"].unique()), set(table["method"].unique())
    methods = [m for m in method_cards if m in present_m]
    oracles = [m for m in methods if is_oracle(m, method_cards[m])]
    ranked = [m for m in methods if m not in oracles]
    controls = [m for m in ranked if method_cards[m].get("control", False)]
    return Layout([e for e in evaluator_cards if e in present_e], methods, oracles,
                  [m for m in oracles if is_truth(m, method_cards[m])], ranked, controls,
                  [m for m in ranked if m not in controls])


def _per_sample(table: pd.DataFrame, ev: str, methods: Sequence[str]) -> tuple[pd.DataFrame, list[str] | None]:
    """``(samples x methods)`` seed-averaged scores of ``ev`` and the subject of each sample when
    subjects are the resampling unit (filled for every sample, and some subject holds several)."""
    sub = table[table["evaluator"] == ev]
    per = sub.groupby(["sample_id", "method"], sort=True)["score"].mean().unstack("method").reindex(columns=methods)
    if "subject" in sub.columns:
        subj = sub.drop_duplicates("sample_id").set_index("sample_id")["subject"].astype(str)
        subj = subj.reindex(list(per.index)).fillna("")
        if (subj != "").all() and subj.nunique() < len(subj):
            return per, list(subj)
    return per, None


def _bands(lay: Layout, om: np.ndarray, lo: np.ndarray, hi: np.ndarray, test: dict[str, np.ndarray],
           adj: np.ndarray, in_r: np.ndarray, band_rule: str, alpha: float, hib: bool) -> np.ndarray:
    """Rank bands of every method (see the module docstring; NaN: no band)."""
    r_idx = lay.r_idx
    bands = np.full(len(lay.methods), np.nan)
    if band_rule == "paired":
        bands[r_idx] = paired_rank_bands(om[r_idx], _subset_test(test, r_idx), alpha, adjusted=adj[in_r])
    else:
        bands[r_idx] = np.where(np.isfinite(om[r_idx]), rank_bands(lo[r_idx], hi[r_idx], hib), np.nan)
    for o in lay.oracles:
        k = lay.methods.index(o)
        if not np.isfinite(om[k]):
            continue
        if band_rule == "paired":
            sig = [(a if b == k else b) for q, (a, b) in enumerate(zip(test["i"], test["j"]))
                   if k in (a, b) and (a if b == k else b) in r_idx and np.isfinite(adj[q])
                   and adj[q] < alpha and om[a if b == k else b] > om[k]]
            bands[k] = 1 + len(sig)
        else:
            bands[k] = 1 + int(np.sum((lo[r_idx] > hi[k]) if hib else (hi[r_idx] < lo[k])))
    return bands


def _evaluator_stats(table: pd.DataFrame, ev: str, card: Mapping[str, Any], lay: Layout, *, n_boot: int,
                     seed: int, band_rule: str, alpha: float) -> EvaluatorStats:
    """Means, bootstrap CIs, ranks, paired tests and bands of one evaluator."""
    hib = bool(card.get("higher_is_better", True))
    per, clusters = _per_sample(table, ev, lay.methods)
    vals = per.to_numpy(dtype=np.float64)
    boots = bootstrap_means(vals, clusters, n_boot=n_boot, seed=seed)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN on purpose
        means = np.array([np.nanmean(vals[:, j]) if np.isfinite(vals[:, j]).any() else np.nan
                          for j in range(len(lay.methods))])
        lo = np.nanpercentile(boots, 2.5, axis=0) if len(boots) else means
        hi = np.nanpercentile(boots, 97.5, axis=0) if len(boots) else means
    om = (1.0 if hib else -1.0) * means
    r_idx = lay.r_idx
    ranks = np.full(len(lay.methods), np.nan)  # NaN: no rank (no finite mean)
    ranks[r_idx] = rank_min(om[r_idx])
    key = om[r_idx][np.isfinite(om[r_idx])]
    for o in lay.oracles:
        k = lay.methods.index(o)
        ranks[k] = 1 + int(np.sum(key > om[k])) if np.isfinite(om[k]) else np.nan
    # paired tests: Holm over the non-oracle pairs, and separately over the oracle's pairs
    test = paired_bootstrap_test(vals, clusters, n_boot=n_boot, seed=seed)
    in_r = np.isin(test["i"], r_idx) & np.isin(test["j"], r_idx)
    adj = np.full(len(test["p"]), np.nan)
    adj[in_r] = holm(test["p"][in_r])
    adj[~in_r] = holm(test["p"][~in_r])
    bands = _bands(lay, om, lo, hi, test, adj, in_r, band_rule, alpha, hib)
    return EvaluatorStats(ev, hib, str(card.get("category", "")), per, clusters, boots, means, lo, hi,
                          ranks, bands, test, adj, in_r)


def _mdd_statistics(st: EvaluatorStats, lay: Layout, alpha: float, power: float) -> dict[str, Any]:
    """``statistics.<ev>``: minimal detectable difference over the non-oracle pairs and the tests."""
    methods, r_idx, in_r, adj, test = lay.methods, lay.r_idx, st.in_r, st.adj, st.test
    sd, n_units = difference_sd(st.per.to_numpy(dtype=np.float64), st.clusters)
    mdd = minimal_detectable_difference(sd, n_units, alpha=alpha, power=power)
    spread = (float(np.nanmax(st.means[r_idx]) - np.nanmin(st.means[r_idx]))
              if np.isfinite(st.means[r_idx]).any() else math.nan)
    med = float(np.nanmedian(mdd[in_r])) if np.isfinite(mdd[in_r]).any() else math.nan
    return {
        "mdd": _f(med), "mdd_relative": _f(med / spread) if spread and math.isfinite(spread) else None,
        "spread": _f(spread), "n_units": int(np.nanmax(n_units)) if len(n_units) else 0,
        "resampling_unit": st.unit,
        "pairs_separated": int(np.sum(in_r & (adj < alpha))), "n_pairs": int(np.sum(in_r)),
        "pairs": {"a": [methods[q] for q in test["i"]], "b": [methods[q] for q in test["j"]],
                  "diff": [_f(v) for v in test["diff"]], "se": [_f(v) for v in test["se"]],
                  "sd": [_f(v) for v in sd], "n_units": [int(v) for v in n_units],
                  "p": [_f(v) for v in test["p"]], "p_holm": [_f(v) for v in adj]},
    }


def ranking_reliability(st: EvaluatorStats, lay: Layout, *, seed: int = 0, n_splits: int = RELIABILITY_SPLITS,
                        threshold: float = RELIABILITY_THRESHOLD) -> dict[str, Any]:
    """``ranking_reliability.<ev>``: split-half reliability of the evaluator's ranking of the
    ranked (non-oracle) methods (:func:`gmxai_eval.functional.stats.split_half_reliability`,
    units as the CIs) and each method's rank stability over the CI's bootstrap draws
    (:func:`gmxai_eval.functional.stats.rank_stability`)."""
    r_idx = lay.r_idx
    rel = split_half_reliability(st.per.to_numpy(dtype=np.float64)[:, r_idx], st.units, n_splits=n_splits,
                                 seed=seed)
    sign = 1.0 if st.hib else -1.0
    stab = rank_stability(sign * st.boots[:, r_idx], st.ranks[r_idx])
    value = rel["reliability"]
    return {"reliability": _f(value), "ci_low": _f(rel["ci_low"]), "ci_high": _f(rel["ci_high"]),
            "rho_halves": _f(rel["rho_halves"]), "n_units": rel["n_units"], "unit": st.unit,
            "n_images": int(len(st.per)), "n_methods": rel["n_methods"], "n_splits": rel["n_splits"],
            "n_valid_splits": rel["n_valid_splits"], "level": rel["level"], "threshold": float(threshold),
            "unreliable": bool(not math.isfinite(value) or value < threshold),
            "rank_interval": dict(zip(lay.ranked, stab["interval"])),
            "p_same_rank": dict(zip(lay.ranked, stab["p_same"])), "n_boot": int(len(st.boots))}


def _records(st: EvaluatorStats, lay: Layout, method_cards: Mapping[str, Mapping[str, Any]],
             rel: Mapping[str, Any]) -> list[dict[str, Any]]:
    vals = st.per.to_numpy(dtype=np.float64)
    out = []
    for j, m in enumerate(lay.methods):
        col = vals[:, j]
        iv = rel["rank_interval"].get(m)
        out.append({
            "evaluator": st.name, "method": m, "mean": _f(st.means[j]), "ci_low": _f(st.lo[j]),
            "ci_high": _f(st.hi[j]), "std": _f(np.nanstd(col)) if np.isfinite(col).any() else None,
            "n": int(np.isfinite(col).sum()), "n_nan": int((~np.isfinite(col)).sum()),
            "rank": as_rank(st.ranks[j]), "band": as_rank(st.bands[j]), "higher_is_better": st.hib,
            "category": st.category, "control": bool(method_cards[m].get("control", False)),
            "reference": m in lay.oracles, "resampling_unit": st.unit,
            "rank_ci_low": iv[0] if iv else None, "rank_ci_high": iv[1] if iv else None,
            "p_same_rank": rel["p_same_rank"].get(m),
        })
    return out


def _rankings(stats: Mapping[str, EvaluatorStats], lay: Layout) -> dict[str, Any]:
    """``rankings``: per evaluator, family and overall ranks, aliases and the reference rows."""
    by_ev = {ev: {m: as_rank(r) for m, r in zip(lay.methods, st.ranks)} for ev, st in stats.items()}
    alias_of = find_aliases({e: st.per for e, st in stats.items()}, {e: st.hib for e, st in stats.items()})
    aliases: dict[str, list[str]] = {}
    for a, c in alias_of.items():
        aliases.setdefault(c, []).append(a)
    counted = [e for e in lay.evaluators if e not in alias_of]
    families: dict[str, list[str]] = {}
    for ev in lay.evaluators:
        families.setdefault(stats[ev].category, []).append(ev)
    counted_fam = {f: [e for e in evs if e in counted] for f, evs in families.items()}
    counted_fam = {f: evs for f, evs in counted_fam.items() if evs}
    by_family = {f: mean_rank_table(by_ev, evs, lay.ranked) for f, evs in counted_fam.items()}
    fam_ranks = {f: {m: r["mean_rank"] for m, r in t.items()} for f, t in by_family.items()}
    overall = mean_rank_table(fam_ranks, list(counted_fam), lay.ranked) if counted_fam else {}
    fo = {f: {o: mean_of_ranks([by_ev[e][o] for e in evs])[0] for o in lay.oracles} for f, evs in counted_fam.items()}
    reference = {o: {"by_family": {f: fo[f][o] for f in counted_fam if fo[f][o] is not None},
                     "mean_rank": mean_of_ranks([fo[f][o] for f in counted_fam])[0]} for o in lay.oracles}
    return {"by_evaluator": by_ev, "by_family": by_family, "overall": overall, "families": families,
            "counted": counted, "aliases": aliases, "alias_of": alias_of, "reference": reference}


def control_flags(stats: Mapping[str, EvaluatorStats], lay: Layout) -> dict[str, dict[str, Any]]:
    """``control_flags.<ev>``: ``flag`` when a control (card ``control=True``, not the oracle) is
    inside the evaluator's top band (band 1) or has a strictly better mean than the median real
    method; ``controls`` names each control with its rank, band and which condition it meets;
    ``beats`` lists, per control, the real methods with a strictly worse mean (information)."""
    out = {}
    for ev, st in stats.items():
        om = dict(zip(lay.methods, st.om))
        band = dict(zip(lay.methods, st.bands))
        real = [om[m] for m in lay.real if np.isfinite(om[m])]
        med = float(np.median(real)) if real else math.nan
        beats = {c: [m for m in lay.real if np.isfinite(om[c]) and np.isfinite(om[m]) and om[c] > om[m]]
                 for c in lay.controls}
        why = {}
        for c in lay.controls:
            top = bool(np.isfinite(band[c]) and band[c] == 1)
            above = bool(np.isfinite(om[c]) and math.isfinite(med) and om[c] > med)
            if top or above:
                why[c] = {"top_band": top, "above_median": above, "rank": as_rank(st.ranks[lay.methods.index(c)]),
                          "band": as_rank(band[c])}
        out[ev] = {"flag": bool(why), "controls": why, "beats": {c: v for c, v in beats.items() if v}}
    return out


def _oracle_flags(stats: Mapping[str, EvaluatorStats], lay: Layout) -> dict[str, dict[str, Any]]:
    out = {}
    if not lay.oracles:
        return out
    for ev, st in stats.items():
        om = dict(zip(lay.methods, st.om))
        ranks = {o: int(st.ranks[lay.methods.index(o)]) for o in lay.oracles if np.isfinite(om[o])}
        beaten = {o: [m for m in lay.ranked if np.isfinite(om[m]) and np.isfinite(om[o]) and om[m] > om[o]]
                  for o in lay.oracles}
        out[ev] = {"flag": any(v for o, v in beaten.items() if o not in lay.truths),
                   "rank": ranks, "n_methods": len(lay.ranked) + 1,
                   "beaten_by": {o: v for o, v in beaten.items() if v},
                   "truth_flag": any(v for o, v in beaten.items() if o in lay.truths)}
    return out


def _curves(table: pd.DataFrame, curve_labels: Mapping[str, Sequence[str]] | None) -> dict[str, dict[str, Any]]:
    curves: dict[str, dict[str, Any]] = {}
    if "curve" not in table.columns:
        return curves
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
    return curves


def _aggregation(lay: Layout, stats: Mapping[str, EvaluatorStats], *, n_boot: int, seed: int, band_rule: str,
                 alpha: float, power: float, threshold: float) -> dict[str, Any]:
    band_text = {"paired": f"1 + #methods significantly better in a paired bootstrap test (Wald on the "
                           f"bootstrap SE of the mean per-sample difference), Holm-adjusted p < {alpha:g} "
                           f"over the non-oracle pairs of the evaluator",
                 "ci_overlap": "1 + #methods with a strictly better, non-overlapping CI"}[band_rule]
    return {"n_boot": n_boot, "seed": seed, "ci": "percentile 95%",
            "resampling_unit": {e: st.unit for e, st in stats.items()},
            "rank": "min (oracle: 1 + #non-oracle methods strictly better); no finite mean: no rank (null), NaN "
                    "dropped alike for the mean, the CI and the rank", "band_rule": band_rule, "band": band_text,
            "alpha": alpha, "power": power, "multiple_comparisons": "holm",
            "mdd": "median over non-oracle pairs of (z_{1-alpha/2} + z_power) * sd(paired differences per unit) "
                   "/ sqrt(units), normal approximation",
            "aliases": f"identical per-sample scores (numpy.allclose rtol={ALIAS_RTOL:g}, atol={ALIAS_ATOL:g}), "
                       "counted once",
            "overall": "mean over families (equal weight) of the family mean of per-evaluator ranks; aliases "
                       "counted once; oracle excluded (reference row); not a faithfulness rank (see verdict)",
            "ranking_reliability": RELIABILITY_TEXT.format(n=RELIABILITY_SPLITS, t=threshold),
            "rank_stability": "rank_ci_low / rank_ci_high: 2.5 and 97.5 percentiles (inverted_cdf) of the "
                              "method's rank over the CI's bootstrap draws; p_same_rank: share of the draws "
                              "in which it keeps its observed rank",
            "control_flag": "a control is in the evaluator's top band (band 1) or has a strictly better mean "
                            "than the median real method",
            "oracle": lay.oracles}


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
        reliability_threshold: split-half reliability of the method ranking below which an
            evaluator is marked unreliable (default :data:`RELIABILITY_THRESHOLD`).
        truth: the truth evaluators of the validity table (default: category ``"counterfactual"``).

    Returns:
        a JSON-able dict with ``aggregates`` (one record per evaluator x method),
        ``rankings`` (``by_evaluator``, ``by_family``, ``overall``, ``families``, ``aliases``,
        ``reference``), ``agreement``, ``control_flags``, ``oracle_flags``, ``statistics``,
        ``ranking_reliability``, ``validity``, ``verdict``, ``ranking_conventions``, ``curves``
        and ``aggregation`` (the conventions).
    """
    from gmxai_eval.report.validity import validity_table
    from gmxai_eval.report.verdict import verdict

    for col in ("evaluator", "method", "sample_id", "score"):
        if col not in table.columns:
            raise DataError(f"expected a column {col!r} in the per-sample table, got {list(table.columns)}")
    if band_rule not in BAND_RULES:
        raise ConfigError(f"expected band_rule one of {list(BAND_RULES)}, got {band_rule!r}")
    threshold = RELIABILITY_THRESHOLD if reliability_threshold is None else float(reliability_threshold)
    lay = _layout(table, evaluator_cards, method_cards)
    stats = {ev: _evaluator_stats(table, ev, evaluator_cards[ev], lay, n_boot=n_boot, seed=seed,
                                  band_rule=band_rule, alpha=alpha) for ev in lay.evaluators}
    rel = {ev: ranking_reliability(st, lay, seed=seed, threshold=threshold) for ev, st in stats.items()}
    records = [r for ev, st in stats.items() for r in _records(st, lay, method_cards, rel[ev])]
    rankings = _rankings(stats, lay)
    om = {ev: dict(zip(lay.methods, st.om)) for ev, st in stats.items()}
    tau = [[kendall_tau_b([om[a][m] for m in lay.ranked], [om[b][m] for m in lay.ranked]) if a != b else 1.0
            for b in lay.evaluators] for a in lay.evaluators]
    oracle_flags = _oracle_flags(stats, lay)
    validity = validity_table(
        {e: st.per[lay.ranked] for e, st in stats.items()},
        {e: dict(zip(st.per.index, st.clusters)) for e, st in stats.items() if st.clusters is not None},
        evaluator_cards, lay.ranked, {e: f["rank"] for e, f in oracle_flags.items()}, n_boot=n_boot, seed=seed,
        reliability=rel, truth=truth, boots={e: st.boots[:, lay.r_idx] for e, st in stats.items()},
        truth_methods=lay.truths)
    flags = control_flags(stats, lay)
    return {
        "aggregates": records,
        "rankings": rankings,
        "agreement": {"evaluators": lay.evaluators, "kendall_tau": [[_f(v) for v in row] for row in tau]},
        "control_flags": flags,
        "oracle_flags": oracle_flags,
        "statistics": {ev: _mdd_statistics(st, lay, alpha, power) for ev, st in stats.items()},
        "ranking_reliability": rel,
        "validity": validity,
        "verdict": verdict(records, rankings, validity, rel, flags, lay.ranked, lay.controls, lay.truths),
        "ranking_conventions": {e: ranking_conventions((conventions or {}).get(e)) for e in lay.evaluators}
        if conventions is not None else {},
        "curves": _curves(table, curve_labels),
        "aggregation": _aggregation(lay, stats, n_boot=n_boot, seed=seed, band_rule=band_rule, alpha=alpha,
                                    power=power, threshold=threshold),
    }
