"""Known-order validity in ``results.json`` and the validity table.

A run whose methods include ``degraded`` copies (:mod:`gmxai_eval.methods.degraded`) of a base
method at two or more levels gets, per evaluator, the known-order tau of
:func:`gmxai_eval.functional.known_order.known_order_statistic`: how well the evaluator's
method ranking recovers the known order of the copies (less degraded = better), averaged over
the base methods, with a bootstrap CI over images (subjects when subjects repeat). It needs no
truth, so it is available on any model; it is stored under ``results["validity"]["known_order"]``
and shown as a column of the validity table.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from gmxai_eval.functional.known_order import known_order_statistic

#: the registry name of the degrading wrapper.
DEGRADED = "degraded"


def degraded_series(methods: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The series of degraded copies: ``methods`` is ``{label: {"name", "config"}}``; copies
    with the same ``(base, base_config, seed)`` form one series (sorted by level, at least two
    distinct levels; a repeated level keeps its first label)."""
    groups: dict[str, dict[str, Any]] = {}
    for label, m in methods.items():
        if m.get("name") != DEGRADED:
            continue
        c = m.get("config") or {}
        key = json.dumps([c.get("base"), c.get("base_config") or {}, c.get("seed", 0)], sort_keys=True, default=str)
        g = groups.setdefault(key, {"base": str(c.get("base")), "base_config": dict(c.get("base_config") or {}),
                                    "levels": {}})
        g["levels"].setdefault(float(c.get("level", 0.0)), label)
    out = []
    for g in groups.values():
        if len(g["levels"]) >= 2:
            lv = sorted(g["levels"])
            out.append({"base": g["base"], "base_config": g["base_config"], "levels": lv,
                        "methods": [g["levels"][v] for v in lv]})
    return out


def known_order_section(table: pd.DataFrame, evaluator_cards: Mapping[str, Mapping[str, Any]],
                        methods: Mapping[str, Mapping[str, Any]], *, n_boot: int = 2000,
                        seed: int = 0) -> dict[str, Any] | None:
    """``{"series", "evaluators": {ev: {"tau", "ci_low", "ci_high", "per_series", "n",
    "resampling_unit"}}, "description"}`` or ``None`` when the run has no series of copies.

    ``table``: the per-sample table (``evaluator, method, sample_id, score[, subject]``)."""
    series = degraded_series(methods)
    if not series:
        return None
    cols = [m for s in series for m in s["methods"]]
    out: dict[str, Any] = {}
    for ev, card in evaluator_cards.items():
        sub = table[(table["evaluator"] == ev) & table["method"].isin(cols)]
        if sub.empty:
            continue
        per = sub.groupby(["sample_id", "method"], sort=True)["score"].mean().unstack("method").reindex(columns=cols)
        clusters = None
        if "subject" in sub.columns:
            subj = sub.drop_duplicates("sample_id").set_index("sample_id")["subject"].astype(str)
            subj = subj.reindex(per.index).fillna("")
            if (subj != "").all() and subj.nunique() < len(subj):
                clusters = list(subj)
        idx, k = [], 0
        for s in series:
            idx.append(list(range(k, k + len(s["methods"]))))
            k += len(s["methods"])
        r = known_order_statistic(per.to_numpy(np.float64), idx, [s["levels"] for s in series],
                                  higher_is_better=bool(card.get("higher_is_better", True)), clusters=clusters,
                                  n_boot=n_boot, seed=seed)
        out[ev] = {k2: (None if isinstance(v, float) and not math.isfinite(v) else v) for k2, v in r.items()}
        out[ev]["per_series"] = [None if not math.isfinite(t) else t for t in r["per_series"]]
        out[ev]["resampling_unit"] = "subject" if clusters is not None else "image"
    return {"series": series, "evaluators": out,
            "description": "known-order tau: Kendall tau-b between the evaluator's ranking of degraded copies of a "
                           "base method (a known share of the map's pixel ranking randomised, values kept) and the "
                           "known order (less degraded = better), mean over base methods, 95% percentile CI over "
                           "a bootstrap of the images (subjects when subjects repeat); needs no truth"}


def known_order_cell(results: Mapping[str, Any], evaluator: str) -> str | None:
    """The validity table's cell ``"tau [lo, hi]"`` of ``evaluator`` (``"n/a"`` without a
    value), or ``None`` when the run has no known-order section (no column is shown)."""
    ko = (results.get("validity") or {}).get("known_order")
    if not ko:
        return None
    r = (ko.get("evaluators") or {}).get(evaluator) or {}
    f = lambda x: "n/a" if x is None else f"{float(x):.3f}"  # noqa: E731
    return f"{f(r.get('tau'))} [{f(r.get('ci_low'))}, {f(r.get('ci_high'))}]"


#: the validity table's header of the known-order column.
KNOWN_ORDER_HEADER = "known-order τ [95% CI]"

__all__ = ["DEGRADED", "degraded_series", "known_order_section", "known_order_cell", "KNOWN_ORDER_HEADER"]
