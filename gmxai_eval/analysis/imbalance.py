"""Class-imbalance experiment: pure functions over its per-model scores.

The experiment (a ``[[models]]`` spec with the ``imbalance`` section,
:mod:`gmxai_eval.runner.stages.imbalance_section`) trains models on different class choices
and class sizes of the same data and scores every model's maps on the same test images. The
section hands this module one *record* per (condition, repeat, class, method, metric)::

    {"condition": "top_k", "repeat": 0, "class": "synthetic_syndrome_03", "method": "grad_cam",
     "metric": "localisation", "train_size": 60, "value": 0.41}

``value`` is the mean over the class's test images; ``train_size`` is the number of training
images of that class in that condition. Metrics: the run's evaluators (e.g. ``localisation``,
relevance mass on the planted evidence, and ``deletion``, lower is better) and one entry per map
similarity to the class's reference model (``spearman_abs``, ``ssim``, ``topk_iou``).

Everything here is a pure function of records: :func:`summarise` (mean and percentile
bootstrap CI over repeats per point), :func:`size_trends` (Spearman correlation of a
metric with the class's training size, per method) and :func:`table_rows`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from gmxai_eval.errors import DataError
from gmxai_eval.functional.stats import bootstrap_ci, spearman

#: The keys every record has.
RECORD_KEYS = ("condition", "repeat", "class", "method", "metric", "train_size", "value")


def check_records(records: Sequence[Mapping[str, Any]]) -> None:
    """Raise :class:`DataError` naming the row and key of the first malformed record."""
    for i, r in enumerate(records):
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise DataError(f"imbalance record {i}: expected keys {list(RECORD_KEYS)}, got {sorted(r)}",
                            row=i, column=missing[0])
        if not isinstance(r["train_size"], int) or r["train_size"] < 0:
            raise DataError(f"imbalance record {i}: expected train_size as an int >= 0, got {r['train_size']!r}",
                            row=i, column="train_size")


def summarise(records: Sequence[Mapping[str, Any]], *, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0) -> list[dict[str, Any]]:
    """One row per (method, metric, class, condition): ``train_size``, ``n_repeats`` (finite
    values), ``mean`` and the percentile bootstrap CI over repeats
    (:func:`~gmxai_eval.functional.stats.bootstrap_ci`; with one repeat the CI is the value).

    Rows are sorted by method, metric, class and training size (then condition)."""
    check_records(records)
    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((str(r["method"]), str(r["metric"]), str(r["class"]), str(r["condition"])), []).append(r)
    out = []
    for (method, metric, cls, cond), rs in groups.items():
        sizes = {int(r["train_size"]) for r in rs}
        if len(sizes) != 1:
            raise DataError(f"imbalance records of {cond}/{cls}: expected one train_size over repeats, got "
                            f"{sorted(sizes)}", column="train_size")
        vals = [float(r["value"]) if r["value"] is not None else math.nan for r in rs]
        mean, lo, hi = bootstrap_ci(vals, n_boot=n_boot, level=level, seed=seed)
        out.append({"method": method, "metric": metric, "class": cls, "condition": cond,
                    "train_size": sizes.pop(), "n_repeats": sum(math.isfinite(v) for v in vals),
                    "mean": mean, "ci_low": lo, "ci_high": hi})
    out.sort(key=lambda r: (r["method"], r["metric"], r["class"], r["train_size"], r["condition"]))
    return out


def size_trends(summary: Sequence[Mapping[str, Any]], *, classes: Sequence[str] | None = None
                ) -> list[dict[str, Any]]:
    """Per (method, metric): Spearman's rho between the training size and the mean score over
    the summary's points (class x condition; only ``classes`` when given), and the number of
    points. ``rho`` is NaN with fewer than 3 points or a constant side."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in summary:
        if classes is not None and r["class"] not in classes:
            continue
        if r["mean"] is None or not math.isfinite(float(r["mean"])):
            continue
        groups.setdefault((str(r["method"]), str(r["metric"])), []).append((float(r["train_size"]), float(r["mean"])))
    out = []
    for (method, metric), pts in sorted(groups.items()):
        rho = math.nan
        if len(pts) >= 3:
            t = torch.tensor(pts, dtype=torch.float64)
            rho = float(spearman(t[None, :, 0], t[None, :, 1])[0])
        out.append({"method": method, "metric": metric, "rho": rho, "points": len(pts)})
    return out


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def table_rows(summary: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the summary table (``mean [ci_low, ci_high]``)."""
    headers = ["method", "metric", "class", "condition", "train images", "repeats", "mean [95% CI]"]
    rows = [[str(r["method"]), str(r["metric"]), str(r["class"]), str(r["condition"]), str(r["train_size"]),
             str(r["n_repeats"]), f"{_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"]
            for r in summary]
    return headers, rows


__all__ = ["RECORD_KEYS", "check_records", "summarise", "size_trends", "table_rows"]
