"""The ``imbalance`` report section: score against class training size per method (a PNG
figure) and the summary table of the class-imbalance experiment.

The section's data is ``results["sections"]["imbalance"]`` of a ``[[models]]`` run
(:func:`gmxai_eval.runner.stages.imbalance_section.imbalance_section_data`): ``{"title",
"metrics", "methods", "conditions", "reference", "summary" (rows of
:func:`gmxai_eval.analysis.imbalance.summarise`), "trends", "table", "costs"}``. The renderer
only formats it; nothing here runs a model.
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, Sequence

from gmxai_eval.errors import DataError
from gmxai_eval.report import figures
from gmxai_eval.report.fragments import SECTIONS

_KEYS = ("metrics", "methods", "summary")


def _check(data: Mapping[str, Any]) -> None:
    for k in _KEYS:
        if k not in data:
            raise DataError(f"imbalance section: expected keys {list(_KEYS)}, got {sorted(data)}", column=k)


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def size_figure(data: Mapping[str, Any]) -> bytes:
    """PNG: one panel per metric, x = training images of the class (log scale), y = score. Each
    (class, condition) point is the mean over repeats with its CI as an error bar (faint); the
    line joins, per method, the mean of those points at each training size."""
    _check(data)
    metrics: Sequence[str] = list(data["metrics"])
    methods: Sequence[str] = list(data["methods"])
    cols = min(3, max(1, len(metrics)))
    rows = math.ceil(len(metrics) / cols) if metrics else 1
    fig = figures._figure(4.2 * cols, 3.3 * rows)
    colours = [f"C{i % 10}" for i in range(len(methods))]
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        for method, col in zip(methods, colours):
            pts = sorted((r["train_size"], r["mean"], r["ci_low"], r["ci_high"]) for r in data["summary"]
                         if r["method"] == method and r["metric"] == metric and _finite(r["mean"])
                         and r["train_size"] > 0)
            if not pts:
                continue
            x = [p[0] for p in pts]
            y = [p[1] for p in pts]
            lo = [max(0.0, p[1] - p[2]) if _finite(p[2]) else 0.0 for p in pts]
            hi = [max(0.0, p[3] - p[1]) if _finite(p[3]) else 0.0 for p in pts]
            ax.errorbar(x, y, yerr=[lo, hi], fmt="o", ms=3, lw=0.8, capsize=2, color=col, alpha=0.35)
            sizes = sorted(set(x))
            means = [sum(v for s, v in zip(x, y) if s == size) / x.count(size) for size in sizes]
            ax.plot(sizes, means, "-", marker="s", ms=4, lw=1.5, color=col, label=figures._t(method))
        ax.set_xscale("log")
        ax.set_xlabel("training images of the class")
        ax.set_title(figures._t(metric), fontsize=9)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return figures._png(fig)


def render_imbalance_section(data: Mapping[str, Any]) -> str:
    """Trusted HTML: the figure, the size trends and the summary table (every cell escaped)."""
    from gmxai_eval.report.fragments import figure_html as _img, table_html

    _check(data)
    e = html.escape
    parts = [_img(size_figure(data), "mean score over repeats against the class's training images, "
                                      "95% bootstrap CI over repeats; one line per method")]
    conds = data.get("conditions") or []
    if conds:
        parts.append(table_html(["condition", "models", "training images per class"],
                                [[c["name"], ", ".join(c["models"]), ", ".join(f"{k}: {v}" for k, v in
                                                                              c["train_sizes"].items())]
                                 for c in conds], "imbalance-conditions"))
    ref = data.get("reference") or {}
    if ref:
        parts.append("<p>" + e("Reference condition per class (the most training images of the class): "
                               + ", ".join(f"{k}: {v}" for k, v in ref.items())) + "</p>")
    trends = data.get("trends") or []
    if trends:
        parts.append("<p>Spearman rho between the class's training images and the score "
                     "(points: class x condition):</p>")
        parts.append(table_html(["method", "metric", "rho", "points"],
                                [[t["method"], t["metric"], "n/a" if not _finite(t["rho"]) else f"{t['rho']:.3f}",
                                  t["points"]] for t in trends], "imbalance-trends"))
    table = data.get("table") or {}
    if table:
        parts.append(f'<div class="scroll">{table_html(list(table["headers"]), table["rows"], "imbalance")}</div>')
    costs = data.get("costs") or {}
    if costs:
        parts.append("<p>" + e(", ".join(f"{k}: {v}" for k, v in costs.items())) + "</p>")
    return "".join(parts)


@SECTIONS.register(name="imbalance")
def imbalance_section(results: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, str]:
    """Renderer of the ``imbalance`` section."""
    return str(data.get("title", "Class imbalance")), render_imbalance_section(data)
