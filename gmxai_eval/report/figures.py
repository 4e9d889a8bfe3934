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
                ax.set_title(_t(m), fontsize=8)
    return _png(fig)


def curves_figure(curves: Mapping[str, Mapping[str, Any]], title: str, xlabel: str = "",
                  ylabel: str = "score") -> bytes:
    """Mean curve (± 1 sd band) per method: ``{method: {"x", "mean", "std", "labels"}}``."""
    fig = _figure(5.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    labels: Sequence[str] = ()
    for m, c in curves.items():
        x = np.asarray(c["x"], float)
        y = np.asarray([np.nan if v is None else v for v in c["mean"]], float)
        s = np.asarray([np.nan if v is None else v for v in c.get("std", [None] * len(y))], float)
        if len(x) != len(y):
            x = np.arange(len(y), dtype=float)
        ax.plot(x, y, label=_t(m), lw=1.4)
        if np.isfinite(s).any():
            ax.fill_between(x, y - s, y + s, alpha=0.12)
        labels = c.get("labels") or labels
        if labels and len(labels) == len(x):
            ax.set_xticks(x)
            ax.set_xticklabels([_t(t) for t in labels], rotation=60, ha="right", fontsize=6)
    ax.set_title(_t(title), fontsize=9)
    ax.set_xlabel(_t(xlabel), fontsize=8)
    ax.set_ylabel(_t(ylabel), fontsize=8)
    ax.legend(fontsize=6, frameon=False)
    ax.grid(alpha=0.3)
    return _png(fig)


def heatmap(matrix: Sequence[Sequence[float | None]], labels: Sequence[str], title: str,
            vmin: float = -1.0, vmax: float = 1.0) -> bytes:
    """Annotated square heat map (e.g. Kendall tau between evaluators)."""
    m = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    k = max(len(labels), 1)
    fig = _figure(1.2 + 0.55 * k, 1.0 + 0.5 * k)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(m if m.size else np.zeros((1, 1)), cmap="coolwarm", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([_t(s) for s in labels], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels([_t(s) for s in labels], fontsize=7)
    for i in range(m.shape[0]):
        for j in range(m.shape[1] if m.ndim == 2 else 0):
            ax.text(j, i, "–" if not math.isfinite(m[i, j]) else f"{m[i, j]:.2f}", ha="center",
                    va="center", fontsize=6)
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
