"""Leaderboards from a results document: Markdown (GitHub), LaTeX (booktabs), CSV, JSON.

Rows are methods ordered by overall rank, the oracle as a reference row and the minimal detectable
difference per evaluator; columns are the overall rank, the rank per evaluator family and, per
evaluator, ``mean [ci_low, ci_high]`` with the rank band. An evaluator's header carries its
direction, its validity marks (see :func:`legend_lines`), its ranking-relevant conventions and,
for an alias, the evaluator it duplicates. The long CSV has one row per (evaluator, method)
with every aggregated number. The metric-validity table is written beside it
(:mod:`gmxai_eval.report.validity`).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from tabulate import tabulate

from gmxai_eval.report import validity
from gmxai_eval.report.aggregate import ranking_conventions
from gmxai_eval.utils import csv_safe_frame, markdown_cell, markdown_text
from gmxai_eval.utils import tex_escape, write_atomic

CSV_COLUMNS = ("evaluator", "method", "category", "higher_is_better", "control", "mean", "ci_low",
               "ci_high", "std", "n", "n_nan", "rank", "band", "resampling_unit", "reference",
               "alias_of", "mdd", "conventions")

#: header marks of an evaluator (explained in the legend)
MARK_DISAGREES, MARK_UNRELIABLE, MARK_ORACLE = "†", "‡", "°"
#: header mark of an evaluator that does not rank the counterfactual truth first
MARK_TRUTH = "§"


def _fmt(x: Any, digits: int = 4) -> str:
    """``digits`` significant digits (``n/a`` for a missing or non-finite value)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{float(x):.{digits}g}"


#: what a table shows for a method without a rank (all its scores NaN)
NO_RANK = "no rank"


def rank_key(rank: int | None) -> tuple[bool, int]:
    """Sort key of a rank: ranked methods by rank, then the methods without a rank."""
    return (rank is None, int(rank) if rank is not None else 0)


def _ordered_methods(results: Mapping[str, Any]) -> list[str]:
    overall = results["rankings"]["overall"]
    methods = list(results.get("methods", {})) or sorted(overall)
    return sorted([m for m in methods if m in overall], key=lambda m: (*rank_key(overall[m]["rank"]), m))


def rank_cell(rec: Mapping[str, Any]) -> str:
    """``"rank (mean rank)"`` of a family/overall record, ``", k of n"`` added when the method has
    a rank on only ``k`` of the ``n`` evaluators (families); ``"n/a (no rank)"`` without one."""
    if rec.get("rank") is None or rec.get("mean_rank") is None:
        return f"n/a ({NO_RANK})"
    n, of = rec.get("n"), rec.get("of")
    part = f", {n} of {of}" if n is not None and of is not None and n < of else ""
    return f"{rec['rank']} ({rec['mean_rank']:.2f}{part})"


def score_cell(r: Mapping[str, Any]) -> str:
    """``"mean [ci_low, ci_high] #band"`` of one aggregate record; ``"no rank"`` instead of the
    band when every score is NaN, and ``"(k NaN)"`` when ``k`` samples' scores were NaN."""
    band = f"#{r['band']}" if r.get("band") is not None else NO_RANK
    c = f"{_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] {band}"
    if r.get("n_nan"):
        c += f" ({r['n_nan']} NaN)"
    return c


def _reference_methods(results: Mapping[str, Any]) -> list[str]:
    return list((results["rankings"].get("reference") or {}))


def _arrow(hib: bool) -> str:
    return "↑" if hib else "↓"


def evaluator_conventions(results: Mapping[str, Any], evaluator: str) -> dict[str, str]:
    """The ranking-relevant conventions of ``evaluator``: ``results["ranking_conventions"]`` or,
    for a document without it, derived from ``results["evaluators"][ev]["conventions"]``."""
    got = (results.get("ranking_conventions") or {}).get(evaluator)
    if got:
        return dict(got)
    info = (results.get("evaluators") or {}).get(evaluator) or {}
    return ranking_conventions(info.get("conventions"))


def evaluator_marks(results: Mapping[str, Any], evaluator: str) -> str:
    """The header marks of ``evaluator``: :data:`MARK_DISAGREES` (disagrees with the
    counterfactual truth), :data:`MARK_UNRELIABLE` (the split-half reliability of its method
    ranking below the threshold),
    :data:`MARK_ORACLE` (a non-oracle method beats the oracle), :data:`MARK_TRUTH` (the
    evaluator does not rank the counterfactual truth first)."""
    val = ((results.get("validity") or {}).get("evaluators") or {}).get(evaluator) or {}
    marks = ""
    if val.get("disagrees"):
        marks += MARK_DISAGREES
    if val.get("unreliable"):
        marks += MARK_UNRELIABLE
    if ((results.get("oracle_flags") or {}).get(evaluator) or {}).get("flag"):
        marks += MARK_ORACLE
    if val.get("ranks_truth_first") is False:
        marks += MARK_TRUTH
    return marks


