"""Renderer of the ``retraining`` report section (data: :mod:`gmxai_eval.runner.stages.retraining_section`).

Per ROAR / KAR evaluator: a figure of the retrained test accuracy against the fraction of
pixels removed (ROAR) or kept (KAR), one line per method (controls dashed, the oracle dotted,
every method its own colour) with a band of ``mean -/+ 1 sd`` over the repeats clipped to
``[0, 1]``; and a table with, per method, the area between its curve and the random control's
(mean and the leaderboard's 95 % bootstrap CI over the repeats), its rank and rank band (from
``results["aggregates"]``), and the mask-only classifier's accuracy at each fraction against
chance (Rong et al.'s leakage diagnostic). Below it, Kendall's tau between the ROAR (KAR) and
the ROAD ranking of the same methods. Per label randomisation evaluator: each method's
similarity of the true- and permuted-label models' maps next to the random-pair floor.

Renders results only: nothing here trains, explains or scores.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

import numpy as np

from gmxai_eval.report import figures
from gmxai_eval.report.fragments import SECTIONS, table_html

e = html.escape

#: Colour of the oracle's line (a reference, drawn in black).
ORACLE_COLOUR = "#000000"


def method_colours(names: Sequence[str], oracle: Sequence[str] = ()) -> dict[str, str]:
    """A distinct colour per method (hex ``#rrggbb``): the oracle(s) black, the others from
    matplotlib's ``tab10`` (up to 10), ``tab20`` (up to 20) or evenly spaced hues beyond."""
    from matplotlib import colormaps
    from matplotlib.colors import hsv_to_rgb, to_hex

    rest = [n for n in names if n not in set(oracle)]
    k = len(rest)
    if k <= 10:
        cols = [to_hex(c) for c in colormaps["tab10"].colors[:k]]
    elif k <= 20:
        cols = [to_hex(c) for c in colormaps["tab20"].colors[:k]]
    else:
        cols = [to_hex(hsv_to_rgb((i / k, 0.75, 0.55 + 0.35 * (i % 2)))) for i in range(k)]
    out = dict(zip(rest, cols))
    out.update({o: ORACLE_COLOUR for o in oracle if o in names})
    return {n: out[n] for n in names}


def _arr(v: Sequence[Any] | None) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in (v or [])], dtype=float)


