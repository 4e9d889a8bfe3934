"""Stage ``evaluate``: one unit of work per (seed, evaluator, batch) for the methods whose result
for that batch is not stored yet.

Units go through the run's :class:`~gmxai_eval.execution.Executor` and each result is written
as soon as it arrives, so a killed run resumes where it stopped. Units come batch by batch, so
the evaluators of one batch share its :meth:`EvalBatch.shared` memo and only one batch is held
on the device.

Inputs: ``model``, ``images``, ``target``, ``maps``, ``explainers`` (those with ``needs_masks``
bound to the batch's evidence masks), ``masks`` / ``region_masks``, ``batch_extra``,
``counterfactual``, ``channel_mean``, ``evaluators``. Output: table rows (see
:mod:`gmxai_eval.runner.store`); ``conventions`` / ``curve_labels`` per evaluator are recorded
on the context.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import torch

from gmxai_eval.errors import ModelStateError
from gmxai_eval.evaluators.base import EVALUATORS, EvalBatch, EvalResult, Evaluator
from gmxai_eval.evaluators.randomisation import MAP_STORE_KEY
from gmxai_eval.runner.cache import UnitStore, entry_hash
from gmxai_eval.runner.context import RunContext, bind_masks, progress_bar
from gmxai_eval.runner.devices import call_halving
from gmxai_eval.runner.map_store import RunMapStore
from gmxai_eval.runner.stages.attribute import method_keys
from gmxai_eval.runner.stages.load import scored_images
from gmxai_eval.runner.store import rows_from_unit
from gmxai_eval.utils import stable_hash

#: The baseline name whose value depends on the whole selection (its channel mean).
CHANNEL_MEAN_BASELINE = "dataset_mean"


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


def _split_batch(b: EvalBatch) -> tuple[EvalBatch, EvalBatch]:
    n = len(b.sample_ids)  # type: ignore[arg-type]
    h = n // 2  # explainers bound to masks follow the rows of their half
    return part_of_batch(b, tuple(range(h))), part_of_batch(b, tuple(range(h, n)))


def limited_rows(batch_index: torch.Tensor, images: int) -> tuple[int, ...] | None:
    """Positions within a batch of the run's first ``images`` images (``images = 0``: all).

    ``None`` when the whole batch is scored, ``()`` when none of it is."""
    if images <= 0:
        return None
    keep = tuple(int(p) for p in torch.nonzero(batch_index < images).flatten().tolist())
    return None if len(keep) == len(batch_index) else keep


def part_of_batch(b: EvalBatch, rows: tuple[int, ...]) -> EvalBatch:
    """The rows ``rows`` of ``b`` as a batch of their own (explainers bound to their masks)."""
    part = b.subset(torch.tensor(rows, dtype=torch.long))
    part.explainers = bind_masks(part.explainers, part.masks, part.sample_ids, part.extra.get("counterfactual"))
    return part


def _join_results(a: dict[str, EvalResult], b: dict[str, EvalResult]) -> dict[str, EvalResult]:
    return {m: EvalResult.cat([a[m], b[m]]) for m in a}


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


def needs_channel_mean(evaluator: Any) -> bool:
    """Whether an evaluator's scores depend on the selection-wide channel mean.

    An evaluator declares it with a boolean attribute ``needs_channel_mean``; without one, it
    needs it when a value of its config (at any depth) is the baseline ``"dataset_mean"``.
    """
    declared = getattr(evaluator, "needs_channel_mean", None)
    if isinstance(declared, bool):
        return declared

    def values(x: Any) -> Iterator[Any]:
        if isinstance(x, Mapping):
            for v in x.values():
                yield from values(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                yield from values(v)
        else:
            yield x

    return any(isinstance(v, str) and v == CHANNEL_MEAN_BASELINE for v in values(evaluator.config))


class UnitKeys:
    """Store keys of units: evaluator and method names + config hashes (labels are display only)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ev = {e.label: (e.name, entry_hash(e.name, ctx.evaluators[e.label].config,
                                                type(ctx.evaluators[e.label])))
                   for e in ctx.spec.evaluators}
        mk = method_keys(ctx)
        self.m = {e.label: (e.name, mk[e.label]) for e in ctx.spec.methods}

    def __call__(self, elab: str, mlab: str, key: str) -> tuple[str, str, str, str, str]:
        return (*self.ev[elab], *self.m[mlab], key)


def record_conventions(ctx: RunContext, elab: str, doc: Mapping[str, Any]) -> None:
    """Keep the first stored conventions / curve labels of evaluator ``elab``."""
    ctx.conventions.setdefault(elab, doc.get("conventions", {}))
    if doc.get("curve_labels"):
        ctx.curve_labels.setdefault(elab, list(doc["curve_labels"]))


