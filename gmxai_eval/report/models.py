"""The model axis in the report: how method rankings compare across the models of one run.

A spec with ``[[models]]`` runs every stage per model (:mod:`gmxai_eval.runner.models`); each
model gets a full run folder (``models/<label>/``) and the run folder gets a comparison read
from those results alone:

* per model: its source, content hash, images and (for trained models) top-1 on the run's split;
* the overall rank of every method under every model;
* per evaluator: Kendall's tau-b between the method rankings of every pair of models (ties
  handled by tau-b; methods both models ranked) and its mean over the pairs: how far the
  evaluator's verdict carries from one model to another (LATEC reports that metric rankings
  shift across architectures; this measures it on the run's models);
* per model its all-traits-off drop (``results["evidence"]``: does the model use the planted
  evidence?) and per evaluator its validity on each model; a model's validity counts only when
  the drop's CI lies above 0, and the evaluator is *stable* when its verdict is the same on every
  counted model;
* per model the cross-check of the travelling truths against the planted one
  (``results["validity"]["crosscheck"]``, :func:`gmxai_eval.report.validity.crosscheck_section`).

Functions here read the results document (``gmxai_eval.results-models/1``); they never run a model.
"""

from __future__ import annotations

import html
import itertools
import math
from typing import Any, Mapping, Sequence

from gmxai_eval.functional.stats import kendall_tau_b

FORMAT = "gmxai_eval.results-models/1"


