"""``report.html``: one self-contained offline page (inline CSS, figures as base64 PNG).

Every text that comes from data (method / evaluator labels, class names, image ids, config
values) is escaped with :func:`html.escape`. ``extra_sections`` are trusted HTML fragments
produced by this package (e.g. the gaze section) and are inserted as they are.

A tiny inline script writes ``<div id="gmx-figcheck" data-total=N data-ok=K>`` after load:
``K`` figures decoded with a non-zero natural width out of ``N`` (used by the browser test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

# the section modules register their renderers in SECTIONS when imported
from gmxai_eval.report import disagreement, gaze, imbalance, retraining, sign_variants, views  # noqa: F401
from gmxai_eval.report import figures
from gmxai_eval.report.fragments import (FIGURE_CHECK, PAGE_CSS, SECTIONS, e, figure_html,  # noqa: F401
                                         frame_html, table_html, table_section)
from gmxai_eval.report.reliability import render_reliability
from gmxai_eval.report.summary import FILES, summary_data, summary_html
from gmxai_eval.report.tables import flags_text, leaderboard_rows, legend_lines, rank_key
from gmxai_eval.report.validity import validity_html
from gmxai_eval.utils import write_atomic


#: evaluator columns per leaderboard block in report.html (a 1280-pixel page holds them)
LEADERBOARD_COLUMNS = 5


def leaderboard_blocks(results: Mapping[str, Any], per_block: int = LEADERBOARD_COLUMNS
                       ) -> list[tuple[str, list[str], list[list[str]]]]:
    """The wide leaderboard cut into ``(title, headers, rows)`` blocks that fit a page: first
    the method with its overall and family ranks, then each family's evaluators, at most
    ``per_block`` columns a block; every block repeats the method column and keeps the rows
    (methods by overall rank, reference rows, MDD, ranking reliability) in the same order."""
    headers, rows = leaderboard_rows(results)
    fams = list((results.get("rankings") or {}).get("families") or {})
    n_lead = 2 + len(fams)
    evs = list(results["agreement"]["evaluators"])
    fam_of = {ev: f for f, fevs in (results["rankings"].get("families") or {}).items() for ev in fevs}
    blocks: list[tuple[str, list[int]]] = []
    lead = list(range(1, n_lead))
    for i in range(0, len(lead), per_block + 2):
        blocks.append(("ranks", lead[i:i + per_block + 2]))
    for k in family_order(evs, fam_of):
        f = fam_of.get(evs[k], "") or "other"
        if blocks and blocks[-1][0] == f and len(blocks[-1][1]) < per_block:
            blocks[-1][1].append(n_lead + k)
        else:
            blocks.append((f, [n_lead + k]))
    return [(title, [headers[0]] + [headers[c] for c in cols], [[r[0]] + [r[c] for c in cols] for r in rows])
            for title, cols in blocks]


def leaderboard_html(results: Mapping[str, Any]) -> str:
    """The leaderboard as blocks of at most :data:`LEADERBOARD_COLUMNS` evaluator columns (see
    :func:`leaderboard_blocks`), each a fixed-layout table as wide as the page; escaped."""
    out = []
    for title, headers, rows in leaderboard_blocks(results):
        label = "Overall and family ranks (the overall rank is not a faithfulness rank)" if title == "ranks" \
            else f"Family {title}"
        out.append(f"<h3>{e(label)}</h3>{table_html(headers, rows, 'leaderboard lb')}")
    return "".join(out)


_CURVE_TITLES = {"perturbation": "perturbation curve", "randomisation": "randomisation cascade",
                 "retraining": "ROAR / KAR retraining curve"}


#: methods per example-map figure: 20+ methods give several figures of at most this many columns
MAPS_PER_FIGURE = 8


def example_maps(images: Any, maps: Mapping[str, Any], ids: Sequence[str], labels: Sequence[str],
                 targets: Sequence[str]) -> dict[str, Any]:
    """The stored form of the example-maps figures (what ``report.html`` shows of the maps):
    ``{"pngs": [base64 PNG, ...], "methods": [[method, ...], ...], "rows": [[image id, label,
    explained class], ...]}``: one figure per :data:`MAPS_PER_FIGURE` methods, each with the
    images as its first column.

    Args:
        images: ``(N, C, H, W)`` in ``[0, 1]``; maps: ``{method: (N, H, W)}`` signed maps.
    """
    import base64

    titles = [f"row {i + 1}" for i in range(len(ids))]
    names = list(maps)
    chunks = [names[i:i + MAPS_PER_FIGURE] for i in range(0, len(names), MAPS_PER_FIGURE)] or [[]]
    pngs = [figures.maps_grid(images, {m: maps[m] for m in chunk}, titles) for chunk in chunks]
    return {"pngs": [base64.b64encode(p).decode("ascii") for p in pngs], "methods": chunks,
            "rows": [[str(i), str(lab), str(t)] for i, lab, t in zip(ids, labels, targets)]}


def family_order(evaluators: Sequence[str], family_of: Mapping[str, str]) -> list[int]:
    """Indices of ``evaluators`` grouped by family (families in order of first appearance, the
    evaluators of a family in their own order)."""
    fams = list(dict.fromkeys(family_of.get(e, "") for e in evaluators))
    return sorted(range(len(evaluators)), key=lambda i: (fams.index(family_of.get(evaluators[i], "")), i))


def _curve_axes(category: str, per_method: Mapping[str, Any]) -> tuple[str, str]:
    """``(x label, y label)`` of a stored curve from its evaluator's family and its x values."""
    first = next(iter(per_method.values()), {})
    if first.get("labels"):
        return ("randomised layers (cascade order)" if category == "randomisation" else "step", "score")
    xs = [v for c in per_method.values() for v in c.get("x", [])]
    frac = bool(xs) and 0.0 <= min(xs) and max(xs) <= 1.0
    if category == "perturbation":
        return ("fraction of the input perturbed" if frac else "perturbation step", "model output / score")
    if category == "retraining":
        return ("fraction of the input removed" if frac else "step", "retrained accuracy")
    return ("fraction" if frac else "step", "score")


