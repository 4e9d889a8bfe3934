"""The compact summary of a run: what ``gmxai-eval run`` prints and what ``report.html`` opens with.

Both are rendered from one :func:`summary_data` of the results document (never from a model):

* methods by overall rank, each with its **rank interval**: the 2.5 and 97.5 percentiles of the
  overall rank (and of every family rank) over bootstrap resamples of the images. One draw
  resamples the images jointly for every evaluator and method (paired), recomputes every
  evaluator's means and ranks, the family mean ranks and the overall rank exactly as
  :func:`gmxai_eval.report.aggregate.summarise` does (aliases counted once, the oracle
  excluded); see :func:`rank_intervals`;
* the best method per family (rank 1; when that is a control, also the best real method);
* the oracle's reference rank: where its overall mean rank would place it among the methods;
* counts of flags: evaluators on which a control beats a real method, evaluators marked
  † (disagrees with the counterfactual truth), ‡ (unreliable across images) and ° (a method
  beats the oracle);
* the files that hold the full tables.

:func:`summary_lines` formats it for a console (every line at most ``width`` characters: family
columns wrap into further blocks rather than widen the table); :func:`summary_html` as an
escaped HTML fragment.
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from gmxai_eval.errors import DataError
from gmxai_eval.report.tables import MARK_DISAGREES, MARK_ORACLE, MARK_UNRELIABLE, NO_RANK, rank_key

#: bootstrap draws and seed of the rank intervals (fixed: a re-rendered report is the same bytes)
N_BOOT, SEED = 200, 0
#: the files a run writes, in the order the summary lists them
FILES = ("leaderboard.md", "leaderboard.csv", "validity.md", "results.json", "report.html")


def _rank_min_rows(oriented: np.ndarray, rtol: float = 0.0) -> np.ndarray:
    """Row-wise :func:`gmxai_eval.report.aggregate.rank_min`: ``(B, M)`` -> ``(B, M)`` ranks
    (1 = largest, ties share the best rank; NaN: no rank, NaN, not counted for the others);
    values within ``rtol`` (relative) tie."""
    fin = np.isfinite(oriented)
    key = np.where(fin, oriented, -np.inf)
    a, b = key[:, None, :], key[:, :, None]
    with np.errstate(invalid="ignore"):
        tol = rtol * np.maximum(np.abs(np.where(fin, oriented, 0.0))[:, None, :],
                                np.abs(np.where(fin, oriented, 0.0))[:, :, None])
        ranks = 1 + ((a > b) & ~(np.abs(a - b) <= tol)).sum(axis=2)
    return np.where(fin, ranks, np.nan)


def _mean_ranks(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis of ranks ``(..., K)`` leaving out NaN (no rank), as the
    aggregation's family / overall means do; NaN where no rank is left. Rows without NaN are
    the plain mean (bitwise those of the aggregation)."""
    plain = x.mean(axis=-1)
    missing = np.isnan(x).any(axis=-1)
    if not missing.any():
        return plain
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN on purpose
        return np.where(missing, np.nanmean(x, axis=-1), plain)


def _families(results: Mapping[str, Any]) -> dict[str, list[str]]:
    """The families with their counted evaluators (aliases dropped), in the document's order."""
    rk = results["rankings"]
    counted = set(rk.get("counted") or results["agreement"]["evaluators"])
    fams = {f: [e for e in evs if e in counted] for f, evs in rk["families"].items()}
    return {f: evs for f, evs in fams.items() if evs}


def _ranked(results: Mapping[str, Any]) -> list[str]:
    """The ranked (non-oracle) methods in the document's method order."""
    overall = results["rankings"]["overall"]
    methods = list(results.get("methods") or {}) or sorted(overall)
    return [m for m in methods if m in overall]


