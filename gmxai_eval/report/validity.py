"""The metric-validity table: does an evaluator rank methods like the counterfactual truth, and
does it rank them consistently across images?

For every evaluator ``E`` of a run (computed by :func:`gmxai_eval.report.aggregate.summarise`
from the per-sample table, so it can be re-rendered from ``results.json`` alone):

* **τ vs truth**: Kendall tau-b between ``E``'s method ranking (direction-oriented means) and
  the ranking of every *truth* evaluator (card category ``"counterfactual"``: scores against
  the interventional importance of the planted traits), over the non-oracle methods, on the
  samples both scored. **CI**: percentile 95 % interval of tau over ``n_boot`` joint bootstrap
  resamples of those samples (subjects when a subject holds several images; the draws of
  :func:`gmxai_eval.functional.paired.bootstrap_means`, the same for both evaluators).
* **τ corrected for attenuation**: ``τ_c = τ / sqrt(r_E r_T)`` with ``r_E``, ``r_T`` the
  split-half reliabilities of the two method rankings (``ranking_reliability``, unit: the
  ranking of means); its interval corrects the endpoints of τ's bootstrap interval by the same
  factor (Hunter & Schmidt, *Methods of Meta-Analysis*, 2004, ch. 3: the reliabilities are
  treated as known), clipped to [-1, 1]. ``None`` when either reliability is not positive.
  Spearman's correction is derived for Pearson correlations of scores with classical
  measurement error; applying it to Kendall's τ of two rankings with Spearman-Brown
  reliabilities of Spearman's ρ is an approximation: read ``τ_c`` as "what τ might be if both
  rankings replicated perfectly", not as an exact estimate.
* **Ranking reliability** (the ``unreliable`` mark): the evaluator's split-half reliability
  (:func:`gmxai_eval.report.aggregate.ranking_reliability`) below its threshold.
* **Krippendorff's α** (ordinal, a column, unit: the *single image*), after Tomsett et al.,
  "Sanity checks for saliency metrics", AAAI 2020: images are the raters, methods the units,
  and an image's value for a method is the method's rank on that image (average ranks for
  ties, larger oriented score = better; a missing score is a missing rating). α near 1: every
  image ranks the methods alike; near 0: one image's ranking does not predict another's. A
  ranking of means over many images can be reliable with a low α (the per-image noise averages
  out), so α does not set the mark.
* **Oracle rank**: where the ``oracle`` method (the ground-truth mask) ranks (``1 +`` the
  number of non-oracle methods with a strictly better mean).

Marks (shown next to the evaluator in the leaderboard):

* ``disagrees``: the τ CI against the primary truth evaluator (the first one in spec order)
  includes 0 or τ < 0. ``None`` (no mark) when the run has no truth evaluator, and for the
  truth evaluators themselves.
* ``unreliable``: the split-half reliability of the evaluator's ranking below its threshold
  (default 0.8; see :data:`gmxai_eval.report.aggregate.RELIABILITY_THRESHOLD`).
"""

from __future__ import annotations

import html
import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from gmxai_eval.functional.agreement import krippendorff_alpha
from gmxai_eval.functional.paired import bootstrap_means
from gmxai_eval.report.known_order import KNOWN_ORDER_HEADER, known_order_cell
from gmxai_eval.utils import tex_escape

#: card category of the evaluators that define the truth.
TRUTH_CATEGORY = "counterfactual"
#: Krippendorff 2004's lowest α for tentative conclusions (shown for reference; no mark uses it).
ALPHA_THRESHOLD = 0.667


