"""The benchmark runner: ``run_benchmark`` composes small stages over one :class:`RunContext`.

Stages (each has a progress bar and a line in the time summary), in
:mod:`gmxai_eval.runner.stages`:

1. ``load``: model, dataset, sample selection, explained targets, explainers and evaluators.
2. ``attribute``: maps of every method for every selected image, through :class:`MapCache`
   (a second run computes only maps it has not seen: new method, new config, new image);
   methods with ``needs_masks`` (the ``oracle``) are bound to the images' evidence masks.
3. ``evaluate``: one unit of work per (seed, evaluator, batch) covering the methods whose
   result for that batch is not stored yet (the truth evaluators also score the
   ``[run] truth_images`` beyond the run's images; the context is narrowed to the run's
   images afterwards); units go through an
   :class:`~gmxai_eval.execution.Executor` and each result is written as soon as it arrives,
   so a killed run resumes where it stopped. ``dataset_scope``: dataset-scope evaluators get
   ``run(job, executor)``.
4. ``reliability`` (opt-in): metric reliability under minor / disruptive noise.
5. ``sections``: the data of the spec's report sections, from the cached maps.
6. ``report``: the results document; ``samples.csv``, ``report_data.json`` and every file
   rendered from the results alone (``gmxai-eval report`` renders the same bytes).

Randomness: evaluators get the run seed (``EvalBatch.seed``) and key their draws on
``(seed, sample_id)``; methods use the ``seed`` of their own config (default 0), so maps are
shared by every run seed. Repeat a stochastic method with several seeds by listing it with
different ``config.seed`` and labels.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from gmxai_eval.data.base import Sample
from gmxai_eval.evaluators.base import DatasetJob
from gmxai_eval.execution import Executor
from gmxai_eval.report import tables
from gmxai_eval.runner.context import RunContext, StageTimer
from gmxai_eval.runner.output import StagedRun, prepare_run_dir
from gmxai_eval.runner.devices import auto_batch_size, call_halving, is_oom, resolve_device
from gmxai_eval.runner.spec import Spec
from gmxai_eval.runner.map_store import RunMapStore
from gmxai_eval.runner.stages.attribute import attribute, method_keys
from gmxai_eval.runner.stages.dataset_scope import dataset_scope, default_dataset_job
from gmxai_eval.runner.stages.evidence import evidence_drop
from gmxai_eval.runner.stages.evaluate import EvalUnit, evaluate, execute_unit, needs_channel_mean
from gmxai_eval.runner.stages.load import (counterfactual_renderer, drop_truth_images, gaze_fixations, load, load_dataset,
                                           load_default_bundle, load_model, select_samples)
from gmxai_eval.runner.stages.reliability import reliability
from gmxai_eval.runner.stages.sections import check_sections, sections
from gmxai_eval.runner.stages.write import environment, summarise
from gmxai_eval.runner.stages.write import write as write_run
from gmxai_eval.report import models as report_models
from gmxai_eval.runner.devices import executor_for
from gmxai_eval.runner.models import run_models, train_stage
from gmxai_eval.runner.store import make_table
from gmxai_eval.threads import ThreadPolicy, restored_threads

__all__ = ["RunResult", "run_benchmark", "EvalUnit", "execute_unit", "call_halving", "is_oom",
           "auto_batch_size", "resolve_device", "load_model", "load_dataset", "load_default_bundle",
           "select_samples", "gaze_fixations", "default_dataset_job", "environment", "StageTimer",
           "needs_channel_mean", "counterfactual_renderer"]


@dataclass
class RunResult:
    """What :func:`run_benchmark` returns.

    Attributes:
        run_dir: the run folder (``None`` when ``write=False``).
        spec: the spec that ran.
        table: per-sample DataFrame (see :mod:`gmxai_eval.runner.store`).
        results: the ``results.json`` document.
        counts: ``attributed`` {method: images explained now}, ``units_run``, ``units_reused``.
        timings: seconds per stage.
        maps: the run's cached maps (:class:`~gmxai_eval.runner.map_store.RunMapStore`; of a
            ``[[models]]`` run ``{label: RunMapStore}``); sample_classes: ``{sample id: class
            name}`` of the run's images.
    """

    run_dir: Path | None
    spec: Spec
    table: Any
    results: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    leaderboard: str = ""
    maps: Any = None
    sample_classes: dict[str, str] = field(default_factory=dict)


def run_benchmark(spec: Spec, *, model: nn.Module | None = None, dataset: Any = None,
                  samples: Sequence[Sample] | None = None, executor: Executor | None = None,
                  output: str | Path | None = None, run_id: str | None = None,
                  cache: str | Path | None = None, progress: bool | None = None,
                  dataset_job: Callable[..., DatasetJob] | None = None,
                  extra_sections: Sequence[tuple[str, str]] = (), write: bool = True,
                  verbose: bool = True, batch_extra: Mapping[str, Any] | None = None,
                  overwrite: bool = False, threads: int | str | None = None) -> RunResult:
    """Run ``spec`` and write ``<output>/<run id>/``.

    The run folder belongs to one spec: before any work the output location is checked
    (:func:`gmxai_eval.runner.output.prepare_run_dir`: a plain run id, a writable folder with free
    space, no folder of another spec unless ``overwrite``); the outputs are written to a staging
    folder that replaces ``<output>/<run id>/`` only when the run has finished, so a failed run
    never leaves a mix of old and new files.

    Args:
        spec: a parsed :class:`Spec`.
        model: use this model instead of ``spec.model`` (tests, programmatic use).
        dataset / samples: use this dataset (or these samples) instead of ``spec.dataset``.
        executor: where units run (default: ``EXECUTORS.create(spec.executor)``).
        output / run_id / cache: override the spec's output folder, the run id
            (default ``<name>-<spec hash>``) and the cache folder (default ``<output>/.cache``).
        progress: ``None`` (default): tqdm bars on a terminal, otherwise a line per stage and a
            progress line every 30 s (``$GMXAI_PROGRESS_SECONDS``) with done/total and ETA;
            ``True``: bars; ``False``: silent.
        dataset_job: ``(samples, model, explainers, dataset, spec) -> DatasetJob`` for
            dataset-scope evaluators (default :func:`default_dataset_job`).
        extra_sections: ``(title, trusted HTML fragment)`` appended to ``report.html`` (stored
            in ``report_data.json``, so ``gmxai-eval report`` renders them too).
        write: write the report files (the per-unit cache is always written).
        verbose: print the compact summary (:mod:`gmxai_eval.report.summary`: ranks with their
            bootstrap intervals, best per family, flag counts, the paths of the full tables) and the
            time summary.
        batch_extra: added to every ``EvalBatch.extra`` (e.g. ``{"fixations": {sample_id:
            ImageGaze}}`` for the gaze evaluators); its pickled content is part of every unit key.
        overwrite: replace a run folder of another spec under the same run id.
        threads: torch intra-op threads, ``"auto"`` or a fixed count (default: ``[run] threads``);
            see :mod:`gmxai_eval.threads`. The process's count is restored when the run ends;
            the policy's decisions are written to ``results.json`` (``environment.threads``).
    """
    power = None
    if spec.power:  # [run] power: n_images from a pilot run, before anything is selected
        from gmxai_eval.runner.power import plan_n

        power = plan_n(spec.power, spec.source)
        spec = spec.replace(n_images=power["n"])
    if spec.sections:
        check_sections(spec.sections, models_axis=bool(spec.models))  # before any training or work
    out_root = Path(output if output is not None else spec.output)
    cache_root = Path(cache if cache is not None else (spec.cache or out_root / ".cache"))
    rid = run_id or spec.run_id
    policy = ThreadPolicy(spec.threads if threads is None else threads, device=spec.device)

    def run_one(one: Spec, *, model: nn.Module | None, dataset: Any, staged: Any, run_id: str,
                executor: Executor | None = executor) -> RunResult:
        ctx = RunContext(
            spec=one, timer=StageTimer(progress, on_start=lambda stage: policy.apply(stage, force=True)),
            progress=progress, threads=policy, out_root=out_root, cache_root=cache_root, run_id=run_id,
            dataset_job=dataset_job, power=power,
            counts={"attributed": {e.label: 0 for e in one.methods}, "units_run": 0, "units_reused": 0})
        return _run(ctx, staged, model=model, dataset=dataset, samples=samples, executor=executor,
                    batch_extra=batch_extra, extra_sections=extra_sections, verbose=verbose)

    staged = prepare_run_dir(out_root, rid, spec.hash(), overwrite) if write else None
    with staged if staged is not None else contextlib.nullcontext(), restored_threads():
        if spec.models:
            return _run_models(spec, run_one, staged, cache_root, executor, rid, verbose)
        if model is None and spec.model.get("source") == "train":
            policy.apply("train", force=True)
            trained = train_stage(spec, cache_root, executor or executor_for(spec))["model"]
            model, dataset = trained[0].model, dataset if dataset is not None else trained[1]
        return run_one(spec, model=model, dataset=dataset, staged=staged, run_id=rid)


def _run_models(spec: Spec, run_one: Callable[..., RunResult], staged: StagedRun | None, cache_root: Path,
                executor: Executor | None, run_id: str, verbose: bool) -> RunResult:
    """A ``[[models]]`` spec: every model through :func:`run_one` (:mod:`gmxai_eval.runner.models`)."""
    ex = executor if executor is not None else executor_for(spec)
    try:
        table, doc, per = run_models(spec, lambda one, **kw: run_one(one, run_id=one.run_id, executor=ex, **kw),
                                     staged=staged, cache_root=cache_root, executor=ex, run_id=run_id)
    finally:
        if executor is None and hasattr(ex, "close"):
            ex.close()
    run_dir = staged.commit() if staged is not None else None
    board = report_models.models_markdown(doc)
    if verbose:
        print(board)
        if run_dir is not None:
            print(f"results: {run_dir}")
    counts = {label: r.counts for label, r in per.items()}
    timings = {f"{label}/{k}": v for label, r in per.items() for k, v in r.timings.items()}
    return RunResult(run_dir, spec, table, doc, counts, timings, board, {label: r.maps for label, r in per.items()},
                     next(iter(per.values())).sample_classes)


def _run(ctx: RunContext, staged: StagedRun | None, *, model: nn.Module | None, dataset: Any,
         samples: Sequence[Sample] | None, executor: Executor | None, batch_extra: Mapping[str, Any] | None,
         extra_sections: Sequence[tuple[str, str]], verbose: bool) -> RunResult:
    """The stages of :func:`run_benchmark`; outputs go to ``staged.path`` (none when ``None``)."""
    spec, timer = ctx.spec, ctx.timer
    with timer("load"):
        load(ctx, model=model, dataset=dataset, samples=samples, executor=executor, batch_extra=batch_extra)
    with timer("attribute"):
        ctx.maps = attribute(ctx)
    with timer("evaluate"):
        rows = evaluate(ctx)
        drop_truth_images(ctx)  # the truth evaluators' extra images end here
        rows = dataset_scope(ctx) + rows
        ctx.table = make_table(rows)
    if spec.reliability.enabled:
        with timer("reliability"):
            ctx.reliability = reliability(ctx)
    if spec.sections:
        with timer("sections"):
            ctx.sections = sections(ctx)
    run_dir = None
    with timer("report"):
        results = summarise(ctx)
        results["evidence"] = evidence_drop(ctx)  # does the model use the planted evidence?
        if ctx.power is not None:
            results["power"] = ctx.power
        board = tables.leaderboard_markdown(results)
        if staged is not None:
            write_run(ctx, results, extra_sections, folder=staged.path)
    results["timings"] = dict(timer.seconds)
    results["timings_per_method"] = ctx.seconds_per_method
    results["timings_per_evaluator"] = ctx.seconds_per_evaluator
    if staged is not None:
        tables.write_results_json(results, staged.path)
        run_dir = staged.commit()
    if verbose:  # the compact summary: the full tables are in the files it lists
        from gmxai_eval.report.summary import run_files, summary_data, summary_lines

        print("\n".join(summary_lines(summary_data(results, run_files(run_dir)))))
        print(timer.summary())
        for what, d in (("attribute", ctx.seconds_per_method), ("evaluate", ctx.seconds_per_evaluator)):
            if d:
                line = f"  slowest in {what}:"
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:5]:
                    if len(line) + len(f" {k} {v:.1f} s,") > 120:
                        break
                    line += f" {k} {v:.1f} s,"
                print(line.rstrip(","))
        if run_dir is not None:
            print(f"results: {run_dir}")
    keys = method_keys(ctx)
    store = RunMapStore(ctx.cache_root, ctx.model_key, {e.label: (e.name, keys[e.label]) for e in spec.methods},
                        dict(zip(ctx.image_ids, ctx.image_keys)))
    classes = {sid: ctx.class_name(int(y)) for sid, y in zip(ctx.image_ids, ctx.labels.tolist())}  # type: ignore[union-attr]
    return RunResult(run_dir, spec, ctx.table, results, ctx.counts, dict(timer.seconds), board, store, classes)
