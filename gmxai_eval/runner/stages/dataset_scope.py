"""Stage ``dataset_scope``: evaluators with ``scope = "dataset"`` (ROAR/KAR retraining) get one
:class:`~gmxai_eval.evaluators.base.DatasetJob` for the whole selection and run it with
``DatasetEvaluator.run(job, executor)``; results are stored like units (a rerun does not retrain).

Inputs: ``samples``, ``model``, ``explainers``, ``dataset``, ``spec`` (given to the job with
``cache`` set to the run's cache folder), ``executor``, ``dataset_job``. Output: table rows (sample ids ``retrain-<i>``).
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

from torch import nn

from gmxai_eval.data.base import Sample
from gmxai_eval.errors import ConfigError, ModelStateError
from gmxai_eval.evaluators.base import DatasetEvaluator, DatasetJob
from gmxai_eval.methods.base import Explainer
from gmxai_eval.runner.cache import UnitStore
from gmxai_eval.runner.context import RunContext
from gmxai_eval.runner.spec import Spec
from gmxai_eval.runner.stages.evaluate import UnitKeys, record_conventions
from gmxai_eval.runner.store import rows_from_unit
from gmxai_eval.utils import stable_hash


def default_dataset_job(samples: Sequence[Sample], model: nn.Module, explainers: dict[str, Explainer],
                        dataset: Any, spec: Spec) -> DatasetJob:
    """How dataset-scope (retraining) evaluators get their :class:`DatasetJob`.

    The default asks ``gmxai_eval.models.train`` for ``dataset_job(...)`` with the same
    arguments; pass ``dataset_job=`` to :func:`~gmxai_eval.runner.run.run_benchmark` to supply
    another."""
    try:
        mod = importlib.import_module("gmxai_eval.models.train")
    except ModuleNotFoundError as e:
        if e.name != "gmxai_eval.models.train":
            raise
        mod = None
    fn = getattr(mod, "dataset_job", None)
    if fn is None:
        raise ConfigError("expected gmxai_eval.models.train.dataset_job(samples, model, explainers, "
                          "dataset, spec) for dataset-scope evaluators, got none; pass dataset_job= "
                          "to run_benchmark")
    return fn(samples, model, explainers, dataset, spec)


def dataset_scope(ctx: RunContext) -> list[dict[str, Any]]:
    """Run (or reuse) every dataset-scope evaluator; returns its table rows."""
    evs = [e for e in ctx.spec.evaluators if ctx.evaluator_cards[e.label].scope == "dataset"]
    if not evs:
        return []
    store, uk = UnitStore(ctx.cache_root), UnitKeys(ctx)
    dkey = stable_hash(ctx.model_key, ctx.image_keys, "dataset")
    rows: list[dict[str, Any]] = []
    for e in evs:
        todo = [m.label for m in ctx.spec.methods if not store.has(*uk(e.label, m.label, dkey))]
        if todo:
            ev = ctx.evaluators[e.label]
            if not isinstance(ev, DatasetEvaluator):
                raise ModelStateError(f"expected evaluator {e.name!r} with scope 'dataset' to be a "
                                      f"DatasetEvaluator, got {type(ev).__name__}")
            # the job's spec names the run's cache folder, so retrainings can be stored there
            job = (ctx.dataset_job or default_dataset_job)(
                ctx.samples, ctx.model, {m: ctx.explainers[m] for m in todo}, ctx.dataset,
                ctx.spec.replace(cache=str(ctx.cache_root)))
            res = ev.run(job, ctx.executor)
            for m in todo:
                r = res[m]
                own = getattr(ev, "scores_run_images", False) and len(r) == len(ctx.image_ids)  # rows = the run's images
                store.save(uk(e.label, m, dkey), list(ctx.image_ids) if own else [f"retrain-{i}" for i in range(len(r))], r)
                ctx.counts["units_run"] += 1
        else:
            ctx.counts["units_reused"] += len(ctx.spec.methods)
        for m in ctx.spec.methods:
            doc = store.load(*uk(e.label, m.label, dkey))
            record_conventions(ctx, e.label, doc)
            rows += rows_from_unit(ctx.run_id, ctx.seeds[0], e.label, m.label, doc, dict(zip(ctx.image_ids, ctx.subjects)))
    return rows
