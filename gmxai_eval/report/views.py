"""The clinical views: figures (PNG bytes), the ``views`` report section and its files.

Colour maps: attribution mass (the positive part of a map) in **viridis**, its spread (std)
in **cividis**, both perceptually uniform and readable with the common colour-vision
deficiencies; signed differences (syndrome minus generic map) in **RdBu_r** (ColorBrewer's
colour-blind-safe diverging map) with a symmetric scale centred at zero. Every figure's title
names the method, the model and the number of images it summarises.

The section data (computed by :mod:`gmxai_eval.runner.stages.views_section`) holds the figures
as base64 PNGs and the region tables as rows, CSV and Markdown, so ``report.html`` and the
files under ``<run>/views/`` (:func:`write_view_files`) are rendered from the results alone.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gmxai_eval.errors import DataError
from gmxai_eval.report.figures import _figure, _png, _t, data_uri
from gmxai_eval.report.fragments import FIGURE_CHECK, PAGE_CSS, SECTIONS
from gmxai_eval.utils import csv_safe_frame, markdown_cell, markdown_text, write_atomic

MASS_CMAP = "viridis"
SPREAD_CMAP = "cividis"
DIVERGING_CMAP = "RdBu_r"

e = html.escape


def safe_name(label: str) -> str:
    """A method label as a file-name part (``[A-Za-z0-9_.-]`` only)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label)).strip("_") or "method"


def _rgb(img: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] as an ``(H, W, 3)`` RGB array."""
    a = img.detach().cpu().double().clamp(0, 1).numpy()
    return np.repeat(a[:1], 3, 0).transpose(1, 2, 0) if a.shape[0] == 1 else a[:3].transpose(1, 2, 0)


def _mass(m: torch.Tensor) -> np.ndarray:
    """The positive part scaled to [0, 1] (all zero stays zero)."""
    a = m.detach().cpu().double().clamp_min(0).numpy()
    top = float(a.max()) if a.size else 0.0
    return a / top if top > 0 else a


def _cmap(a: np.ndarray, name: str, vmin: float, vmax: float) -> np.ndarray:
    from matplotlib import colormaps

    x = (a - vmin) / ((vmax - vmin) or 1.0)
    return colormaps[name](np.clip(x, 0, 1))[..., :3]


def _overlay(img: torch.Tensor, m: torch.Tensor, alpha: float = 0.6) -> np.ndarray:
    """The face in grey with the map's positive mass (viridis) blended over it."""
    grey = np.repeat(_rgb(img).mean(2, keepdims=True), 3, 2)
    return (1 - alpha) * grey + alpha * _cmap(_mass(m), MASS_CMAP, 0.0, 1.0)


def _mosaic(grid: Sequence[Sequence[np.ndarray | None]], row_labels: Sequence[str], col_labels: Sequence[str],
            title: str, bar: tuple[str, float, float, str] | None = None) -> bytes:
    """Panels ``(H, W, 3)`` tiled into one image (one axes: fast to draw), with row labels on
    the left, column labels on top and an optional colour bar ``(cmap, vmin, vmax, label)``."""
    panels = [p for r in grid for p in r if p is not None]
    h, w = panels[0].shape[:2] if panels else (8, 8)
    pad = max(2, h // 28)
    rows, cols = len(grid), max((len(r) for r in grid), default=1)
    canvas = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, 3))
    for i, r in enumerate(grid):
        for j, p in enumerate(r):
            if p is not None:
                y, x = pad + i * (h + pad), pad + j * (w + pad)
                canvas[y: y + h, x: x + w] = p
    scale = 1.0 / 100  # inches per pixel at dpi 100: panels at their native size
    fig = _figure(canvas.shape[1] * scale + (1.6 if row_labels else 0.2) + (0.8 if bar else 0),
                  canvas.shape[0] * scale + 0.7)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for i, lab in enumerate(row_labels):
        ax.text(-pad, pad + i * (h + pad) + h / 2, _t(lab), ha="right", va="center", fontsize=7)
    for j, lab in enumerate(col_labels):
        ax.text(pad + j * (w + pad) + w / 2, -pad, _t(lab), ha="center", va="bottom", fontsize=7)
    ax.set_title(_t(title), fontsize=8, pad=14 if col_labels else 4)
    if bar is not None:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        cmap, lo, hi, label = bar
        fig.colorbar(ScalarMappable(Normalize(lo, hi), cmap), ax=ax, shrink=0.5, label=label)
    return _palette(_png(fig))


