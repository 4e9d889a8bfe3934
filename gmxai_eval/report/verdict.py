"""The verdict of a run: which methods are faithful, by what evidence (``results.json`` →
``verdict``; computed by :func:`gmxai_eval.report.aggregate.summarise` from the aggregated
numbers, rendered by :mod:`gmxai_eval.report.summary`).

Definitions:

* **The truth ranking** (where the run has a truth evaluator, card category
  ``"counterfactual"``): the ranked (non-oracle) methods by the *primary* truth evaluator (the
  first in spec order, as in the validity table), each with its mean, 95 % CI, rank band, and
  rank interval (2.5-97.5 percentiles of its rank over the CI's bootstrap draws); with the
  truth ranking's own split-half reliability.
* **An evaluator agrees with the truth** when (a) the lower end of its corrected τ interval
  against the primary truth is above 0 (``validity.evaluators.<ev>.tau.<primary>
  .corrected_ci_low > 0``; it is above 0 exactly when the raw τ interval is, the correction
  being a positive factor, and it needs both reliabilities to be positive), and (b) where the
  run has the truth as a method (``counterfactual_oracle``), that method is in the evaluator's
  top band (band 1: no ranked method is significantly better than the truth's own map). Truth
  evaluators, aliases of a counted evaluator and evaluators without a τ are not candidates.
* **Who votes**: only evaluators of the faithfulness categories (:data:`FAITHFULNESS_CATEGORIES`:
  perturbation and retraining, the ones that measure the model's response to the map) can vote.
  An evaluator of another family (localisation, complexity, robustness, gaze, randomisation)
  whose ranking happens to agree with the truth is listed under ``also_agree`` and never
  averaged into faithfulness: agreeing with the truth on one model does not make sparseness a
  measure of faithfulness.
* **The faithfulness rank**: each method's mean over the agreeing faithfulness evaluators of its
  per-evaluator rank (aliases counted once, no rank left out), ranked "min". Where none agrees,
  there is no faithfulness rank and the truth ranking is the verdict. Where the run has
  no truth, it is the same mean over the *faithfulness-category* evaluators
  (:data:`FAITHFULNESS_CATEGORIES`) whose ranking reliability passes its threshold, and
  ``basis`` says so. Where no evaluator qualifies, there is no faithfulness rank.
* **Known order, without a truth**: where the run also holds degraded copies of methods (the
  known-order test, :mod:`gmxai_eval.report.known_order`), the no-truth basis keeps only the
  evaluators whose known-order tau interval lies above 0 (:func:`with_known_order`): an
  evaluator that cannot tell a map from its randomised copies does not vote.
* **Properties**: every other evaluator family (localisation, complexity, robustness, gaze,
  randomisation, ...) keeps its own family rank (``rankings.by_family``); none is averaged into
  the faithfulness rank.
* **Controls**: the evaluators whose control flag fires (a control in the top band or above
  the median real method), with the controls named.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from gmxai_eval.report.ranks import mean_rank_table

#: evaluator categories that measure faithfulness to the model (the no-truth fallback's evidence)
FAITHFULNESS_CATEGORIES = ("perturbation", "retraining")
#: the category of the truth evaluators (as :data:`gmxai_eval.report.validity.TRUTH_CATEGORY`)
TRUTH_CATEGORY = "counterfactual"
#: the keys of a ranking-reliability record the verdict repeats
RELIABILITY_KEYS = ("reliability", "ci_low", "ci_high", "n_units", "unit", "n_images", "unreliable", "threshold")


def _agreement(ev: str, val: Mapping[str, Any], primary: str, truth_band: int | None,
               has_truth_method: bool) -> dict[str, Any]:
    """One candidate evaluator's agreement record (see the module docstring)."""
    t = ((val.get("tau") or {}).get(primary)) or {}
    low = t.get("corrected_ci_low")
    above = low is not None and low > 0
    top = (truth_band == 1) if has_truth_method else None
    agrees = bool(above and (top is not False))
    why = []
    if not above:
        why.append("corrected tau interval not above 0" if t.get("tau_corrected") is not None
                   else "no corrected tau (a reliability is not positive)")
    if top is False:
        why.append(f"the truth is in band {truth_band}" if truth_band is not None else "the truth has no band")
    return {"evaluator": ev, "tau": t.get("tau"), "ci_low": t.get("ci_low"), "ci_high": t.get("ci_high"),
            "tau_corrected": t.get("tau_corrected"), "corrected_ci_low": low,
            "corrected_ci_high": t.get("corrected_ci_high"), "n": t.get("n"), "truth_band": truth_band,
            "agrees": agrees, "why_not": "; ".join(why)}