def ranking_agreement(rankings: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Kendall tau-b between the method rankings of every pair of models of one evaluator.

    Args:
        rankings: ``{model: {method: rank}}``.

    Returns:
        ``{"pairs": [{"a", "b", "tau", "n_methods"}], "mean_tau": float | None}`` (a pair with
        fewer than 2 common methods, or a constant ranking, has tau ``None``).

    >>> ranking_agreement({"m1": {"x": 1, "y": 2, "z": 3}, "m2": {"x": 1, "y": 3, "z": 2}})["mean_tau"]
    0.3333333333333333
    """
    pairs, taus = [], []
    for a, b in itertools.combinations(sorted(rankings), 2):
        common = sorted(set(rankings[a]) & set(rankings[b]))
        tau = None
        if len(common) >= 2:
            t = kendall_tau_b([rankings[a][m] for m in common], [rankings[b][m] for m in common])
            tau = None if t is None or not math.isfinite(t) else float(t)
        pairs.append({"a": a, "b": b, "tau": tau, "n_methods": len(common)})
        if tau is not None:
            taus.append(tau)
    return {"pairs": pairs, "mean_tau": sum(taus) / len(taus) if taus else None}


def _rank(v: Any) -> Any:
    """A rank entry of ``rankings``: a number, or a ``{"rank": ...}`` record."""
    return v.get("rank") if isinstance(v, Mapping) else v


def _counts(r: Mapping[str, Any]) -> bool:
    """Whether a model's validity counts: its all-traits-off drop's CI lies above 0
    (``results["evidence"]["uses_evidence"]``; a results document without it does not count)."""
    return bool((r.get("evidence") or {}).get("uses_evidence"))


def validity_by_model(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per evaluator, its tau against each model's primary truth evaluator (with the CI and the
    ``disagrees`` mark of :mod:`gmxai_eval.report.validity`), and whether the verdict holds on
    every model whose validity counts: a model counts only when it uses the planted evidence (its
    all-traits-off drop's CI lies above 0, :func:`gmxai_eval.functional.evidence.all_off_drop`).
    ``"agrees_on"`` / ``"disagrees_on"`` list the counted models, ``"excluded"`` the others (shown,
    with ``"counts": False`` in ``by_model``); models without a truth are left out. ``"stable"``
    is True when it agrees on all counted models or on none, ``None`` when no model counts."""
    out: dict[str, Any] = {}
    for m, r in models.items():
        val = r.get("validity") or {}
        primary = val.get("primary")
        if not primary:
            continue
        counts = _counts(r)
        for e, v in (val.get("evaluators") or {}).items():
            if v.get("is_truth"):
                continue
            t = (v.get("tau") or {}).get(primary) or {}
            rec = out.setdefault(e, {"by_model": {}, "agrees_on": [], "disagrees_on": [], "excluded": []})
            rec["by_model"][m] = {"tau": t.get("tau"), "ci_low": t.get("ci_low"), "ci_high": t.get("ci_high"),
                                  "n": t.get("n"), "truth": primary, "disagrees": v.get("disagrees"),
                                  "counts": counts}
            rec["excluded" if not counts else "disagrees_on" if v.get("disagrees") else "agrees_on"].append(m)
    for rec in out.values():
        rec["stable"] = None if not (rec["agrees_on"] or rec["disagrees_on"]) else \
            not rec["agrees_on"] or not rec["disagrees_on"]
    return out


def crosscheck_by_model(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per model with a cross-check (:func:`gmxai_eval.report.validity.crosscheck_section`), against
    its primary truth: the travelling truths' method-ranking tau (all ranked methods) and the tau
    between the evaluators' known-order tau and their tau against the truth, with CIs."""
    out: dict[str, Any] = {}
    for m, r in models.items():
        cc = (r.get("validity") or {}).get("crosscheck")
        if not cc:
            continue
        t = cc["primary"]
        er = (cc.get("evaluator_rankings") or {}).get(t)
        out[m] = {"truth": t, "counts": _counts(r), "n_methods": len(cc.get("methods") or []),
                  "methods": {e: cc["method_rankings"][e][t]["all"] for e in cc.get("travelling") or []
                              if e in cc.get("method_rankings", {})},
                  "evaluators": None if not er else {k: er.get(k) for k in ("tau", "ci_low", "ci_high",
                                                                            "n_evaluators")}
                  | {"same_verdict": len(er.get("same_verdict") or [])}}
    return out


def comparison(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The cross-model comparison of the per-model results documents ``{label: results}``:
    ``{"overall": {model: {method: rank}}, "by_evaluator": {evaluator: ranking_agreement},
    "validity": validity_by_model, "evidence": {model: all-traits-off drop}, "crosscheck":
    crosscheck_by_model}``."""
    overall = {m: {k: _rank(v) for k, v in r.get("rankings", {}).get("overall", {}).items()}
               for m, r in models.items()}
    evaluators = sorted({e for r in models.values() for e in r.get("rankings", {}).get("by_evaluator", {})})
    by_ev = {}
    for e in evaluators:
        ranks = {m: {k: _rank(v) for k, v in r["rankings"]["by_evaluator"][e].items()} for m, r in models.items()
                 if e in r.get("rankings", {}).get("by_evaluator", {})}
        by_ev[e] = ranking_agreement(ranks)
    evidence = {m: r.get("evidence") for m, r in models.items() if r.get("evidence")}
    return {"overall": overall, "by_evaluator": by_ev, "validity": validity_by_model(models),
            "evidence": evidence, "crosscheck": crosscheck_by_model(models)}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if not v.is_integer() else str(int(v))
    return str(v)


def _ci(v: Mapping[str, Any] | None, key: str = "tau") -> str:
    if not v or v.get(key) is None:
        return "-"
    return f"{_fmt(v.get(key))} [{_fmt(v.get('ci_low'))}, {_fmt(v.get('ci_high'))}]"


def _evidence_cell(ev: Mapping[str, Any] | None) -> str:
    if not ev:
        return "not measured"
    if ev.get("drop") is None:
        return "no image with a planted trait"
    return f"{_ci(ev, 'drop')} (n {ev.get('n')}): " + ("uses the evidence" if ev.get("uses_evidence") else
                                                      "CI not above 0: validity not counted")


def _rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]], list[list[str]], list[list[str]]]:
    labels = list(doc["models"])
    evidence = doc["comparison"].get("evidence") or {}
    info = [[m, d.get("source", ""), d.get("model_hash", "")[:10], _fmt(d.get("n_images")),
             _fmt((d.get("trained") or {}).get("top1")), _evidence_cell(evidence.get(m)), d.get("folder", "")]
            for m, d in doc["models"].items()]
    overall = doc["comparison"]["overall"]
    methods = sorted({k for r in overall.values() for k in r},
                     key=lambda k: (sum(overall[m].get(k) or 99 for m in labels), k))
    ranks = [[k, *[_fmt(overall[m].get(k)) for m in labels]] for k in methods]
    agree = [[e, _fmt(a["mean_tau"]), "; ".join(f"{p['a']}~{p['b']} {_fmt(p['tau'])}" for p in a["pairs"])]
             for e, a in doc["comparison"]["by_evaluator"].items()]
    return labels, info, ranks, agree


def _validity_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    labels = list(doc["models"])

    def cell(v: Mapping[str, Any] | None) -> str:
        if not v:
            return "-"
        mark = (" (disagrees)" if v.get("disagrees") else "") + ("" if v.get("counts", True) else " (not counted)")
        return f"{_ci(v)}{mark}"

    def stable(r: Mapping[str, Any]) -> str:
        if r["stable"] is None:
            return "n/a (no model counts)"
        n = len(r["agrees_on"]) + len(r["disagrees_on"])
        return f"{'yes' if r['stable'] else 'no'} ({n} models)"
    return [[e, *[cell(r["by_model"].get(m)) for m in labels], stable(r)]
            for e, r in (doc["comparison"].get("validity") or {}).items()]


def _crosscheck_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    cc = doc["comparison"].get("crosscheck") or {}
    trav = list(dict.fromkeys(e for r in cc.values() for e in r["methods"]))
    headers = ["model", "truth", "methods", *[f"{e}: method-ranking tau vs truth [95% CI]" for e in trav],
               "known-order vs truth validity: tau over evaluators [95% CI]", "same verdict"]
    rows = []
    for m, r in cc.items():
        ev = r.get("evaluators") or {}
        rows.append([m + ("" if r.get("counts") else " (evidence not shown: not counted)"), r["truth"],
                     str(r["n_methods"]), *[_ci(r["methods"].get(e)) for e in trav], _ci(ev) if ev else "-",
                     f"{ev['same_verdict']} of {ev['n_evaluators']}" if ev else "-"])
    return headers, rows


#: the model table's headers.
_INFO = ["model", "source", "hash", "images", "top-1 (trained)", "all-traits-off drop [95% CI]", "folder"]
_VALIDITY_TITLE = ("Validity per model: tau [95 % CI] against the model's counterfactual truth. A model's column "
                   "counts only when its all-traits-off drop's CI lies above 0 (it uses the planted evidence); "
                   "a model that fails is shown, marked (not counted), and left out of stable = the same "
                   "verdict (agrees / disagrees) on every counted model")
_CROSSCHECK_TITLE = ("Do the travelling truths agree with the planted one? Per model: Kendall tau-b between the "
                     "patch truth's (and the surrogate's) method ranking and the planted truth's, and between the "
                     "evaluators' known-order tau and their tau against the planted truth; same verdict = "
                     "evaluators both call valid (CI above 0) or both do not")


def _sections(doc: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, headers, rows)`` of every table of the comparison page, in order."""
    labels, info, ranks, agree = _rows(doc)
    out = [("", _INFO, info), ("Overall rank of each method, per model", ["method", *labels], ranks),
           ("Do the models agree? Kendall's tau-b between the method rankings of two models, per evaluator",
            ["evaluator", "mean tau", "pairs"], agree)]
    if doc["comparison"].get("validity"):
        out.append((_VALIDITY_TITLE, ["evaluator", *labels, "stable"], _validity_rows(doc)))
    if doc["comparison"].get("crosscheck"):
        out.append((_CROSSCHECK_TITLE, *_crosscheck_rows(doc)))
    return out


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(x: str) -> str:
        return html.escape(str(x), quote=False).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows])


def models_markdown(doc: Mapping[str, Any]) -> str:
    """``leaderboard.md`` of a several-model run: the models (with their all-traits-off drop), the
    methods' overall rank under each, per evaluator the agreement of its rankings across models,
    its validity per model and the cross-check of the travelling truths per model."""
    parts = [f"# {html.escape(str(doc.get('run_id', 'run')), quote=False)}: {len(doc['models'])} models"]
    for title, headers, rows in _sections(doc):
        parts += ([f"## {html.escape(title, quote=False)}"] if title else []) + [_md_table(headers, rows)]
    return "\n\n".join(parts + ["Each model's full leaderboard, validity table and report are in its folder."]) + "\n"


def models_html(doc: Mapping[str, Any]) -> str:
    """``report.html`` of a several-model run (self-contained; links to each model's report), with
    the sections that compare the models (``doc["sections"]``, renderers of
    :data:`gmxai_eval.report.fragments.SECTIONS`, registered when :mod:`gmxai_eval.report.html`
    is imported, as the runner does)."""
    from gmxai_eval.report.fragments import FIGURE_CHECK as _CHECK, PAGE_CSS as _CSS, SECTIONS, table_html

    links = "".join(f'<li><a href="{html.escape(d.get("folder", ""))}/report.html">{html.escape(m)}</a></li>'
                    for m, d in doc["models"].items())
    title = html.escape(f"{doc.get('run_id', 'run')}: {len(doc['models'])} models")
    body = "".join((f"<h2>{html.escape(t)}</h2>" if t else "") + table_html(h, r) for t, h, r in _sections(doc))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{_CSS}</style>"
            f"</head><body><h1>{title}</h1>{body}"
            + "".join(f"<h2>{html.escape(t)}</h2>{frag}" for t, frag in
                      (SECTIONS.get(n)(doc, d) for n, d in (doc.get("sections") or {}).items()))
            + f"<h2>Each model's report</h2><ul>{links}</ul>{_CHECK}</body></html>")
