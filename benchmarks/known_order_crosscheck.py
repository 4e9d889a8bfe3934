"""Cross-check the truths that travel against the planted one on a finished run.

    python benchmarks/known_order_crosscheck.py RUN_FOLDER [--n-boot 1000] [--seed 0]

Reads ``results.json`` and ``samples.csv`` of a one-model run (e.g. ``--preset known-order``, or
``models/<label>/`` of a ``[[models]]`` run) and prints the cross-check of
:func:`gmxai_eval.report.validity.crosscheck_section` (the same numbers the run's validity
page states), with 95 % percentile CIs over one joint bootstrap of the run's images (whole
subjects when subjects repeat):

1. **Method rankings**: Kendall tau-b between the method ranking of each candidate evaluator
   (the patch truth, the surrogate MoRF / LeRF and the pixel evaluators) and of each planted-truth
   evaluator, over every ranked method and over the undegraded ones (bases plus the rest).
2. **Evaluator rankings**: tau-b between the evaluators' known-order tau and their tau against
   the planted truth: does the known-order test call the same evaluators valid?

Dataset-scope evaluators that score rows ``retrain-<i>`` are paired with the run's images by
their order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from gmxai_eval.report.validity import crosscheck_section


def _load(run: Path) -> tuple[dict, pd.DataFrame]:
    res = json.loads((run / "results.json").read_text())
    df = pd.read_csv(run / "samples.csv")
    df = df[df["seed"] == df["seed"].min()]
    batch = df[~df["sample_id"].astype(str).str.startswith("retrain-")]
    first = batch[(batch["evaluator"] == batch["evaluator"].iloc[0]) & (batch["method"] == batch["method"].iloc[0])]
    order = list(dict.fromkeys(first["sample_id"].astype(str)))  # run order (batches in order)
    ids = {f"retrain-{i}": s for i, s in enumerate(order)}
    return res, df.assign(sample_id=df["sample_id"].astype(str).map(lambda s: ids.get(s, s)))


def _c(r: dict) -> str:
    f = lambda x: "n/a" if x is None else f"{x:+.2f}"  # noqa: E731
    return f"{f(r.get('tau'))} [{f(r.get('ci_low'))}, {f(r.get('ci_high'))}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    res, df = _load(a.run)
    cc = crosscheck_section(df, {e: v["card"] for e, v in res["evaluators"].items()}, res["methods"],
                            n_boot=a.n_boot, seed=a.seed)
    if cc is None:
        raise SystemExit(f"{a.run}: no planted-truth evaluator (category 'counterfactual') in this run")
    print(f"run {res['run_id']}: {cc['n_samples']} images ({cc['n_units']} {cc['resampling_unit']}s), "
          f"{len(cc['methods'])} ranked methods, undegraded {cc['undegraded']}, {a.n_boot} bootstrap draws")
    print("\n1. tau between method rankings (candidate vs planted truth): all ranked methods | undegraded")
    for e, per in cc["method_rankings"].items():
        print(f"  {e:<28} " + " | ".join(f"{t}: {_c(r['all'])} | {_c(r['undegraded'])}" for t, r in per.items()))
    print("\n2. known-order tau per evaluator (mean over bases) and tau vs the planted truth (all ranked methods)")
    for t, er in cc["evaluator_rankings"].items():
        for e, r in er["evaluators"].items():
            print(f"  {e:<28} known-order {_c(r['known_order'])}   vs {t} {_c(r['vs_truth'])}")
        print(f"  => tau between the two evaluator rankings ({er['n_evaluators']} evaluators, truth {t}): {_c(er)}; "
              f"same verdict on {len(er['same_verdict'])} of {er['n_evaluators']}")


if __name__ == "__main__":
    main()
