"""Clinician questionnaire kit: a blinded offline form of saliency maps, and the analysis of answers.

:func:`build_form` turns cases (a face, its predicted syndrome, the maps of the chosen methods)
into one static HTML page and a separate **key**: per case the methods are shown in a random order
under the labels A, B, C, ... and only the key (never the page) says which label is which
method. Per map the rater answers

* ``rating``: does the map highlight features relevant to the syndrome? 1 (not at all) to 5
  (fully), a 5-point Likert item;
* ``regions``: which of the named facial regions are relevant (checkboxes);
* ``comment``: free text.

Answers live in the browser's ``localStorage`` (keyed by the form id) from the first click, so a
closed tab loses nothing; **Save answers** downloads ``answers-<rater>.json``
(format ``gmxai_eval.questionnaire.answers/1``).

:func:`analyse` reads a folder of answer files, validates each (a malformed file or one for
another form is reported and skipped, with counts), unblinds with the key and reports per method
the mean rating with a percentile-bootstrap CI over cases, the agreement between raters
(Krippendorff's α, ordinal, each map of each case a unit), and how often the regions raters chose
are among the map's top regions by attribution mass (stored in the key at build time).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.utils import markdown_cell, markdown_text, stable_hash

FORM_FORMAT = "gmxai_eval.questionnaire.form/1"
KEY_FORMAT = "gmxai_eval.questionnaire.key/1"
ANSWERS_FORMAT = "gmxai_eval.questionnaire.answers/1"
LIKERT = (1, 2, 3, 4, 5)
LIKERT_LABELS = ("1 not at all", "2", "3", "4", "5 fully")


@dataclass
class Case:
    """One face shown to raters.

    Attributes:
        case_id: unique id (e.g. the image id).
        image: ``(C, H, W)`` or ``(H, W)`` array in ``[0, 1]``.
        predicted: the predicted syndrome's name (shown), ``score`` its probability (optional).
        maps: ``{method: (H, W)}`` signed attribution maps.
        region_masks: optional ``(R, H, W)`` bool named regions, names in ``region_names``.
        true_label: optional name, kept in the key only (never shown).
    """

    case_id: str
    image: Any
    predicted: str
    maps: Mapping[str, Any]
    score: float | None = None
    region_masks: Any = None
    region_names: Sequence[str] = ()
    true_label: str | None = None


# -------------------------------------------------------------------------------------------
# pictures


def _rgb(image: Any) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(a, 0.0, 1.0)


def _png_uri(rgb: np.ndarray, scale: int = 2) -> str:
    from PIL import Image

    u8 = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    img = Image.fromarray(u8).resize((u8.shape[1] * scale, u8.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def overlay(image: Any, attribution: Any, cmap: str = "viridis", alpha: float = 0.6) -> np.ndarray:
    """The positive part of ``attribution (H, W)``, scaled by its maximum, drawn over a grey copy
    of the face with a perceptually uniform, colour-blind-safe colour map (``viridis``); opacity
    grows with relevance so the face stays visible. Returns ``(H, W, 3)`` in ``[0, 1]``."""
    from matplotlib import colormaps

    face = _rgb(image).mean(-1, keepdims=True).repeat(3, -1)
    a = np.clip(np.asarray(attribution, dtype=np.float64), 0, None)
    top = a.max()
    h = a / top if top > 0 else np.zeros_like(a)
    colour = colormaps[cmap](h)[..., :3]
    w = (alpha * h)[..., None]
    return (1 - w) * face + w * colour


def top_regions(attribution: Any, region_masks: Any, region_names: Sequence[str], k: int = 3) -> list[str]:
    """The ``k`` regions with the largest share of the map's positive mass (ties by name)."""
    a = np.clip(np.asarray(attribution, dtype=np.float64), 0, None)
    masks = np.asarray(region_masks, dtype=bool)
    mass = [(float(a[m].sum()), n) for m, n in zip(masks, region_names)]
    mass.sort(key=lambda t: (-t[0], t[1]))
    return [n for v, n in mass[:k] if v > 0]


# -------------------------------------------------------------------------------------------
# the form


