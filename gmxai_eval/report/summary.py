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
                       weights: np.ndarray, pool: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Overall and family ranks of the ranked methods under image weights.

    Args:
        tables: :func:`per_sample_tables`.
        weights: ``(B, U)`` non-negative weights of the images ``pool`` (a bootstrap draw's
            multiplicities; all ones gives the document's own ranks).

    Returns:
        ``overall (B, M)`` and ``{family: (B, M)}`` integer ranks, methods in
        :func:`_ranked` order. A method without a weighted score on an evaluator in a draw (none of
        its images drawn) keeps its mean over all images there.
    """
    hib = {a["evaluator"]: bool(a["higher_is_better"]) for a in results["aggregates"]}
    pos = {s: i for i, s in enumerate(pool)}
    fams = _families(results)
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
                   level: float = 0.95) -> dict[str, Any]:
    """Bootstrap intervals of the overall and family ranks (see the module docstring).

    Returns ``{"overall": {method: [lo, hi]}, "by_family": {family: {method: [lo, hi]}},
    "n_boot", "level", "unit": "image"}``: the ``(1 - level) / 2`` and ``(1 + level) / 2``
    percentiles (observed ranks, ``inverted_cdf``) of ``n_boot`` image resamples.
    """
    tables = per_sample_tables(results)
    pool = sorted({str(s) for t in tables.values() for s in t.index})
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(pool), size=(n_boot, len(pool)))
    w = np.zeros((n_boot, len(pool)))
    np.add.at(w, (np.arange(n_boot)[:, None], draws), 1.0)
    overall, fam = ranks_from_weights(results, tables, w, pool)
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


def summary_data(results: Mapping[str, Any], files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """The summary of ``results`` (see the module docstring) as plain data.

    Args:
        files: the paths of the full outputs to list (only the ones given are listed).
    """
    rk = results["rankings"]
    overall = rk["overall"]
    fams = _families(results)
    order = sorted(_ranked(results), key=lambda m: (*rank_key(overall[m]["rank"]), m))
    iv = rank_intervals(results) if results.get("samples") else {"overall": {}, "by_family": {}}
    rows = [{"method": m, "control": _is_control(results, m), "rank": overall[m]["rank"],
             "mean_rank": overall[m]["mean_rank"], "interval": iv["overall"].get(m),
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
    evs = results["agreement"]["evaluators"]
    val = (results.get("validity") or {}).get("evaluators") or {}
    of = results.get("oracle_flags") or {}
    flags = {"evaluators": len(evs),
             "control": sum(bool((results.get("control_flags") or {}).get(e, {}).get("flag")) for e in evs),
             "disagrees": sum(bool((val.get(e) or {}).get("disagrees")) for e in evs),
             "unreliable": sum(bool((val.get(e) or {}).get("unreliable")) for e in evs),
             "oracle_beaten": sum(bool((of.get(e) or {}).get("flag")) for e in evs),
             "has_validity": bool(val), "has_truth": bool((results.get("validity") or {}).get("truth")),
             "has_oracle": bool(of)}
    return {"run_id": str(results.get("run_id", "")), "n_methods": len(order), "n_evaluators": len(evs),
            "n_counted": sum(len(v) for v in fams.values()), "n_images": results.get("n_images"),
            "seeds": list(results.get("seeds", [])), "families": list(fams), "rows": rows, "best": best,
            "oracle": oracle, "flags": flags, "n_boot": iv.get("n_boot"), "level": iv.get("level"),
            "files": [str(p) for p in files]}


def _iv(rank: int | None, interval: Sequence[int] | None) -> str:
    """``"3 [2-5]"`` (``"3"`` without an interval; ``"no rank"`` without a rank)."""
    if rank is None:
        return NO_RANK
    return f"{rank}" if not interval else f"{rank} [{interval[0]}-{interval[1]}]"


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: max(n - 1, 1)] + "~"


def _flag_text(fl: Mapping[str, Any]) -> str:
    n = fl["evaluators"]
    parts = [f"a control beats a real method on {fl['control']}/{n}"]
    if fl["has_validity"]:
        parts.append(f"{MARK_DISAGREES} disagrees with the counterfactual truth on {fl['disagrees']}/{n}"
                     if fl.get("has_truth", True) else
                     f"{MARK_DISAGREES} not checked (no counterfactual truth evaluator in the run)")
        parts.append(f"{MARK_UNRELIABLE} unreliable on {fl['unreliable']}/{n}")
    if fl["has_oracle"]:
        parts.append(f"{MARK_ORACLE} oracle beaten on {fl['oracle_beaten']}/{n}")
    return "; ".join(parts)


def summary_lines(data: Mapping[str, Any], width: int = 120) -> list[str]:
    """The console summary of :func:`summary_data` (every line at most ``width`` characters)."""
    seeds = ", ".join(map(str, data["seeds"]))
    out = [_clip(f"Run {data['run_id']}: {data['n_methods']} methods x {data['n_evaluators']} evaluators "
                 f"({data['n_counted']} counted, {len(data['families'])} families), {data['n_images']} images, "
                 f"seed {seeds}", width)]
    level = data.get("level")
    out.append(_clip("Ranks: rank [" + (f"{level * 100:.0f}% bootstrap interval over images, "
                                         f"{data['n_boot']} draws" if level else "no interval") +
                     "]; overall = mean of the family mean ranks; (c) = control", width))
    mw = min(max([len(r["method"]) + (4 if r["control"] else 0) for r in data["rows"]] + [6]), 28)
    cw = max([len(_iv(r["rank"], r["interval"])) for r in data["rows"]]
             + [len(_iv(c["rank"], c["interval"])) for r in data["rows"] for c in r["families"].values()] + [7]) + 2
    fams = list(data["families"])
    lead = mw + 2 + cw  # method column + overall column
    per_block = max(1, (width - lead) // cw)
    blocks = [fams[i:i + per_block] for i in range(0, len(fams), per_block)] or [[]]
    for b, block in enumerate(blocks):
        head = f"{'method':<{mw}}  " + (f"{'overall':<{cw}}" if b == 0 else " " * cw) + \
            "".join(f"{_clip(f, cw - 1):<{cw}}" for f in block)
        out += ["", head.rstrip()]
        for r in data["rows"]:
            name = _clip(r["method"] + (" (c)" if r["control"] else ""), mw)
            cells = f"{name:<{mw}}  " + (f"{_iv(r['rank'], r['interval']):<{cw}}" if b == 0 else " " * cw)
            cells += "".join(f"{_iv(r['families'][f]['rank'], r['families'][f]['interval']) if f in r['families'] else '':<{cw}}"
                             for f in block)
            out.append(cells.rstrip())
    out += ["", "Best per family:"]
    for f, bst in data["best"].items():
        text = f"  {f}: " + ", ".join(m + (" (control)" if m in bst["controls"] else "") for m in bst["top"])
        if bst["top_is_control"] and bst["best_real"]:
            text += f"; best real method {bst['best_real']} (rank {bst['best_real_rank']})"
        out.append(_clip(text, width))
    for o, ref in data["oracle"].items():
        if ref["mean_rank"] is not None:
            out.append(_clip(f"Reference {o}: mean rank {ref['mean_rank']:.2f}, would rank {ref['place']} of "
                             f"{ref['of']} (not ranked)", width))
    flags = "Flags (evaluators): " + _flag_text(data["flags"])
    out += [flags] if len(flags) <= width else \
        ["Flags (evaluators):"] + [_clip("  " + p, width) for p in _flag_text(data["flags"]).split("; ")]
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
    head = ["method", "overall"] + list(data["families"])
    body = []
    for r in data["rows"]:
        cells = [f"<td>{e(r['method'])}{' <small>(control)</small>' if r['control'] else ''}</td>",
                 f"<td><b>{e(_iv(r['rank'], r['interval']))}</b></td>"]
        cells += [f"<td>{e(_iv(r['families'][f]['rank'], r['families'][f]['interval']))}</td>"
                  if f in r["families"] else "<td></td>" for f in data["families"]]
        body.append("<tr>" + "".join(cells) + "</tr>")
    seeds = ", ".join(map(str, data["seeds"]))
    parts = [f"<p>{e(str(data['n_methods']))} methods &times; {e(str(data['n_evaluators']))} evaluators "
             f"({e(str(data['n_counted']))} counted, {len(data['families'])} families), "
             f"{e(str(data['n_images']))} images, seed {e(seeds)}. Ranks: rank "
             + (f"[{level * 100:.0f}% bootstrap interval over images, {data['n_boot']} draws]" if level else "")
             + "; overall = mean of the family mean ranks.</p>",
             '<div class="scroll"><table class="summary"><thead><tr>'
             + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>" + "".join(body)
             + "</tbody></table></div>"]
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
                         f"of {ref['of']} (not ranked).</p>")
    parts.append(f'<p class="flags">Flags (evaluators): {e(_flag_text(data["flags"]))}. '
                 "Details: the leaderboard and validity sections below.</p>")
    if data["files"]:
        parts.append("<p>Files: " + ", ".join(f"<code>{e(Path(p).name)}</code>" for p in data["files"]) + "</p>")
    return "\n".join(parts)