def _score_figures(results: Mapping[str, Any]) -> list[str]:
    """One bar chart (mean and CI per method) per evaluator."""
    aggs = results.get("aggregates", [])
    evs = results.get("agreement", {}).get("evaluators", [])
    if not evs:
        return []
    parts = ["<h2>Scores per evaluator</h2>"]
    for ev in evs:
        recs = sorted([r for r in aggs if r["evaluator"] == ev], key=lambda r: rank_key(r["rank"]))
        png = figures.bar_ci([r["method"] for r in recs], [r["mean"] for r in recs],
                             [r["ci_low"] for r in recs], [r["ci_high"] for r in recs],
                             f"{ev} ({'higher' if recs and recs[0]['higher_is_better'] else 'lower'} is better)")
        parts.append(figure_html(png, f"{ev}: mean and 95% CI per method"))
    return parts


def _example_maps(examples: Mapping[str, Any]) -> list[str]:
    """The example-maps figures (as stored by :func:`example_maps`) and their rows."""
    import base64

    pngs = list(examples.get("pngs") or ([examples["png"]] if examples.get("png") else []))
    if not pngs:
        return []
    groups = examples.get("methods") or [[] for _ in pngs]
    parts = ["<h2>Example maps</h2>",
             "<p>Signed maps, symmetric colour scale per map (red positive, blue negative)"
             + (f"; {len(pngs)} figures of at most {MAPS_PER_FIGURE} methods" if len(pngs) > 1 else "") + ".</p>"]
    for k, (b64, ms) in enumerate(zip(pngs, groups)):
        cap = f"methods {k * MAPS_PER_FIGURE + 1}-{k * MAPS_PER_FIGURE + len(ms)}: " + ", ".join(map(str, ms)) \
            if ms else "example maps"
        parts.append(f'<div class="maps">{figure_html(base64.b64decode(b64), cap)}</div>')
    parts.append(table_html(["row", "image id", "label", "explained class"],
                            [[i + 1, *r] for i, r in enumerate(examples.get("rows", []))]))
    return parts


