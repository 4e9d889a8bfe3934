"""Figures for the HTML report, as PNG bytes (matplotlib's object API, Agg canvas, no pyplot
state). Every function returns the encoded PNG; :func:`data_uri` turns it into an ``<img src>``.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch


def _figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _t(s: Any) -> str:
    """Text from data, safe for matplotlib: ``$`` would start mathtext (and can fail to parse)."""
    return str(s).replace("$", r"\$")


def _wrap(s: Any, width: int = 18, lines: int = 3) -> str:
    """A label wrapped on ``width`` characters (at most ``lines`` lines, the last cut with ``~``)."""
    import textwrap

    parts = textwrap.wrap(str(s).replace("@", " @"), width, break_long_words=True) or [""]
    if len(parts) > lines:
        parts = parts[:lines - 1] + [parts[lines - 1][: width - 1] + "~"]
    return _t("\n".join(parts))


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``"""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def maps_grid(images: torch.Tensor, maps: Mapping[str, torch.Tensor], row_titles: Sequence[str] = ()) -> bytes:
    """Example maps: one row per image (image first), one column per method.

    Args:
        images: ``(N, C, H, W)`` in ``[0, 1]``.
        maps: ``{method: (N, H, W)}`` signed maps; each shown with a symmetric diverging scale
            (per image and method, ``vmax = max |map|``).
        row_titles: ``N`` captions (e.g. class names).
    """
    n = int(images.shape[0])
    cols = 1 + len(maps)
    fig = _figure(1.6 * cols, 1.7 * max(n, 1))
    for i in range(n):
        img = images[i].detach().cpu().float().clamp(0, 1)
        ax = fig.add_subplot(n, cols, i * cols + 1)
        ax.imshow(img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy(),
                  cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        if i < len(row_titles):
            ax.set_ylabel(_t(row_titles[i]), fontsize=7)
        if i == 0:
            ax.set_title("image", fontsize=8)
        for j, (m, a) in enumerate(maps.items()):
            ax = fig.add_subplot(n, cols, i * cols + 2 + j)
            v = a[i].detach().cpu().float().numpy()
            vmax = float(np.abs(v).max()) or 1.0
            ax.imshow(v, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(_wrap(m), fontsize=7)
    return _png(fig)


#: line styles cycled on top of the 20 colours of ``tab20``: 80 distinct (colour, style) pairs
LINE_STYLES = ("-", "--", ":", "-.")


def method_styles(n: int) -> list[tuple[Any, str]]:
    """``n`` distinct ``(colour, line style)`` pairs: the 20 colours of ``tab20`` with a solid
    line, then the same colours dashed, dotted, dash-dotted (distinct up to 80 methods)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [(cmap(i % 20), LINE_STYLES[(i // 20) % len(LINE_STYLES)]) for i in range(n)]


def _arr(v: Any, n: int) -> np.ndarray:
    return np.asarray([np.nan if x is None else x for x in (v if v is not None else [None] * n)], float)


def curve_band(c: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` of a stored curve's band: mean ± 1 sd, clipped point-wise to the range
    the per-sample curves took (``c["min"]``, ``c["max"]``, when stored)."""
    y = _arr(c["mean"], len(c["mean"]))
    s = _arr(c.get("std"), len(y))
    lo, hi = y - s, y + s
    if c.get("min") is not None and c.get("max") is not None:
        lo, hi = np.fmax(lo, _arr(c["min"], len(y))), np.fmin(hi, _arr(c["max"], len(y)))
    return lo, hi


#: methods per panel of a curves figure: more methods give small multiples sharing the axes
CURVES_PER_PANEL = 8


def curves_figure(curves: Mapping[str, Mapping[str, Any]], title: str, xlabel: str = "",
                  ylabel: str = "score") -> bytes:
    """Mean curve (± 1 sd band) per method: ``{method: {"x", "mean", "std", "labels"[, "min",
    "max"]}}``.

    Every method has its own (colour, line style) (:func:`method_styles`). Up to
    :data:`CURVES_PER_PANEL` methods share one panel; more methods are drawn as small multiples
    (two panels a row, shared axes), so bands never pile up into a grey mass. The band is clipped
    to the values the per-sample curves took at each point (``"min"`` / ``"max"``, when stored),
    so it never leaves the metric's range (e.g. a probability band stays in [0, 1]).
    """
    items = list(curves.items())
    styles = method_styles(len(items))
    size = math.ceil(len(items) / max(math.ceil(len(items) / CURVES_PER_PANEL), 1)) or 1  # balanced panels
    chunks = [list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)] or [[]]
    cols = 1 if len(chunks) == 1 else 2
    rows = math.ceil(len(chunks) / cols)
    fig = _figure(7.0 if cols == 1 else 11.0, 3.4 * rows + (0.3 if rows > 1 else 0.0))
    first = None
    for p, chunk in enumerate(chunks):
        ax = fig.add_subplot(rows, cols, p + 1, sharex=first, sharey=first)
        first = first or ax
        labels: Sequence[str] = ()
        for k in chunk:
            m, c = items[k]
            colour, style = styles[k]
            x = np.asarray(c["x"], float)
            y = _arr(c["mean"], len(c["mean"]))
            s = _arr(c.get("std"), len(y))
            if len(x) != len(y):
                x = np.arange(len(y), dtype=float)
            ax.plot(x, y, label=_t(m), lw=1.3, color=colour, ls=style)
            if np.isfinite(s).any():
                ax.fill_between(x, *curve_band(c), alpha=0.10, color=colour, lw=0)
            labels = c.get("labels") or labels
            if labels and len(labels) == len(x):
                ax.set_xticks(x)
                ax.set_xticklabels([_t(t) for t in labels], rotation=60, ha="right", fontsize=6)
        ax.set_title(_t(title) if len(chunks) == 1 else
                     _t(f"{title} ({chunk[0] + 1}-{chunk[-1] + 1} of {len(items)})"), fontsize=9)
        ax.set_xlabel(_t(xlabel), fontsize=8)
        ax.set_ylabel(_t(ylabel), fontsize=8)
        ax.tick_params(labelsize=7)
        if chunk:
            ax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def heatmap(matrix: Sequence[Sequence[float | None]], labels: Sequence[str], title: str,
            vmin: float = -1.0, vmax: float = 1.0, groups: Sequence[str] = (),
            annotate: bool | None = None) -> bytes:
    """Square heat map (e.g. Kendall tau between evaluators).

    Args:
        groups: one group name per label (e.g. the evaluator family), labels already ordered by
            group: thin lines separate the groups and the group names label them.
        annotate: write the values in the cells (default: only up to 12 labels; a larger map
            stays readable without them, the values are in ``results.json``).
    """
    m = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    k = max(len(labels), 1)
    annotate = k <= 12 if annotate is None else annotate
    cell = 0.55 if k <= 12 else max(0.2, 9.0 / k)  # inches per cell: a 40 x 40 map is ~9 in wide
    fs = 7 if k <= 20 else 6
    fig = _figure(2.2 + cell * k, 1.6 + cell * k)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(m if m.size else np.zeros((1, 1)), cmap="coolwarm", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([_t(s) for s in labels], rotation=90, fontsize=fs)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels([_t(s) for s in labels], fontsize=fs)
    if annotate:
        for i in range(m.shape[0]):
            for j in range(m.shape[1] if m.ndim == 2 else 0):
                ax.text(j, i, "–" if not math.isfinite(m[i, j]) else f"{m[i, j]:.2f}", ha="center",
                        va="center", fontsize=6)
    if groups and len(groups) == len(labels):
        edges = [i for i in range(1, len(groups)) if groups[i] != groups[i - 1]]
        for b in edges:
            ax.axhline(b - 0.5, color="black", lw=0.8)
            ax.axvline(b - 0.5, color="black", lw=0.8)
        starts = [0] + edges
        ends = edges + [len(groups)]
        sec = ax.secondary_xaxis("top")
        sec.set_xticks([(a + b - 1) / 2 for a, b in zip(starts, ends)])
        sec.set_xticklabels([_t(groups[a]) for a in starts], rotation=90, fontsize=fs)
        sec.tick_params(length=0)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(_t(title), fontsize=9)
    return _png(fig)


def bar_ci(names: Sequence[str], means: Sequence[float | None], lo: Sequence[float | None],
           hi: Sequence[float | None], title: str) -> bytes:
    """Horizontal bars with 95 % CI whiskers, one per method."""
    fig = _figure(4.5, 0.6 + 0.3 * max(len(names), 1))
    ax = fig.add_subplot(1, 1, 1)
    f = lambda v: np.nan if v is None else float(v)  # noqa: E731
    y = np.arange(len(names))
    mu = np.array([f(v) for v in means])
    err = np.array([[mu[i] - f(lo[i]) for i in y], [f(hi[i]) - mu[i] for i in y]], dtype=float)
    ax.barh(y, np.nan_to_num(mu), color="#7aa6c2")
    ax.errorbar(np.nan_to_num(mu), y, xerr=np.clip(np.nan_to_num(err), 0, None), fmt="none",
                ecolor="black", capsize=2, lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels([_t(n) for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_title(_t(title), fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
