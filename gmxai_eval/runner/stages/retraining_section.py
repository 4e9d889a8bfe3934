"""The ``retraining`` report section: ROAR / KAR curves, areas, leakage and rank agreement with
ROAD, and the data (label) randomisation test's similarities with their random-pair floor.

The computation reads the run's per-sample table only (the rows the dataset-scope stage
stored: one row per retraining repeat, or per test image for the label randomisation); it
never trains, explains or evaluates. The renderer is
:func:`gmxai_eval.report.retraining.render_retraining_section`; it adds the leaderboard's CI,
rank and rank band of every method from ``results["aggregates"]``.

Data, per retraining evaluator (card category ``"retraining"``), in ``data["retraining"]``::

    {"evaluator", "mode" ("roar" | "kar"), "x" (T,) fractions with 0 first, "repeats" R,
     "chance" (1/K of the leakage classifier, or None), "kendall_tau_road", "tau_methods",
     "methods": [{"method", "control", "oracle", "curves" (R, T) test top-1 per repeat,
                  "mean" (T,), "sd" (T,), "band_low" / "band_high" (T,) mean -/+ sd clipped to
                  [0, 1], "area" (R,) area against the random control per repeat,
                  "leakage" (T,) mask-only top-1 above chance, "leakage_accuracy" (T,) = leakage +
                  chance, "road_accuracy" (T,) the reference model on the same imputed images}]}

``kendall_tau_road`` is Kendall's tau-b between the methods' mean ROAR (KAR) areas and their
ROAD areas on the same imputed test images, over every method of the run (controls and oracle
included). Both areas are taken against the random control, which adds one constant to every
method's area, so the tau is computed from ``-integral road_accuracy`` (oriented like the
area: ``+`` for ROAR, ``-`` for KAR) without the control's curve.

Per label randomisation evaluator, in ``data["data_randomisation"]``::

    {"evaluator", "similarity" (the scored one), "similarities", "fitted", "permuted_train_top1",
     "methods": [{"method", "control", "oracle", "n", "<similarity>": mean over images,
                  "floor_<similarity>": mean of the random-pair floor}]}
"""

from __future__ import annotations

import json
import math
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from gmxai_eval.errors import DataError
from gmxai_eval.evaluators.retraining import DataRandomisation
from gmxai_eval.functional.stats import kendall_tau_b
from gmxai_eval.report.aggregate import is_oracle
from gmxai_eval.runner.context import RunContext
from gmxai_eval.runner.stages.sections import SECTION_DATA
from gmxai_eval.runner.stages.write import card_dict