def make_batch(ctx: RunContext, ix: torch.Tensor, seed: int) -> EvalBatch:
    """The :class:`EvalBatch` of the images ``ix`` on the run device (oracle bound to its masks),
    with the run's map cache as the store of re-explained maps (``extra[MAP_STORE_KEY]``)."""
    dv: Callable[[Any], Any] = lambda t: None if t is None else t[ix].to(ctx.device)  # noqa: E731
    masks = dv(ctx.masks)
    extra = {"labels": ctx.labels[ix].to(ctx.device),  # type: ignore[index]
             "channel_mean": ctx.channel_mean.to(ctx.device),  # type: ignore[union-attr]
             "classes": list(getattr(ctx.dataset, "classes", []) or []), **ctx.batch_extra}
    if ctx.counterfactual is not None:
        extra["counterfactual"] = ctx.counterfactual
    if ctx.cache_root is not None:  # re-explained maps (randomised models) persist like attribution maps
        mk = method_keys(ctx)
        extra[MAP_STORE_KEY] = RunMapStore(ctx.cache_root, ctx.model_key,
                                           {e.label: (e.name, mk[e.label]) for e in ctx.spec.methods},
                                           dict(zip(ctx.image_ids, ctx.image_keys)))
    return EvalBatch(ctx.model, ctx.images[ix].to(ctx.device), ctx.target[ix].to(ctx.device),  # type: ignore[arg-type,index]
                     {m: ctx.maps[m][ix].to(ctx.device) for m in ctx.maps},
                     [ctx.image_ids[i] for i in ix.tolist()],
                     bind_masks(ctx.explainers, masks, [ctx.image_ids[i] for i in ix.tolist()], ctx.counterfactual),
                     masks,
                     dv(ctx.region_masks), ctx.region_names, seed, extra)


def evaluate(ctx: RunContext) -> list[dict[str, Any]]:
    """Run (or reuse) every batch-scope unit; returns the table rows (see the module docstring)."""
    store, uk = UnitStore(ctx.cache_root), UnitKeys(ctx)
    batch_keys = [stable_hash(ctx.model_key, [ctx.image_keys[i] for i in ix.tolist()]) for ix in ctx.batches]
    # the selection-wide channel mean is part of the key only where it changes the scores
    cms = {e.label: ctx.channel_mean.tolist() if needs_channel_mean(ctx.evaluators[e.label]) else None  # type: ignore[union-attr]
           for e in ctx.spec.evaluators}
    batch_evs = [e for e in ctx.spec.evaluators if ctx.evaluator_cards[e.label].scope != "dataset"]
    n_sel, n_run = len(ctx.image_ids), ctx.n_run or len(ctx.image_ids)
    scored = {e.label: scored_images(ctx, e.label, e.images) for e in batch_evs}
    # seed, batch, entry, methods, key, rows of the batch (None = all)
    plan: list[tuple[int, int, Any, tuple[str, ...], str, tuple[int, ...] | None]] = []
    done: list[tuple[int, str, str, str]] = []  # (seed, ev label, method, unit key)
    for seed in ctx.seeds:
        for bi, bkey in enumerate(batch_keys):  # batch-major: evaluators of a batch share its memo
            for e in batch_evs:
                rows = limited_rows(ctx.batches[bi], scored[e.label] if scored[e.label] < n_sel else 0)
                if rows == ():
                    continue
                if rows is not None:  # a part of the batch: its own key (the images it scores)
                    ix = ctx.batches[bi][list(rows)].tolist()
                    bkey_e = stable_hash(ctx.model_key, [ctx.image_keys[i] for i in ix])
                else:
                    bkey_e = bkey
                ukey = stable_hash(bkey_e, seed, ctx.extra_key, cms[e.label])
                todo = []
                for m in ctx.spec.methods:
                    if store.has(*uk(e.label, m.label, ukey)):
                        ctx.counts["units_reused"] += 1
                    else:
                        todo.append(m.label)
                    done.append((seed, e.label, m.label, ukey))
                if todo:
                    plan.append((seed, bi, e, tuple(todo), ukey, rows))

    issued: deque[EvalUnit] = deque()
    current: dict[tuple[int, int, tuple[int, ...] | None], EvalBatch] = {}

    def units() -> Iterator[EvalUnit]:  # lazily, so only one batch is held on the device
        for seed, bi, e, todo, ukey, rows in plan:
            if (bi, seed, None) not in current:
                current.clear()  # units come batch by batch: free the previous batch's memo
                current[(bi, seed, None)] = make_batch(ctx, ctx.batches[bi], seed)
            if (bi, seed, rows) not in current:  # evaluators limited alike share the part's memo
                current[(bi, seed, rows)] = part_of_batch(current[(bi, seed, None)], rows)  # type: ignore[arg-type]
            unit = EvalUnit(e.name, dict(e.config), todo, current[(bi, seed, rows)], ukey, seed, e.label)
            issued.append(unit)
            ctx.apply_threads("evaluate")  # a local executor runs the unit right after this
            yield unit

    bar = progress_bar(len(plan), "evaluate", ctx.progress)
    t_last = time.perf_counter()
    for res in ctx.executor.imap(execute_unit, units()):  # results come back in item order
        unit = issued.popleft()
        now = time.perf_counter()
        lab = unit.evaluator_label
        ctx.seconds_per_evaluator[lab] = ctx.seconds_per_evaluator.get(lab, 0.0) + now - t_last
        t_last = now
        for m in unit.methods:
            store.save(uk(lab, m, unit.key), unit.batch.sample_ids, res[m])  # type: ignore[arg-type]
            ctx.counts["units_run"] += 1
        bar.update(1)
    bar.close()
    current.clear()

    subjects = dict(zip(ctx.image_ids, ctx.subjects))
    rows: list[dict[str, Any]] = []
    for seed, elab, mlab, ukey in done:
        doc = store.load(*uk(elab, mlab, ukey))
        record_conventions(ctx, elab, doc)
        rows += rows_from_unit(ctx.run_id, seed, elab, mlab, doc, subjects)
    for e in batch_evs:  # an evaluator limited to the first k images says so in its conventions
        k = scored[e.label]
        note = (f"first {k} of {n_run}" if k < n_run else
                f"{k}: the run's {n_run} and {k - n_run} more of the same selection (run.truth_images)"
                if k > n_run else "")
        if note:
            ctx.conventions[e.label] = {**ctx.conventions.get(e.label, {}), "images": note}
    return rows