def _palette(png: bytes) -> bytes:
    """The PNG re-encoded with a 256-colour palette (fast octree): about 5 times smaller for
    noisy maps (the figures are stored in ``results.json``), with no visible banding."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        q = im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    q.save(buf, format="PNG")
    return buf.getvalue()


def patient_figure(image: torch.Tensor, top: Sequence[tuple[str, float]], maps: Mapping[str, torch.Tensor],
                   title: str) -> bytes:
    """One patient: a row per predicted syndrome (name and probability), the face then each
    method's map of that syndrome overlaid (viridis, positive mass).

    Args:
        image: ``(C, H, W)`` in ``[0, 1]``; top: ``k`` (class name, probability).
        maps: ``{method: (k, H, W)}``, row ``j`` explains ``top[j]``.
    """
    grid = [[_rgb(image), *[_overlay(image, a[j]) for a in maps.values()]] for j in range(len(top))]
    return _mosaic(grid, [f"{j + 1}. {n}  p = {p:.3f}" for j, (n, p) in enumerate(top)],
                   ["image", *maps], title, (MASS_CMAP, 0.0, 1.0, "positive mass (per map max)"))


def syndrome_figure(per_class: Mapping[str, Mapping[str, Any]], title: str) -> bytes:
    """Per class, the mean (viridis, positive part) and the std (cividis, per-panel scale) of
    its aligned maps, with ``n`` on each row. ``per_class``: ``{class: {"mean", "std", "n"}}``."""
    grid = []
    for v in per_class.values():
        sd = v["std"].detach().cpu().double().numpy()
        grid.append([_cmap(_mass(v["mean"]), MASS_CMAP, 0.0, 1.0), _cmap(sd, SPREAD_CMAP, 0.0, float(sd.max()) or 1.0)])
    return _mosaic(grid, [f"{c}  n = {v['n']}" for c, v in per_class.items()], ["mean (viridis)", "std (cividis)"],
                   title)


def composite_figure(faces: Mapping[str, torch.Tensor], per_class: Mapping[str, Mapping[str, Any]],
                     reference: str | None, title: str) -> bytes:
    """Per class, the mean aligned face and the same face with the class's mean map overlaid,
    next to the ``reference`` class's (the unaffected) mean face with the class's map.
    ``faces``: ``{class: (C, H, W)}``."""
    names = [c for c in per_class if c in faces]
    ref = faces.get(reference) if reference is not None else None
    grid = [[_rgb(faces[c]), _overlay(faces[c], per_class[c]["mean"]),
             *([_overlay(ref, per_class[c]["mean"])] if ref is not None else [])] for c in names]
    return _mosaic(grid, [f"{c}  n = {per_class[c]['n']}" for c in names],
                   ["mean face", "map overlaid", *([f"on {reference} mean"] if ref is not None else [])], title,
                   (MASS_CMAP, 0.0, 1.0, "positive mass"))


def difference_figure(generic: torch.Tensor, means: Mapping[str, torch.Tensor], diffs: Mapping[str, torch.Tensor],
                      title: str) -> bytes:
    """The generic map (first row), then per class its mean map (viridis) and its difference
    from the generic map (RdBu_r, one symmetric scale for every difference, centred at zero)."""
    vmax = max((float(d.abs().max()) for d in diffs.values()), default=0.0) or 1.0
    grid: list[list[np.ndarray | None]] = [[_cmap(_mass(generic), MASS_CMAP, 0.0, 1.0), None]]
    for c, d in diffs.items():
        grid.append([_cmap(_mass(means[c]), MASS_CMAP, 0.0, 1.0),
                     _cmap(d.detach().cpu().double().numpy(), DIVERGING_CMAP, -vmax, vmax)])
    return _mosaic(grid, ["generic (mean of the class means)", *diffs], ["mean (viridis)", "minus generic (RdBu_r)"],
                   title, (DIVERGING_CMAP, -vmax, vmax, "difference (centred at 0)"))


def similarity_figure(query: torch.Tensor, refs: torch.Tensor, q_maps: torch.Tensor, r_maps: torch.Tensor,
                      captions: Sequence[str], title: str) -> bytes:
    """One row per gallery match: the query, its map, the match, its map (both explaining
    their cosine similarity). ``query (C, H, W)``, ``refs (M, C, H, W)``, maps ``(M, H, W)``."""
    grid = [[_rgb(query), _overlay(query, q_maps[i]), _rgb(refs[i]), _overlay(refs[i], r_maps[i])]
            for i in range(int(refs.shape[0]))]
    return _mosaic(grid, list(captions), ["query", "query map", "match", "match map"], title,
                   (MASS_CMAP, 0.0, 1.0, "positive mass"))


def figure_entry(file: str, caption: str, png: bytes) -> dict[str, str]:
    """A figure as the section stores it."""
    return {"file": file, "caption": caption, "png": base64.b64encode(png).decode("ascii")}


#: Columns of the region table shown in report.html and Markdown (the CSV has every column).
TABLE_COLUMNS = ("n", "annotated", "annotated_mass", "best_annotated_rank", "top_is_annotated", "top_regions",
                 "unexplained")


def table_entry(name: str, title: str, caption: str, df: Any) -> dict[str, Any]:
    """A region table (``analysis.views.region_table``) as the section stores it: the compact
    columns as rows, the full table as CSV (cells neutralised against formula injection) and
    the compact one as Markdown."""
    flat = df.reset_index()
    compact = flat[["class", *[c for c in TABLE_COLUMNS if c in flat.columns]]]

    def plain(v: Any) -> Any:
        v = v.item() if hasattr(v, "item") else v
        return None if isinstance(v, float) and v != v else v

    rows = [[plain(v) for v in r] for r in compact.itertuples(index=False, name=None)]
    csv = csv_safe_frame(flat).to_csv(index=False, float_format="%.6g")
    head = "| " + " | ".join(markdown_cell(c) for c in compact.columns) + " |"
    sep = "|" + "---|" * len(compact.columns)
    body = ["| " + " | ".join(markdown_cell(_fmt(v)) for v in r) + " |" for r in rows]
    md = "\n".join([f"# {markdown_text(title)}", "", markdown_text(caption), "", head, sep, *body, ""])
    return {"file": name, "title": title, "caption": caption, "columns": [str(c) for c in compact.columns],
            "rows": rows, "csv": csv, "md": md}


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{e(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _fig(f: Mapping[str, Any]) -> str:
    png = base64.b64decode(f["png"])
    return (f'<figure><img alt="{e(str(f["caption"]))}" src="{data_uri(png)}">'
            f'<figcaption>{e(str(f["caption"]))} (views/{e(str(f["file"]))})</figcaption></figure>')


@SECTIONS.register(name="views")
def render_views_section(results: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, str]:
    """Renderer of the ``views`` section: the method choice, the patient-wise figures with their
    top-k syndromes and region masses, the syndrome-wise, composite and difference figures,
    the similarity maps and the region tables. Every text from data is escaped."""
    for key in ("methods", "figures", "tables"):
        if key not in data:
            raise DataError(f"expected a views section with keys methods, figures, tables, got {sorted(data)}",
                            column=key)
    parts = [f"<p>Model: {e(str(data.get('model', '')))}. Methods: {e(', '.join(map(str, data['methods'])))} "
             f"(chosen by {e(str(data.get('methods_rule', '')))}). {e(str(data.get('keep_rule', '')))}</p>"]
    parts += [f"<p>{e(str(n))}</p>" for n in data.get("notes", [])]
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for f in data["figures"]:
        by_kind.setdefault(str(f.get("kind", "")), []).append(f)
    patients = {str(p.get("file")): p for p in data.get("patients", [])}
    titles = {"patient": "Patient-wise", "syndrome": "Syndrome-wise mean and spread",
              "composite": "Composite faces", "difference": "Generic and difference maps",
              "similarity": "Similarity maps (gallery matches)"}
    for kind, title in titles.items():
        figs = by_kind.get(kind, [])
        if not figs:
            continue
        parts.append(f"<h3>{e(title)}</h3>")
        for f in figs:
            parts.append(_fig(f))
            p = patients.get(str(f["file"]))
            if p:
                parts.append(_table(["rank", "syndrome", "probability"],
                                    [[i + 1, c, s] for i, (c, s) in enumerate(p.get("top_k", []))]))
                mass = p.get("region_mass", {})
                if mass:
                    regions = list(next(iter(mass.values())))
                    parts.append("<p>Attribution mass per named region (top-1 syndrome's map):</p>"
                                 + _table(["method", *regions], [[m, *[v.get(r) for r in regions]]
                                                                  for m, v in mass.items()]))
    for t in data["tables"]:
        parts.append(f"<h3>{e(str(t['title']))}</h3><p>{e(str(t.get('caption', '')))} "
                     f"(views/{e(str(t['file']))}.csv, .md)</p>")
        parts.append(_table(t["columns"], t["rows"]))
    return str(data.get("title", "Clinical views")), "".join(parts)


def write_view_files(results: Mapping[str, Any], folder: str | Path) -> list[Path]:
    """Write the ``views`` section's figures (PNG) and region tables (CSV, Markdown) under
    ``<folder>/views/``; nothing without a views section. Returns the files written."""
    data = (results.get("sections") or {}).get("views")
    if not data:
        return []
    out = []
    root = Path(folder) / "views"
    for f in data.get("figures", []):
        out.append(write_atomic(root / safe_name(f["file"]), base64.b64decode(f["png"])))
    for t in data.get("tables", []):
        out.append(write_atomic(root / f"{safe_name(t['file'])}.csv", t["csv"]))
        out.append(write_atomic(root / f"{safe_name(t['file'])}.md", t["md"]))
    return out



def explain_page(title: str, figures: Sequence[tuple[str, bytes]], top_k: Sequence[tuple[str, float]],
                 region_row: Mapping[str, Any] | None, region_mass: Mapping[str, Mapping[str, float]],
                 matches: Sequence[Mapping[str, Any]], notes: Sequence[str] = ()) -> str:
    """The self-contained page of ``gmxai-eval explain``: figures (caption, PNG) inline, the
    top-k syndromes, the region table row, the region masses and the gallery matches. Every
    text from data is escaped."""
    parts = [f"<h1>{e(title)}</h1>", *[f"<p>{e(n)}</p>" for n in notes], "<h2>Top syndromes</h2>",
             _table(["rank", "syndrome", "probability"], [[i + 1, c, p] for i, (c, p) in enumerate(top_k)])]
    for cap, png in figures:
        parts.append(f'<figure><img alt="{e(cap)}" src="{data_uri(png)}"><figcaption>{e(cap)}</figcaption></figure>')
    if region_row:
        cols = ["method", "class", *[c for c in TABLE_COLUMNS if c in region_row and c != "n"]]
        parts.append("<h2>Region table row (top-1 syndrome)</h2>" + _table(cols, [[region_row.get(c) for c in cols]]))
    if region_mass:
        regions = list(next(iter(region_mass.values())))
        parts.append("<h2>Attribution mass per named region (top-1 syndrome)</h2>"
                     + _table(["method", *regions], [[m, *[v.get(r) for r in regions]] for m, v in region_mass.items()]))
    if matches:
        parts.append("<h2>Nearest gallery matches</h2>"
                     + _table(["match", "id", "class", "cosine"],
                              [[i + 1, m.get("id"), m.get("class"), m.get("cosine")] for i, m in enumerate(matches)]))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{PAGE_CSS}</style></head><body>{''.join(parts)}{FIGURE_CHECK}</body></html>")