def verdict(records: Sequence[Mapping[str, Any]], rankings: Mapping[str, Any], validity: Mapping[str, Any],
            reliability: Mapping[str, Mapping[str, Any]], control_flags: Mapping[str, Mapping[str, Any]],
            ranked: Sequence[str], controls: Sequence[str], truth_methods: Sequence[str]) -> dict[str, Any]:
    """The ``verdict`` section (see the module docstring)."""
    cat = {r["evaluator"]: r["category"] for r in records}
    rec = {(r["evaluator"], r["method"]): r for r in records}
    counted = list(rankings.get("counted") or [])
    primary = validity.get("primary")
    truth_evs = list(validity.get("truth") or [])
    out: dict[str, Any] = {"has_truth": primary is not None, "truth_evaluator": primary,
                           "truth_evaluators": truth_evs, "truth_methods": list(truth_methods)}
    if primary is not None:
        rows = [rec[(primary, m)] for m in ranked if (primary, m) in rec]
        rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, r["method"]))
        rel = reliability.get(primary) or {}
        out["truth"] = {"reliability": {k: rel.get(k) for k in RELIABILITY_KEYS},
                        "methods": [{k: r.get(k) for k in ("method", "mean", "ci_low", "ci_high", "rank", "band",
                                                           "rank_ci_low", "rank_ci_high", "control")}
                                    for r in rows]}
        cands = [e for e in counted if e not in truth_evs and cat.get(e) != TRUTH_CATEGORY]
        val = validity.get("evaluators") or {}
        agreement = []
        for e in cands:
            bands = [rec[(e, t)].get("band") for t in truth_methods if (e, t) in rec]
            band = max(bands) if bands and all(b is not None for b in bands) else None
            a = _agreement(e, val.get(e) or {}, primary, band, bool(truth_methods))
            agreement.append({**a, "category": cat.get(e), "votes": cat.get(e) in FAITHFULNESS_CATEGORIES})
        out["agreement"] = agreement
        basis = [a["evaluator"] for a in agreement if a["agrees"] and a["votes"]]
        out["also_agree"] = [a["evaluator"] for a in agreement if a["agrees"] and not a["votes"]]
        out["basis"] = "faithfulness-category evaluators (" + ", ".join(FAITHFULNESS_CATEGORIES) + ") that agree with the truth"
    else:
        basis = [e for e in counted if cat.get(e) in FAITHFULNESS_CATEGORIES
                 and not (reliability.get(e) or {}).get("unreliable", True)]
        out["basis"] = ("faithfulness-category evaluators (" + ", ".join(FAITHFULNESS_CATEGORIES)
                        + ") whose ranking reliability passes (no truth in this run)")
    out["faithfulness_evaluators"] = basis
    by_ev = rankings.get("by_evaluator") or {}
    out["faithfulness"] = mean_rank_table(by_ev, basis, list(ranked)) if basis else {}
    out["properties"] = {f: evs for f, evs in (rankings.get("families") or {}).items()
                         if f not in FAITHFULNESS_CATEGORIES and f != TRUTH_CATEGORY
                         and f in (rankings.get("by_family") or {})}
    out["controls"] = {e: sorted((f.get("controls") or {})) for e, f in control_flags.items() if f.get("flag")}
    out["control_names"] = list(controls)
    out["definition"] = (
        "agrees with the truth: the corrected tau interval against the primary truth evaluator is above 0 and, "
        "where the run has the truth as a method, that method is in the evaluator's top band (band 1); "
        "only faithfulness-category evaluators (" + ", ".join(FAITHFULNESS_CATEGORIES) + ") vote; "
        "faithfulness rank: mean of the per-evaluator ranks over the agreeing ones (aliases once), ranked "
        "'min'; without a truth: over the faithfulness-category evaluators whose ranking reliability passes; "
        "other families are separate properties, never averaged into it")
    return out


def with_known_order(out: dict[str, Any], known_order: Mapping[str, Any] | None,
                     rankings: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict of a run without a truth, its basis narrowed to the evaluators that recover the
    known order (known-order tau CI above 0); unchanged where the run has a truth or no
    known-order section."""
    if out.get("has_truth") or not known_order or not known_order.get("evaluators"):
        return out
    ko = known_order["evaluators"]
    basis = [e for e in out.get("faithfulness_evaluators", [])
             if (ko.get(e) or {}).get("ci_low") is not None and ko[e]["ci_low"] > 0]
    ranked = list((rankings.get("overall") or {}))
    return {**out, "faithfulness_evaluators": basis,
            "faithfulness": mean_rank_table(rankings.get("by_evaluator") or {}, basis, ranked) if basis else {},
            "basis": ("faithfulness-category evaluators (" + ", ".join(FAITHFULNESS_CATEGORIES)
                      + ") whose ranking reliability passes and whose known-order tau interval lies above 0 "
                      "(no truth in this run)"),
            "known_order_excluded": sorted(set(out.get("faithfulness_evaluators", [])) - set(basis))}