def _pair_signs(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sign(a_i - a_j), finite)`` ``(K, P)`` over the pairs ``i < j`` of the columns of ``a``."""
    i, j = np.triu_indices(a.shape[1], 1)
    ok = np.isfinite(a[:, i]) & np.isfinite(a[:, j])
    with np.errstate(invalid="ignore"):
        return np.where(ok, np.sign(a[:, i] - a[:, j]), 0.0), ok


def _tau_from_signs(sa: tuple[np.ndarray, np.ndarray], sb: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    (dx, okx), (dy, oky) = sa, sb
    ok = okx & oky
    dx, dy = np.where(ok, dx, 0.0), np.where(ok, dy, 0.0)
    n0 = ok.sum(1)
    tx = (ok & (dx == 0)).sum(1)
    ty = (ok & (dy == 0)).sum(1)
    denom = np.sqrt((n0 - tx).astype(float) * (n0 - ty).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (dx * dy).sum(1) / np.where(denom > 0, denom, 1.0), np.nan)


def kendall_tau_b_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall tau-b of every row pair: ``a``, ``b`` ``(K, M)`` -> ``(K,)`` (NaN entries drop
    their method from that row; NaN when a row has fewer than 2 methods or no untied pair)."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    return _tau_from_signs(_pair_signs(a), _pair_signs(b))


def per_image_ranks(oriented: np.ndarray) -> np.ndarray:
    """``(N, M)`` oriented scores -> ``(N, M)`` ranks per row (1 = best, average ranks for ties,
    NaN where the score is missing)."""
    v = np.asarray(oriented, float)
    out = np.full(v.shape, np.nan)
    for r in range(v.shape[0]):
        ok = np.isfinite(v[r])
        x = -v[r, ok]
        order = np.argsort(x, kind="stable")
        ranks = np.empty(len(x))
        xs = x[order]
        k = 0
        while k < len(xs):  # average ranks over runs of ties
            e = k
            while e + 1 < len(xs) and xs[e + 1] == xs[k]:
                e += 1
            ranks[order[k:e + 1]] = (k + e) / 2.0 + 1.0
            k = e + 1
        out[r, ok] = ranks
    return out


def _f(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def corrected_tau(tau: float, lo: float, hi: float, rel_e: Mapping[str, Any] | None,
                  rel_t: Mapping[str, Any] | None) -> dict[str, float | None]:
    """``{"tau_corrected", "corrected_ci_low", "corrected_ci_high"}``: ``tau`` and its interval
    divided by ``sqrt(r_E r_T)`` (both ranking reliabilities), clipped to [-1, 1]; ``None``
    where a reliability is missing or not positive (see the module docstring).

    >>> corrected_tau(0.45, 0.3, 0.6, {"reliability": 0.9}, {"reliability": 0.5})["tau_corrected"]
    0.6708203932499369
    """
    r = [(x or {}).get("reliability") for x in (rel_e, rel_t)]
    none = {"tau_corrected": None, "corrected_ci_low": None, "corrected_ci_high": None}
    if any(v is None or not math.isfinite(float(v)) or float(v) <= 0 for v in r):
        return none
    k = math.sqrt(float(r[0]) * float(r[1]))
    c = [None if v is None or not math.isfinite(float(v)) else max(-1.0, min(1.0, float(v) / k))
         for v in (tau, lo, hi)]
    return {"tau_corrected": c[0], "corrected_ci_low": c[1], "corrected_ci_high": c[2]}


def _tau_against(ev: str, t: str, per: Mapping[str, pd.DataFrame], clusters: Mapping[str, Mapping[str, str]],
                 methods: Sequence[str], sign: Mapping[str, float], boots: Mapping[str, np.ndarray] | None,
                 signs: dict[str, tuple[np.ndarray, np.ndarray]], n_boot: int, seed: int) -> dict[str, Any]:
    """τ of ``ev`` against the truth evaluator ``t`` on their common samples, with its bootstrap
    CI (see :func:`validity_table`); ``_point``, ``_lo``, ``_hi`` are the unrounded values."""
    tab = per[ev].reindex(columns=list(methods))
    common = [s for s in tab.index if s in per[t].index]
    a = sign[ev] * tab.loc[common].to_numpy(dtype=np.float64)
    b = sign[t] * per[t].reindex(columns=list(methods)).loc[common].to_numpy(dtype=np.float64)
    subj = [clusters.get(ev, {}).get(s) or clusters.get(t, {}).get(s) for s in common]
    cl = subj if all(subj) and len(set(subj)) < len(subj) else None
    point = kendall_tau_b_rows(np.nanmean(a, 0, keepdims=True) if len(a) else a[:1],
                               np.nanmean(b, 0, keepdims=True) if len(b) else b[:1]) \
        if len(common) else np.array([math.nan])
    if len(common) >= 2:
        same = (boots is not None and ev in boots and t in boots and list(tab.index) == common
                and list(per[t].index) == common
                and all(clusters.get(ev, {}).get(x) == clusters.get(t, {}).get(x) for x in common))
        if same:
            sa = signs.get(ev) or signs.setdefault(ev, _pair_signs(sign[ev] * boots[ev]))
            sb = signs.get(t) or signs.setdefault(t, _pair_signs(sign[t] * boots[t]))
            bt = _tau_from_signs(sa, sb)
        else:
            joint = bootstrap_means(np.concatenate([a, b], 1), cl, n_boot=n_boot, seed=seed)
            bt = kendall_tau_b_rows(joint[:, : a.shape[1]], joint[:, a.shape[1]:])
        bt = bt[np.isfinite(bt)]
        lo, hi = (np.percentile(bt, [2.5, 97.5]) if len(bt) else (math.nan, math.nan))
    else:
        lo = hi = math.nan
    return {"tau": _f(point[0]), "ci_low": _f(lo), "ci_high": _f(hi), "n": len(common),
            "resampling_unit": "subject" if cl is not None else "image", "_point": point[0], "_lo": lo, "_hi": hi}


def validity_table(per: Mapping[str, pd.DataFrame], clusters: Mapping[str, Mapping[str, str]],
                   evaluator_cards: Mapping[str, Mapping[str, Any]], methods: Sequence[str],
                   oracle_ranks: Mapping[str, Mapping[str, int]] | None = None, *,
                   n_boot: int = 2000, seed: int = 0,
                   reliability: Mapping[str, Mapping[str, Any]] | None = None,
                   truth: Sequence[str] | None = None,
                   boots: Mapping[str, np.ndarray] | None = None,
                   truth_methods: Sequence[str] = ()) -> dict[str, Any]:
    """Validity of every evaluator (see the module docstring).

    Args:
        per: ``{evaluator: (samples x methods) DataFrame}`` of seed-averaged scores.
        clusters: ``{evaluator: {sample id: subject}}`` (empty mapping = images are the units).
        evaluator_cards: card dicts with ``higher_is_better`` and ``category``.
        methods: the methods ranked (non-oracle, in order).
        oracle_ranks: ``{evaluator: {oracle label: rank}}``.
        n_boot, seed: bootstrap of the τ CI.
        reliability: ``{evaluator: ranking_reliability record}`` (``reliability``, ``ci_low``,
            ``ci_high``, ``unreliable``, ``threshold``, ``n_units``, ``unit``); sets the
            ``unreliable`` mark and the corrected τ (without it: no mark, no correction).
        truth: the truth evaluators (default: every evaluator with category ``"counterfactual"``,
            in order; the first is the primary).
        boots: optional ``{evaluator: (n_boot, len(methods))}`` bootstrap means already drawn
            with ``seed`` over the evaluator's own samples and units; reused (the draws are the
            same) when two evaluators share their samples and units, instead of redrawing.
        truth_methods: the reference methods that are the counterfactual truth (labels among
            ``oracle_ranks``' keys, e.g. ``counterfactual_oracle``): ``ranks_truth_first`` says
            whether each evaluator ranks them first.

    Returns:
        ``{"truth", "primary", "threshold", "level", "evaluators": {ev: {"tau": {truth ev:
        {"tau", "ci_low", "ci_high", "n", "resampling_unit", "tau_corrected",
        "corrected_ci_low", "corrected_ci_high"}}, "alpha", "n_images", "reliability",
        "oracle_rank", "truth_rank", "ranks_truth_first", "disagrees", "unreliable",
        "is_truth"}}, "truth_methods", "description"}``; ``ranks_truth_first`` is ``None`` when
        no truth method has a score on the evaluator; ``threshold`` is the ranking-reliability
        threshold.
    """
    evs = list(per)
    if truth is None:
        truth = [e for e in evs if str(evaluator_cards[e].get("category", "")) == TRUTH_CATEGORY]
    truth = [t for t in truth if t in per]
    primary = truth[0] if truth else None
    sign = {e: 1.0 if evaluator_cards[e].get("higher_is_better", True) else -1.0 for e in evs}
    out: dict[str, Any] = {}
    signs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for ev in evs:
        tab = per[ev].reindex(columns=list(methods))
        orient = sign[ev] * tab.to_numpy(dtype=np.float64)
        ranks = per_image_ranks(orient)
        alpha = krippendorff_alpha(ranks, "ordinal") if len(ranks) else math.nan
        taus: dict[str, Any] = {}
        for t in truth:
            taus[t] = _tau_against(ev, t, per, clusters, methods, sign, boots, signs, n_boot, seed)
            taus[t].update(corrected_tau(taus[t].pop("_point"), taus[t].pop("_lo"), taus[t].pop("_hi"),
                                         (reliability or {}).get(ev), (reliability or {}).get(t)))
        disagrees = None
        if primary is not None and ev not in truth:
            tp = taus[primary]
            if tp["tau"] is None:
                disagrees = True
            else:
                lo_, hi_ = tp["ci_low"], tp["ci_high"]
                disagrees = bool(tp["tau"] < 0 or lo_ is None or (lo_ <= 0 <= hi_))
        oranks = dict((oracle_ranks or {}).get(ev, {}))
        truth_rank = {m: int(oranks[m]) for m in truth_methods if m in oranks}
        rel = dict((reliability or {}).get(ev) or {})
        out[ev] = {"tau": taus, "alpha": _f(alpha), "n_images": int(len(tab)),
                   "reliability": {k: rel.get(k) for k in ("reliability", "ci_low", "ci_high", "n_units", "unit")}
                   if rel else None,
                   "oracle_rank": oranks, "truth_rank": truth_rank,
                   "ranks_truth_first": all(r == 1 for r in truth_rank.values()) if truth_rank else None,
                   "disagrees": disagrees,
                   "unreliable": bool(rel.get("unreliable")) if rel else None,
                   "is_truth": ev in truth}
    threshold = next((float(r["threshold"]) for r in (reliability or {}).values() if "threshold" in r), None)
    return {"truth": list(truth), "primary": primary, "threshold": threshold,
            "level": "ordinal", "methods": list(methods), "evaluators": out, "truth_methods": list(truth_methods),
            "description": "tau: Kendall tau-b between the evaluator's and the truth evaluator's method "
                           "rankings (unit: the ranking of means of the non-oracle methods; n: the "
                           "samples both scored), 95% percentile CI over a joint bootstrap of those "
                           "samples; tau_c: tau / sqrt(rel_E * rel_T), corrected for the attenuation by "
                           "both rankings' split-half reliabilities, interval: tau's CI endpoints "
                           "corrected alike (Hunter & Schmidt 2004), clipped to [-1, 1] (an approximation: "
                           "Spearman's correction is derived for Pearson correlations); reliability: "
                           "split-half reliability of the evaluator's ranking of means [2.5-97.5 "
                           "percentiles over 200 splits], n = resampling units; alpha: Krippendorff's "
                           "alpha (ordinal), unit: the single image (images as raters ranking the "
                           "methods, Tomsett et al., AAAI 2020), n = images; it sets no mark; "
                           + (f"disagrees: the tau CI against the primary truth ({primary}) includes 0 or "
                              "tau < 0; " if primary else "no truth evaluator in this run; ")
                           + (f"unreliable: ranking reliability < {threshold:g}" if threshold is not None
                              else "unreliable: not computed")
                           + (f"; ranks truth first: {', '.join(truth_methods)} (each trait's mask weighted by "
                              "its interventional importance) has rank 1 (no method strictly better)."
                              if truth_methods else ".")}


# -- rendering ----------------------------------------------------------------------------------

VALIDITY_COLUMNS = ("evaluator", "category", "truth", "n", "tau", "tau_ci_low", "tau_ci_high", "tau_corrected",
                    "corrected_ci_low", "corrected_ci_high", "reliability", "reliability_low",
                    "reliability_high", "reliability_units", "reliability_unit", "alpha", "alpha_images",
                    "oracle_rank", "ranks_truth_first", "disagrees", "unreliable")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{float(x):.{digits}f}"


def validity_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (evaluator, truth evaluator) with :data:`VALIDITY_COLUMNS` (one row with an
    empty ``truth`` when the run has no truth evaluator)."""
    val = results.get("validity") or {}
    cats = {e: (info.get("card") or {}).get("category", "") for e, info in results.get("evaluators", {}).items()}
    rows = []
    for ev, r in (val.get("evaluators") or {}).items():
        orank = "; ".join(f"{k} {v}" for k, v in (r.get("oracle_rank") or {}).items())
        rel = r.get("reliability") or {}
        base = {"evaluator": ev, "category": cats.get(ev, ""), "alpha": r.get("alpha"),
                "alpha_images": r.get("n_images"), "reliability": rel.get("reliability"),
                "reliability_low": rel.get("ci_low"), "reliability_high": rel.get("ci_high"),
                "reliability_units": rel.get("n_units"), "reliability_unit": rel.get("unit"),
                "oracle_rank": orank, "ranks_truth_first": r.get("ranks_truth_first"),
                "disagrees": r.get("disagrees"), "unreliable": r.get("unreliable")}
        taus = r.get("tau") or {}
        if not taus:
            rows.append({**base, "truth": ""})
        for t, v in taus.items():
            rows.append({**base, "truth": t, "n": v.get("n"), "tau": v.get("tau"), "tau_ci_low": v.get("ci_low"),
                         "tau_ci_high": v.get("ci_high"), "tau_corrected": v.get("tau_corrected"),
                         "corrected_ci_low": v.get("corrected_ci_low"),
                         "corrected_ci_high": v.get("corrected_ci_high")})
    return pd.DataFrame(rows, columns=list(VALIDITY_COLUMNS))


def validity_rows(results: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` of the wide validity table (cells as unescaped strings): per truth
    evaluator the raw τ and the corrected τ_c with their intervals and n, then the ranking
    reliability (unit: ranking of means), α (unit: image), the oracle's rank and the marks."""
    val = results.get("validity") or {}
    truth = list(val.get("truth") or [])
    truth_first = bool(val.get("truth_methods"))
    has_rel = any(r.get("reliability") for r in (val.get("evaluators") or {}).values())
    headers = ["evaluator"]
    for t in truth:
        headers += [f"τ vs {t} [95% CI] (n)"] + ([f"τ_c vs {t} [CI]"] if has_rel else [])
    headers += (["ranking reliability [split 95%] (n units)"] if has_rel else []) + \
        ["α per image (n images)", "oracle rank"] + (["ranks truth first"] if truth_first else []) + ["marks"]
    if val.get("known_order"):  # the known-order column right after the truth columns
        at = 1 + len(truth) * (2 if has_rel else 1)
        headers[at:at] = [KNOWN_ORDER_HEADER]
    rows = []
    for ev, r in (val.get("evaluators") or {}).items():
        row = [ev]
        for t in truth:
            v = (r.get("tau") or {}).get(t, {})
            n = f" ({v['n']})" if v.get("n") is not None else ""
            row.append(f"{_fmt(v.get('tau'), 2)} [{_fmt(v.get('ci_low'), 2)}, {_fmt(v.get('ci_high'), 2)}]{n}")
            if has_rel:
                row.append("n/a" if v.get("tau_corrected") is None else
                           f"{_fmt(v.get('tau_corrected'), 2)} [{_fmt(v.get('corrected_ci_low'), 2)}, "
                           f"{_fmt(v.get('corrected_ci_high'), 2)}]")
        row += [c for c in [known_order_cell(results, ev)] if c is not None]  # known-order column
        if has_rel:
            rel = r.get("reliability") or {}
            row.append(f"{_fmt(rel.get('reliability'), 2)} [{_fmt(rel.get('ci_low'), 2)}, "
                       f"{_fmt(rel.get('ci_high'), 2)}] ({rel.get('n_units', 'n/a')} {rel.get('unit', '')}s)"
                       if rel else "n/a")
        row.append(f"{_fmt(r.get('alpha'), 2)} ({r.get('n_images', 'n/a')})")
        oranks = r.get("oracle_rank") or {}
        row.append(", ".join(f"{k} {v}" if len(oranks) > 1 else str(v) for k, v in oranks.items()) or "n/a")
        if truth_first:
            first = r.get("ranks_truth_first")
            row.append("n/a" if first is None else "yes" if first else
                       "no (rank " + ", ".join(str(v) for v in (r.get("truth_rank") or {}).values()) + ")")
        marks = (["truth"] if r.get("is_truth") else []) + \
            (["disagrees with the truth"] if r.get("disagrees") else []) + \
            (["unreliable"] if r.get("unreliable") else [])
        row.append("; ".join(marks))
        rows.append(row)
    return headers, rows


def validity_markdown(results: Mapping[str, Any]) -> str:
    """The validity table as GitHub Markdown with its legend."""
    from tabulate import tabulate

    headers, rows = validity_rows(results)
    from gmxai_eval.utils import markdown_cell as pipe  # HTML and '|' escaped: labels come from specs
    from gmxai_eval.utils import markdown_text

    val = results.get("validity") or {}
    text = [f"# Metric validity: {pipe(results.get('run_id', ''))}", "",
            tabulate([[pipe(c) for c in r] for r in rows], headers=[pipe(h) for h in headers],
                     tablefmt="github", disable_numparse=True), "",
            markdown_text(val.get("description", ""))]  # names truth methods / evaluators
    if not val.get("truth"):
        text += ["", "No counterfactual (truth) evaluator in this run: τ is not available."]
    extra = [s for s in [evidence_statement(results), *crosscheck_statement(results)] if s]
    text += [line for s in extra for line in ("", markdown_text(s))]
    return "\n".join(text) + "\n"


def validity_latex(results: Mapping[str, Any]) -> str:
    """The validity table as a booktabs ``tabular``."""
    headers, rows = validity_rows(results)
    fix = lambda s: tex_escape(s.replace("τ", "tau").replace("α", "alpha"))  # noqa: E731
    lines = [r"% requires \usepackage{booktabs}", r"\begin{tabular}{l" + "c" * (len(headers) - 1) + "}",
             r"\toprule", " & ".join(fix(h) for h in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(fix(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def validity_csv(results: Mapping[str, Any]) -> str:
    """The long validity table as CSV (floats with 17 significant digits)."""
    import io

    buf = io.StringIO()
    from gmxai_eval.utils import csv_safe_frame

    csv_safe_frame(validity_frame(results)).to_csv(buf, index=False, float_format="%.17g")
    return buf.getvalue()


def validity_html(results: Mapping[str, Any]) -> str:
    """An HTML fragment (``<h2>``, the table, the legend) for ``report.html``; every cell escaped.
    Empty string when ``results`` has no ``validity`` section (an old results.json)."""
    if not results.get("validity"):
        return ""
    headers, rows = validity_rows(results)
    e = lambda s: html.escape(str(s), quote=True)  # noqa: E731
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
    val = results["validity"]
    note = "" if val.get("truth") else "<p>No counterfactual (truth) evaluator in this run: τ is not available.</p>"
    extra = "".join(f"<p>{e(s)}</p>" for s in [evidence_statement(results), *crosscheck_statement(results)] if s)
    return (f'<h2>Metric validity</h2><table class="validity lb"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>{note}<p>{e(val.get('description', ''))}</p>{extra}")


# -- cross-check of the travelling truths against the planted one --------------------------------

#: registry names of the evaluators whose truth needs nothing planted (the in-distribution patch
#: truth and MoRF / LeRF on the fine-tuned surrogate).
TRAVELLING = ("patch_truth", "surrogate_morf", "surrogate_lerf")


def _ci(draws: np.ndarray) -> dict[str, Any]:
    """``{"tau", "ci_low", "ci_high"}`` of ``draws (1 + B,)``: the point value first, then the
    95 % percentile interval of the finite bootstrap values."""
    b = draws[1:][np.isfinite(draws[1:])]
    lo, hi = np.percentile(b, [2.5, 97.5]) if len(b) else (math.nan, math.nan)
    return {"tau": _f(draws[0]), "ci_low": _f(lo), "ci_high": _f(hi)}


def _mean_cube(table: pd.DataFrame, evs: Sequence[str], methods: Sequence[str],
               sign: Mapping[str, float]) -> tuple[np.ndarray, list[str], list[str] | None]:
    """``(N, E, M)`` seed-averaged oriented scores on the samples of the table (first-seen
    order), their ids and their subjects (``None`` unless a subject holds several samples)."""
    sub = table[table["evaluator"].isin(list(evs)) & table["method"].isin(list(methods))]
    ids = list(dict.fromkeys(sub["sample_id"].astype(str)))
    per = sub.assign(sample_id=sub["sample_id"].astype(str)).groupby(
        ["evaluator", "sample_id", "method"], sort=False)["score"].mean()
    cube = np.stack([sign[e] * per.get(e, pd.Series(dtype=float)).unstack("method")
                     .reindex(index=ids, columns=list(methods)).to_numpy(np.float64)
                     if e in per.index.get_level_values(0) else np.full((len(ids), len(methods)), np.nan)
                     for e in evs], 1)
    clusters = None
    if "subject" in sub.columns:
        subj = sub.drop_duplicates("sample_id").assign(sample_id=lambda d: d["sample_id"].astype(str)) \
            .set_index("sample_id")["subject"].astype(str).reindex(ids).fillna("")
        if (subj != "").all() and subj.nunique() < len(subj):
            clusters = list(subj)
    return cube, ids, clusters


def crosscheck_section(table: pd.DataFrame, evaluator_cards: Mapping[str, Mapping[str, Any]],
                       methods: Mapping[str, Mapping[str, Any]], *, n_boot: int = 2000,
                       seed: int = 0) -> dict[str, Any] | None:
    """Do the travelling truths agree with the planted one? ``None`` without a truth evaluator
    (card category ``"counterfactual"``) or with fewer than two ranked methods.

    One joint bootstrap of the samples (whole subjects when a subject holds several; the draws
    of :func:`gmxai_eval.functional.paired.bootstrap_means`, the same for every evaluator and
    method) gives every statistic its 95 % percentile CI:

    * ``method_rankings[ev][truth]``: Kendall tau-b between the method ranking (oriented means)
      of evaluator ``ev`` and of the truth evaluator, over the ranked methods (no reference
      method) (``"all"``) and over the undegraded ones (level-0 copies and methods that are no
      ``degraded`` copy, ``"undegraded"``);
    * ``evaluator_rankings[truth]`` (only with a known-order series): tau-b, over the non-truth
      evaluators, between their known-order tau (mean over the series) and their tau against the
      truth (all ranked methods), and ``same_verdict``: the evaluators that both call valid
      (CI above 0) or both do not, out of ``n_evaluators``.

    ``table``: the per-sample table (``evaluator, method, sample_id, score[, subject]``);
    ``methods``: ``{label: {"name", "config"[, "card"]}}`` (a card with ``reference`` true is
    not ranked).
    """
    from gmxai_eval.functional.known_order import known_order_tau
    from gmxai_eval.report.known_order import degraded_series

    evs = [e for e in evaluator_cards if e in set(table["evaluator"])]
    truths = [e for e in evs if str(evaluator_cards[e].get("category", "")) == TRUTH_CATEGORY]
    ranked = [m for m, v in methods.items() if not (v.get("card") or {}).get("reference")
              and v.get("name") not in ("oracle", "counterfactual_oracle")]
    if not truths or len(ranked) < 2:
        return None
    series = [s for s in degraded_series({m: methods[m] for m in ranked})]
    copies = {m for s in series for m in s["methods"][1:]} | {m for s in series for m in s["methods"][:1]
                                                              if s["levels"][0] != 0.0}
    undegraded = [m for m in ranked if m not in copies]
    sign = {e: 1.0 if evaluator_cards[e].get("higher_is_better", True) else -1.0 for e in evs}
    cube, ids, clusters = _mean_cube(table, evs, ranked, sign)
    n, e_, m_ = cube.shape
    flat = cube.reshape(n, e_ * m_)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        point = np.nanmean(flat, 0, keepdims=True)
    means = np.concatenate([point, bootstrap_means(flat, clusters, n_boot=n_boot, seed=seed)]).reshape(-1, e_, m_)
    col = {m: j for j, m in enumerate(ranked)}
    others = [i for i, e in enumerate(evs) if e not in truths]
    subsets = {"all": ranked, "undegraded": undegraded}
    rankings: dict[str, Any] = {}
    for i in others:
        rankings[evs[i]] = {t: {k: {**_ci(kendall_tau_b_rows(means[:, i, [col[m] for m in ms]],
                                                             means[:, evs.index(t), [col[m] for m in ms]])),
                                    "n_methods": len(ms)} for k, ms in subsets.items()} for t in truths}
    ev_rank: dict[str, Any] = {}
    if series and len(others) >= 2:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ko = np.nanmean(np.stack([known_order_tau(means[:, :, [col[m] for m in s["methods"]]], s["levels"])
                                      for s in series], -1), -1)  # (1 + B, E)
        for t in truths:
            tv = np.stack([kendall_tau_b_rows(means[:, i, :], means[:, evs.index(t), :]) for i in range(e_)], 1)
            per = {evs[i]: {"known_order": _ci(ko[:, i]), "vs_truth": _ci(tv[:, i])} for i in others}
            ok = lambda r: r["ci_low"] is not None and r["ci_low"] > 0  # noqa: E731
            same = [e for e, r in per.items() if ok(r["known_order"]) == ok(r["vs_truth"])]
            ev_rank[t] = {**_ci(kendall_tau_b_rows(ko[:, others], tv[:, others])), "n_evaluators": len(others),
                          "same_verdict": same, "evaluators": per}
    return {"truth": truths, "primary": truths[0], "methods": ranked, "undegraded": undegraded,
            "travelling": [e for e in evs if str(evaluator_cards[e].get("name", "")) in TRAVELLING],
            "series": [s["base"] for s in series], "n_samples": n,
            "n_units": n if clusters is None else len(set(clusters)),
            "resampling_unit": "image" if clusters is None else "subject", "n_boot": int(n_boot),
            "method_rankings": rankings, "evaluator_rankings": ev_rank}


def _tci(r: Mapping[str, Any] | None) -> str:
    r = r or {}
    return f"{_fmt(r.get('tau'), 2)} [{_fmt(r.get('ci_low'), 2)}, {_fmt(r.get('ci_high'), 2)}]"


def evidence_statement(results: Mapping[str, Any]) -> str | None:
    """One sentence on the all-traits-off drop of ``results["evidence"]`` (``None`` without it)."""
    ev = results.get("evidence")
    if not ev:
        return None
    if ev.get("drop") is None:
        return "All-traits-off drop: no image of the run has a planted trait."
    verdict = "the model uses the planted evidence" if ev.get("uses_evidence") else \
        "the CI does not lie above 0: the model is not shown to use the planted evidence, so the planted truth is " \
        "not its truth and this table does not count"
    return (f"All-traits-off drop (explained class's probability, image minus the image with every planted trait "
            f"rendered off): {_fmt(ev.get('drop'), 3)} [{_fmt(ev.get('ci_low'), 3)}, {_fmt(ev.get('ci_high'), 3)}] "
            f"over {ev.get('n')} images (bootstrap over {ev.get('n_units')} {ev.get('resampling_unit')}s): {verdict}.")


def crosscheck_statement(results: Mapping[str, Any]) -> list[str]:
    """The cross-check of the travelling truths against the primary planted truth as sentences
    (empty without ``results["validity"]["crosscheck"]`` or without a travelling truth)."""
    cc = (results.get("validity") or {}).get("crosscheck")
    if not cc:
        return []
    t = cc["primary"]
    unit = f"{cc['n_boot']} bootstrap resamples of {cc['n_units']} {cc['resampling_unit']}s"
    out = []
    trav = [e for e in cc.get("travelling") or [] if e in cc.get("method_rankings", {})]
    if trav:
        parts = [f"{e} {_tci(cc['method_rankings'][e][t]['all'])} (undegraded only: "
                 f"{_tci(cc['method_rankings'][e][t]['undegraded'])})" for e in trav]
        n_all, n_und = len(cc["methods"]), len(cc["undegraded"])
        out.append(f"Cross-check, method rankings: Kendall tau-b between the patch truth's (and the surrogate's) "
                   f"method ranking and the planted truth's ({t}) over {n_all} ranked methods (undegraded: {n_und}), "
                   f"95% CI over {unit}: " + "; ".join(parts) + ".")
    er = (cc.get("evaluator_rankings") or {}).get(t)
    if er:
        out.append(f"Cross-check, evaluator validity: tau-b between the {er['n_evaluators']} evaluators' known-order "
                   f"tau and their tau against {t}: {_tci(er)} (95% CI over the same resamples); both call the same "
                   f"evaluators valid (CI above 0) or not on {len(er['same_verdict'])} of {er['n_evaluators']}"
                   + (f" (differ on: {', '.join(e for e in er['evaluators'] if e not in er['same_verdict'])})"
                      if len(er["same_verdict"]) < er["n_evaluators"] else "") + ".")
    return out