def build_form(cases: Sequence[Case], methods: Sequence[str], *, seed: int = 0, title: str = "",
               regions: Sequence[str] | None = None, top_k: int = 3,
               model_name: str = "") -> tuple[str, dict[str, Any]]:
    """``(html, key)`` for ``cases`` and the maps of ``methods`` (see the module docstring).

    Args:
        cases: the cases, each with a map for every method.
        methods: method labels to show (2 to 26).
        seed: seeds the per-case random order of the maps.
        regions: region names offered as checkboxes (default: the cases' region names).
        top_k: how many top-mass regions per map the key stores for the analysis.

    Raises:
        ConfigError: no cases, duplicate case ids, a missing map, too few or many methods.
    """
    if not cases:
        raise ConfigError("expected at least one case, got none")
    methods = list(dict.fromkeys(methods))
    if not 1 <= len(methods) <= 26:
        raise ConfigError(f"expected 1 to 26 methods, got {len(methods)}")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"expected unique case ids, got duplicates in {ids}")
    for c in cases:
        missing = [m for m in methods if m not in c.maps]
        if missing:
            raise ConfigError(f"case {c.case_id!r}: expected maps of {methods}, missing {missing}")
    names = list(regions) if regions is not None else list(next((c.region_names for c in cases if c.region_names), ()))
    rng = np.random.default_rng(seed)
    form_id = stable_hash(FORM_FORMAT, ids, methods, seed)
    key_cases, blocks = [], []
    for ci, c in enumerate(cases):
        order = [methods[i] for i in rng.permutation(len(methods))]
        labels = {chr(ord("A") + j): m for j, m in enumerate(order)}
        tops = {}
        if c.region_masks is not None and len(c.region_names):
            tops = {m: top_regions(c.maps[m], c.region_masks, c.region_names, top_k) for m in methods}
        key_cases.append({"case": c.case_id, "labels": labels, "top_regions": tops,
                          "predicted": c.predicted, "true_label": c.true_label})
        blocks.append(_case_html(ci, c, labels, names))
    key = {"format": KEY_FORMAT, "form_id": form_id, "methods": methods, "regions": names,
           "likert": list(LIKERT), "top_k": top_k, "seed": seed, "model": model_name, "cases": key_cases}
    page = _PAGE.format(title=html.escape(title or "Saliency map questionnaire"), form_id=form_id,
                        n=len(cases), cases="\n".join(blocks),
                        meta=html.escape(json.dumps({"format": FORM_FORMAT, "form_id": form_id,
                                                     "cases": ids, "regions": names})),
                        answers_format=ANSWERS_FORMAT)
    return page, key


