"""Leaderboards from a results document: Markdown (GitHub), LaTeX (booktabs), CSV, JSON.

Rows are methods ordered by overall rank; columns are the overall rank, the rank per evaluator
family and, per evaluator, ``mean [ci_low, ci_high]`` with the rank band. The long CSV has one
row per (evaluator, method) with every aggregated number.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from tabulate import tabulate

from gmxai_eval.utils import write_atomic

CSV_COLUMNS = ("evaluator", "method", "category", "higher_is_better", "control", "mean", "ci_low",
               "ci_high", "std", "n", "n_nan", "rank", "band", "resampling_unit")


def _fmt(x: Any, digits: int = 4) -> str:
    """``digits`` significant digits (``n/a`` for a missing or non-finite value)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{float(x):.{digits}g}"


def _ordered_methods(results: Mapping[str, Any]) -> list[str]:
    overall = results["rankings"]["overall"]
    methods = list(results.get("methods", {})) or sorted(overall)
    return sorted([m for m in methods if m in overall], key=lambda m: (overall[m]["rank"], m))


def _arrow(hib: bool) -> str:
    return "↑" if hib else "↓"


def leaderboard_rows(results: Mapping[str, Any], *, latex: bool = False) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` of the wide leaderboard (cells as strings, unescaped)."""
    agg = {(r["evaluator"], r["method"]): r for r in results["aggregates"]}
    evaluators = results["agreement"]["evaluators"]
    families = results["rankings"]["families"]
    by_family = results["rankings"]["by_family"]
    overall = results["rankings"]["overall"]
    hib = {e: agg[(e, m)]["higher_is_better"] for (e, m) in agg}
    up, down = ("$\\uparrow$", "$\\downarrow$") if latex else ("↑", "↓")
    headers = ["method", "overall"] + [f"{f or 'other'} rank" for f in families] + \
        [f"{e} {up if hib[e] else down}" for e in evaluators]
    rows = []
    for m in _ordered_methods(results):
        ctrl = any(agg[(e, m)]["control"] for e in evaluators if (e, m) in agg)
        row = [m + (" (control)" if ctrl else ""), f"{overall[m]['rank']} ({overall[m]['mean_rank']:.2f})"]
        row += [f"{by_family[f][m]['rank']} ({by_family[f][m]['mean_rank']:.2f})" for f in families]
        for e in evaluators:
            r = agg.get((e, m))
            row.append("" if r is None else
                       f"{_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] #{r['band']}")
        rows.append(row)
    return headers, rows


def flags_text(results: Mapping[str, Any]) -> list[str]:
    """One line per evaluator on which a control beats a real method."""
    out = []
    for e, f in results.get("control_flags", {}).items():
        if f["flag"]:
            parts = "; ".join(f"{c} beats {', '.join(ms)}" for c, ms in f["beats"].items())
            out.append(f"{e}: control ranks above real methods ({parts})")
    return out


def leaderboard_markdown(results: Mapping[str, Any]) -> str:
    """GitHub-flavoured Markdown leaderboard with a legend and the control flags."""
    headers, rows = leaderboard_rows(results)
    pipe = lambda s: s.replace("|", "\\|")  # noqa: E731  (a label must not split a cell)
    headers, rows = [pipe(h) for h in headers], [[pipe(c) for c in r] for r in rows]
    text = [f"# Leaderboard: {results.get('run_id', '')}", "",
            tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), "",
            "Cells: mean [95% bootstrap CI] #rank band; ranks: rank (mean rank); "
            "↑ higher is better, ↓ lower is better."]
    flags = flags_text(results)
    if flags:
        text += ["", "**Control flags**", ""] + [f"- {f}" for f in flags]
    return "\n".join(text) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(s: str) -> str:
    """Escape LaTeX special characters of a text cell."""
    return "".join(_TEX.get(c, c) for c in str(s))


def leaderboard_latex(results: Mapping[str, Any]) -> str:
    """A booktabs ``tabular`` (``\\toprule`` / ``\\midrule`` / ``\\bottomrule``)."""
    headers, rows = leaderboard_rows(results, latex=True)

    def cell(s: str, header: bool = False) -> str:
        if header:  # keep the arrow macros, escape the rest
            for arrow in ("$\\uparrow$", "$\\downarrow$"):
                if s.endswith(arrow):
                    return tex_escape(s[: -len(arrow)]) + arrow
        return tex_escape(s)

    lines = [r"% requires \usepackage{booktabs}",
             r"\begin{tabular}{l" + "c" * (len(headers) - 1) + "}", r"\toprule",
             " & ".join(cell(h, True) for h in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def leaderboard_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """Long table: one row per (evaluator, method) with :data:`CSV_COLUMNS`."""
    return pd.DataFrame([{c: r.get(c) for c in CSV_COLUMNS} for r in results["aggregates"]],
                        columns=list(CSV_COLUMNS))


def leaderboard_csv(results: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    leaderboard_frame(results).to_csv(buf, index=False, float_format="%.17g")
    return buf.getvalue()


def write_tables(results: Mapping[str, Any], folder: str | Path) -> list[Path]:
    """Write ``leaderboard.md``, ``leaderboard.tex`` and ``leaderboard.csv`` atomically."""
    folder = Path(folder)
    return [write_atomic(folder / "leaderboard.md", leaderboard_markdown(results)),
            write_atomic(folder / "leaderboard.tex", leaderboard_latex(results)),
            write_atomic(folder / "leaderboard.csv", leaderboard_csv(results))]


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
