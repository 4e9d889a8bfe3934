"""Section ``imbalance``: explanations against the class's training size, over the trained models
of a ``[[models]]`` run (the class-imbalance experiment: presets ``imbalance-quick`` and
``imbalance-full``).

Rare syndromes have a handful of patients, frequent ones hundreds. Does a model explain a rare
syndrome with the same evidence as a frequent one, and does the evidence change when the class
is better represented? The spec trains one recipe on different class choices and sizes of one
dataset (the ``train`` keys ``classes``, ``patients``, ``max_per_class``, ``balanced`` of
:mod:`gmxai_eval.runner.train_stage`) and the runner scores every model on the same images.
This section reads the run's results only (:class:`~gmxai_eval.runner.context.ModelsContext`):

* **conditions**: trained models whose ``train`` tables are equal but for ``seed`` are repeats of
  one condition (in spec order), named by their labels' common stem before ``-<n>`` (``top_k-0``,
  ``top_k-1``: ``top_k``; otherwise the first label);
* **records**, per model, class it was trained on (``classes`` of its training result) and
  method: each evaluator's mean score over the run's images of that class (the evaluator's label
  is the metric; NaN scores left out), and the map similarity to the class's *reference* model
  (:data:`SIMILARITIES`, mean over the images): the condition with the most training images of
  the class (the first on a tie), its repeat ``(r + 1) mod repeats`` (another seed, so the
  reference condition itself measures seed-to-seed agreement; with one repeat no similarity);
* **summary** and **trends** (:mod:`gmxai_eval.analysis.imbalance`): mean and percentile
  bootstrap CI over repeats per (method, metric, class, condition) against the class's training
  images (``[run] bootstrap`` resamples, the first run seed), and Spearman's rho between
  training size and score per (method, metric).
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import numpy as np
import torch

from gmxai_eval.analysis import imbalance as A
from gmxai_eval.errors import ConfigError
from gmxai_eval.runner.context import ModelsContext
from gmxai_eval.runner.stages.sections import SECTION_DATA

#: Map similarities to the reference model (names of :data:`gmxai_eval.functional.similarity.SIMILARITIES`).
SIMILARITIES: tuple[str, ...] = ("spearman_abs", "ssim", "topk_iou")


def _mean(v: Any) -> float | None:
    """Mean of the finite values (``None`` without any)."""
    t = torch.tensor(np.asarray(v, dtype=np.float64)).flatten()
    t = t[torch.isfinite(t)]
    return float(t.mean()) if t.numel() else None


def conditions(mctx: ModelsContext) -> list[dict[str, Any]]:
    """``[{"name", "models"}]``: the trained models grouped by their ``train`` table without ``seed``."""
    groups: dict[str, list[str]] = {}
    for m in mctx.spec.models:
        if m["label"] in mctx.trained:
            key = json.dumps({k: v for k, v in m["train"].items() if k != "seed"}, sort_keys=True, default=str)
            groups.setdefault(key, []).append(m["label"])
    out, seen = [], set()
    for labels in groups.values():
        stems = [re.fullmatch(r"(.+)-\d+", lab) for lab in labels]
        common = {m.group(1) for m in stems if m}
        name = common.pop() if all(stems) and len(common) == 1 else labels[0]
        name = labels[0] if name in seen else name
        seen.add(name)
        out.append({"name": name, "models": labels})
    return out


def _scores(mctx: ModelsContext, label: str) -> dict[tuple[str, str, str], float | None]:
    """``{(method, evaluator, class): mean score}`` of one model over the run's images."""
    df = mctx.tables[label]
    df = df.assign(cls=df["sample_id"].map(mctx.sample_classes))
    return {k: _mean(g["score"].to_numpy()) for k, g in df.groupby(["method", "evaluator", "cls"])}


def records(mctx: ModelsContext, conds: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The records of :mod:`gmxai_eval.analysis.imbalance` and the reference condition per class."""
    from gmxai_eval.functional.similarity import SIMILARITIES as REGISTRY

    methods = [e.label for e in mctx.spec.methods]
    sims = {s: REGISTRY.create(s) for s in SIMILARITIES}
    sizes = {c["name"]: mctx.trained[c["models"][0]]["train_sizes"] for c in conds}
    reference = {}
    for cls in sorted({k for s in sizes.values() for k in s}):
        having = [c["name"] for c in conds if cls in sizes[c["name"]]]
        reference[cls] = max(having, key=lambda n: (sizes[n][cls], -having.index(n)))
    ids = {cls: [s for s, k in mctx.sample_classes.items() if k == cls] for cls in reference}
    by_name = {c["name"]: c["models"] for c in conds}
    out: list[dict[str, Any]] = []
    for cond in conds:
        for r, label in enumerate(cond["models"]):
            trained, scores = mctx.trained[label], _scores(mctx, label)
            evaluators = sorted({k[1] for k in scores})
            for cls in trained["classes"]:
                for m in methods:
                    base = {"condition": cond["name"], "repeat": r, "class": cls, "method": m,
                            "train_size": int(trained["train_sizes"][cls]),
                            "patients": int(trained["train_patients"][cls])}
                    out += [{**base, "metric": ev, "value": scores.get((m, ev, cls))} for ev in evaluators]
                    ref = by_name[reference[cls]]
                    if len(ref) < 2 or not ids[cls]:
                        continue  # one repeat: no model of another seed to compare with
                    a = mctx.maps[label].maps(m, ids[cls])
                    b = mctx.maps[ref[(r + 1) % len(ref)]].maps(m, ids[cls])
                    out += [{**base, "metric": s, "value": _mean(fn(a, b))} for s, fn in sims.items()]
    return out, reference


@SECTION_DATA.register(name="imbalance")
def imbalance_section_data(mctx: ModelsContext) -> dict[str, Any]:
    """The section's data: ``{"title", "metrics", "methods", "conditions", "reference",
    "summary", "trends", "table", "costs"}`` (rendered by :mod:`gmxai_eval.report.imbalance`)."""
    conds = conditions(mctx)
    if not conds:
        raise ConfigError(f"{mctx.spec.source}: expected source = 'train' models for report section 'imbalance' "
                          "(it compares trainings on different class choices and sizes), got none")
    recs, reference = records(mctx, conds)
    seed = mctx.spec.seeds[0]
    summary = A.summarise(recs, n_boot=mctx.spec.bootstrap, seed=seed)
    headers, rows = A.table_rows(summary)
    per = [float(t.get("seconds") or 0.0) for t in mctx.trained.values()]
    evaluators = list(dict.fromkeys(r["metric"] for r in recs if r["metric"] not in SIMILARITIES))
    return {"title": "Class imbalance: explanations against the class's training images",
            "metrics": [*evaluators, *(s for s in SIMILARITIES if any(r["metric"] == s for r in recs))],
            "methods": [e.label for e in mctx.spec.methods],
            "conditions": [{**c, "train_sizes": mctx.trained[c["models"][0]]["train_sizes"]} for c in conds],
            "reference": reference, "summary": summary, "trends": A.size_trends(summary),
            "table": {"headers": headers, "rows": rows},
            "costs": {"trainings": len(per), "trained now": sum(not t.get("cached") for t in mctx.trained.values()),
                      "s per training": round(sum(per) / len(per), 2) if per else 0.0}}


imbalance_section_data.axis = "models"  # type: ignore[attr-defined]

__all__ = ["SIMILARITIES", "conditions", "records", "imbalance_section_data"]
