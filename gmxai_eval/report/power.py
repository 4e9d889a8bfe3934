"""Sample size from a pilot run: how many images (or subjects) a run needs so that the paired
tests behind the rank bands detect the pilot's method differences with a target power.

Reads only a results document (``results.json`` of any run since the paired statistics were
added: ``statistics.<evaluator>.pairs``), so a pilot at a small ``n`` can size the real run::

    from gmxai_eval.report.power import required_n
    plan = required_n("runs/default-1234/results.json", power=0.8)
    plan["n"], plan["evaluators"]["deletion"]

Protocol, per evaluator, over the pairs of non-oracle methods:

1. the pilot's mean paired difference ``delta`` and the standard deviation ``sd_d`` of the
   per-unit differences are taken as the truth (with ``delta=`` given, every pair's difference
   is instead ``delta`` times the spread of the pilot's method means on that evaluator: the
   smallest difference worth detecting, on the scale of :attr:`mdd_relative`);
2. the units a pair needs are ``ceil(((z_{1 - a/2} + z_{power}) sd_d / |delta|)^2)``
   (:func:`gmxai_eval.functional.paired.required_n`) with ``a = alpha / P`` for
   ``correction="bonferroni"`` (the strictest Holm step over the ``P`` pairs: enough for every
   step) or ``a = alpha`` for ``correction="none"``;
3. the evaluator's ``n`` is the ``fraction`` quantile of the pairs' ``n`` (default 0.5: half of
   the pairs resolved); a pair with ``delta = 0`` needs ``inf``.

The run's ``n`` is the median of the evaluators' finite ``n`` (``n_max`` is the largest finite
one). Units are those of the pilot's resampling: images, or subjects when the pilot clustered
(then multiply by the images per subject). The pilot's differences are estimates: with a small
pilot the plan is itself uncertain, and differences the pilot overestimates are planned too
small an ``n`` (winner's curse), so treat the plan as a lower bound.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.functional.paired import required_n as _required_n


def _load(results: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    if isinstance(results, Mapping):
        return results
    p = Path(results)
    if not p.is_file():
        raise DataError("expected a results.json file, got no file", path=p)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"expected JSON, got {e}", path=p) from None


def _column(pairs: Mapping[str, Any], key: str, keep: list[int]) -> np.ndarray:
    return np.array([np.nan if pairs[key][q] is None else pairs[key][q] for q in keep], dtype=np.float64)


def required_n(results_json: Mapping[str, Any] | str | Path, power: float = 0.8, alpha: float = 0.05, *,
               fraction: float = 0.5, correction: Literal["bonferroni", "none"] = "bonferroni",
               include_controls: bool = True, delta: float | None = None,
               evaluators: Sequence[str] | None = None) -> dict[str, Any]:
    """Plan ``n`` from a pilot run's results (see the module docstring).

    Args:
        results_json: a results document or the path of a ``results.json``.
        power: target probability of detecting a pair's pilot difference.
        alpha: family level of the paired tests.
        fraction: the share of pairs an evaluator should resolve (its ``n`` is that quantile).
        correction: ``"bonferroni"`` (per-pair level ``alpha / P``) or ``"none"``.
        include_controls: count pairs with a control method (the bands rank controls too).
        delta: ``None`` (plan for the pilot's own differences) or ``> 0``: plan for a difference
            of ``delta`` times the evaluator's spread of method means (``statistics.<ev>.spread``).
        evaluators: plan on these evaluators only (default: every evaluator of the pilot).

    Returns:
        ``{"n", "n_max", "unit", "power", "alpha", "fraction", "correction", "evaluators":
        {ev: {"n", "pilot_n", "unit", "pairs", "resolved_at_pilot"}}}``; ``n`` values are floats
        (``inf`` when no difference, ``None`` when undefined).
    """
    doc = _load(results_json)
    stats = doc.get("statistics")
    if not isinstance(stats, Mapping) or not stats:
        raise DataError("expected a results document with 'statistics' (paired pair tables), got "
                        f"keys {sorted(doc)}; rerun the pilot with this version")
    if not 0 < fraction <= 1:
        raise ConfigError(f"expected 0 < fraction <= 1, got {fraction}")
    if correction not in ("bonferroni", "none"):
        raise ConfigError(f"expected correction 'bonferroni' or 'none', got {correction!r}")
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise ConfigError(f"expected 0 < power < 1 and 0 < alpha < 1, got power {power}, alpha {alpha}")
    if delta is not None and not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
        raise ConfigError(f"expected delta > 0 (a share of the spread of method means) or None, got {delta!r}")
    if evaluators is not None:
        missing = [e for e in evaluators if e not in stats]
        if missing:
            raise DataError(f"expected evaluators of the pilot ({sorted(stats)}), got unknown {missing}")
        stats = {e: stats[e] for e in evaluators}
    oracles = set((doc.get("aggregation") or {}).get("oracle") or [])
    controls = {m for m, info in (doc.get("methods") or {}).items() if (info.get("card") or {}).get("control")}
    controls |= {r["method"] for r in doc.get("aggregates", []) if r.get("control")}
    out: dict[str, Any] = {}
    for ev, st in stats.items():
        pairs = st.get("pairs") or {}
        keep = [q for q, (a, b) in enumerate(zip(pairs.get("a", []), pairs.get("b", [])))
                if a not in oracles and b not in oracles
                and (include_controls or (a not in controls and b not in controls))]
        if not keep:
            out[ev] = {"n": None, "pilot_n": st.get("n_units"), "unit": st.get("resampling_unit"),
                       "pairs": 0, "resolved_at_pilot": 0}
            continue
        sd, diff, n_units = (_column(pairs, k, keep) for k in ("sd", "diff", "n_units"))
        if delta is not None:
            spread = st.get("spread")
            diff = np.full(len(keep), np.nan if spread is None else float(delta) * float(spread))
        a = alpha / len(keep) if correction == "bonferroni" else alpha
        need = _required_n(sd, diff, alpha=a, power=power)
        fin = need[~np.isnan(need)]
        if len(fin) == 0:
            n_ev: float | None = None
        else:
            srt = np.sort(fin)
            n_ev = float(srt[max(0, math.ceil(fraction * len(srt)) - 1)])
        out[ev] = {"n": n_ev, "pilot_n": st.get("n_units"), "unit": st.get("resampling_unit"),
                   "pairs": len(keep), "resolved_at_pilot": int(np.sum(need <= n_units))}
    finite = [v["n"] for v in out.values() if v["n"] is not None and math.isfinite(v["n"])]
    units = sorted({str(v["unit"]) for v in out.values() if v["unit"]})
    return {"n": float(np.median(finite)) if finite else None, "n_max": max(finite) if finite else None,
            "unit": units[0] if len(units) == 1 else units, "power": power, "alpha": alpha,
            "fraction": fraction, "correction": correction, "delta": delta, "evaluators": out}
