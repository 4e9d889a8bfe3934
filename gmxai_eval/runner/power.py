"""``[run] power``: choose the run's ``n_images`` from a pilot run before any work.

::

    [run]
    power = { target = 0.8, pilot = "results/default-1a2b3c4d5e/results.json" }
    # optional: delta = 0.25      the smallest difference worth detecting, as a share of each
    #                             evaluator's spread of method means (default: the pilot's own
    #                             paired differences)
    #           alpha = 0.05, fraction = 0.5, correction = "bonferroni"   (see report.power)
    #           evaluators = ["deletion", "insertion"]   plan on these only (default: all)
    #           max_n = 256   never select more than this many images

The plan is :func:`gmxai_eval.report.power.required_n` on the pilot's ``results.json``: per
evaluator, the ``fraction`` quantile over method pairs of the units a pair needs for power
``target`` at the (Bonferroni-corrected) level ``alpha``; the run's ``n`` is the median over
evaluators, rounded up, capped at ``max_n``. It replaces ``n_images`` before the images are
selected; ``results.json`` records the plan under ``power`` (the chosen ``n``, the planned
value, the pilot, every evaluator's ``n`` and a sentence saying why). The ``power`` table is
not part of the spec hash: the run is identified by the ``n_images`` it ran with.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from gmxai_eval.errors import ConfigError

#: keys of ``[run] power`` with their defaults (``pilot`` is required)
POWER_DEFAULTS: dict[str, Any] = {"target": 0.8, "pilot": "", "delta": None, "alpha": 0.05, "fraction": 0.5,
                                  "correction": "bonferroni", "evaluators": None, "max_n": None}


def _num(src: str, key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ConfigError(f"{src}: expected run.power.{key} to be a finite number, got {v!r}")
    return float(v)


def parse_power(src: str, raw: Any) -> dict[str, Any]:
    """Validate ``[run] power`` -> a dict with every key of :data:`POWER_DEFAULTS` (``{}``
    for an empty table: no planning).

    Raises:
        ConfigError: not a table, an unknown key (named, with close matches), no ``pilot``, or a
            value out of range (``0 < target < 1``, ``0 < alpha < 1``, ``0 < fraction <= 1``,
            ``delta > 0``, ``correction`` in ``bonferroni``/``none``, ``max_n >= 2``).
    """
    import difflib

    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}: expected run.power to be a table, got {type(raw).__name__}")
    if not raw:
        return {}
    unknown = sorted(set(raw) - set(POWER_DEFAULTS))
    if unknown:
        close = {k: difflib.get_close_matches(k, list(POWER_DEFAULTS), n=2, cutoff=0.5) for k in unknown}
        raise ConfigError(f"{src}: unknown key(s) {unknown} in run.power; expected a subset of "
                          f"{sorted(POWER_DEFAULTS)}; close matches: {close}")
    p = {**POWER_DEFAULTS, **dict(raw)}
    if not isinstance(p["pilot"], str) or not p["pilot"]:
        raise ConfigError(f"{src}: expected run.power.pilot, the path of a pilot run's results.json, got "
                          f"{p['pilot']!r}")
    for key, lo_open, hi, hi_closed in (("target", 0.0, 1.0, False), ("alpha", 0.0, 1.0, False),
                                        ("fraction", 0.0, 1.0, True)):
        v = _num(src, key, p[key])
        if not (v > lo_open and (v <= hi if hi_closed else v < hi)):
            raise ConfigError(f"{src}: expected 0 < run.power.{key} {'<=' if hi_closed else '<'} 1, got {v}")
        p[key] = v
    if p["delta"] is not None:
        p["delta"] = _num(src, "delta", p["delta"])
        if p["delta"] <= 0:
            raise ConfigError(f"{src}: expected run.power.delta > 0 (a share of the spread of method means), "
                              f"got {p['delta']}")
    if p["correction"] not in ("bonferroni", "none"):
        raise ConfigError(f"{src}: expected run.power.correction 'bonferroni' or 'none', got {p['correction']!r}")
    if p["evaluators"] is not None and (not isinstance(p["evaluators"], list) or not p["evaluators"]
                                        or not all(isinstance(e, str) and e for e in p["evaluators"])):
        raise ConfigError(f"{src}: expected run.power.evaluators to be a non-empty list of evaluator labels, "
                          f"got {p['evaluators']!r}")
    if p["max_n"] is not None and (isinstance(p["max_n"], bool) or not isinstance(p["max_n"], int)
                                   or p["max_n"] < 2):
        raise ConfigError(f"{src}: expected run.power.max_n to be an int >= 2, got {p['max_n']!r}")
    return p


def plan_n(power: Mapping[str, Any], source: str = "<spec>") -> dict[str, Any]:
    """The ``power`` record of ``results.json``: the chosen ``n`` and why (see the module docstring).

    Raises:
        DataError: the pilot file is missing, not JSON or has no paired statistics.
        ConfigError: the pilot cannot size the run (no evaluator has a finite ``n``: every pair
            of methods has a zero or undefined difference).
    """
    from gmxai_eval.report.power import required_n

    pilot = Path(str(power["pilot"]))
    plan = required_n(pilot, power=float(power["target"]), alpha=float(power["alpha"]),
                      fraction=float(power["fraction"]), correction=power["correction"],
                      delta=power.get("delta"), evaluators=power.get("evaluators"))
    planned = plan["n"]
    if planned is None or not math.isfinite(planned):
        raise ConfigError(f"{source}: run.power: expected the pilot {str(pilot)!r} to size the run, got no "
                          "evaluator with a finite n (every method pair has a zero or undefined difference); "
                          "set run.power.delta or run.n_images instead")
    n = max(2, int(math.ceil(planned)))
    cap = power.get("max_n")
    capped = cap is not None and n > int(cap)
    if capped:
        n = int(cap)
    per = {ev: v["n"] for ev, v in plan["evaluators"].items()}
    what = (f"a difference of {power['delta']:g} x the spread of method means" if power.get("delta") is not None
            else "the pilot's own paired differences")
    reason = (f"n = {n}: the median over {len([v for v in per.values() if v is not None and math.isfinite(v)])} "
              f"evaluators of the units each needs so that {power['fraction']:g} of its method pairs reach power "
              f"{power['target']:g} for {what} at alpha {power['alpha']:g} ({power['correction']}), from the "
              f"pilot's per-unit difference sd (planned {planned:g} {plan['unit']}"
              + (f", capped at max_n = {cap}" if capped else "") + ")")
    return {"n": n, "planned": planned, "n_max": plan["n_max"], "capped": capped, "unit": plan["unit"],
            "pilot": str(pilot), "target": power["target"], "alpha": power["alpha"], "delta": power.get("delta"),
            "fraction": power["fraction"], "correction": power["correction"],
            "evaluators": {ev: (None if v is None else (v if math.isfinite(v) else "inf")) for ev, v in per.items()},
            "reason": reason}