def retraining_figure(ev: Mapping[str, Any]) -> Any:
    """The accuracy-vs-fraction figure of one evaluator's section data (a matplotlib
    ``Figure`` on an Agg canvas; :func:`retraining_png` encodes it)."""
    recs = ev["methods"]
    colours = method_colours([r["method"] for r in recs], [r["method"] for r in recs if r.get("oracle")])
    fig = figures._figure(5.6, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    x = _arr(ev["x"])
    for r in recs:
        c = colours[r["method"]]
        ls = ":" if r.get("oracle") else "--" if r.get("control") else "-"
        kind = " (oracle)" if r.get("oracle") else " (control)" if r.get("control") else ""
        ax.plot(x, _arr(r["mean"]), color=c, ls=ls, lw=1.6, marker="o", ms=3,
                label=figures._t(r["method"] + kind))
        ax.fill_between(x, _arr(r["band_low"]), _arr(r["band_high"]), color=c, alpha=0.15, lw=0)
    if ev.get("chance") is not None:
        ax.axhline(float(ev["chance"]), color="#888888", lw=0.8, ls="-.", label="chance (1/K)")
    what = "removed" if ev.get("mode", "roar") == "roar" else "kept"
    ax.set_xlabel(f"fraction of pixels {what} (top-ranked by the method)", fontsize=8)
    ax.set_ylabel("test top-1 accuracy after retraining", fontsize=8)
    ax.set_ylim(0.0, 1.02)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{v:g}" for v in x], fontsize=7)
    ax.tick_params(labelsize=7)
    ax.set_title(figures._t(f"{ev['evaluator']}: mean ± 1 sd over {ev.get('repeats', '?')} retrainings"),
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def retraining_png(ev: Mapping[str, Any]) -> bytes:
    """:func:`retraining_figure` as PNG bytes."""
    return figures._png(retraining_figure(ev))


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and v != v) else f"{float(v):.{digits}f}"


def _aggs(results: Mapping[str, Any], evaluator: str) -> dict[str, Mapping[str, Any]]:
    return {a["method"]: a for a in results.get("aggregates", []) if a.get("evaluator") == evaluator}


def _kind(r: Mapping[str, Any]) -> str:
    return "oracle (reference)" if r.get("oracle") else "control" if r.get("control") else "method"


def retraining_table(results: Mapping[str, Any], ev: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of one evaluator's table (see the module docstring)."""
    agg = _aggs(results, ev["evaluator"])
    xs = [float(v) for v in ev["x"]][1:]
    chance = ev.get("chance")
    headers = ["method", "kind", "area vs random (mean)", "95% CI over repeats", "rank", "rank band"] + \
        [f"leakage top-1 @ t={t:g}" if chance is not None else f"leakage top-1 above chance @ t={t:g}" for t in xs]
    rows = []
    for r in ev["methods"]:
        a = agg.get(r["method"], {})
        leak = r.get("leakage_accuracy") if chance is not None else r.get("leakage")
        leak = (leak or [None] * (len(xs) + 1))[1:]
        rows.append([r["method"], _kind(r), _f(a.get("mean"), 4),
                     f"[{_f(a.get('ci_low'), 4)}, {_f(a.get('ci_high'), 4)}]",
                     str(a.get("rank", "n/a")), str(a.get("band", "n/a")), *[_f(v) for v in leak]])
    return headers, rows


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return f'<div class="scroll">{table_html(headers, rows, "retraining")}</div>'


@SECTIONS.register(name="retraining")
def render_retraining_section(results: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, str]:
    """``(title, trusted HTML)`` of the ``retraining`` section; every data text is escaped."""
    parts = []
    for ev in data.get("retraining", []):
        name = e(str(ev["evaluator"]))
        what = "removed" if ev.get("mode", "roar") == "roar" else "kept"
        cap = (f"{ev['evaluator']}: test accuracy of models retrained on images whose top-t pixels were "
               f"{what} ({ev.get('imputation') or 'see conventions'} imputation), mean ± 1 sd over the "
               "repeats (clipped to [0, 1])")
        parts.append(f"<h3>{name}</h3>")
        parts.append(f'<figure><img alt="{e(cap)}" src="{figures.data_uri(retraining_png(ev))}">'
                     f"<figcaption>{e(cap)}</figcaption></figure>")
        headers, rows = retraining_table(results, ev)
        parts.append(_table(headers, rows))
        chance = ev.get("chance")
        lines = [
            "Area: integral over the fraction of the gap to the random control's curve, paired by repeat "
            f"({'random - method' if ev.get('mode', 'roar') == 'roar' else 'method - random'}; higher = "
            "more faithful); CI, rank and band are the leaderboard's (bootstrap over the repeats).",
            "Leakage: macro top-1 of a classifier that sees only the removal masks, no pixels "
            + (f"(chance {chance:.3f}); " if chance is not None else "(above chance); ")
            + "far above chance means the mask's shape alone tells the class, so a score may come "
              "from the mask rather than from the removed evidence (Rong et al., ICML 2022).",
        ]
        tau = ev.get("kendall_tau_road")
        lines.append(f"Kendall τ between the {ev['evaluator']} and the ROAD ranking (reference model on the "
                     f"same imputed test images, no retraining) over {len(ev.get('tau_methods', []))} methods: "
                     f"{_f(tau)}.")
        parts.append("".join(f"<p>{e(s)}</p>" for s in lines))
    for ev in data.get("data_randomisation", []):
        agg = _aggs(results, ev["evaluator"])
        sims = list(ev["similarities"])
        headers = ["method", "kind", *[h for s in sims for h in (s, f"{s} random-pair floor")],
                   "rank", "rank band"]
        rows = [[r["method"], _kind(r), *[_f(r.get(k)) for s in sims for k in (s, f"floor_{s}")],
                 str(agg.get(r["method"], {}).get("rank", "n/a")), str(agg.get(r["method"], {}).get("band", "n/a"))]
                for r in ev["methods"]]
        parts.append(f"<h3>{e(str(ev['evaluator']))} (label randomisation, randomisation family)</h3>")
        parts.append(_table(headers, rows))
        fit = ev.get("fitted")
        parts.append("<p>" + e(
            f"Similarity of each method's maps under the true-label model and a model trained on permuted "
            f"labels (Adebayo et al., 2018); lower = the maps depend on what the model learned. The floor is "
            f"the similarity of the true model's maps of random image pairs: a method at or above its "
            f"floor does not react to the labels. Ranked by {ev['similarity']}. The permuted-label model "
            f"reached training top-1 {_f(ev.get('permuted_train_top1'))}"
            + ("" if fit is None else " (fitted)" if fit else " (NOT fitted: raise the recipe's epochs)") + ".")
            + "</p>")
    return str(data.get("title", "Retraining")), "".join(parts)


__all__ = ["method_colours", "retraining_figure", "retraining_png", "retraining_table",
           "render_retraining_section", "ORACLE_COLOUR"]