def per_sample_tables(results: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """``{evaluator: (sample_id x method) mean score over seeds}`` of the counted evaluators,
    columns the ranked methods (as :func:`~gmxai_eval.report.aggregate.summarise` builds them)."""
    samples = results.get("samples")
    if not samples:
        raise DataError("expected results['samples'] with per-sample scores, got none", column="samples")
    df = pd.DataFrame(samples, columns=["seed", "evaluator", "method", "sample_id", "score"])
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    ranked = _ranked(results)
    out = {}
    for ev in [e for evs in _families(results).values() for e in evs]:
        sub = df[df["evaluator"] == ev]
        out[ev] = sub.groupby(["sample_id", "method"], sort=True)["score"].mean().unstack("method") \
            .reindex(columns=ranked)
    return out


def ranks_from_weights(results: Mapping[str, Any], tables: Mapping[str, pd.DataFrame],
                       weights: np.ndarray, pool: Sequence[str],
                       groups: Mapping[str, Sequence[str]] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Overall and family ranks of the ranked methods under image weights.

    Args:
        tables: :func:`per_sample_tables`.
        weights: ``(B, U)`` non-negative weights of the images ``pool`` (a bootstrap draw's
            multiplicities; all ones gives the document's own ranks).
        groups: ``{name: evaluators}`` ranked as families (default: the document's families;
            e.g. ``{"faithfulness": the verdict's evaluators}``); the overall rank is over them.

    Returns:
        ``overall (B, M)`` and ``{family: (B, M)}`` integer ranks, methods in
        :func:`_ranked` order. A method without a weighted score on an evaluator in a draw (none of
        its images drawn) keeps its mean over all images there.
    """
    hib = {a["evaluator"]: bool(a["higher_is_better"]) for a in results["aggregates"]}
    pos = {s: i for i, s in enumerate(pool)}
    fams = dict(groups) if groups is not None else _families(results)
    per_ev: dict[str, np.ndarray] = {}
    for evs in fams.values():
        for ev in evs:
            t = tables[ev]
            x = t.to_numpy(dtype=np.float64)                          # (N, M)
            fin = np.isfinite(x)
            w = weights[:, [pos[str(s)] for s in t.index]]            # (B, N)
            cnt = w @ fin
            with np.errstate(invalid="ignore", divide="ignore"):
                means = (w @ np.where(fin, x, 0.0)) / cnt
                full = np.where(fin, x, 0.0).sum(0) / fin.sum(0)
            means = np.where(cnt > 0, means, full[None, :])
            per_ev[ev] = _rank_min_rows(means if hib[ev] else -means).astype(np.float64)
    # means over the last (contiguous) axis: numpy sums them in the order a 1-D mean does, so the
    # mean ranks are bitwise those of the aggregation and its ties stay ties
    fam_mean = {f: _mean_ranks(np.stack([per_ev[e] for e in evs], axis=-1)) for f, evs in fams.items()}
    fam_rank = {f: _rank_min_rows(-v) for f, v in fam_mean.items()}
    overall = _rank_min_rows(-_mean_ranks(np.stack(list(fam_mean.values()), axis=-1)))
    return overall, fam_rank


def rank_intervals(results: Mapping[str, Any], n_boot: int = N_BOOT, seed: int = SEED,
                   level: float = 0.95, groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Bootstrap intervals of the overall and family ranks (see the module docstring).

    Returns ``{"overall": {method: [lo, hi]}, "by_family": {family: {method: [lo, hi]}},
    "n_boot", "level", "unit": "image"}``: the ``(1 - level) / 2`` and ``(1 + level) / 2``
    percentiles (observed ranks, ``inverted_cdf``) of ``n_boot`` image resamples; with
    ``groups``, ``by_family`` holds those groups (see :func:`ranks_from_weights`).
    """
    tables = per_sample_tables(results)
    pool = sorted({str(s) for t in tables.values() for s in t.index})
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(pool), size=(n_boot, len(pool)))
    w = np.zeros((n_boot, len(pool)))
    np.add.at(w, (np.arange(n_boot)[:, None], draws), 1.0)
    overall, fam = ranks_from_weights(results, tables, w, pool, groups)
    ranked = _ranked(results)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def iv(r: np.ndarray) -> dict[str, list[int] | None]:
        # draws in which a method has no rank are left out; no rank in any draw: no interval
        return {m: [int(v) for v in np.percentile(r[np.isfinite(r[:, j]), j], q, method="inverted_cdf")]
                if np.isfinite(r[:, j]).any() else None for j, m in enumerate(ranked)}

    return {"overall": iv(overall), "by_family": {f: iv(r) for f, r in fam.items()}, "n_boot": int(n_boot),
            "level": level, "unit": "image"}


def _is_control(results: Mapping[str, Any], m: str) -> bool:
    return bool(((results.get("methods") or {}).get(m) or {}).get("card", {}).get("control")) or any(
        a["control"] for a in results["aggregates"] if a["method"] == m)


def _truth_cells(results: Mapping[str, Any], ver: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{method: {"rank", "interval", "band"}}`` of the verdict's truth ranking (interval: the
    rank's bootstrap interval over the CI's draws, ``rank_ci_low`` / ``rank_ci_high``)."""
    out = {}
    for r in (ver.get("truth") or {}).get("methods") or []:
        lo, hi = r.get("rank_ci_low"), r.get("rank_ci_high")
        out[r["method"]] = {"rank": r.get("rank"), "band": r.get("band"),
                            "interval": [lo, hi] if lo is not None and hi is not None else None}
    return out


def _verdict_columns(results: Mapping[str, Any], order_default: Sequence[str],
                     fam_iv: Mapping[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]], list[str]]:
    """``(columns, {method: {column: cell}}, row order)`` of the headline table: the truth
    ranking, the faithfulness rank, then every property family; without a ``verdict`` (an older
    results.json): the overall rank and every family."""
    rk = results["rankings"]
    ver = results.get("verdict") or {}
    cells: dict[str, dict[str, Any]] = {m: {} for m in order_default}
    if not ver:
        cols = ["overall"] + list(_families(results))
        for m in order_default:
            cells[m]["overall"] = {"rank": rk["overall"][m]["rank"], "interval": fam_iv.get("overall", {}).get(m)}
        props = list(_families(results))
    else:
        cols, props = [], [f for f in ver.get("properties") or {} if f in _families(results)]
        if ver.get("has_truth"):
            cols.append("truth")
            for m, c in _truth_cells(results, ver).items():
                if m in cells:
                    cells[m]["truth"] = c
        if ver.get("faithfulness"):
            cols.append("faithfulness")
            iv = rank_intervals(results, groups={"faithfulness": ver["faithfulness_evaluators"]})["by_family"] \
                if results.get("samples") else {}
            for m, r in ver["faithfulness"].items():
                if m in cells:
                    cells[m]["faithfulness"] = {"rank": r["rank"], "interval": (iv.get("faithfulness") or {}).get(m)}
        cols += props
    for f in props:
        for m in order_default:
            if m in rk["by_family"].get(f, {}):
                cells[m][f] = {"rank": rk["by_family"][f][m]["rank"],
                               "interval": fam_iv.get("by_family", {}).get(f, {}).get(m)}
    lead = cols[0] if cols else None
    order = sorted(order_default, key=lambda m: (*rank_key((cells[m].get(lead) or {}).get("rank")),
                                                 order_default.index(m))) if lead else list(order_default)
    return cols, cells, order


def _verdict_block(results: Mapping[str, Any]) -> dict[str, Any]:
    """The headline's text facts: the truth evaluator and its reliability, the agreeing
    evaluators, the evidence the faithfulness rank uses, the properties."""
    ver = results.get("verdict") or {}
    if not ver:
        return {}
    truth = ver.get("truth") or {}
    agreement = ver.get("agreement") or []
    return {"has_truth": bool(ver.get("has_truth")), "truth_evaluator": ver.get("truth_evaluator"),
            "truth_reliability": truth.get("reliability") or {}, "basis": ver.get("basis", ""),
            "evaluators": list(ver.get("faithfulness_evaluators") or []),
            "agreeing": [a for a in agreement if a.get("agrees") and a.get("votes", True)],
            "n_candidates": sum(bool(a.get("votes", True)) for a in agreement),
            "also_agree": list(ver.get("also_agree") or []),
            "properties": list(ver.get("properties") or {}), "definition": ver.get("definition", "")}


def summary_data(results: Mapping[str, Any], files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """The summary of ``results`` (see the module docstring) as plain data.

    Args:
        files: the paths of the full outputs to list (only the ones given are listed).
    """
    rk = results["rankings"]
    overall = rk["overall"]
    fams = _families(results)
    by_overall = sorted(_ranked(results), key=lambda m: (*rank_key(overall[m]["rank"]), m))
    iv = rank_intervals(results) if results.get("samples") else {"overall": {}, "by_family": {}}
    cols, cells, order = _verdict_columns(results, by_overall, iv)
    rows = [{"method": m, "control": _is_control(results, m), "rank": overall[m]["rank"],
             "mean_rank": overall[m]["mean_rank"], "interval": iv["overall"].get(m), "cells": cells[m],
             "families": {f: {"rank": rk["by_family"][f][m]["rank"],
                              "interval": iv["by_family"].get(f, {}).get(m)}
                          for f in fams if m in rk["by_family"].get(f, {})}}
            for m in order]
    best = {}
    for f in fams:
        fr = rk["by_family"][f]
        top = sorted(m for m in fr if fr[m]["rank"] == 1)
        real = sorted((m for m in fr if not _is_control(results, m) and fr[m]["rank"] is not None),
                      key=lambda m: (fr[m]["rank"], m))
        best[f] = {"top": top, "controls": [m for m in top if _is_control(results, m)],
                   "top_is_control": all(_is_control(results, m) for m in top),
                   "best_real": real[0] if real else None, "best_real_rank": fr[real[0]]["rank"] if real else None}
    oracle = {}
    for o, ref in (rk.get("reference") or {}).items():
        mr = ref.get("mean_rank")
        place = None if mr is None else 1 + sum(overall[m]["mean_rank"] is not None and overall[m]["mean_rank"] < mr
                                                 for m in order)
        oracle[o] = {"mean_rank": mr, "place": place, "of": len(order) + 1}
    return {"run_id": str(results.get("run_id", "")), "n_methods": len(order), "n_evaluators": len(rk["by_evaluator"]),
            "n_counted": sum(len(v) for v in fams.values()), "n_images": results.get("n_images"),
            "seeds": list(results.get("seeds", [])), "families": list(fams), "columns": cols, "rows": rows,
            "best": best, "oracle": oracle, "flags": _flags(results), "verdict": _verdict_block(results),
            "n_boot": iv.get("n_boot"), "level": iv.get("level"), "files": [str(p) for p in files]}


def _flags(results: Mapping[str, Any]) -> dict[str, Any]:
    """Counts of the evaluators' flags, with the controls and unreliable evaluators named."""
    evs = results["agreement"]["evaluators"]
    val = (results.get("validity") or {}).get("evaluators") or {}
    of = results.get("oracle_flags") or {}
    cf = results.get("control_flags") or {}
    named: dict[str, int] = {}
    for e in evs:
        if (cf.get(e) or {}).get("flag"):
            for c in (cf[e].get("controls") or cf[e].get("beats") or {}):
                named[c] = named.get(c, 0) + 1
    return {"evaluators": len(evs), "control": sum(bool((cf.get(e) or {}).get("flag")) for e in evs),
            "control_rule": "top band or above the median real method" if any("controls" in (cf.get(e) or {})
                                                                               for e in evs)
            else "a control beats a real method", "controls": named,
            "disagrees": sum(bool((val.get(e) or {}).get("disagrees")) for e in evs),
            "unreliable": sum(bool((val.get(e) or {}).get("unreliable")) for e in evs),
            "unreliable_names": [e for e in evs if (val.get(e) or {}).get("unreliable")],
            "reliability_rule": f"split-half reliability of the ranking < {(results.get('validity') or {}).get('threshold'):g}"
            if results.get("ranking_reliability") and (results.get("validity") or {}).get("threshold") is not None
            else "Krippendorff's alpha per image (older results.json)",
            "oracle_beaten": sum(bool((of.get(e) or {}).get("flag")) for e in evs),
            "has_validity": bool(val), "has_truth": bool((results.get("validity") or {}).get("truth")),
            "has_oracle": bool(of)}


def _iv(rank: int | None, interval: Sequence[int] | None, band: int | None = None) -> str:
    """``"3 [2-5]"`` (``"3"`` without an interval; ``"no rank"`` without a rank; ``" #2"`` with a
    band)."""
    if rank is None:
        return NO_RANK
    text = f"{rank}" if not interval else f"{rank} [{interval[0]}-{interval[1]}]"
    return text + (f" #{band}" if band is not None else "")


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: max(n - 1, 1)] + "~"


def _flag_text(fl: Mapping[str, Any]) -> str:
    n = fl["evaluators"]
    ctrl = ", ".join(f"{c} on {k}" for c, k in sorted(fl.get("controls", {}).items(), key=lambda x: (-x[1], x[0])))
    rule = fl.get("control_rule", "a control beats a real method")
    parts = [f"control ({rule}) on {fl['control']}/{n}" + (f" ({ctrl})" if ctrl else "")]
    if fl["has_validity"]:
        parts.append(f"{MARK_DISAGREES} disagrees with the counterfactual truth on {fl['disagrees']}/{n}"
                     if fl.get("has_truth", True) else
                     f"{MARK_DISAGREES} not checked (no counterfactual truth evaluator in the run)")
        names = fl.get("unreliable_names") or []
        parts.append(f"{MARK_UNRELIABLE} unreliable ({fl.get('reliability_rule', 'see validity.md')}) on "
                     f"{fl['unreliable']}/{n}" + (f" ({', '.join(names)})" if 0 < len(names) <= 8 else ""))
    if fl["has_oracle"]:
        parts.append(f"{MARK_ORACLE} oracle beaten on {fl['oracle_beaten']}/{n}")
    return "; ".join(parts)


def _f2(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.2f}"


def verdict_text(data: Mapping[str, Any]) -> list[str]:
    """The headline's sentences (plain text, one item each): what ranks the methods and why."""
    v = data.get("verdict") or {}
    if not v:
        return ["Methods by overall rank (the mean of the family mean ranks; an older results.json without "
                "a verdict)."]
    out = []
    if v["has_truth"]:
        rel = v.get("truth_reliability") or {}
        out.append(f"Faithfulness verdict. Truth: methods ranked by the counterfactual truth "
                   f"{v['truth_evaluator']} (interventional importance of the planted traits); its ranking's "
                   f"split-half reliability {_f2(rel.get('reliability'))} [{_f2(rel.get('ci_low'))}, "
                   f"{_f2(rel.get('ci_high'))}] over {rel.get('n_units')} {rel.get('unit', 'unit')}s"
                   + (f" (below {rel.get('threshold'):g}: {MARK_UNRELIABLE})" if rel.get("unreliable") else "") + ".")
        ag = v.get("agreeing") or []
        out.append(f"Faithfulness evaluators (perturbation, retraining) that agree with the truth ({len(ag)} of "
                   f"{v['n_candidates']}: corrected tau interval above 0 and the truth in their top band): "
                   + (", ".join(f"{a['evaluator']} (tau_c {_f2(a.get('tau_corrected'))} [{_f2(a.get('corrected_ci_low'))}, "
                                f"{_f2(a.get('corrected_ci_high'))}])" for a in ag) if ag else "none") + ".")
        out.append("Faithfulness: mean rank over those evaluators alone." if ag else
                   "Faithfulness: no faithfulness evaluator agrees with the truth on this model, so the truth "
                   "ranking is the verdict.")
        if v.get("also_agree"):
            out.append("Also agree with the truth but measure other properties (never averaged into faithfulness): "
                       + ", ".join(v["also_agree"]) + ".")
    else:
        basis = (v.get("basis") or "").replace(" (no truth in this run)", "")
        out.append("Faithfulness verdict: no counterfactual truth in this run, so no evaluator's validity is "
                   "checked. The faithfulness column ranks by the " + basis + ": "
                   + (", ".join(v["evaluators"]) if v["evaluators"] else "none passes, so there is none") + ".")
    if v.get("properties"):
        out.append("Other properties, each with its own rank and never averaged into faithfulness: "
                   + ", ".join(v["properties"]) + ". The overall rank (mean of all families) is in leaderboard.md.")
    return out


def _wrap(text: str, width: int, indent: str = "  ") -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width, subsequent_indent=indent, break_long_words=True) or [""]


def summary_lines(data: Mapping[str, Any], width: int = 120) -> list[str]:
    """The console summary of :func:`summary_data` (every line at most ``width`` characters)."""
    seeds = ", ".join(map(str, data["seeds"]))
    out = [_clip(f"Run {data['run_id']}: {data['n_methods']} methods x {data['n_evaluators']} evaluators "
                 f"({data['n_counted']} counted, {len(data['families'])} families), {data['n_images']} images, "
                 f"seed {seeds}", width)]
    for sentence in verdict_text(data):
        out += _wrap(sentence, width)
    level = data.get("level")
    out += _wrap("Ranks: rank [" + (f"{level * 100:.0f}% bootstrap interval" if level else "no interval") +
                 "] #band (truth: its rank band); (c) = control", width)
    rows = data["rows"]
    cols = list(data.get("columns") or ["overall"] + list(data["families"]))

    def cell(r: Mapping[str, Any], col: str) -> str:
        c = (r.get("cells") or {}).get(col)
        return _iv(c["rank"], c.get("interval"), c.get("band")) if c else ""

    mw = min(max([len(r["method"]) + (4 if r["control"] else 0) for r in rows] + [6]), 28)
    cw = max([len(cell(r, c)) for r in rows for c in cols] + [min(len(c), 16) + 1 for c in cols] + [7]) + 2
    per_block = max(1, (width - mw - 2) // cw)
    blocks = [cols[i:i + per_block] for i in range(0, len(cols), per_block)] or [[]]
    for block in blocks:
        out += ["", (f"{'method':<{mw}}  " + "".join(f"{_clip(f, cw - 1):<{cw}}" for f in block)).rstrip()]
        for r in rows:
            name = _clip(r["method"] + (" (c)" if r["control"] else ""), mw)
            out.append((f"{name:<{mw}}  " + "".join(f"{cell(r, f):<{cw}}" for f in block)).rstrip())
    out += ["", "Best per family:"]
    for f, bst in data["best"].items():
        text = f"  {f}: " + ", ".join(m + (" (control)" if m in bst["controls"] else "") for m in bst["top"])
        if bst["top_is_control"] and bst["best_real"]:
            text += f"; best real method {bst['best_real']} (rank {bst['best_real_rank']})"
        out.append(_clip(text, width))
    for o, ref in data["oracle"].items():
        if ref["mean_rank"] is not None:
            out.append(_clip(f"Reference {o}: mean rank {ref['mean_rank']:.2f}, would rank {ref['place']} of "
                             f"{ref['of']} overall (not ranked)", width))
    out.append("Flags (evaluators):")
    for p in _flag_text(data["flags"]).split("; "):
        out += _wrap("  " + p, width, "    ")
    if data["files"]:
        out.append("Full tables, flags and legend:")
        out += [f"  {p}" for p in data["files"]]
    return out


def run_files(run_dir: str | Path | None) -> list[Path]:
    """The files of :data:`FILES` that exist in ``run_dir`` (none without a folder)."""
    if run_dir is None:
        return []
    return [Path(run_dir) / n for n in FILES if (Path(run_dir) / n).is_file()]


def summary_html(data: Mapping[str, Any]) -> str:
    """The summary of :func:`summary_data` as an escaped HTML fragment (same content as the
    console lines; file names relative to the run folder)."""
    e = html.escape
    level = data.get("level")
    cols = list(data.get("columns") or ["overall"] + list(data["families"]))
    body = []
    for r in data["rows"]:
        cells = [f"<td>{e(r['method'])}{' <small>(control)</small>' if r['control'] else ''}</td>"]
        for k, col in enumerate(cols):
            c = (r.get("cells") or {}).get(col)
            text = e(_iv(c["rank"], c.get("interval"), c.get("band"))) if c else ""
            cells.append(f"<td><b>{text}</b></td>" if k == 0 else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    seeds = ", ".join(map(str, data["seeds"]))
    parts = [f"<p>{e(str(data['n_methods']))} methods &times; {e(str(data['n_evaluators']))} evaluators "
             f"({e(str(data['n_counted']))} counted, {len(data['families'])} families), "
             f"{e(str(data['n_images']))} images, seed {e(seeds)}.</p>"]
    parts += [f'<p class="verdict">{e(t)}</p>' for t in verdict_text(data)]
    parts.append("<p>Ranks: rank " + (f"[{level * 100:.0f}% bootstrap interval]" if level else "")
                 + " #band (truth: its rank band).</p>")
    parts.append('<table class="summary"><thead><tr><th>method</th>'
                 + "".join(f"<th>{e(h)}</th>" for h in cols) + "</tr></thead><tbody>" + "".join(body)
                 + "</tbody></table>")
    items = []
    for f, bst in data["best"].items():
        t = f"<b>{e(f)}</b>: " + e(", ".join(m + (" (control)" if m in bst["controls"] else "") for m in bst["top"]))
        if bst["top_is_control"] and bst["best_real"]:
            t += f"; best real method {e(bst['best_real'])} (rank {bst['best_real_rank']})"
        items.append(f"<li>{t}</li>")
    parts.append("<p>Best per family:</p><ul class=\"best\">" + "".join(items) + "</ul>")
    for o, ref in data["oracle"].items():
        if ref["mean_rank"] is not None:
            parts.append(f"<p>Reference {e(o)}: mean rank {ref['mean_rank']:.2f}, would rank {ref['place']} "
                         f"of {ref['of']} overall (not ranked).</p>")
    parts.append(f'<p class="flags">Flags (evaluators): {e(_flag_text(data["flags"]))}. '
                 "Details: the leaderboard and validity sections below.</p>")
    if data["files"]:
        parts.append("<p>Files: " + ", ".join(f"<code>{e(Path(p).name)}</code>" for p in data["files"]) + "</p>")
    return "\n".join(parts)
