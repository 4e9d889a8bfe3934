"""Cross-check the truths that travel against the planted one on a ``--preset known-order`` run.

    python benchmarks/known_order_crosscheck.py RUN_FOLDER [--n-boot 1000]

Reads ``results.json`` and ``samples.csv`` of the run and prints, with 95 % percentile CIs over
one joint bootstrap of the run's images (whole subjects when subjects repeat):

1. **Method rankings**: Kendall tau-b between the method ranking (direction-oriented means) of
   each candidate evaluator (the patch truth, the surrogate MoRF / LeRF and the pixel evaluators)
   and of each planted-truth evaluator (``counterfactual_region_rank``,
   ``counterfactual_deletion``), over every ranked method of the run (the degraded copies and
   the random control) and over the undegraded bases plus the random control alone.
2. **Evaluator rankings**: tau-b between the evaluators' known-order tau and their tau against
   the planted truth (over every ranked method): does the known-order test call the same
   evaluators valid as the planted truth does?

The dataset-scope evaluators score the run's images in run order (sample ids ``retrain-<i>``);
they are paired with the batch evaluators' rows by that order.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from gmxai_eval.functional.known_order import known_order_tau
from gmxai_eval.functional.paired import unit_codes
from gmxai_eval.report.known_order import degraded_series
from gmxai_eval.report.validity import kendall_tau_b_rows

TRUTHS = ("counterfactual_region_rank", "counterfactual_deletion")


def _load(run: Path) -> tuple[dict, pd.DataFrame, list[str], list[str]]:
    res = json.loads((run / "results.json").read_text())
    df = pd.read_csv(run / "samples.csv")
    df = df[df["seed"] == df["seed"].min()]
    batch = df[~df["sample_id"].astype(str).str.startswith("retrain-")]
    first = batch[(batch["evaluator"] == batch["evaluator"].iloc[0]) & (batch["method"] == batch["method"].iloc[0])]
    order = list(dict.fromkeys(first["sample_id"].astype(str)))  # run order (batches in order)
    subj = first.drop_duplicates("sample_id").set_index("sample_id")["subject"].astype(str).reindex(order).tolist() \
        if "subject" in first.columns else order
    ids = {f"retrain-{i}": s for i, s in enumerate(order)}
    df = df.assign(sample_id=df["sample_id"].astype(str).map(lambda s: ids.get(s, s)))
    return res, df, order, subj


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    res, df, order, subj = _load(a.run)
    hib = {e: bool(v["card"]["higher_is_better"]) for e, v in res["evaluators"].items()}
    methods = [m for m, v in res["methods"].items() if not v["card"].get("reference") and v["name"] != "oracle"]
    series = degraded_series(res["methods"])
    bases = [s["methods"][0] for s in series] + [m for m in methods if res["methods"][m]["name"] == "random"]
    evs = [e for e in res["evaluators"] if e in set(df["evaluator"])]
    cube = np.stack([df[df["evaluator"] == e].pivot_table(index="sample_id", columns="method", values="score")
                     .reindex(index=order, columns=methods).to_numpy(float) * (1 if hib[e] else -1) for e in evs])
    codes = unit_codes(len(order), subj if len(set(subj)) < len(subj) else None)
    g = int(codes.max()) + 1
    rng = np.random.default_rng(a.seed)
    draws = [np.arange(len(order))] + [np.concatenate([np.flatnonzero(codes == u) for u in rng.integers(0, g, g)])
                                       for _ in range(a.n_boot)]
    with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", RuntimeWarning)
        means = np.stack([np.nanmean(cube[:, d, :], 1) for d in draws])  # (1 + B, E, M)
    col = {m: j for j, m in enumerate(methods)}

    def ci(v: np.ndarray) -> str:
        b = v[1:][np.isfinite(v[1:])]
        lo, hi = (np.percentile(b, [2.5, 97.5]) if len(b) else (math.nan, math.nan))
        return f"{v[0]:+.2f} [{lo:+.2f}, {hi:+.2f}]"

    truths = [t for t in TRUTHS if t in evs]
    print(f"run {res['run_id']}: {len(order)} images ({g} units), {len(methods)} ranked methods, "
          f"bases {bases}, {a.n_boot} bootstrap draws")
    print("\n1. tau between method rankings (candidate vs planted truth), all ranked methods | bases + random")
    for e in evs:
        if e in truths:
            continue
        cells = []
        for t in truths:
            for ms in (methods, bases):
                j = [col[m] for m in ms]
                cells.append(ci(kendall_tau_b_rows(means[:, evs.index(e), j], means[:, evs.index(t), j])))
        print(f"  {e:<28} " + " | ".join(f"{t}: {cells[2 * k]} | {cells[2 * k + 1]}" for k, t in enumerate(truths)))
    print("\n2. known-order tau per evaluator (mean over bases) and tau vs the planted truth (all ranked methods)")
    ko = np.stack([np.nanmean(np.stack([known_order_tau(means[:, :, [col[m] for m in s["methods"]]], s["levels"])
                                        for s in series], -1), -1)])[0]  # (1 + B, E)
    others = [i for i, e in enumerate(evs) if e not in truths]
    for t in truths:
        tv = np.stack([kendall_tau_b_rows(means[:, i, :], means[:, evs.index(t), :]) for i in range(len(evs))], 1)
        for i in others:
            print(f"  {evs[i]:<28} known-order {ci(ko[:, i])}   vs {t} {ci(tv[:, i])}")
        agree = kendall_tau_b_rows(ko[:, others], tv[:, others])
        print(f"  => tau between the two evaluator rankings ({len(others)} evaluators, truth {t}): {ci(agree)}")


if __name__ == "__main__":
    main()