def _num(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _nums(a: Any) -> list[float | None]:
    return [_num(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def _repeat(sample_id: str) -> int:
    """``retrain-<i>`` -> ``i`` (the dataset-scope stage's row ids)."""
    head, _, tail = str(sample_id).rpartition("-")
    if head != "retrain" or not tail.isdigit():
        raise DataError(f"expected retraining rows with sample ids 'retrain-<i>', got {sample_id!r}",
                        column="sample_id")
    return int(tail)


def curve_band(curves: np.ndarray) -> dict[str, list[float | None]]:
    """Mean and sd over repeats of ``(R, T)`` accuracy curves, and the ``mean -/+ sd`` band
    clipped to ``[0, 1]`` (an accuracy band never leaves the possible range). NaN entries (a
    failed training) are left out of their column."""
    with _quiet():
        mean = np.nanmean(curves, axis=0)
        sd = np.nanstd(curves, axis=0)
    return {"mean": _nums(mean), "sd": _nums(sd), "band_low": _nums(np.clip(mean - sd, 0.0, 1.0)),
            "band_high": _nums(np.clip(mean + sd, 0.0, 1.0))}


@contextmanager
def _quiet() -> Iterator[None]:
    """An all-NaN column (every repeat failed) gives NaN on purpose: no RuntimeWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _kinds(ctx: RunContext, m: str) -> dict[str, bool]:
    card = card_dict(ctx.method_cards[m])
    oracle = is_oracle(m, card)
    return {"control": bool(card.get("control", False)) and not oracle, "oracle": oracle}


def retraining_curves(rows: Any, mode: str, methods: Sequence[str]) -> dict[str, Any]:
    """The section data of one ROAR / KAR evaluator from its table rows (see the module
    docstring); ``methods`` in spec order, ``rows`` the table rows of this evaluator."""
    out: list[dict[str, Any]] = []
    x: list[float] | None = None
    for m in methods:
        g = rows[rows["method"] == m]
        if not len(g):
            continue
        g = g.assign(_r=[_repeat(s) for s in g["sample_id"]]).sort_values("_r")
        curves = np.array([json.loads(c) for c in g["curve"]], dtype=np.float64)
        if curves.ndim != 2:
            raise DataError(f"expected one accuracy curve per repeat for method {m!r}, got {curves.shape}",
                            column="curve")
        x = [float(v) for v in json.loads(g["curve_x"].iloc[0])]
        extras = [json.loads(e) if e else {} for e in g["extras"]]

        def extra(key: str, extras: list[dict[str, Any]] = extras) -> list[float | None] | None:
            vals = [e.get(key) for e in extras]
            if any(v is None for v in vals):
                return None
            return _nums(np.nanmean(np.array(vals, dtype=np.float64), axis=0))

        out.append({"method": m, "curves": [_nums(c) for c in curves], **curve_band(curves),
                    "area": _nums(g["score"]), "leakage": extra("leakage"),
                    "road_accuracy": extra("road_accuracy")})
    sign = 1.0 if mode == "roar" else -1.0
    with _quiet():
        area = [float(np.nanmean(np.array(r["area"], dtype=np.float64))) for r in out]
    road = [(-sign * float(np.trapezoid(np.array(r["road_accuracy"], dtype=np.float64), np.array(x))))
            if r["road_accuracy"] is not None and x is not None else math.nan for r in out]
    tau = kendall_tau_b(area, road) if len(out) >= 2 else math.nan
    return {"mode": mode, "x": x or [], "methods": out, "kendall_tau_road": _num(tau),
            "tau_methods": [r["method"] for r, a, b in zip(out, area, road) if math.isfinite(a) and math.isfinite(b)]}


def label_randomisation(rows: Any, methods: Sequence[str], similarities: Sequence[str]) -> list[dict[str, Any]]:
    """Per method: mean over the explained images of each similarity and of its random-pair
    floor (``floor_<similarity>``), from the evaluator's table rows."""
    out = []
    for m in methods:
        g = rows[rows["method"] == m]
        if not len(g):
            continue
        extras = [json.loads(e) if e else {} for e in g["extras"]]
        rec: dict[str, Any] = {"method": m, "n": int(len(g))}
        for s in similarities:
            for key in (s, f"floor_{s}"):
                vals = np.array([e.get(key, math.nan) for e in extras], dtype=np.float64)
                with _quiet():
                    rec[key] = _num(np.nanmean(vals)) if np.isfinite(vals).any() else None
        out.append(rec)
    return out


@SECTION_DATA.register(name="retraining")
def retraining_section_data(ctx: RunContext) -> dict[str, Any]:
    """The ``retraining`` section of a run (see the module docstring)."""
    table = ctx.table
    if table is None:
        raise DataError("the retraining section reads the run's table: expected it, got none")
    methods = [e.label for e in ctx.spec.methods]
    retrain, label = [], []
    for e in ctx.spec.evaluators:
        card = ctx.evaluator_cards[e.label]
        rows = table[table["evaluator"] == e.label]
        conv: Mapping[str, Any] = ctx.conventions.get(e.label, {}) or {}
        if card.category == "retraining" and card.scope == "dataset":
            d = retraining_curves(rows, str(conv.get("mode", getattr(ctx.evaluators[e.label], "mode", "roar"))),
                                  methods)
            chance = _num(conv.get("leakage_chance"))
            for r in d["methods"]:
                r.update(_kinds(ctx, r["method"]))
                r["leakage_accuracy"] = (None if r["leakage"] is None or chance is None else
                                         [None if v is None else v + chance for v in r["leakage"]])
            repeats = max((len(r["curves"]) for r in d["methods"]), default=0)
            retrain.append({"evaluator": e.label, **d, "repeats": repeats, "chance": chance,
                            "imputation": conv.get("imputation"), "trainings": conv.get("trainings")})
        elif isinstance(ctx.evaluators[e.label], DataRandomisation):
            cfg = ctx.evaluators[e.label].config
            sims = list(dict.fromkeys([cfg["similarity"], *cfg["similarities"]]))
            recs = label_randomisation(rows, methods, sims)
            for r in recs:
                r.update(_kinds(ctx, r["method"]))
            label.append({"evaluator": e.label, "similarity": cfg["similarity"], "similarities": sims,
                          "fitted": conv.get("fitted"), "permuted_train_top1": conv.get("permuted_model_train_top1"),
                          "methods": recs})
    if not retrain and not label:
        raise DataError("the retraining section needs a retraining (roar / kar) or data_randomisation "
                        "evaluator in the spec, got none", column="evaluator")
    return {"title": "Retraining (ROAR / KAR) and label randomisation", "retraining": retrain,
            "data_randomisation": label}


__all__ = ["retraining_section_data", "retraining_curves", "label_randomisation", "curve_band"]
