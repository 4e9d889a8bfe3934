"""The model axis in the report: how method rankings compare across the models of one run.

A spec with ``[[models]]`` runs every stage per model (:mod:`gmxai_eval.runner.models`); each
model gets a full run folder (``models/<label>/``) and the run folder gets a comparison read
from those results alone:

* per model: its source, content hash, images and (for trained models) top-1 on the run's split;
* the overall rank of every method under every model;
* per evaluator: Kendall's tau-b between the method rankings of every pair of models (ties
  handled by tau-b; methods both models ranked) and its mean over the pairs: how far the
  evaluator's verdict carries from one model to another (LATEC reports that metric rankings
  shift across architectures; this measures it on the run's models).

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


def validity_by_model(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per evaluator, its tau against each model's primary truth evaluator (with the CI and the
    ``disagrees`` mark of :mod:`gmxai_eval.report.validity`), and whether the verdict holds on
    every model: ``"agrees_on"`` / ``"disagrees_on"`` list the models (models without a truth are
    left out), ``"stable"`` is True when it agrees on all of them or on none."""
    out: dict[str, Any] = {}
    for m, r in models.items():
        val = r.get("validity") or {}
        primary = val.get("primary")
        if not primary:
            continue
        for e, v in (val.get("evaluators") or {}).items():
            if v.get("is_truth"):
                continue
            t = (v.get("tau") or {}).get(primary) or {}
            rec = out.setdefault(e, {"by_model": {}, "agrees_on": [], "disagrees_on": []})
            rec["by_model"][m] = {"tau": t.get("tau"), "ci_low": t.get("ci_low"), "ci_high": t.get("ci_high"),
                                  "n": t.get("n"), "truth": primary, "disagrees": v.get("disagrees")}
            rec["disagrees_on" if v.get("disagrees") else "agrees_on"].append(m)
    for rec in out.values():
        rec["stable"] = not rec["agrees_on"] or not rec["disagrees_on"]
    return out


def comparison(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The cross-model comparison of the per-model results documents ``{label: results}``:
    ``{"overall": {model: {method: rank}}, "by_evaluator": {evaluator: ranking_agreement},
    "validity": validity_by_model}``."""
    overall = {m: {k: _rank(v) for k, v in r.get("rankings", {}).get("overall", {}).items()}
               for m, r in models.items()}
    evaluators = sorted({e for r in models.values() for e in r.get("rankings", {}).get("by_evaluator", {})})
    by_ev = {}
    for e in evaluators:
        ranks = {m: {k: _rank(v) for k, v in r["rankings"]["by_evaluator"][e].items()} for m, r in models.items()
                 if e in r.get("rankings", {}).get("by_evaluator", {})}
        by_ev[e] = ranking_agreement(ranks)
    return {"overall": overall, "by_evaluator": by_ev, "validity": validity_by_model(models)}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if not v.is_integer() else str(int(v))
    return str(v)


def _rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]], list[list[str]], list[list[str]]]:
    labels = list(doc["models"])
    info = [[m, d.get("source", ""), d.get("model_hash", "")[:10], _fmt(d.get("n_images")),
             _fmt((d.get("trained") or {}).get("top1")), d.get("folder", "")] for m, d in doc["models"].items()]
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
        mark = " (disagrees)" if v.get("disagrees") else ""
        return f"{_fmt(v.get('tau'))} [{_fmt(v.get('ci_low'))}, {_fmt(v.get('ci_high'))}]{mark}"
    return [[e, *[cell(r["by_model"].get(m)) for m in labels], "yes" if r["stable"] else "no"]
            for e, r in (doc["comparison"].get("validity") or {}).items()]


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(x: str) -> str:
        return html.escape(str(x), quote=False).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows])


def models_markdown(doc: Mapping[str, Any]) -> str:
    """``leaderboard.md`` of a several-model run: the models, the methods' overall rank under each,
    and per evaluator the agreement of its rankings across models."""
    labels, info, ranks, agree = _rows(doc)
    return "\n\n".join([
        f"# {html.escape(str(doc.get('run_id', 'run')), quote=False)}: {len(labels)} models",
        _md_table(["model", "source", "hash", "images", "top-1 (trained)", "folder"], info),
        "## Overall rank of each method, per model",
        _md_table(["method", *labels], ranks),
        "## Do the models agree? Kendall's tau-b between the method rankings of two models, per evaluator",
        _md_table(["evaluator", "mean tau", "pairs"], agree),
        *(["## Validity per model: tau [95 % CI] against the model's counterfactual truth; stable = the "
           "same verdict (agrees / disagrees) on every model",
           _md_table(["evaluator", *list(doc["models"]), "stable"], _validity_rows(doc))]
          if doc["comparison"].get("validity") else []),
        "Each model's full leaderboard, validity table and report are in its folder.",
    ]) + "\n"


def models_html(doc: Mapping[str, Any]) -> str:
    """``report.html`` of a several-model run (self-contained; links to each model's report), with
    the sections that compare the models (``doc["sections"]``, renderers of
    :data:`gmxai_eval.report.fragments.SECTIONS`, registered when :mod:`gmxai_eval.report.html`
    is imported, as the runner does)."""
    from gmxai_eval.report.fragments import FIGURE_CHECK as _CHECK, PAGE_CSS as _CSS, SECTIONS, table_html

    labels, info, ranks, agree = _rows(doc)
    links = "".join(f'<li><a href="{html.escape(d.get("folder", ""))}/report.html">{html.escape(m)}</a></li>'
                    for m, d in doc["models"].items())
    title = html.escape(f"{doc.get('run_id', 'run')}: {len(labels)} models")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{_CSS}</style>"
            f"</head><body><h1>{title}</h1>"
            + table_html(["model", "source", "hash", "images", "top-1 (trained)", "folder"], info)
            + "<h2>Overall rank of each method, per model</h2>" + table_html(["method", *labels], ranks)
            + "<h2>Kendall's tau-b between the method rankings of two models, per evaluator</h2>"
            + table_html(["evaluator", "mean tau", "pairs"], agree)
            + ("<h2>Validity per model: tau [95 % CI] against each model's counterfactual truth</h2>"
               + table_html(["evaluator", *labels, "stable"], _validity_rows(doc))
               if doc["comparison"].get("validity") else "")
            + "".join(f"<h2>{html.escape(t)}</h2>{frag}" for t, frag in
                      (SECTIONS.get(n)(doc, d) for n, d in (doc.get("sections") or {}).items()))
            + f"<h2>Each model's report</h2><ul>{links}</ul>{_CHECK}</body></html>")