def evaluator_header(results: Mapping[str, Any], evaluator: str, arrow: str) -> str:
    """``"<evaluator> <arrow><marks> [conventions] (= alias)"`` (unescaped)."""
    conv = evaluator_conventions(results, evaluator)
    text = f"{evaluator} {arrow}{evaluator_marks(results, evaluator)}"
    if conv:
        text += " [" + ", ".join(conv.values()) + "]"
    canon = (results["rankings"].get("alias_of") or {}).get(evaluator)
    if canon:
        text += f" (= {canon}, counted once)"
    return text


def leaderboard_rows(results: Mapping[str, Any], *, latex: bool = False) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` of the wide leaderboard (cells as strings, unescaped).

    Rows: the ranked methods by overall rank, then the oracle as a reference row (no overall
    rank; its cells add its rank among all methods), then the minimal detectable difference of
    every evaluator (when the document has ``statistics``).
    """
    agg = {(r["evaluator"], r["method"]): r for r in results["aggregates"]}
    evaluators = results["agreement"]["evaluators"]
    families = results["rankings"]["families"]
    by_family = results["rankings"]["by_family"]
    overall = results["rankings"]["overall"]
    hib = {e: agg[(e, m)]["higher_is_better"] for (e, m) in agg}
    up, down = ("$\\uparrow$", "$\\downarrow$") if latex else ("↑", "↓")
    headers = ["method", "overall"] + [f"{f or 'other'} rank" for f in families] + \
        [evaluator_header(results, e, up if hib[e] else down) for e in evaluators]

    def cells(m: str, with_rank: bool = False) -> list[str]:
        out = []
        for e in evaluators:
            r = agg.get((e, m))
            if r is None:
                out.append("")
                continue
            c = score_cell(r)
            if with_rank and r.get("rank") is not None:  # no rank: the score cell says so
                n_m = ((results.get("oracle_flags") or {}).get(e) or {}).get("n_methods")
                c += f" rank {r['rank']}" + (f"/{n_m}" if n_m else "")
            out.append(c)
        return out

    rows = []
    for m in _ordered_methods(results):
        ctrl = any(agg[(e, m)]["control"] for e in evaluators if (e, m) in agg)
        row = [m + (" (control)" if ctrl else ""), rank_cell(overall[m])]
        row += [rank_cell(by_family[f][m]) if m in by_family.get(f, {}) else "" for f in families]
        rows.append(row + cells(m))
    for m in _reference_methods(results):
        ref = results["rankings"]["reference"][m]
        mr = ref.get("mean_rank")
        row = [f"{m} (reference)", "ref" + (f" ({mr:.2f})" if mr is not None else "")]
        row += [f"ref ({ref['by_family'][f]:.2f})" if f in ref.get("by_family", {}) else "" for f in families]
        rows.append(row + cells(m, with_rank=True))
    stats = results.get("statistics") or {}
    if stats:
        agg_conf = results.get("aggregation") or {}
        label = f"MDD (alpha {agg_conf.get('alpha', 0.05):g}, power {agg_conf.get('power', 0.8):g})"
        row = [label, ""] + [""] * len(families)
        for e in evaluators:
            st = stats.get(e) or {}
            rel = st.get("mdd_relative")
            row.append(_fmt(st.get("mdd")) + (f" ({rel:.2f} of spread)" if rel is not None else ""))
        rows.append(row)
    relia = results.get("ranking_reliability") or {}
    if relia:
        row = ["ranking reliability [split 95%] (n units)", ""] + [""] * len(families)
        rows.append(row + [reliability_cell(relia.get(e)) for e in evaluators])
    return headers, rows


def reliability_cell(rel: Mapping[str, Any] | None) -> str:
    """``"0.93 [0.85, 0.98] (48 images)"``: split-half reliability of a ranking of means, its
    split interval and its units; ``"n/a"`` without one."""
    if not rel:
        return "n/a"
    return (f"{_fmt(rel.get('reliability'), 2)} [{_fmt(rel.get('ci_low'), 2)}, {_fmt(rel.get('ci_high'), 2)}] "
            f"({rel.get('n_units')} {rel.get('unit', 'unit')}s)")


def legend_lines(results: Mapping[str, Any]) -> list[str]:
    """The legend of the leaderboard (one sentence a line), for Markdown and HTML."""
    agg_conf = results.get("aggregation") or {}
    rule = agg_conf.get("band_rule", "ci_overlap")
    band = agg_conf.get("band", "1 + #methods with a strictly better, non-overlapping CI")
    lines = [f"Cells: mean [95% bootstrap CI] #rank band (rule {rule!r}: {band}).",
             "Ranks: rank (mean rank); the overall rank is the mean over families of the family mean "
             "ranks, every family weighing the same, an evaluator identical to another counted once."
             if "statistics" in results else "Ranks: rank (mean rank).",
             "↑ higher is better, ↓ lower is better; [..] the evaluator's ranking-relevant conventions "
             "(relevance, substrate, unit, output).",
             f"NaN: '(k NaN)' counts the samples whose score is NaN, dropped alike from the mean, the CI "
             f"and the rank; '{NO_RANK}': every score is NaN, so the method is not ranked (never ranked "
             f"last); 'k of n': a family/overall mean rank over the k evaluators where the method has a rank."]
    if "statistics" in results:
        lines.append("MDD: the smallest true paired difference between two methods detected with the "
                     "stated power at this run's n (median over method pairs; share of the spread of "
                     "the method means).")
    if results.get("ranking_reliability"):
        lines.append("Ranking reliability: split-half reliability of the evaluator's ranking of the methods' "
                     "means (unit: the ranking of means; 200 random halves of the resampling units, Spearman "
                     "rho between the halves' rankings, Spearman-Brown step-up, mean over splits) [2.5 and "
                     "97.5 percentiles over the splits] (n resampling units).")
    if results.get("oracle_flags"):
        refs = _reference_methods(results)
        truth = [m for m in refs if ((results.get("methods") or {}).get(m, {}).get("card") or {}).get("reference")
                 == "counterfactual"]
        lines.append("The oracle (the ground-truth mask) is a reference row: it has no overall rank, and "
                     "its cells add its rank among all methods."
                     + (f" So is the counterfactual truth ({', '.join(truth)}: each planted trait's mask "
                        "weighted by the drop in the class score when that trait alone is re-rendered away)."
                        if truth else ""))
    if "validity" in results:
        val = results.get("validity") or {}
        thr = val.get("threshold")
        unrel = (f"{MARK_UNRELIABLE} its method ranking does not replicate (split-half reliability of the "
                 f"ranking of means < {thr:g}, 200 random halves of the images, Spearman-Brown)"
                 if results.get("ranking_reliability") and thr is not None else
                 f"{MARK_UNRELIABLE} unreliable across images (Krippendorff's alpha per image; an older "
                 "results.json)")
        lines.append(f"Marks: {MARK_DISAGREES} disagrees with the counterfactual truth "
                     f"({val.get('primary') or 'none in this run'}: Kendall tau CI includes 0 or tau < 0), "
                     f"{unrel}, {MARK_ORACLE} a non-oracle method beats the "
                     "oracle" + (f", {MARK_TRUTH} does not rank the counterfactual truth "
                                 f"({', '.join(val['truth_methods'])}) first" if val.get("truth_methods") else "")
                     + ". See validity.md.")
    return lines


def flags_text(results: Mapping[str, Any]) -> list[str]:
    """One line per evaluator whose control flag fires (a control in the top band or above the
    median real method; an older results.json: a control beats a real method), then one per
    evaluator on which a non-oracle method beats the oracle."""
    out = []
    for e, f in results.get("control_flags", {}).items():
        if not f["flag"]:
            continue
        if "controls" in f:
            parts = "; ".join(control_reason(c, why) for c, why in f["controls"].items())
            out.append(f"{e}: {parts}")
        else:
            parts = "; ".join(f"{c} beats {', '.join(ms)}" for c, ms in f["beats"].items())
            out.append(f"{e}: control ranks above real methods ({parts})")
    for e, f in (results.get("oracle_flags") or {}).items():
        if f.get("flag") or f.get("truth_flag"):
            parts = "; ".join(f"{o} (rank {f['rank'].get(o)} of {f.get('n_methods')}) is beaten by {', '.join(ms)}"
                              for o, ms in f.get("beaten_by", {}).items())
            out.append(f"{e}: the oracle is beaten ({parts})")
    return out


def control_reason(control: str, why: Mapping[str, Any]) -> str:
    """``"sobel (control) in the top band, above the median real method (rank 2, band 1)"``."""
    parts = (["in the top band"] if why.get("top_band") else []) + \
        (["above the median real method"] if why.get("above_median") else [])
    return f"{control} (control) " + " and ".join(parts) + f" (rank {why.get('rank')}, band {why.get('band')})"


def leaderboard_markdown(results: Mapping[str, Any]) -> str:
    """GitHub-flavoured Markdown leaderboard with a legend, aliases and the flags."""
    headers, rows = leaderboard_rows(results)
    # labels come from specs: HTML escaped and '|' escaped, so no cell can inject markup or columns
    headers, rows = [markdown_cell(h) for h in headers], [[markdown_cell(c) for c in r] for r in rows]
    text = [f"# Leaderboard: {markdown_cell(results.get('run_id', ''))}", "",
            tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    # every line outside the table may carry labels too (legend, aliases, flags): escaped alike
    text += [markdown_text(line) for line in legend_lines(results)]
    aliases = (results.get("rankings") or {}).get("aliases") or {}
    if aliases:
        text += ["", "**Identical evaluators** (same per-sample scores under this run's settings, counted once)",
                 ""] + [markdown_text(f"- {c} = {', '.join(a)}") for c, a in aliases.items()]
    flags = flags_text(results)
    if flags:
        text += ["", "**Flags**", ""] + [markdown_text(f"- {f}") for f in flags]
    return "\n".join(text) + "\n"


def leaderboard_latex(results: Mapping[str, Any]) -> str:
    """A booktabs ``tabular`` (``\\toprule`` / ``\\midrule`` / ``\\bottomrule``)."""
    headers, rows = leaderboard_rows(results, latex=True)

    def cell(s: str, header: bool = False) -> str:
        if header:  # keep the arrow macros, escape the rest
            for arrow in ("$\\uparrow$", "$\\downarrow$"):
                if arrow in s:
                    head, _, tail = s.partition(arrow)
                    return tex_escape(head) + arrow + tex_escape(tail)
        return tex_escape(s)

    lines = [r"% requires \usepackage{booktabs}",
             r"\begin{tabular}{l" + "c" * (len(headers) - 1) + "}", r"\toprule",
             " & ".join(cell(h, True) for h in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def leaderboard_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """Long table: one row per (evaluator, method) with :data:`CSV_COLUMNS` (``alias_of``,
    ``mdd`` and ``conventions`` are per evaluator, repeated on its rows)."""
    alias_of = (results.get("rankings") or {}).get("alias_of") or {}
    stats = results.get("statistics") or {}
    per_ev = {e: {"alias_of": alias_of.get(e, ""), "mdd": (stats.get(e) or {}).get("mdd"),
                  "conventions": "; ".join(f"{k}={v}" for k, v in evaluator_conventions(results, e).items())}
              for e in {r["evaluator"] for r in results["aggregates"]}}
    return pd.DataFrame([{c: ({**r, **per_ev[r["evaluator"]]}).get(c) for c in CSV_COLUMNS}
                         for r in results["aggregates"]], columns=list(CSV_COLUMNS))


def leaderboard_csv(results: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    csv_safe_frame(leaderboard_frame(results)).to_csv(buf, index=False, float_format="%.17g")
    return buf.getvalue()


def write_tables(results: Mapping[str, Any], folder: str | Path) -> list[Path]:
    """Write ``leaderboard.md``, ``leaderboard.tex`` and ``leaderboard.csv`` atomically, and
    ``validity.md``, ``validity.tex`` and ``validity.csv`` when ``results`` has a validity table."""
    folder = Path(folder)
    out = [write_atomic(folder / "leaderboard.md", leaderboard_markdown(results)),
           write_atomic(folder / "leaderboard.tex", leaderboard_latex(results)),
           write_atomic(folder / "leaderboard.csv", leaderboard_csv(results))]
    if results.get("validity"):
        out += [write_atomic(folder / "validity.md", validity.validity_markdown(results)),
                write_atomic(folder / "validity.tex", validity.validity_latex(results)),
                write_atomic(folder / "validity.csv", validity.validity_csv(results))]
    return out


def write_results_json(results: Mapping[str, Any], folder: str | Path) -> Path:
    """``results.json`` (NaN/inf written as null)."""
    return write_atomic(Path(folder) / "results.json",
                        json.dumps(_clean(results), indent=1, default=str, allow_nan=False))


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x
