"""Regression check between two ``results.json`` documents.

For every (evaluator, method) present in both, the candidate's mean is compared with the
baseline's, oriented by the evaluator card's ``higher_is_better``. A pair **regressed** when

* ``tolerance is None``: the candidate mean lies beyond the baseline's 95 % interval on the
  worse side (higher-is-better: ``cand.mean < base.ci_low``; lower: ``cand.mean > base.ci_high``)
  by more than :data:`NOISE_FLOOR` (relative; float rounding is never a regression);
* ``tolerance = t``: the candidate is worse by more than ``t`` (absolute score units).

Pairs present in only one document are listed; with ``strict=True`` a missing pair counts as a
regression.

Both documents are validated (:func:`load_results`: format, every aggregate row's keys and
types, no duplicate pair) before anything is compared, and the comparison warns when their
``spec_hash`` or ``model_hash`` differ (the scores then come from different experiments).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tabulate import tabulate

from gmxai_eval.errors import ConfigError, DataError


@dataclass
class Comparison:
    """Result of :func:`compare_results`: ``rows`` (one dict per pair), ``regressions``
    (the regressed rows), ``missing`` (pairs in only one document)."""

    rows: list[dict[str, Any]]
    regressions: list[dict[str, Any]]
    missing: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.regressions

    def table(self) -> str:
        head = ["evaluator", "method", "dir", "baseline [95% CI]", "candidate", "Δ", "status"]
        body = [[r["evaluator"], r["method"], "↑" if r["higher_is_better"] else "↓",
                 f"{_f(r['base_mean'])} [{_f(r['base_ci_low'])}, {_f(r['base_ci_high'])}]",
                 _f(r["cand_mean"]), _f(r["delta"]), r["status"]] for r in self.rows]
        lines = [f"warning: {w}" for w in self.warnings]
        lines.append(tabulate(body, headers=head, tablefmt="github", disable_numparse=True))
        for ev, m, where in self.missing:
            lines.append(f"missing: {ev} / {m} only in the {where}")
        lines.append(f"{len(self.regressions)} regression(s) in {len(self.rows)} compared pair(s)")
        return "\n".join(lines)


def _f(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4g}"


#: Changes below ``NOISE_FLOOR * max(1, |baseline|)`` are float rounding, never a regression.
NOISE_FLOOR = 1e-6


RESULTS_FORMAT = "gmxai_eval.results/1"
_NUMBER_KEYS = ("mean", "ci_low", "ci_high")


def validate_results(doc: Any, path: str | Path | None = None) -> dict[str, Any]:
    """``doc`` with its aggregate rows checked, or :class:`DataError` naming ``path`` and the row.

    Checked: a JSON object; ``format`` (when present) is :data:`RESULTS_FORMAT`; ``aggregates``
    is a list of objects with string ``evaluator`` / ``method``, ``mean`` / ``ci_low`` /
    ``ci_high`` numbers or null (NaN / inf read as null: undefined), a boolean
    ``higher_is_better`` when present, and no (evaluator, method) pair twice;
    ``spec_hash`` / ``model_hash`` strings when present. Returns a copy."""
    if not isinstance(doc, dict):
        raise DataError(f"expected a JSON object (a results.json), got {type(doc).__name__}", path=path)
    fmt = doc.get("format", RESULTS_FORMAT)
    if fmt != RESULTS_FORMAT:
        raise DataError(f"expected format {RESULTS_FORMAT!r}, got {fmt!r}", path=path, column="format")
    if "aggregates" not in doc:
        raise DataError("expected a gmxai_eval results document with 'aggregates', got none", path=path)
    aggs = doc["aggregates"]
    if not isinstance(aggs, list):
        raise DataError(f"expected 'aggregates' to be a list, got {type(aggs).__name__}", path=path,
                        column="aggregates")
    for k in ("spec_hash", "model_hash"):
        if k in doc and not isinstance(doc[k], str):
            raise DataError(f"expected {k} to be a string, got {type(doc[k]).__name__}", path=path, column=k)
    rows, seen = [], set()
    for i, r in enumerate(aggs):
        where = dict(path=path, row=i)
        if not isinstance(r, dict):
            raise DataError(f"expected aggregates[{i}] to be an object, got {type(r).__name__}", **where)
        for k in ("evaluator", "method"):
            if not isinstance(r.get(k), str) or not r.get(k):
                raise DataError(f"expected aggregates[{i}].{k} to be a name, got {r.get(k)!r}", **where, column=k)
        r = dict(r)
        for k in _NUMBER_KEYS:
            v = r.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise DataError(f"expected aggregates[{i}].{k} to be a number or null, got {v!r}", **where,
                                column=k)
            r[k] = None if v is None or not math.isfinite(v) else float(v)
        if "higher_is_better" in r and not isinstance(r["higher_is_better"], bool):
            raise DataError(f"expected aggregates[{i}].higher_is_better to be true or false, got "
                            f"{r['higher_is_better']!r}", **where, column="higher_is_better")
        pair = (r["evaluator"], r["method"])
        if pair in seen:
            raise DataError(f"expected each (evaluator, method) once, got {pair} again", **where)
        seen.add(pair)
        rows.append(r)
    return {**doc, "aggregates": rows}


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate (:func:`validate_results`) a ``results.json``."""
    p = Path(path)
    if not p.is_file():
        raise DataError("expected a results.json file, got no file", path=p)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise DataError(f"expected UTF-8 JSON, got {type(e).__name__}: {e}", path=p) from None
    return validate_results(doc, p)