def _case_html(ci: int, c: Case, labels: Mapping[str, str], regions: Sequence[str]) -> str:
    score = "" if c.score is None else f" (model score {c.score:.2f})"
    maps = []
    for lab, m in labels.items():
        q = f"c{ci}-{lab}"
        likert = "".join(
            f'<label><input type="radio" name="{q}-rating" value="{v}" data-case="{html.escape(c.case_id)}" '
            f'data-label="{lab}" data-field="rating"> {html.escape(t)}</label> '
            for v, t in zip(LIKERT, LIKERT_LABELS))
        boxes = "".join(
            f'<label><input type="checkbox" name="{q}-region" value="{html.escape(r)}" '
            f'data-case="{html.escape(c.case_id)}" data-label="{lab}" data-field="regions"> {html.escape(r)}</label> '
            for r in regions)
        maps.append(
            f'<div class="map"><h3>Map {lab}</h3><img alt="map {lab}" src="{_png_uri(overlay(c.image, c.maps[m]))}">'
            f'<p>Does this map highlight features relevant to the syndrome?<br>{likert}</p>'
            f'<p>Which regions are relevant?<br>{boxes}</p>'
            f'<p><textarea rows="2" cols="40" name="{q}-comment" data-case="{html.escape(c.case_id)}" '
            f'data-label="{lab}" data-field="comment" placeholder="comments"></textarea></p></div>')
    return (f'<section class="case" id="case-{ci}"><h2>Case {ci + 1}</h2>'
            f'<div class="face"><img alt="face" src="{_png_uri(_rgb(c.image))}">'
            f'<p>Predicted: <b>{html.escape(c.predicted)}</b>{html.escape(score)}</p></div>'
            f'<div class="maps">{"".join(maps)}</div></section>')


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}}
.case{{border-top:2px solid #ccc;margin-top:1.5em}} .maps{{display:flex;flex-wrap:wrap;gap:1em}}
.map{{border:1px solid #ddd;padding:.5em;width:330px}} .map label{{margin-right:.4em;white-space:nowrap}}
#status{{color:#246}}
</style></head><body>
<h1>{title}</h1>
<p>{n} cases. For each face, the maps below come from different explanation methods, in a random
order. Rate each map, tick the regions you find relevant, and add comments if you like. Your
answers are kept in this browser until you save them.</p>
<p><label>Your rater id: <input id="rater" name="rater" data-field="rater" size="20"></label>
<button id="save" type="button">Save answers</button> <span id="status"></span></p>
<script type="application/json" id="form-meta">{meta}</script>
{cases}
<p><button id="save2" type="button">Save answers</button></p>
<script>
(function() {{
  const FORM = "{form_id}";
  const STORE = "gmxai-questionnaire-" + FORM;
  function collect() {{
    const state = {{rater: document.getElementById("rater").value, inputs: {{}}}};
    document.querySelectorAll("[data-field]").forEach(el => {{
      if (el.id === "rater") return;
      if (el.type === "radio" || el.type === "checkbox") state.inputs[el.name + "=" + el.value] = el.checked;
      else state.inputs[el.name] = el.value;
    }});
    return state;
  }}
  function persist() {{ localStorage.setItem(STORE, JSON.stringify(collect())); }}
  function restore() {{
    const raw = localStorage.getItem(STORE);
    if (!raw) return;
    const state = JSON.parse(raw);
    document.getElementById("rater").value = state.rater || "";
    document.querySelectorAll("[data-field]").forEach(el => {{
      if (el.id === "rater") return;
      if (el.type === "radio" || el.type === "checkbox") el.checked = !!state.inputs[el.name + "=" + el.value];
      else if (state.inputs[el.name] !== undefined) el.value = state.inputs[el.name];
    }});
  }}
  function answers() {{
    const items = {{}};
    document.querySelectorAll("[data-case]").forEach(el => {{
      const k = el.dataset.case + "\\u0000" + el.dataset.label;
      const it = items[k] || (items[k] = {{case: el.dataset.case, label: el.dataset.label, rating: null,
                                          regions: [], comment: ""}});
      if (el.dataset.field === "rating" && el.checked) it.rating = parseInt(el.value, 10);
      if (el.dataset.field === "regions" && el.checked) it.regions.push(el.value);
      if (el.dataset.field === "comment") it.comment = el.value;
    }});
    return Object.values(items);
  }}
  function save() {{
    const rater = document.getElementById("rater").value.trim();
    if (!rater) {{ document.getElementById("status").textContent = "Please enter your rater id first."; return; }}
    const doc = {{format: "{answers_format}", form_id: FORM, rater: rater,
                 saved_at: new Date().toISOString(), answers: answers()}};
    const blob = new Blob([JSON.stringify(doc, null, 1)], {{type: "application/json"}});
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "answers-" + rater.replace(/[^A-Za-z0-9_.-]/g, "_") + ".json";
    document.body.appendChild(a); a.click(); a.remove();
    document.getElementById("status").textContent = "Saved " + a.download;
  }}
  document.addEventListener("change", persist);
  document.addEventListener("input", persist);
  document.getElementById("save").addEventListener("click", save);
  document.getElementById("save2").addEventListener("click", save);
  restore();
}})();
</script></body></html>
"""


# -------------------------------------------------------------------------------------------
# analysis


@dataclass
class Analysis:
    """What :func:`analyse` found.

    Attributes:
        ratings: long table ``rater, case, label, method, rating`` (unblinded; missing ratings dropped).
        per_method: per method ``n`` ratings, ``mean`` (of per-case mean ratings: every case weighs
            the same), ``ci_low, ci_high`` (percentile bootstrap over cases), ``region_hit``
            (share of rater-chosen regions among the map's top regions) and ``n_regions``.
        alpha: Krippendorff's α (ordinal) over all rated maps; ``None`` with fewer than 2 raters.
        files: ``{"read": n, "used": n, "skipped": n}``; ``problems``: one line per skipped file.
    """

    ratings: Any
    per_method: Any
    alpha: float | None
    files: dict[str, int]
    problems: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"Answer files: {self.files['read']} read, {self.files['used']} used, "
                 f"{self.files['skipped']} skipped.",
                 f"Inter-rater agreement (Krippendorff's alpha, ordinal): "
                 f"{'n/a (fewer than 2 raters)' if self.alpha is None else f'{self.alpha:.3f}'}", ""]
        # method labels, region names and file names come from the key and the answers: escaped
        from pandas.api.types import is_numeric_dtype

        pm = self.per_method.rename(index=markdown_cell, columns=markdown_cell)
        pm = pm.apply(lambda c: c if is_numeric_dtype(c) else c.map(markdown_cell))
        lines.append(pm.to_markdown(floatfmt=".3f") if len(pm) else "(no ratings)")
        if self.problems:
            lines += ["", "Skipped files:"] + [markdown_text(f"- {p}") for p in self.problems]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        esc = html.escape
        head = "".join(f"<th>{esc(str(c))}</th>" for c in ["method", *self.per_method.columns])
        rows = "".join(
            "<tr><td>" + esc(str(i)) + "</td>" + "".join(
                f"<td>{'n/a' if isinstance(v, float) and math.isnan(v) else esc(f'{v:.3f}' if isinstance(v, float) else str(v))}</td>"
                for v in r) + "</tr>" for i, r in zip(self.per_method.index, self.per_method.itertuples(index=False)))
        alpha = "n/a" if self.alpha is None else f"{self.alpha:.3f}"
        probs = "".join(f"<li>{esc(p)}</li>" for p in self.problems)
        return (f"<section><h2>Clinician questionnaire</h2><p>{self.files['used']} answer files used, "
                f"{self.files['skipped']} skipped. Krippendorff's alpha (ordinal): {alpha}.</p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
                + (f"<p>Skipped:</p><ul>{probs}</ul>" if probs else "") + "</section>")


def load_key(path: str | Path) -> dict[str, Any]:
    """Read and validate a key file (DataError naming the file otherwise)."""
    p = Path(path)
    try:
        key = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"expected a questionnaire key (JSON), got {type(e).__name__}: {e}", path=p) from None
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        got = key.get("format") if isinstance(key, dict) else type(key).__name__
        raise DataError(f"expected format {KEY_FORMAT!r}, got {got!r}", path=p)
    for k in ("form_id", "cases", "methods"):
        if k not in key:
            raise DataError(f"expected key {k!r} in the questionnaire key, got none", path=p)
    return key


def _validate(doc: Any, key: Mapping[str, Any]) -> str | None:
    """``None`` if ``doc`` is a valid answer file for ``key``, else why not (one line)."""
    if not isinstance(doc, dict):
        return f"expected a JSON object, got {type(doc).__name__}"
    if doc.get("format") != ANSWERS_FORMAT:
        return f"expected format {ANSWERS_FORMAT!r}, got {doc.get('format')!r}"
    if doc.get("form_id") != key["form_id"]:
        return f"expected form {key['form_id']!r}, got {doc.get('form_id')!r} (another questionnaire)"
    if not isinstance(doc.get("rater"), str) or not doc["rater"].strip():
        return "expected a non-empty rater id"
    labels = {c["case"]: c["labels"] for c in key["cases"]}
    regions = set(key.get("regions", []))
    if not isinstance(doc.get("answers"), list):
        return "expected a list of answers"
    for i, a in enumerate(doc["answers"]):
        if not isinstance(a, dict) or a.get("case") not in labels or a.get("label") not in labels[a.get("case")]:
            return f"answer {i}: expected a known case and map label, got {a.get('case') if isinstance(a, dict) else a!r}"
        r = a.get("rating")
        if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r not in LIKERT):
            return f"answer {i}: expected a rating in 1..5 or null, got {r!r}"
        if not isinstance(a.get("regions", []), list) or not set(a.get("regions", [])) <= regions:
            return f"answer {i}: expected regions among the form's, got {a.get('regions')!r}"
    return None


def krippendorff_alpha_ordinal(units: Sequence[Mapping[str, float]]) -> float | None:
    """Krippendorff's alpha (ordinal) of ratings given as one ``{rater: value}`` mapping per unit
    (here: a map of a case); units with fewer than 2 ratings are not pairable and drop out.
    The computation is :func:`gmxai_eval.functional.agreement.krippendorff_alpha`; ``None`` when
    alpha is undefined (fewer than 2 pairable values, or no variation at all)."""
    from gmxai_eval.functional.agreement import krippendorff_alpha

    raters = sorted({r for u in units for r in u})
    if not raters or not units:
        return None
    table = np.full((len(raters), len(units)), np.nan)
    for j, u in enumerate(units):
        for r, v in u.items():
            table[raters.index(r), j] = float(v)
    if (np.isfinite(table).sum(0) >= 2).sum() == 0:
        return None
    a = krippendorff_alpha(table, level="ordinal")
    return None if a is None or not math.isfinite(a) else float(a)


def analyse(answer_dir: str | Path, key: Mapping[str, Any] | str | Path, *, n_boot: int = 2000,
            seed: int = 0) -> Analysis:
    """Read every ``*.json`` answer file in ``answer_dir``, validate, unblind and summarise.

    Raises:
        DataError: ``answer_dir`` is not a folder, or the key is invalid.
        ConfigError: ``n_boot < 1``.
    """
    import pandas as pd

    if n_boot < 1:
        raise ConfigError(f"expected n_boot >= 1, got {n_boot}")
    k = load_key(key) if not isinstance(key, Mapping) else dict(key)
    d = Path(answer_dir)
    if not d.is_dir():
        raise DataError("expected a folder of answer files, got no such folder", path=d)
    unblind = {c["case"]: c["labels"] for c in k["cases"]}
    tops = {c["case"]: c.get("top_regions", {}) for c in k["cases"]}
    rows, hits, problems = [], [], []
    files = sorted(d.glob("*.json"))
    seen: dict[str, str] = {}
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            problems.append(f"{f.name}: not a JSON answer file ({type(e).__name__})")
            continue
        why = _validate(doc, k)
        if why is None and doc["rater"] in seen:
            why = f"rater {doc['rater']!r} already answered in {seen[doc['rater']]}"
        if why is not None:
            problems.append(f"{f.name}: {why}")
            continue
        seen[doc["rater"]] = f.name
        for a in doc["answers"]:
            method = unblind[a["case"]][a["label"]]
            if a.get("rating") is not None:
                rows.append({"rater": doc["rater"], "case": a["case"], "label": a["label"],
                             "method": method, "rating": int(a["rating"])})
            top = tops[a["case"]].get(method)
            for r in a.get("regions", []):
                if top is not None:
                    hits.append({"method": method, "hit": float(r in top)})
    ratings = pd.DataFrame(rows, columns=["rater", "case", "label", "method", "rating"])
    rng = np.random.default_rng(seed)
    out = []
    for m in k["methods"]:
        sub = ratings[ratings.method == m]
        per_case = sub.groupby("case")["rating"].mean()
        if len(per_case):
            v = per_case.to_numpy()
            boots = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
            lo, hi = np.percentile(boots, [2.5, 97.5])
            mean = float(v.mean())
        else:
            mean = lo = hi = float("nan")
        h = [x["hit"] for x in hits if x["method"] == m]
        out.append({"method": m, "n": int(len(sub)), "mean": mean, "ci_low": float(lo), "ci_high": float(hi),
                    "region_hit": float(np.mean(h)) if h else float("nan"), "n_regions": len(h)})
    per_method = pd.DataFrame(out).set_index("method")
    units = [dict(zip(g.rater, g.rating)) for _, g in ratings.groupby(["case", "label"])]
    alpha = krippendorff_alpha_ordinal(units) if ratings.rater.nunique() >= 2 else None
    return Analysis(ratings, per_method, alpha,
                    {"read": len(files), "used": len(files) - len(problems), "skipped": len(problems)},
                    problems)
