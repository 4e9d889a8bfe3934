"""The benchmark runner: spec -> maps (cached) -> units of work -> per-sample table -> report.

Stages (each has a progress bar and a line in the time summary):

1. ``load``: model, dataset, sample selection, explained targets.
2. ``attribute``: maps of every method for every selected image, through :class:`MapCache`
   (a second run computes only maps it has not seen: new method, new config, new image).
3. ``evaluate``: one unit of work per (seed, evaluator, batch) covering the methods whose
   result for that batch is not stored yet; units go through an
   :class:`~gmxai_eval.execution.Executor` and each result is written as soon as it arrives,
   so a killed run resumes where it stopped. Dataset-scope evaluators get ``run(job, executor)``.
4. ``reliability`` (opt-in): metric reliability under minor / disruptive noise.
5. ``report``: aggregation, leaderboards, ``results.json`` and ``report.html``.

Randomness: evaluators get the run seed (``EvalBatch.seed``) and key their draws on
``(seed, sample_id)``; methods use the ``seed`` of their own config (default 0), so maps are
shared by every run seed. Repeat a stochastic method with several seeds by listing it with
different ``config.seed`` and labels.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from gmxai_eval.data.base import DATASETS, Sample, collate
from gmxai_eval.errors import ConfigError, DataError, ModelStateError
from gmxai_eval.evaluators.base import (EVALUATORS, DatasetEvaluator, DatasetJob, EvalBatch,
                                        EvalResult, Evaluator)
from gmxai_eval.execution import EXECUTORS, Executor
from gmxai_eval.methods.base import METHODS, Explainer
from gmxai_eval.models.base import MODELS
from gmxai_eval.runner.cache import MapCache, UnitStore, entry_hash, image_keys, model_hash
from gmxai_eval.runner.spec import Spec
from gmxai_eval.runner.store import make_table, rows_from_unit, write_table
from gmxai_eval.utils import stable_hash

# -------------------------------------------------------------------------------------------
# timing and progress


class StageTimer:
    """Accumulates wall time per named stage (``with timer("attribute"): ...``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

    def summary(self) -> str:
        total = sum(self.seconds.values()) or 1.0
        lines = ["time per stage:"]
        for k, v in self.seconds.items():
            lines.append(f"  {k:<12} {v:8.2f} s  {100 * v / total:5.1f} %")
        return "\n".join(lines)


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr,
                dynamic_ncols=True)


# -------------------------------------------------------------------------------------------
# devices, memory and OOM fallback


def resolve_device(device: str) -> torch.device:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:i"`` -> ``torch.device``; CUDA requested but missing raises."""
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"expected a CUDA device for device={device!r}, got none: "
                              "torch.cuda.is_available() is False (CPU-only torch build or no GPU); "
                              "set run.device = \"cpu\"")
        d = torch.device(device)
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ConfigError(f"expected a CUDA device index < {torch.cuda.device_count()}, got {device!r}")
        return d
    raise ConfigError(f"expected device 'cpu' or 'cuda[:i]', got {device!r}")


