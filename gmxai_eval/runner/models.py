"""The model axis: a spec with ``[[models]]`` runs every stage once per model.

::

    [[models]]
    label = "default"
    source = "default"

    [[models]]
    label = "v1"
    source = "train"
    train = { arch = "gestaltmatcher_v1", epochs = 4, width = 16 }

Order of work: the ``train`` stage trains every ``source = "train"`` model first (one batch
through the run's executor, content-addressed, see :mod:`gmxai_eval.runner.train_stage`); then
each model, in spec order, runs the one-model stages (load, attribute, evaluate, sections,
report) exactly as the one-model spec :meth:`Spec.for_model` would, writing a complete run
folder under ``models/<label>/`` (same bytes of scores as a run of that spec alone: the map
cache and unit store are keyed by the model's content hash, so they are shared, and a stopped
run resumes). The run folder then gets:

* ``samples.csv``: every model's per-sample rows with a ``model`` column;
* ``results.json`` (``gmxai_eval.results-models/1``): per model its source, hash, run id,
  folder, training result and rankings, and the comparison of
  :func:`gmxai_eval.report.models.comparison` (overall ranks per model, Kendall's tau-b between
  the models' method rankings per evaluator);
* ``leaderboard.md`` and ``report.html`` rendered from it (:mod:`gmxai_eval.report.models`).

The whole folder is staged and moved into place at the end, like a one-model run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from gmxai_eval.report import models as report_models
from gmxai_eval.report.tables import write_results_json
from gmxai_eval.runner.spec import Spec
from gmxai_eval.runner.train_stage import TrainedModel, train_models
from gmxai_eval.utils import write_atomic


@dataclass
class SubFolder:
    """A model's folder inside the run's staging folder (committed with the run)."""

    path: Path

    def commit(self) -> Path:
        return self.path


def training_data(spec: Spec, entry: dict[str, Any]) -> tuple[Any, Any, Any, int]:
    """``(train split, run split view, dataset for the run, number of classes)`` that a
    ``source = "train"`` model of ``spec`` is trained and scored on."""
    from gmxai_eval.models.default import default_data
    from gmxai_eval.runner.stages.load import load_dataset

    split = spec.dataset.get("split", "")
    if spec.dataset["name"] == "default":
        bundle = default_data(entry.get("train", {}).get("data", "default"), progress=False)
        view = getattr(bundle, split) if split else bundle.dataset
        return bundle.train, view, view, len(bundle.classes)
    import torch.utils.data as tud

    ds = load_dataset(spec.dataset)
    rows = [i for i in range(len(ds)) if getattr(ds[i], "split", "") == "train"]
    test = [i for i in range(len(ds)) if not split or getattr(ds[i], "split", "") == split]
    classes = getattr(ds, "classes", None) or []
    return tud.Subset(ds, rows), tud.Subset(ds, test), ds, len(classes)


def train_stage(spec: Spec, cache_root: Path, executor: Any) -> dict[str, tuple[TrainedModel, Any]]:
    """Train the spec's ``source = "train"`` models; ``{label: (TrainedModel, run dataset)}``."""
    entries = [dict(m) for m in spec.models] or [{**dict(spec.model), "label": "model"}]
    out = {}
    for e in entries:
        if e.get("source") != "train":
            continue
        train, test, dataset, k = training_data(spec, e)
        trained = train_models([e], train, test, k, cache_root, executor, spec.device)
        out[e["label"]] = (trained[e["label"]], dataset)
    return out


def combined_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every model's per-sample rows with a ``model`` column first."""
    parts = [t.assign(model=label)[["model", *t.columns]] for label, t in tables.items() if t is not None]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def results_document(spec: Spec, run_id: str, per_model: dict[str, Any],
                     trained: dict[str, tuple[TrainedModel, Any]]) -> dict[str, Any]:
    """The run's ``results.json`` (format :data:`gmxai_eval.report.models.FORMAT`)."""
    models = {}
    for m in spec.models:
        r = per_model[m["label"]].results
        t = trained.get(m["label"])
        models[m["label"]] = {
            "source": m.get("source", ""), "model_hash": r.get("model_hash", ""), "run_id": r.get("run_id", ""),
            "folder": f"models/{m['label']}", "n_images": r.get("n_images"),
            "trained": None if t is None else {k: t[0].result.get(k) for k in ("top1", "train_top1", "seconds",
                                                                                "cached", "key")},
            "rankings": r.get("rankings", {})}
    doc = {"format": report_models.FORMAT, "run_id": run_id, "spec": spec.to_dict(), "spec_hash": spec.hash(),
           "models": models}
    doc["comparison"] = report_models.comparison({k: per_model[k].results for k in models})
    return doc


def run_models(spec: Spec, run_one: Callable[..., Any], *, staged: Any, cache_root: Path, executor: Any,
               run_id: str, **kw: Any) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Every model of ``spec``: ``run_one(model_spec, model=..., dataset=..., folder=...)`` runs the
    one-model stages; returns ``(combined table, results document, {label: one-model result})``."""
    trained = train_stage(spec, cache_root, executor)
    per_model = {}
    for m in spec.models:
        label = m["label"]
        folder = SubFolder(staged.path / "models" / label) if staged is not None else None
        if folder is not None:
            folder.path.mkdir(parents=True, exist_ok=True)
        model, dataset = (trained[label][0].model, trained[label][1]) if label in trained else (None, None)
        per_model[label] = run_one(spec.for_model(label), model=model, dataset=dataset, staged=folder, **kw)
    table = combined_table({k: v.table for k, v in per_model.items()})
    doc = results_document(spec, run_id, per_model, trained)
    if staged is not None:
        from gmxai_eval.runner.store import write_table

        write_table(table, staged.path)
        write_atomic(staged.path / "leaderboard.md", report_models.models_markdown(doc))
        if spec.html:
            write_atomic(staged.path / "report.html", report_models.models_html(doc))
        write_results_json(doc, staged.path)
    return table, doc, per_model