def _curve_and_agreement_figures(results: Mapping[str, Any]) -> list[str]:
    """The mean curves per evaluator and the Kendall-tau heatmap between evaluators."""
    parts: list[str] = []
    curves = results.get("curves", {})
    if curves:
        parts.append("<h2>Curves</h2>")
        cats = {r["evaluator"]: r["category"] for r in results.get("aggregates", [])}
        for ev, per_method in curves.items():
            kind = _CURVE_TITLES.get(cats.get(ev, ""), "curve")
            xl, yl = _curve_axes(cats.get(ev, ""), per_method)
            parts.append(figure_html(figures.curves_figure(per_method, f"{ev}: {kind}", xl, yl),
                              f"{ev}: mean {kind} ± 1 sd (band clipped to the observed range)"))
    evs = results.get("agreement", {}).get("evaluators", [])
    if len(evs) > 1:
        parts.append("<h2>Metric agreement</h2>")
        fam_of = {ev: f for f, fevs in (results.get("rankings", {}).get("families") or {}).items() for ev in fevs}
        order = family_order(evs, fam_of)
        tau = results["agreement"]["kendall_tau"]
        parts.append(figure_html(figures.heatmap([[tau[i][j] for j in order] for i in order], [evs[i] for i in order],
                                          "Kendall τ between evaluators' method rankings",
                                          groups=[fam_of.get(evs[i], "") or "other" for i in order]),
                          "Kendall tau-b of direction-oriented method means, evaluators grouped by family"
                          + ("" if len(evs) <= 12 else " (values in results.json: agreement.kendall_tau)")))
    return parts


def render_report(results: Mapping[str, Any], path: str | Path | None = None, *,
                  examples: Mapping[str, Any] | None = None,
                  extra_sections: Sequence[tuple[str, str]] = ()) -> str:
    """Build the page from results only and (if ``path``) write it atomically. Returns the HTML.

    Args:
        results: the ``results.json`` document (as read back: missing numbers are ``None``).
        examples: the example-maps figure as stored by :func:`example_maps`.
        extra_sections: ``(title, trusted HTML)`` appended after the registered sections
            (``results["sections"]``, rendered by :data:`SECTIONS`).
    """
    env = results.get("environment", {})
    parts = [f"<h1>gmxai_eval report: {e(str(results.get('run_id', '')))}</h1>"]
    meta = [("run id", results.get("run_id", "")), ("spec hash", results.get("spec_hash", "")),
            ("spec", results.get("spec_source", "")), ("images", results.get("n_images", "")),
            ("seeds", ", ".join(map(str, results.get("seeds", [])))), ("device", results.get("device", "")),
            ("model hash", results.get("model_hash", "")), ("git revision", env.get("git_revision")),
            ("versions", ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()))]
    if results.get("rankings", {}).get("overall"):
        parts.append('<h2 id="summary">Summary</h2>')
        parts.append(summary_html(summary_data(results, [n for n in FILES if n != "validity.md"
                                                         or results.get("validity")])))
    parts.append("<h2>Run</h2>")
    parts.append(table_html(["field", "value"], meta, "meta"))

    parts.append("<h2>Leaderboard</h2>")
    parts.append(leaderboard_html(results))
    parts.append("".join(f"<p>{e(line)}</p>" for line in legend_lines(results)))
    flags = flags_text(results)
    if flags:
        parts.append("<h3>Control and oracle flags</h3><ul>"
                     + "".join(f'<li class="flag">{e(f)}</li>' for f in flags) + "</ul>")
    if results.get("validity"):
        parts.append(validity_html(results))  # its own <h2>, table and legend

    parts += _score_figures(results)
    parts += _example_maps(examples or {})
    parts += _curve_and_agreement_figures(results)

    rel = results.get("reliability")
    if rel:
        parts.append("<h2>Metric reliability (MetaQuantus-style)</h2>")
        parts.append(render_reliability(rel))

    for name, data in (results.get("sections") or {}).items():
        title, fragment = SECTIONS.get(name)(results, data)
        parts.append(f"<h2>{e(str(title))}</h2>{fragment}")

    for title, fragment in extra_sections:
        parts.append(f"<h2>{e(title)}</h2>{fragment}")

    parts.append("<h2>Conventions</h2>")
    for ev, info in results.get("evaluators", {}).items():
        parts.append(f"<h3>{e(ev)}</h3><pre>{e(json.dumps(info.get('conventions') or info.get('config'), indent=1, default=str))}</pre>")
    parts.append(f"<h3>aggregation</h3><pre>{e(json.dumps(results.get('aggregation', {}), indent=1))}</pre>")
    parts.append(f"<h3>spec</h3><pre>{e(json.dumps(results.get('spec', {}), indent=1, default=str))}</pre>")

    doc = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<title>gmxai_eval report {e(str(results.get('run_id', '')))}</title><style>{PAGE_CSS}</style></head>"
           f"<body>{''.join(parts)}{FIGURE_CHECK}</body></html>")
    if path is not None:
        write_atomic(path, doc)
    return doc

