"""Signed vs absolute relevance: how much a method ranking moves when an evaluator scores
``|map|`` instead of the signed map (section ``sign_variants``).

Where a paper leaves the sign open (deletion, insertion, region perturbation), the default spec
scores both variants: the evaluator with ``abs = false`` and a second entry of the same
evaluator with ``abs = true`` (label e.g. ``deletion@abs``). Two evaluator entries form a
*pair* when they have the same registry name and their full configurations differ only in
``abs`` (:func:`variant_pairs`).

Per pair (:func:`compare_variants`), over the methods ranked in the leaderboard (reference
rows such as the oracle left out):

* each method's mean score (per-sample scores averaged over seeds first, NaN dropped), oriented
  by the card's ``higher_is_better``, and its rank (1 = best, ties share the smallest rank, as in
  the leaderboard);
* **Kendall tau-b** between the two variants' oriented means (1 = the same ranking);
* the **rank moves**: ``rank(absolute) - rank(signed)`` per method; the largest ones by size
  (ties by method order), and how many methods move at all.

A map without negative values is its own absolute value, so only methods with signed maps can
move; the table says how many of them there are.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from gmxai_eval.errors import DataError
from gmxai_eval.functional.stats import kendall_tau_b
from gmxai_eval.report.fragments import SECTIONS, table_section

#: the config key that switches an evaluator between signed and absolute relevance
ABS_KEY = "abs"
#: how many of the largest rank moves a row lists
TOP_MOVES = 3


def variant_pairs(entries: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[tuple[str, str]]:
    """``[(signed label, absolute label)]`` from ``(label, registry name, full config)`` entries in
    spec order: same name, configs equal except ``abs`` (False in the first, True in the second).
    An entry joins at most one pair (the first match in spec order)."""
    used: set[str] = set()
    out = []
    for la, na, ca in entries:
        if ca.get(ABS_KEY) is not False or la in used:
            continue
        for lb, nb, cb in entries:
            if lb in used or lb == la or nb != na or cb.get(ABS_KEY) is not True:
                continue
            if {k: v for k, v in ca.items() if k != ABS_KEY} == {k: v for k, v in cb.items() if k != ABS_KEY}:
                out.append((la, lb))
                used |= {la, lb}
                break
    return out


def _oriented_means(table: pd.DataFrame, evaluator: str, methods: Sequence[str], hib: bool) -> np.ndarray:
    sub = table[table["evaluator"] == evaluator]
    per = sub.groupby(["sample_id", "method"], sort=True)["score"].mean().unstack("method").reindex(columns=list(methods))
    vals = per.to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        means = np.array([np.nanmean(vals[:, j]) if np.isfinite(vals[:, j]).any() else np.nan
                          for j in range(len(methods))])
    return means if hib else -means


def _ranks(oriented: np.ndarray) -> np.ndarray:
    from gmxai_eval.report.ranks import rank_min

    return rank_min(oriented)


def _f(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def compare_variants(table: pd.DataFrame, pairs: Sequence[tuple[str, str]], methods: Sequence[str],
                     higher_is_better: Mapping[str, bool], signed_methods: Sequence[str] = ()) -> dict[str, Any]:
    """The ``sign_variants`` section data (see the module docstring).

    Args:
        table: per-sample rows ``evaluator, method, seed, sample_id, score``.
        pairs: ``[(signed evaluator label, absolute evaluator label)]``.
        methods: the ranked methods (no reference rows), in leaderboard order.
        higher_is_better: per evaluator label.
        signed_methods: the methods whose maps carry a sign (card ``signed``), for the caption.

    Returns:
        ``{"title", "caption", "columns", "rows", "pairs": {signed label: {"absolute", "tau",
        "ranks_signed", "ranks_absolute", "moves", "n_moved"}}}``; ``rows`` is the table shown in
        ``report.html``.
    """
    for col in ("evaluator", "method", "sample_id", "score"):
        if col not in table.columns:
            raise DataError(f"expected a column {col!r} in the per-sample table, got {list(table.columns)}")
    methods = list(methods)
    data: dict[str, Any] = {}
    rows = []
    for a, b in pairs:
        for ev in (a, b):
            if ev not in higher_is_better:
                raise DataError(f"expected a score direction for evaluator {ev!r}, got none")
        oa = _oriented_means(table, a, methods, bool(higher_is_better[a]))
        ob = _oriented_means(table, b, methods, bool(higher_is_better[b]))
        ra, rb = _ranks(oa), _ranks(ob)
        tau = kendall_tau_b(oa, ob)
        move = rb - ra
        order = sorted(range(len(methods)), key=lambda j: (-abs(int(move[j])), j))
        moves = [{"method": methods[j], "signed": int(ra[j]), "absolute": int(rb[j]), "move": int(move[j])}
                 for j in order if move[j] != 0]
        data[a] = {"absolute": b, "tau": _f(tau), "ranks_signed": dict(zip(methods, map(int, ra))),
                   "ranks_absolute": dict(zip(methods, map(int, rb))), "moves": moves,
                   "n_moved": len(moves)}
        top = "; ".join(f"{m['method']} {m['signed']} → {m['absolute']}" for m in moves[:TOP_MOVES]) or "none"
        rows.append([a, b, _f(tau), len(moves), top])
    n_signed = len([m for m in methods if m in set(signed_methods)])
    caption = (f"Method rankings with signed vs absolute relevance ({len(methods)} ranked methods, "
               f"{n_signed} with signed maps: only those can move). tau: Kendall tau-b between the two "
               f"variants' method means (1 = same ranking); moved: methods whose rank changes; largest "
               f"moves: rank with the signed map → rank with |map| (1 = best).")
    return {"title": "Signed vs absolute relevance", "caption": caption,
            "columns": ["evaluator (signed)", "evaluator (absolute)", "Kendall tau", "moved", "largest moves"],
            "rows": rows, "pairs": data}


@SECTIONS.register(name="sign_variants")
def sign_variants_section(results: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, str]:
    """Renderer of the ``sign_variants`` section (cells escaped)."""
    if not data.get("rows"):
        note = "<p>No evaluator is scored with both signed and absolute relevance in this run.</p>"
        return str(data.get("title", "Signed vs absolute relevance")), note
    return table_section(results, {k: data[k] for k in ("title", "caption", "columns", "rows") if k in data})


__all__ = ["ABS_KEY", "compare_variants", "sign_variants_section", "variant_pairs"]