def is_oom(e: BaseException) -> bool:
    """Out-of-memory errors (CUDA or CPU allocator) that a smaller batch may avoid."""
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def auto_batch_size(model: nn.Module, example: torch.Tensor, device: torch.device,
                    cap: int = 64, cpu_default: int = 16) -> int:
    """Images per unit of work.

    On CPU: ``cpu_default``. On CUDA: measure the peak memory of one forward + backward pass of
    one image, assume evaluators hold ~8 perturbed copies, and use 40 % of the free memory
    (at most ``cap``). Out-of-memory errors later halve the batch (:func:`call_halving`).
    """
    if device.type != "cuda":
        return cpu_default
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    x = example[:1].to(device).requires_grad_(True)
    with torch.enable_grad():
        model(x).sum().backward()
    per_image = max(torch.cuda.max_memory_allocated(device) - base, 1) * 8
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(cap, (0.4 * free) // per_image)))


def call_halving(fn: Callable[[Any], Any], batch: Any, split: Callable[[Any], tuple[Any, Any]],
                 join: Callable[[Any, Any], Any], size: Callable[[Any], int]) -> Any:
    """``fn(batch)``; on an out-of-memory error, run the two halves and ``join`` them.
    A one-item batch that still fails re-raises the error."""
    try:
        return fn(batch)
    except Exception as e:
        if not is_oom(e) or size(batch) <= 1:
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    a, b = split(batch)
    return join(call_halving(fn, a, split, join, size), call_halving(fn, b, split, join, size))


def _split_batch(b: EvalBatch) -> tuple[EvalBatch, EvalBatch]:
    n = len(b.sample_ids)  # type: ignore[arg-type]
    h = n // 2
    return b.subset(torch.arange(h)), b.subset(torch.arange(h, n))


def _join_results(a: dict[str, EvalResult], b: dict[str, EvalResult]) -> dict[str, EvalResult]:
    return {m: EvalResult.cat([a[m], b[m]]) for m in a}


# -------------------------------------------------------------------------------------------
# loading


def load_model(model_spec: Mapping[str, Any], dataset: Any = None) -> nn.Module:
    """The model named by a spec's ``[model]`` table (eval mode, on CPU).

    ``source = "default"`` calls :func:`gmxai_eval.models.default.load_default` with
    ``config``; ``"checkpoint"`` calls ``gmxai_eval.models.checkpoint.load_checkpoint(path)``
    (a returned ``(model, card)`` pair is unpacked);
    ``"registry"`` calls ``MODELS.create(arch, **config)`` (``num_classes`` defaults to the
    dataset's class count).
    """
    src = model_spec.get("source", "default")
    cfg = dict(model_spec.get("config", {}))
    if src == "default":
        model = load_default_bundle(cfg)[0]
    elif src == "checkpoint":
        mod = _import("gmxai_eval.models.checkpoint", "checkpoint loading")
        model = mod.load_checkpoint(model_spec["checkpoint"], **cfg)
        if isinstance(model, tuple):  # (model, card)
            model = model[0]
    elif src == "registry":
        if "num_classes" not in cfg and dataset is not None and hasattr(dataset, "classes"):
            cfg["num_classes"] = len(dataset.classes)
        model = MODELS.create(model_spec["arch"], **cfg)
    else:
        raise ConfigError(f"expected model.source 'default', 'checkpoint' or 'registry', got {src!r}")
    if not isinstance(model, nn.Module):
        raise ModelStateError(f"expected the model loader to return an nn.Module, got {type(model).__name__}")
    return model.eval()


def load_default_bundle(config: Mapping[str, Any]) -> tuple[nn.Module, Any]:
    """``(model, splits)`` of the embedded default:
    ``gmxai_eval.models.default.load_default(**config)`` returns ``(model, splits, card)``."""
    mod = _import("gmxai_eval.models.default", "the default model")
    out = mod.load_default(**dict(config))
    if isinstance(out, tuple):
        return out[0], (out[1] if len(out) > 1 else None)
    return out, None


def _import(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise ConfigError(f"expected {module} to provide {what}, got no such module "
                          "(use [model] source = \"registry\" or pass model= to run_benchmark)") from None


def load_dataset(dataset_spec: Mapping[str, Any], default_splits: Any = None) -> Any:
    """``DATASETS.create(name, **config)`` (with ``path=`` for a manifest).

    ``name = "default"`` is the embedded default's data (the splits returned by
    :func:`load_default_bundle`): its ``split`` view (``"test"``, ...) or every split."""
    if dataset_spec["name"] == "default":
        if default_splits is None:
            raise ConfigError("expected [model] source = \"default\" with [dataset] name = \"default\" "
                              "(the default data comes with the default model), got another model source")
        if dataset_spec.get("config"):
            raise ConfigError(f"expected no dataset.config for the default data (configure it in "
                              f"[model] config), got {dict(dataset_spec['config'])}")
        split = dataset_spec.get("split", "")
        return getattr(default_splits, split) if split else default_splits.dataset
    cfg = dict(dataset_spec.get("config", {}))
    if "path" in dataset_spec:
        cfg["path"] = dataset_spec["path"]
    return DATASETS.create(dataset_spec["name"], **cfg)


def select_samples(dataset: Any, split: str, n_images: int, select: str = "first") -> list[Sample]:
    """``n_images`` samples (0 = all) of ``split`` ("" = every split).

    ``select = "first"``: the first ones in dataset order. ``"stratified"``: round-robin over
    classes (in dataset order within a class), so every class is represented; uses
    ``dataset.labels`` when the dataset has it (no image is loaded to choose).
    """
    order: Sequence[int] = range(len(dataset))
    if select == "stratified":
        labels = getattr(dataset, "labels", None)
        if labels is None or len(labels) != len(dataset) or (
                split and getattr(dataset, "split", None) not in (split, None, "")):
            labels = [dataset[i].label if not split or dataset[i].split == split else -1
                      for i in range(len(dataset))]
        labels = [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]
        per: dict[int, list[int]] = {}
        for i, lab in enumerate(labels):
            if lab >= 0:
                per.setdefault(lab, []).append(i)
        queues = [per[k] for k in sorted(per)]
        order = [q[j] for j in range(max(map(len, queues), default=0)) for q in queues if j < len(q)]
    elif select != "first":
        raise ConfigError(f"expected select 'first' or 'stratified', got {select!r}")
    out: list[Sample] = []
    for i in order:
        s = dataset[i]
        if not isinstance(s, Sample):
            raise DataError(f"expected dataset items of type Sample, got {type(s).__name__} at index {i}")
        if split and s.split != split:
            continue
        out.append(s)
        if n_images and len(out) >= n_images:
            break
    if not out:
        raise DataError(f"expected at least one sample of split {split!r}, got none "
                        f"(dataset has {len(dataset)} items)")
    ids = [s.image_id for s in out]
    if len(set(ids)) != len(ids):
        raise DataError("expected unique image ids in the selected samples, got duplicates")
    return out


# -------------------------------------------------------------------------------------------
# units of work


@dataclass
class EvalUnit:
    """One unit of work: one evaluator on one batch for the methods ``methods``.

    Picklable (a cluster executor ships it). ``batch`` holds the maps of every method of the
    batch; units of one batch share its :meth:`EvalBatch.shared` memo in this process.
    """

    evaluator: str
    evaluator_config: Mapping[str, Any]
    methods: tuple[str, ...]
    batch: EvalBatch
    key: str
    seed: int
    evaluator_label: str = ""


def execute_unit(unit: EvalUnit) -> dict[str, EvalResult]:
    """Run one :class:`EvalUnit` -> ``{method label: EvalResult}`` (halves the batch on OOM)."""
    ev: Evaluator = EVALUATORS.create(unit.evaluator, **dict(unit.evaluator_config))
    b = unit.batch
    sub = EvalBatch(b.model, b.x, b.target, {m: b.maps[m] for m in unit.methods}, b.sample_ids,
                    {m: b.explainers[m] for m in unit.methods if m in b.explainers}, b.masks,
                    b.region_masks, b.region_names, b.seed, b.extra, b._shared)
    out = call_halving(ev.evaluate, sub, _split_batch, _join_results,
                       lambda x: len(x.sample_ids))
    missing = set(unit.methods) - set(out)
    if missing:
        raise ModelStateError(f"evaluator {unit.evaluator!r} returned no result for {sorted(missing)}")
    return out


def default_dataset_job(samples: Sequence[Sample], model: nn.Module, explainers: Mapping[str, Explainer],
                        dataset: Any, spec: Spec) -> DatasetJob:
    """How dataset-scope (retraining) evaluators get their :class:`DatasetJob`.

    The default asks ``gmxai_eval.models.train`` for ``dataset_job(...)`` with the same
    arguments; pass ``dataset_job=`` to :func:`run_benchmark` to supply another."""
    mod = _import("gmxai_eval.models.train", "a dataset_job(...) for retraining evaluators")
    fn = getattr(mod, "dataset_job", None)
    if fn is None:
        raise ConfigError("expected gmxai_eval.models.train.dataset_job(samples, model, explainers, "
                          "dataset, spec) for dataset-scope evaluators, got none; pass dataset_job= "
                          "to run_benchmark")
    return fn(samples, model, explainers, dataset, spec)


# -------------------------------------------------------------------------------------------
# the run


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
    """

    run_dir: Path | None
    spec: Spec
    table: Any
    results: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    leaderboard: str = ""


def gaze_fixations(gaze: Mapping[str, Any], samples: Sequence[Sample], seed: int) -> dict[str, Any]:
    """``{image_id: ImageGaze}`` for the ``gaze_*`` evaluators from a spec's ``[gaze]`` table:
    simulated clinicians on ``samples`` (labelled simulated in the study) or a fixation file
    with its study file (validated against the samples' ids and sizes)."""
    from gmxai_eval.gaze.fixations import read_fixations
    from gmxai_eval.gaze.maps import image_gaze_set
    from gmxai_eval.gaze.simulate import simulate_study
    from gmxai_eval.gaze.study import load_study

    shapes = {s.image_id: (int(s.image.shape[-2]), int(s.image.shape[-1])) for s in samples}
    if gaze["fixations"] == "simulated":
        table, study = simulate_study(samples, int(gaze.get("observers", 6)), seed=seed)
    else:
        study = load_study(gaze["study"])
        table = read_fixations(gaze["fixations"], known_images=set(shapes), image_sizes=shapes,
                               on_invalid=gaze.get("on_invalid", "raise"))
    return image_gaze_set(table, shapes, study.sigma_px)


def _cards(spec: Spec) -> tuple[dict[str, Any], dict[str, Any]]:
    mcards = {e.label: METHODS.card(e.name) for e in spec.methods}
    ecards = {e.label: EVALUATORS.card(e.name) for e in spec.evaluators}
    return mcards, ecards


def run_benchmark(spec: Spec, *, model: nn.Module | None = None, dataset: Any = None,
                  samples: Sequence[Sample] | None = None, executor: Executor | None = None,
                  output: str | Path | None = None, run_id: str | None = None,
                  cache: str | Path | None = None, progress: bool | None = None,
                  dataset_job: Callable[..., DatasetJob] | None = None,
                  extra_sections: Sequence[tuple[str, str]] = (), write: bool = True,
                  verbose: bool = True, batch_extra: Mapping[str, Any] | None = None) -> RunResult:
    """Run ``spec`` and write ``<output>/<run id>/``.

    Args:
        spec: a parsed :class:`Spec`.
        model: use this model instead of ``spec.model`` (tests, programmatic use).
        dataset / samples: use this dataset (or these samples) instead of ``spec.dataset``.
        executor: where units run (default: ``EXECUTORS.create(spec.executor)``).
        output / run_id / cache: override the spec's output folder, the run id
            (default ``<name>-<spec hash>``) and the cache folder (default ``<output>/.cache``).
        progress: show tqdm bars (default: when stderr is a terminal).
        dataset_job: ``(samples, model, explainers, dataset, spec) -> DatasetJob`` for
            dataset-scope evaluators (default :func:`default_dataset_job`).
        extra_sections: ``(title, trusted HTML fragment)`` appended to ``report.html``
            (e.g. the gaze section).
        write: write the report files (the per-unit cache is always written).
        verbose: print the leaderboard and the time summary.
        batch_extra: added to every ``EvalBatch.extra`` (e.g. ``{"fixations": {sample_id:
            ImageGaze}}`` for the gaze evaluators); its pickled content is part of every unit key.
    """
    timer = StageTimer()
    show = sys.stderr.isatty() if progress is None else progress
    out_root = Path(output if output is not None else spec.output)
    cache_root = Path(cache if cache is not None else (spec.cache or out_root / ".cache"))
    rid = run_id or spec.run_id
    counts: dict[str, Any] = {"attributed": {e.label: 0 for e in spec.methods}, "units_run": 0,
                              "units_reused": 0}
    per_evaluator: dict[str, float] = {}  # seconds of units computed in this run
    per_method: dict[str, float] = {}

    with timer("load"):
        device = resolve_device(spec.device)
        mcards, ecards = _cards(spec)  # unknown names fail before any work
        evaluators = {e.label: EVALUATORS.create(e.name, **dict(e.config)) for e in spec.evaluators}
        explainers = {e.label: METHODS.create(e.name, **dict(e.config)) for e in spec.methods}
        execu = executor if executor is not None else EXECUTORS.create(spec.executor)
        if spec.sections:
            from gmxai_eval.report.html import SECTIONS

            for name in spec.sections:
                SECTIONS.get(name)  # an unknown section fails before any work
        default_splits = None
        if spec.model.get("source") == "default" and (
                model is None or (samples is None and dataset is None and spec.dataset["name"] == "default")):
            loaded, default_splits = load_default_bundle(spec.model.get("config", {}))
            model = model if model is not None else loaded.eval()
        if samples is None:
            if dataset is None:
                dataset = load_dataset(spec.dataset, default_splits)
            samples = select_samples(dataset, spec.dataset.get("split", ""), spec.n_images, spec.select)
        else:
            samples = list(samples)[: spec.n_images or None]
        if model is None:
            model = load_model(spec.model, dataset)
        if model.training:
            raise ModelStateError("expected the model in eval mode (model.eval()), got training mode")
        model = model.to(device)
        mkey = model_hash(model)
        fb = collate(samples)
        bs = spec.batch_size if isinstance(spec.batch_size, int) else auto_batch_size(model, fb.images, device)
        batches = [torch.arange(i, min(i + bs, len(fb))) for i in range(0, len(fb), bs)]
        with torch.no_grad():
            if spec.target == "predicted":
                target = torch.cat([model(fb.images[ix].to(device)).argmax(1).cpu() for ix in batches])
            else:
                target = fb.labels.clone()
        keys = image_keys(fb.images, fb.image_ids, target)
        channel_mean = fb.images.mean(dim=(0, 2, 3))
        if spec.gaze and batch_extra is None:
            batch_extra = {"fixations": gaze_fixations(spec.gaze, samples, spec.seeds[0])}
        extra_key = "" if not batch_extra else stable_hash(pickle.dumps(dict(batch_extra), protocol=4))
        subjects = {sid: subj for sid, subj in zip(fb.image_ids, fb.subjects or [""] * len(fb))}

    maps_cache = MapCache(cache_root, mkey)
    method_keys = {e.label: entry_hash(e.name, explainers[e.label].config, type(explainers[e.label]))
                   for e in spec.methods}
    all_maps: dict[str, torch.Tensor] = {}
    with timer("attribute"):
        bar = _bar(len(spec.methods) * len(batches), "attribute", show)
        for e in spec.methods:
            lab, mk, ex = e.label, method_keys[e.label], explainers[e.label]
            full = torch.empty(len(fb), *fb.images.shape[-2:], dtype=torch.float32)
            for ix in batches:
                bkeys = [keys[i] for i in ix.tolist()]
                found, missing = maps_cache.get(e.name, mk, bkeys)
                if missing:
                    t0 = time.perf_counter()
                    sel = ix[torch.tensor(missing, dtype=torch.long)]
                    xs, ts = fb.images[sel].to(device), target[sel].to(device)
                    ms = None  # evidence masks for explainers that need them (the oracle control)
                    if getattr(ex, "needs_masks", False):
                        if fb.evidence is None:
                            raise ConfigError(f"method {lab!r} needs evidence masks; the samples have none")
                        ms = fb.evidence[sel].to(device)
                    new = call_halving(
                        lambda a: (ex(model, a[0], a[1]) if a[2] is None  # type: ignore[call-arg]
                                   else ex(model, a[0], a[1], masks=a[2])).detach().cpu(), (xs, ts, ms),
                        lambda a: tuple(tuple(None if v is None else v[h] for v in a)
                                        for h in (slice(None, len(a[0]) // 2), slice(len(a[0]) // 2, None))),
                        lambda p, q: torch.cat([p, q]), lambda a: len(a[0]))
                    maps_cache.put(e.name, mk, [bkeys[i] for i in missing], new)
                    counts["attributed"][lab] += len(missing)
                    per_method[lab] = per_method.get(lab, 0.0) + time.perf_counter() - t0
                    found, _ = maps_cache.get(e.name, mk, bkeys)
                full[ix] = torch.stack([found[k] for k in bkeys])
                bar.update(1)
            all_maps[lab] = full
        bar.close()

    store = UnitStore(cache_root)
    masks = fb.evidence
    ekeys = {e.label: entry_hash(e.name, evaluators[e.label].config, type(evaluators[e.label]))
             for e in spec.evaluators}
    mnames = {e.label: e.name for e in spec.methods}
    enames = {e.label: e.name for e in spec.evaluators}

    def uk(elab: str, mlab: str, key: str) -> tuple[str, str, str, str, str]:
        """Store key of a unit: names + config hashes (labels are display only)."""
        return enames[elab], ekeys[elab], mnames[mlab], method_keys[mlab], key

    rows: list[dict[str, Any]] = []
    conventions: dict[str, Any] = {}
    curve_labels: dict[str, list[str]] = {}

    def collect(elab: str, doc: Mapping[str, Any]) -> None:
        conventions.setdefault(elab, doc.get("conventions", {}))
        if doc.get("curve_labels"):
            curve_labels.setdefault(elab, list(doc["curve_labels"]))

    with timer("evaluate"):
        batch_objs: list[tuple[torch.Tensor, str]] = []
        for ix in batches:
            batch_objs.append((ix, stable_hash(mkey, [keys[i] for i in ix.tolist()])))
        plan: list[tuple[int, int, Any, tuple[str, ...], str]] = []  # seed, batch, entry, methods, key
        done: list[tuple[int, str, str, str, list[str]]] = []  # (seed, ev label, method, unit key, ids)
        batch_cache: dict[tuple[int, int], EvalBatch] = {}

        def make_batch(bi: int, seed: int) -> EvalBatch:
            if (bi, seed) not in batch_cache:
                batch_cache.clear()  # units come batch by batch: free the previous batch's memo
                ix = batch_objs[bi][0]
                dv = lambda t: None if t is None else t[ix].to(device)  # noqa: E731
                batch_cache[(bi, seed)] = EvalBatch(
                    model, fb.images[ix].to(device), target[ix].to(device),
                    {m: all_maps[m][ix].to(device) for m in all_maps},
                    [fb.image_ids[i] for i in ix.tolist()], explainers, dv(masks),
                    dv(fb.region_masks), fb.region_names, seed,
                    {"labels": fb.labels[ix].to(device), "channel_mean": channel_mean.to(device),
                     "classes": list(getattr(dataset, "classes", []) or []), **dict(batch_extra or {})})
            return batch_cache[(bi, seed)]

        # the selection-wide channel mean only matters to a 'dataset_mean' baseline
        cms = {e.label: channel_mean.tolist() if "dataset_mean" in repr(evaluators[e.label].config) else None
               for e in spec.evaluators}
        for seed in spec.seeds:
            for bi, (ix, bkey) in enumerate(batch_objs):  # batch-major: evaluators of a batch share its memo
                ids = [fb.image_ids[i] for i in ix.tolist()]
                for e in spec.evaluators:
                    if ecards[e.label].scope == "dataset":
                        continue
                    ukey = stable_hash(bkey, seed, extra_key, cms[e.label])
                    todo = []
                    for m in spec.methods:
                        if store.has(*uk(e.label, m.label, ukey)):
                            counts["units_reused"] += 1
                        else:
                            todo.append(m.label)
                        done.append((seed, e.label, m.label, ukey, ids))
                    if todo:
                        plan.append((seed, bi, e, tuple(todo), ukey))

        issued: deque[EvalUnit] = deque()

        def units() -> Iterator[EvalUnit]:  # lazily, so only one batch is held on the device
            for seed, bi, e, todo, ukey in plan:
                unit = EvalUnit(e.name, dict(e.config), todo, make_batch(bi, seed), ukey, seed, e.label)
                issued.append(unit)
                yield unit

        bar = _bar(len(plan), "evaluate", show)
        t_last = time.perf_counter()
        for res in execu.imap(execute_unit, units()):  # results come back in item order
            unit = issued.popleft()
            now = time.perf_counter()
            per_evaluator[unit.evaluator_label] = per_evaluator.get(unit.evaluator_label, 0.0) + now - t_last
            t_last = now
            for m in unit.methods:
                store.save(uk(unit.evaluator_label, m, unit.key),
                           unit.batch.sample_ids, res[m])  # type: ignore[arg-type]
                counts["units_run"] += 1
            bar.update(1)
        bar.close()
        batch_cache.clear()

        # dataset-scope evaluators: one job for the whole selection
        dataset_evs = [e for e in spec.evaluators if ecards[e.label].scope == "dataset"]
        if dataset_evs:
            dkey = stable_hash(mkey, keys, "dataset")
            for e in dataset_evs:
                todo = [m.label for m in spec.methods
                        if not store.has(*uk(e.label, m.label, dkey))]
                if todo:
                    ev = evaluators[e.label]
                    if not isinstance(ev, DatasetEvaluator):
                        raise ModelStateError(f"expected evaluator {e.name!r} with scope 'dataset' to be a "
                                              f"DatasetEvaluator, got {type(ev).__name__}")
                    job = (dataset_job or default_dataset_job)(samples, model, {m: explainers[m] for m in todo},
                                                               dataset, spec.replace(cache=str(cache_root)))
                    res = ev.run(job, execu)
                    for m in todo:
                        r = res[m]
                        store.save(uk(e.label, m, dkey),
                                   [f"retrain-{i}" for i in range(len(r))], r)
                        counts["units_run"] += 1
                else:
                    counts["units_reused"] += len(spec.methods)
                for m in spec.methods:
                    doc = store.load(*uk(e.label, m.label, dkey))
                    collect(e.label, doc)
                    rows += rows_from_unit(rid, spec.seeds[0], e.label, m.label, doc, {})

        for seed, elab, mlab, ukey, ids in done:
            doc = store.load(*uk(elab, mlab, ukey))
            collect(elab, doc)
            rows += rows_from_unit(rid, seed, elab, mlab, doc, subjects)
        table = make_table(rows)

    reliability = None
    if spec.reliability.enabled:
        with timer("reliability"):
            from gmxai_eval.report.reliability import metric_reliability

            n = min(spec.reliability.n_images, len(fb))
            batch_evs = {k: v for k, v in evaluators.items() if ecards[k].scope == "batch"}
            reliability = metric_reliability(
                model, fb.images[:n].to(device), target[:n].to(device), fb.image_ids[:n], explainers,
                batch_evs, masks=None if masks is None else masks[:n].to(device),
                region_masks=None if fb.region_masks is None else fb.region_masks[:n].to(device),
                region_names=fb.region_names, seed=spec.seeds[0],
                minor_input_sigma=spec.reliability.minor_input_sigma,
                disruptive_input_sigma=spec.reliability.disruptive_input_sigma,
                minor_model_sigma=spec.reliability.minor_model_sigma,
                disruptive_model_sigma=spec.reliability.disruptive_model_sigma,
                max_tries=spec.reliability.max_tries, progress=show)

    sections: list[tuple[str, str]] = list(extra_sections)
    section_data: dict[str, Any] = {}
    if spec.sections:
        with timer("sections"):
            from gmxai_eval.report.html import SectionContext, run_sections

            ctx = SectionContext(model, samples, explainers, spec, spec.seeds[0])
            got, section_data = run_sections(spec.sections, ctx)
            sections += got

    with timer("report"):
        from gmxai_eval.report import aggregate as agg
        from gmxai_eval.report import tables

        summary = agg.summarise(table, {k: _card_dict(v) for k, v in ecards.items()},
                                {k: _card_dict(v) for k, v in mcards.items()}, n_boot=spec.bootstrap,
                                seed=spec.seeds[0], curve_labels=curve_labels)
        results = {
            "format": "gmxai_eval.results/1",
            "run_id": rid,
            "spec": spec.to_dict(),
            "spec_hash": spec.hash(),
            "spec_source": spec.source,
            "seeds": list(spec.seeds),
            "device": str(device),
            "model_hash": mkey,
            "n_images": len(fb),
            "batch_size": bs,
            "environment": environment(),
            "methods": {e.label: {"name": e.name, "config": _jsonable(explainers[e.label].config),
                                  "card": _card_dict(mcards[e.label])} for e in spec.methods},
            "evaluators": {e.label: {"name": e.name, "config": _jsonable(evaluators[e.label].config),
                                     "card": _card_dict(ecards[e.label]),
                                     "conventions": conventions.get(e.label, {})} for e in spec.evaluators},
            **summary,
            "reliability": reliability,
            "sections": section_data,
            "samples": [[r["seed"], r["evaluator"], r["method"], r["sample_id"], r["score"]]
                        for r in table[["seed", "evaluator", "method", "sample_id", "score"]].to_dict("records")],
            "counts": counts,
        }
        board = tables.leaderboard_markdown(results)
        run_dir = None
        if write:
            run_dir = out_root / rid
            write_table(table, run_dir)
            tables.write_tables(results, run_dir)
            results["timings"] = dict(timer.seconds)
            if spec.html:
                from gmxai_eval.report.html import render_report

                n_ex = min(spec.examples, len(fb))
                examples = {"images": fb.images[:n_ex], "ids": fb.image_ids[:n_ex],
                            "labels": [_class_name(dataset, int(t)) for t in fb.labels[:n_ex]],
                            "targets": [_class_name(dataset, int(t)) for t in target[:n_ex]],
                            "maps": {m: all_maps[m][:n_ex] for m in all_maps}}
                render_report(results, table, run_dir / "report.html", examples=examples,
                              extra_sections=sections)
    results["timings"] = dict(timer.seconds)
    results["timings_per_method"] = per_method
    results["timings_per_evaluator"] = per_evaluator
    if write and run_dir is not None:
        tables.write_results_json(results, run_dir)
    if verbose:
        print(board)
        print(timer.summary())
        for what, d in (("attribute", per_method), ("evaluate", per_evaluator)):
            if d:
                slow = sorted(d.items(), key=lambda kv: -kv[1])[:5]
                print(f"  slowest in {what}: " + ", ".join(f"{k} {v:.1f} s" for k, v in slow))
        if run_dir is not None:
            print(f"results: {run_dir}")
    return RunResult(run_dir, spec, table, results, counts, dict(timer.seconds), board)


def _class_name(dataset: Any, k: int) -> str:
    classes = getattr(dataset, "classes", None)
    return str(classes[k]) if classes is not None and 0 <= k < len(classes) else str(k)


def _jsonable(x: Any) -> Any:
    import json

    return json.loads(json.dumps(dict(x) if isinstance(x, Mapping) else x, default=str))


def _card_dict(card: Any) -> dict[str, Any]:
    from dataclasses import fields, is_dataclass

    if card is None:
        return {}
    d = {f.name: getattr(card, f.name) for f in fields(card)} if is_dataclass(card) else dict(vars(card))
    return _jsonable({k: (sorted(v) if isinstance(v, (set, frozenset)) else dict(v) if isinstance(v, Mapping) else v)
                      for k, v in d.items()})


def environment() -> dict[str, Any]:
    """Package versions, Python, platform and the git revision of the working directory."""
    import platform
    import subprocess
    from importlib import metadata

    import gmxai_eval

    versions = {"gmxai_eval": gmxai_eval.__version__, "python": platform.python_version()}
    for pkg in ("torch", "numpy", "scipy", "pandas", "captum", "quantus", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(gmxai_eval.__file__).parent).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5,
                                    cwd=Path(gmxai_eval.__file__).parent).stdout.strip()) if rev else None
    except (OSError, subprocess.SubprocessError):
        rev, dirty = None, None
    return {"versions": versions, "git_revision": rev, "git_dirty": dirty,
            "platform": platform.platform(), "torch_threads": torch.get_num_threads()}
