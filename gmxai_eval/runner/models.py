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
  the models' method rankings per evaluator), and ``sections``: the data of the ``[report] sections`` that compare the models (registered
  with ``axis = "models"``, e.g. ``imbalance``), computed from every model's results, per-sample
  scores and cached maps (:class:`~gmxai_eval.runner.context.ModelsContext`) after the last model;
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
from gmxai_eval.runner.train_stage import DATA_KEY, TrainData, TrainedModel, dataset_arrays, train_models
from gmxai_eval.utils import write_atomic


@dataclass
class SubFolder:
    """A model's folder inside the run's staging folder (committed with the run)."""

    path: Path

    def commit(self) -> Path:
        return self.path


def training_data(spec: Spec, preset: str) -> tuple[TrainData, Any]:
    """The images ``source = "train"`` models of ``spec`` are trained and scored on, and the
    dataset the run scores: with ``[dataset] name = "default"`` the default data of ``preset``
    (its train split; the run's split), otherwise the run's dataset (the items whose ``split`` is
    ``"train"``; the run's split)."""
    from gmxai_eval.models.default import default_data
    from gmxai_eval.runner.stages.load import load_dataset

    split = spec.dataset.get("split", "")
    if spec.dataset["name"] == "default":
        bundle = default_data(preset, progress=False)
        view = bundle.view(split)
        xtr, ytr, subjects = dataset_arrays(bundle.train, "training")
        xte, yte, _ = dataset_arrays(view, "test")
        return TrainData(xtr, ytr, subjects, xte, yte, tuple(bundle.classes)), view
    ds = load_dataset(spec.dataset)
    splits = ds.splits if hasattr(ds, "splits") else [getattr(ds[i], "split", "") for i in range(len(ds))]
    train = [i for i, s in enumerate(splits) if s == "train"]
    test = [i for i, s in enumerate(splits) if not split or s == split]
    xtr, ytr, subjects = dataset_arrays(ds, "training", train)
    xte, yte, _ = dataset_arrays(ds, "test", test)
    return TrainData(xtr, ytr, subjects, xte, yte, tuple(getattr(ds, "classes", None) or [])), ds


def train_stage(spec: Spec, cache_root: Path, executor: Any) -> dict[str, tuple[TrainedModel, Any]]:
    """Train the spec's ``source = "train"`` models in one batch through ``executor``;
    ``{label: (TrainedModel, run dataset)}``."""
    entries = [dict(m) for m in spec.models] or [{**dict(spec.model), "label": "model"}]
    todo = [e for e in entries if e.get("source") == "train"]
    data: dict[str, tuple[TrainData, Any]] = {}
    for e in todo:
        preset = e["train"].get(DATA_KEY, "default")
        if preset not in data:
            data[preset] = training_data(spec, preset)
    jobs = [(e["label"], e, data[e["train"].get(DATA_KEY, "default")][0]) for e in todo]
    trained = train_models(jobs, cache_root, executor, spec.device)
    return {e["label"]: (trained[e["label"]], data[e["train"].get(DATA_KEY, "default")][1]) for e in todo}


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
            "trained": None if t is None else {k: t[0].result.get(k) for k in (
                "top1", "train_top1", "seconds", "cached", "key", "classes", "train_sizes", "train_patients")},
            "rankings": r.get("rankings", {})}
    doc = {"format": report_models.FORMAT, "run_id": run_id, "spec": spec.to_dict(), "spec_hash": spec.hash(),
           "models": models}
    doc["comparison"] = report_models.comparison({k: per_model[k].results for k in models})
    return doc


def run_models(spec: Spec, run_one: Callable[..., Any], *, staged: Any, cache_root: Path, executor: Any,
               run_id: str, **kw: Any) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Every model of ``spec``: ``run_one(model_spec, model=..., dataset=..., folder=...)`` runs the
    one-model stages (with the spec's per-model sections); then the sections that compare the
    models (``axis = "models"``) read every model's results. Returns ``(combined table, results
    document, {label: one-model result})``."""
    from gmxai_eval.runner.context import ModelsContext
    from gmxai_eval.runner.stages.sections import model_axis, models_sections

    axis = model_axis(spec.sections)
    trained = train_stage(spec, cache_root, executor)
    per_model = {}
    for m in spec.models:
        label = m["label"]
        folder = SubFolder(staged.path / "models" / label) if staged is not None else None
        if folder is not None:
            folder.path.mkdir(parents=True, exist_ok=True)
        model, dataset = (trained[label][0].model, trained[label][1]) if label in trained else (None, None)
        one = spec.for_model(label)
        if axis:
            one = one.replace(sections=[s for s in one.sections if s not in axis])
        per_model[label] = run_one(one, model=model, dataset=dataset, staged=folder, **kw)
    table = combined_table({k: v.table for k, v in per_model.items()})
    doc = results_document(spec, run_id, per_model, trained)
    if axis:
        first = next(iter(per_model.values()))
        doc["sections"] = models_sections(ModelsContext(
            spec, {k: v.results for k, v in per_model.items()}, {k: v.table for k, v in per_model.items()},
            {k: dict(t[0].result) for k, t in trained.items()}, {k: v.maps for k, v in per_model.items()},
            dict(first.sample_classes)), axis)
    if staged is not None:
        from gmxai_eval.runner.store import write_table

        write_table(table, staged.path)
        write_atomic(staged.path / "leaderboard.md", report_models.models_markdown(doc))
        if spec.html:
            write_atomic(staged.path / "report.html", report_models.models_html(doc))
        write_results_json(doc, staged.path)
    return table, doc, per_model
