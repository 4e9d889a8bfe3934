"""The building blocks of the HTML pages: escaping, tables, inline figures, the page style, and
:data:`SECTIONS`, the registry of section renderers.

The page (:mod:`gmxai_eval.report.html`) and every section renderer build on this module; it
imports neither, so a section module registers itself here with a decorator
(``@SECTIONS.register(name="...")``) and the page imports the section modules.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

from gmxai_eval.errors import DataError
from gmxai_eval.registry import Registry
from gmxai_eval.report.figures import data_uri

__all__ = ["SECTIONS", "PAGE_CSS", "FIGURE_CHECK", "e", "table_html", "frame_html", "figure_html", "table_section"]


#: Report sections, one renderer per name: ``@SECTIONS.register(name="gaze")`` on a function
#: ``fn(results: Mapping, data: Mapping) -> (title, trusted HTML)``, where ``data`` is
#: ``results["sections"][name]``, computed by the runner's ``sections`` stage (a spec's
#: ``[report] sections = [...]``). A renderer only formats: it never runs a model.
SECTIONS: Registry = Registry("report section", entry_point_group="gmxai_eval.sections")


def table_section(results: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, str]:
    """Renderer of a table section stored as ``{"title", "caption", "index", "columns",
    "rows"}`` (rows: lists of cells, ``None`` for a missing value); every cell is escaped."""
    for key in ("title", "columns", "rows"):
        if key not in data:
            raise DataError(f"expected a table section with keys title, columns, rows, got {sorted(data)}",
                            column=key)
    rows = [[_cell(v) for v in r] for r in data["rows"]]
    cap = f"<p>{e(str(data['caption']))}</p>" if data.get("caption") else ""
    return str(data["title"]), cap + f'<div class="scroll">{table_html(list(map(str, data["columns"])), rows)}</div>'


PAGE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;white-space:normal;overflow-wrap:anywhere}
table{max-width:100%}table.lb{table-layout:fixed;width:100%}
.verdict{font-weight:500}
th{background:#f3f3f3}.meta td:first-child{font-weight:600}
.flag{color:#a40000}figure{display:inline-block;margin:.5em;vertical-align:top}
figcaption{font-size:.8em;color:#555}pre{background:#f7f7f7;padding:.5em;font-size:.75em;overflow:auto}
img{max-width:100%;height:auto}.scroll{overflow-x:auto}
.maps img{max-height:900px}
.summary td:first-child,.summary th:first-child{position:sticky;left:0;background:#fff}
.summary th:first-child{background:#f3f3f3}
"""

FIGURE_CHECK = """
<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img');
  var ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  var d = document.createElement('div');
  d.id = 'gmx-figcheck';
  d.setAttribute('data-total', String(imgs.length));
  d.setAttribute('data-ok', String(ok));
  d.style.display = 'none';
  document.body.appendChild(d);
});
</script>
"""

e = html.escape


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    """An HTML table; every header and cell is escaped."""
    head = "".join(f"<th>{e(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def figure_html(png: bytes, caption: str) -> str:
    """A ``<figure>`` with the PNG inline (base64) and its caption; both escaped."""
    return (f'<figure><img alt="{e(caption)}" src="{data_uri(png)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def _cell(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def frame_html(df: Any, caption: str | None = None, digits: int = 4) -> str:
    """An escaped HTML table of a DataFrame (index as the first column), with a caption."""
    import pandas as pd

    index_name = df.index.name or ""
    rows = [[_cell(i, digits), *(_cell(v, digits) for v in r)] for i, r in zip(df.index, df.itertuples(index=False))] \
        if not isinstance(df.index, pd.RangeIndex) else [[_cell(v, digits) for v in r] for r in df.itertuples(index=False)]
    headers = ([index_name] if not isinstance(df.index, pd.RangeIndex) else []) + [str(c) for c in df.columns]
    cap = f"<p>{e(caption)}</p>" if caption else ""
    return cap + f'<div class="scroll">{table_html(headers, rows)}</div>'
