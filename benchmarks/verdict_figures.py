"""The reliability, validity and verdict figures of a run folder, as recorded in RESULTS.md.

    python benchmarks/verdict_figures.py results/<run-id>

Prints, per evaluator: the split-half reliability of its method ranking [split 95 %] with its
units, Krippendorff's alpha per image (n images), tau and the corrected tau against the primary
truth evaluator [95 % CI] (n), and its marks; then the counts of ‡ and † and of the control
flags, the agreeing evaluators, the truth ranking with bands, and the faithfulness rank. Last,
it recomputes every evaluator's split-half reliability from ``samples.csv`` alone with pandas and
SciPy (the aggregation's seeded subject / image splits, Spearman's rho, Spearman-Brown per
split) and reports any evaluator whose value or ‡ flag differs from ``results.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def independent_reliability(samples: pd.DataFrame, ev: str, methods: list[str], seed: int,
                            n_splits: int = 200) -> float:
    sub = samples[(samples.evaluator == ev) & samples.method.isin(methods)]
    per = sub.groupby(["sample_id", "method"]).score.mean().unstack("method")
    per = per[[m for m in methods if m in per.columns]]
    subj = sub.drop_duplicates("sample_id").set_index("sample_id").subject.astype(str).reindex(per.index)
    subj = subj.replace("nan", "").fillna("")
    units = subj if ((subj != "").all() and subj.nunique() < len(subj)) else pd.Series(per.index, index=per.index)
    distinct = sorted(units.astype(str).unique())
    gen = np.random.default_rng(seed)
    vals = []
    for _ in range(n_splits):
        first = {distinct[k] for k in gen.permutation(len(distinct))[: len(distinct) // 2]}
        half = units.astype(str).isin(first).to_numpy()
        # means to 12 significant digits: identical scores summed in another order still tie
        ma, mb = (per[h].mean().map(lambda v: float(f"{v:.12g}")) for h in (half, ~half))
        ok = ma.notna() & mb.notna()
        rho = scipy.stats.spearmanr(ma[ok], mb[ok]).statistic
        if np.isfinite(rho):
            vals.append(max(-1.0, 2 * rho / (1 + rho)))
    return float(np.mean(vals)) if vals else float("nan")


def main(run: Path) -> int:
    d = json.loads((run / "results.json").read_text())
    rel, val, ver = d["ranking_reliability"], d["validity"], d["verdict"]
    cat = {e: i["card"]["category"] for e, i in d["evaluators"].items()}
    prim = val["primary"]
    print(f"n_images {d['n_images']}, primary truth {prim}, truth evaluators {val['truth']}")
    print("evaluator | category | reliability [split 95%] (units) | alpha per image (n) | "
          "tau vs truth [CI] (n) | tau_c [CI] | marks")
    for e, r in rel.items():
        v = val["evaluators"][e]
        t = (v["tau"] or {}).get(prim) or {}
        marks = ("†" if v["disagrees"] else "") + ("‡" if v["unreliable"] else "")
        print(f"{e} | {cat[e]} | {_f(r['reliability'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}] "
              f"({r['n_units']} {r['unit']}s) | {_f(v['alpha'])} ({v['n_images']}) | "
              f"{_f(t.get('tau'))} [{_f(t.get('ci_low'))}, {_f(t.get('ci_high'))}] ({t.get('n')}) | "
              f"{_f(t.get('tau_corrected'))} [{_f(t.get('corrected_ci_low'))}, {_f(t.get('corrected_ci_high'))}] "
              f"| {marks}")
    evs = list(rel)
    print("‡:", sum(val["evaluators"][e]["unreliable"] for e in evs), "of", len(evs),
          [e for e in evs if val["evaluators"][e]["unreliable"]])
    print("†:", sum(bool(val["evaluators"][e]["disagrees"]) for e in evs),
          [e for e in evs if val["evaluators"][e]["disagrees"]])
    print("alpha < 0.667 (the former ‡):", sum((val["evaluators"][e]["alpha"] or 0) < 0.667 for e in evs))
    flags = {e: sorted(f["controls"]) for e, f in d["control_flags"].items() if f["flag"]}
    print("control flags:", len(flags), flags)
    print("agreeing with the truth:", ver.get("faithfulness_evaluators"))
    for a in ver.get("agreement", []):
        print(f"  {a['evaluator']}: agrees {a['agrees']} ({a['why_not'] or 'both criteria'}), truth band "
              f"{a['truth_band']}")
    if ver.get("truth"):
        rows = ver["truth"]["methods"]
        print("truth ranking (method, rank, band, rank interval):",
              [(r["method"], r["rank"], r["band"], [r["rank_ci_low"], r["rank_ci_high"]]) for r in rows])
        print("distinct truth bands among real methods:", len({r["band"] for r in rows if not r["control"]}))
    fr = ver.get("faithfulness") or {}
    print("faithfulness rank:", sorted((r["rank"], m) for m, r in fr.items() if r["rank"] is not None))
    samples = pd.read_csv(run / "samples.csv", dtype={"sample_id": str, "subject": str})
    ranked = list(d["rankings"]["overall"])
    ordered = [m for m in d["methods"] if m in ranked]
    bad = [e for e in evs
           if not np.isclose(independent_reliability(samples, e, ordered, d["aggregation"]["seed"]),
                             rel[e]["reliability"] if rel[e]["reliability"] is not None else np.nan,
                             atol=1e-9, equal_nan=True)]
    print(f"independent split-half from samples.csv: {len(evs) - len(bad)} of {len(evs)} equal", bad)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