def hash_warnings(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[str]:
    """One line per differing ``spec_hash`` / ``model_hash`` (a key missing on either side is
    not compared)."""
    out = []
    for k, what in (("spec_hash", "spec"), ("model_hash", "model")):
        b, c = baseline.get(k), candidate.get(k)
        if b is not None and c is not None and b != c:
            out.append(f"the two results come from different {what}s ({k} {b} vs {c}); "
                       "a difference may not be a regression")
    return out


def compare_results(baseline: Mapping[str, Any], candidate: Mapping[str, Any], *,
                    tolerance: float | None = None, strict: bool = False,
                    methods: set[str] | None = None) -> Comparison:
    """Compare two results documents (see the module docstring); ``methods`` restricts the pairs."""
    if tolerance is not None and not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise DataError(f"expected tolerance >= 0, got {tolerance!r}")
    baseline, candidate = validate_results(baseline, "baseline"), validate_results(candidate, "candidate")
    base = {(r["evaluator"], r["method"]): r for r in baseline["aggregates"]}
    cand = {(r["evaluator"], r["method"]): r for r in candidate["aggregates"]}
    if methods is not None:
        import difflib

        present = sorted({k[1] for k in [*base, *cand]})
        unknown = sorted(set(methods) - set(present))
        if unknown:
            close = sorted({c for u in unknown for c in difflib.get_close_matches(u, present, n=3)})
            raise ConfigError(f"expected --method labels among the compared files' methods {present}, got "
                              f"{unknown}" + (f" (did you mean {close}?)" if close else ""))
    keep = (lambda k: k[1] in methods) if methods is not None else (lambda k: True)
    rows, regs, missing = [], [], []
    for k in sorted(set(base) | set(cand)):
        if not keep(k):
            continue
        if k not in cand or k not in base:
            missing.append((k[0], k[1], "baseline" if k in base else "candidate"))
            continue
        b, c = base[k], cand[k]
        hib = bool(b.get("higher_is_better", True))
        bm, cm = b.get("mean"), c.get("mean")
        delta = None if bm is None or cm is None else cm - bm
        if delta is None:
            status = "regressed" if bm is not None else "n/a"  # a score that became undefined
        else:
            worse = -delta if hib else delta
            if tolerance is not None:
                bad = worse > tolerance
            else:
                lo, hi = b.get("ci_low"), b.get("ci_high")
                bad = (cm < lo) if hib and lo is not None else (cm > hi) if not hib and hi is not None else False
                # a zero-width interval (e.g. a control scoring exactly 1) must not turn float
                # rounding into a regression
                bad = bad and worse > NOISE_FLOOR * max(1.0, abs(bm))
            status = "regressed" if bad else ("improved" if worse < 0 else "same" if worse == 0 else "worse (within)")
        row = {"evaluator": k[0], "method": k[1], "higher_is_better": hib, "base_mean": bm,
               "base_ci_low": b.get("ci_low"), "base_ci_high": b.get("ci_high"), "cand_mean": cm,
               "delta": delta, "status": status}
        rows.append(row)
        if status == "regressed":
            regs.append(row)
    if strict:
        regs += [{"evaluator": e, "method": m, "status": f"missing in {w}"} for e, m, w in missing]
    return Comparison(rows, regs, missing, hash_warnings(baseline, candidate))
