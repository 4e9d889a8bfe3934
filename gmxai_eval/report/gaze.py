"""The gaze section rendered from its data (never from a model or maps).

``data`` is what :func:`gmxai_eval.evaluators.gaze_reference.gaze_section_data` returns (and
``results.json`` stores): per-method rows, the human ceiling and centre-bias floor rows,
per-image scores and the areas-of-interest table.

* :func:`gaze_table`: the summary as a DataFrame (index ``method``, the stored columns,
  ``attrs`` with ``higher_is_better``, ``level``, ``simulated``, ``caption``, ``study``,
  ``fixations``), as ``gaze_table.csv`` is written.
* :func:`gaze_per_image` / :func:`gaze_aoi`: the per-image scores and the AOI table as
  DataFrames.
* :func:`render_gaze_markdown`: ``gaze_table.md``'s table: ``mean [lo, hi] (fraction of
  ceiling)`` per metric, the direction of each metric in its header (``↑`` higher is better,
  ``↓`` lower is better).
* :func:`render_gaze_section`: the same table as an escaped HTML fragment for ``report.html``,
  with the AOI table and the study line.
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping

import pandas as pd

from gmxai_eval.errors import DataError
from gmxai_eval.report.fragments import SECTIONS
from gmxai_eval.utils import markdown_cell, markdown_text

e = html.escape
_REQUIRED = ("metrics", "rows", "ceiling_row", "caption", "level", "simulated")


def _check(data: Mapping[str, Any]) -> None:
    if not isinstance(data, Mapping):
        raise DataError(f"expected the gaze section data as a mapping, got {type(data).__name__}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise DataError(f"expected gaze section data with keys {list(_REQUIRED)}, missing {missing}",
                        column=missing[0])


def _nan(v: Any) -> Any:
    return float("nan") if v is None else v


def gaze_table(data: Mapping[str, Any]) -> pd.DataFrame:
    """The summary table of ``data`` as a DataFrame (see the module docstring)."""
    _check(data)
    rows = data["rows"]
    cols = [c for c in (rows[0] if rows else {"method": None}) if c != "method"]
    df = pd.DataFrame([[_nan(r.get(c)) for c in cols] for r in rows], columns=cols,
                      index=pd.Index([r["method"] for r in rows], name="method"))
    for c in cols:
        if c == "n_images":
            df[c] = df[c].astype(int)
        elif c == "simulated":
            df[c] = df[c].astype(bool)
        else:
            df[c] = df[c].astype(float)
    df.attrs["higher_is_better"] = {m["name"]: bool(m["higher_is_better"]) for m in data["metrics"]}
    df.attrs["level"] = data["level"]
    df.attrs["simulated"] = bool(data["simulated"])
    df.attrs["caption"] = data["caption"]
    if data.get("study") is not None:
        df.attrs["study"] = data["study"]
    if data.get("fixations") is not None:
        df.attrs["fixations"] = data["fixations"]
    return df


def gaze_per_image(data: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """``{row name: per-image scores}`` (index image ids, columns metrics) of ``data``."""
    _check(data)
    return {name: pd.DataFrame({m: [_nan(v) for v in vals] for m, vals in d["scores"].items()},
                               index=list(d["image_ids"]), dtype=float)
            for name, d in data.get("per_image", {}).items()}


def gaze_aoi(data: Mapping[str, Any]) -> pd.DataFrame | None:
    """The areas-of-interest table (index ``row``, region columns + ``outside``), or ``None``."""
    _check(data)
    aoi = data.get("aoi")
    if not aoi:
        return None
    df = pd.DataFrame([[_nan(r[c]) for c in aoi["columns"]] for r in aoi["rows"]], columns=aoi["columns"],
                      index=pd.Index([r["row"] for r in aoi["rows"]], name="row"), dtype=float)
    df.attrs["simulated"] = bool(data["simulated"])
    return df


def _cells(data: Mapping[str, Any], digits: int) -> tuple[list[str], list[list[str]]]:
    """Header and body cells shared by the Markdown and HTML renderings."""
    metrics = data["metrics"]
    head = ["method"] + [f"{m['label']} {'↑' if m['higher_is_better'] else '↓'}" for m in metrics] + ["n"]
    body = []
    ceiling = data["ceiling_row"]
    for r in data["rows"]:
        name = r["method"]
        cells = [str(name) + (" (simulated gaze)" if r.get("simulated") and name == ceiling else "")]
        for m in metrics:
            k = m["name"]
            v = r.get(k)
            if v is None or not math.isfinite(v):
                cells.append("n/a")
                continue
            frac = r.get(f"{k}_frac_ceiling")
            lo, hi = _nan(r.get(f"{k}_lo")), _nan(r.get(f"{k}_hi"))
            cells.append(f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
                         + (f" ({frac:.2f})" if frac is not None and math.isfinite(frac) and name != ceiling else ""))
        cells.append(str(int(r["n_images"])))
        body.append(cells)
    return head, body


def render_gaze_markdown(data: Mapping[str, Any], digits: int = 3) -> str:
    """The summary as Markdown: ``mean [lo, hi] (frac)`` per metric, with the caption."""
    _check(data)
    head, body = _cells(data, digits)
    lines = [f"**{markdown_text(data['caption'])}**", "", "| " + " | ".join(markdown_cell(h) for h in head) + " |",
             "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(markdown_cell(c) for c in cells) + " |" for cells in body]  # labels escaped
    return "\n".join(lines) + "\n"


def _table(head: list[str], body: list[list[str]]) -> str:
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    tb = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body)
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{tb}</tbody></table></div>'


def render_gaze_section(data: Mapping[str, Any], digits: int = 3) -> str:
    """The gaze section as an HTML fragment; every text from ``data`` is escaped.

    The summary table is formatted like the ``gaze`` command's ``gaze_table.md`` (each metric's
    header carries its direction); the AOI table (when present) follows, then the study.
    """
    _check(data)
    head, body = _cells(data, digits)
    parts = [f"<p>{e(str(data['caption']))}</p>", _table(head, body)]
    aoi = data.get("aoi")
    if aoi:
        parts.append("<p>Areas of interest: share of dwell time vs share of positive attribution per region"
                     f"{' (SIMULATED gaze)' if data['simulated'] else ''}</p>")
        parts.append(_table(["row", *map(str, aoi["columns"])],
                            [[str(r["row"]), *("n/a" if r[c] is None else f"{r[c]:.3f}" for c in aoi["columns"])]
                             for r in aoi["rows"]]))
    study = data.get("study")
    if study:
        note = (f"Study: {study.get('name', 'study')}{' (SIMULATED)' if study.get('simulated') else ''}, "
                f"sigma = {study.get('sigma_deg', float('nan')):g} deg; map transform: {data.get('transform', 'abs')}.")
        if data.get("fixations"):
            note += f" Fixations: {data['fixations']}."
        parts.append(f"<p>{e(note)}</p>")
    return "\n".join(parts)


@SECTIONS.register(name="gaze")
def gaze_section(results: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, str]:
    """Renderer of the ``gaze`` section (methods vs the human ceiling and the floor)."""
    return str(data.get("title", "Gaze")), render_gaze_section(data)
