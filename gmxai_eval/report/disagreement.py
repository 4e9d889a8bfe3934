"""Renderer of the ``disagreement`` section: why each pixel-perturbation evaluator disagrees
with the interventional truth (the data are computed by the runner,
``gmxai_eval.runner.stages.disagreement_section``; this module only formats them).

One row per evaluator with a substrate: the explained class's mean probability on the affected
faces (clean, traits filled with the substrate, traits re-rendered away, a same-area shifted
region filled), the predictions kept, the out-of-distribution gap (substrate - re-rendered,
95 % bootstrap interval), the share of the truth's effect the substrate reproduces, the removal
masks' leakage (cross-validated accuracy of predicting the class from the masks, pooled over
methods, against the majority guess) and the evaluator's † mark from the validity table.
"""

from __future__ import annotations

from typing import Any, Mapping

from gmxai_eval.report.fragments import SECTIONS, e, table_html
from gmxai_eval.report.tables import MARK_DISAGREES


def _f(v: Any, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and v != v) else f"{float(v):.{digits}f}"


def accounting(results: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """One sentence: do the gaps separate the evaluators marked † from the others?"""
    val = ((results.get("validity") or {}).get("evaluators") or {})
    evs = data.get("evaluators") or {}
    marked = [k for k in evs if (val.get(k) or {}).get("disagrees")]
    rest = [k for k in evs if k in val and k not in marked]
    if not val:
        return "The run has no validity table, so no † marks to account for."
    if not marked:
        return "No evaluator with a substrate is marked †."
    gm = sum(evs[k]["gap"] for k in marked) / len(marked)
    if not rest:
        return (f"Every evaluator with a substrate is marked † (mean gap {gm:.2f}): the gap is large "
                "for all of them, so it does not tell the marked ones apart.")
    gr = sum(evs[k]["gap"] for k in rest) / len(rest)
    lo = min(evs[k]["gap"] for k in marked)
    hi = max(evs[k]["gap"] for k in rest)
    verdict = ("the gap separates them (every marked evaluator's gap is above every unmarked one's)"
               if lo > hi else "the gap alone does not separate them (the ranges overlap), so it accounts "
                               "for the marks only in part")
    return (f"{len(marked)} evaluator(s) with a substrate are marked † (mean gap {gm:.2f}), {len(rest)} are "
            f"not (mean gap {gr:.2f}): {verdict}.")


@SECTIONS.register(name="disagreement")
def render_disagreement(results: Mapping[str, Any], data: Mapping[str, Any]) -> tuple[str, str]:
    """``(title, HTML)`` of the section."""
    title = "Why evaluators disagree with the truth"
    if not data.get("available"):
        return title, f"<p>{e(str(data.get('reason', 'not available')))}</p>"
    val = ((results.get("validity") or {}).get("evaluators") or {})
    cols = ["evaluator", "substrate", "p clean", "p substrate", "p re-rendered", "p shifted",
            "kept substrate / re-rendered / shifted", "OOD gap [95 % CI]", "truth effect reproduced",
            "leakage acc. [chance]", "methods leaking", MARK_DISAGREES]
    rows = []
    for lab, d in (data.get("evaluators") or {}).items():
        lk = d.get("leakage") or {}
        leak = (f"{_f(lk.get('accuracy'))} [{_f(lk.get('chance'))}]" if lk else "n/a")
        rows.append([lab, d["substrate"], _f(d["p_clean"]), _f(d["p_substrate"]), _f(d["p_rerendered"]),
                     _f(d["p_shifted"]),
                     f"{_f(d['kept_substrate'])} / {_f(d['kept_rerendered'])} / {_f(d['kept_shifted'])}",
                     f"{_f(d['gap'])} [{_f(d['gap_ci'][0])}, {_f(d['gap_ci'][1])}]",
                     _f(d["truth_effect_reproduced"]),
                     leak, str(len(lk.get("above_chance", []))) if lk else "n/a",
                     MARK_DISAGREES if (val.get(lab) or {}).get("disagrees") else ""])
    n = data.get("n_affected")
    cap = (f"<p>On the run's {n} faces with planted traits: the explained class's mean probability "
           "after the traits' pixels are filled with each evaluator's substrate versus re-rendered away "
           "in distribution (the truth's intervention), and after a same-area region shifted off the "
           "traits is filled (control). OOD gap = substrate - re-rendered (0: the substrate removes the "
           "evidence as the truth does). Truth effect reproduced = (clean - substrate) / (clean - "
           "re-rendered). Leakage: the class predicted from each real method's removal masks alone "
           "(top 20 % of pixels in the evaluator's order, 5-fold logistic regression, pooled over methods; "
           "methods leaking = Wilson interval above the majority guess). "
           f"{e(accounting(results, data))}"
           + (f" No gap is defined for {e(', '.join(data['without_substrate']))}: "
              "they remove no pixels by a substrate." if data.get("without_substrate") else "")
           + "</p>")
    return title, cap + f'<div class="scroll">{table_html(cols, rows)}</div>'

