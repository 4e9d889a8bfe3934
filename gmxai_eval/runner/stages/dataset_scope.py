"""Stage ``dataset_scope``: evaluators with ``scope = "dataset"`` (ROAR/KAR retraining) get one
:class:`~gmxai_eval.evaluators.base.DatasetJob` for the whole selection and run it with
``DatasetEvaluator.run(job, executor)``; results are stored like units (a rerun does not retrain).

Inputs: ``samples``, ``model``, ``explainers``, ``dataset``, ``spec`` (given to the job with
``cache`` set to the run's cache folder), ``executor``, ``dataset_job``. Output: table rows (sample ids ``retrain-<i>``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from gmxai_eval.data.base import Sample
from gmxai_eval.errors import ConfigError, ModelStateError
from gmxai_eval.evaluators.base import DatasetEvaluator, DatasetJob
from gmxai_eval.methods.base import Explainer
from gmxai_eval.models import default as default_model
from gmxai_eval.models.train import RetrainRecipe, TrainConfig
from gmxai_eval.runner.cache import UnitStore
from gmxai_eval.runner.context import RunContext
from gmxai_eval.runner.spec import Spec
from gmxai_eval.runner.stages.evaluate import UnitKeys, record_conventions
from gmxai_eval.runner.store import rows_from_unit
from gmxai_eval.utils import stable_hash


def default_dataset_job(samples: Sequence[Sample], model: nn.Module, explainers: dict[str, Explainer],
                        dataset: Any, spec: Spec) -> DatasetJob:
    """The :class:`DatasetJob` of a run for the dataset-scope (retraining) evaluators; pass
    ``dataset_job=`` to :func:`~gmxai_eval.runner.run.run_benchmark` to supply another.

    * Embedded default model (``[model] source = "default"``): train / test data are the
      default data's ``train`` and ``test`` splits, the recipe is the preset's
      :class:`~gmxai_eval.models.train.TrainConfig` and the architecture keywords from the
      checkpoint card.
    * A model the run trains (``source = "train"``) on the default data: that data's ``train``
      split and the run's ``samples`` as test data.
    * Otherwise: the dataset's ``train`` split (items with ``split == "train"``) and the run's
      ``samples`` as test data; recipe = ``TrainConfig`` with the model's ``arch`` (an
      evaluator's ``recipe`` config can override any field).

    ``train_fn`` is a :class:`~gmxai_eval.models.train.RetrainRecipe`, ``seeds`` are
    ``spec.seeds`` (evaluators choose their own number of repeats), ``samples`` the run's
    samples; the cache folder is ``<spec.cache or <spec.output>/.cache>/retraining``.
    """
    cache = Path(spec.cache or Path(spec.output) / ".cache") / "retraining"
    num_classes = int(getattr(model, "num_classes", 0) or len(getattr(dataset, "classes", []) or []))
    if num_classes < 2:
        raise ConfigError(f"expected a model with num_classes >= 2 for retraining, got {num_classes}")
    if spec.model.get("source") == "default":
        mcfg = dict(spec.model.get("config", {}))
        preset = default_model.PRESETS[mcfg.get("preset", "default")]
        _, splits, card = default_model.load_default(**{**mcfg, "progress": False})
        train, test = splits.train, splits.test
        cfg, kw = preset.train, {k: v for k, v in card.get("arch_kwargs", {}).items()
                                 if k not in ("num_classes", "seed")}
    elif spec.model.get("source") == "train" and spec.dataset.get("name") == "default":
        # a model the run trained on the default data: that data's train split (the run's test
        # view holds none)
        data = default_model.default_data(spec.model.get("train", {}).get("data", "default"), progress=False)
        train, test = data.train, list(samples)
        cfg, kw = TrainConfig(arch=str(getattr(model, "arch", "") or "")), {}
    else:
        rows = [i for i in range(len(dataset)) if getattr(dataset[i], "split", "") == "train"]
        if not rows:
            raise ConfigError("expected training items (split 'train') in the dataset for retraining, got none")
        train = torch.utils.data.Subset(dataset, rows)
        test = list(samples)
        # a model of no registered architecture (the user's own) can be fine-tuned (the surrogate
        # evaluators copy it) but not retrained from scratch: model_factory says so when asked
        cfg, kw = TrainConfig(arch=str(getattr(model, "arch", "") or "")), {}
    recipe = RetrainRecipe(cfg, kw, num_classes, str(cache), device=spec.device, gallery=True)
    return DatasetJob(train_data=train, test_data=test, model_factory=recipe.model_factory, train_fn=recipe,
                      explainers=dict(explainers), reference_model=model, seeds=tuple(spec.seeds),
                      samples=list(samples))


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
