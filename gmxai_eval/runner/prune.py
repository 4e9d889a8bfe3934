"""Garbage collection of the retraining cache (``gmxai-eval cache prune``).

Masked datasets, pixel rankings, leakage results and retrained models are content-addressed
(:mod:`gmxai_eval.evaluators.retraining`), so a changed spec (a method removed or reconfigured,
other fractions, fewer repeats, another recipe or reference model) leaves files that no current
key references. :func:`referenced_retraining_files` computes, for one or more specs, the keys
their dataset-scope evaluators would use (it loads the model and the data, and trains and
explains nothing); :func:`prune_retraining_cache` removes every other file under the cache's
``retraining/`` folder. Files of another spec sharing the cache are removed too unless that
spec is given as well. Run it when no run uses the cache (a temporary file younger than an
hour is kept in any case). Per-unit results and attribution maps are not touched: a pruned run
is not recomputed; only adding a method or a repeat later retrains what it needs again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.retraining import prune_cache
from gmxai_eval.execution import LocalExecutor
from gmxai_eval.runner.context import RunContext, StageTimer
from gmxai_eval.runner.spec import Spec
from gmxai_eval.runner.stages.dataset_scope import default_dataset_job
from gmxai_eval.runner.stages.load import drop_truth_images, load


def _cache_root(spec: Spec, cache: str | Path | None) -> Path:
    return Path(cache if cache is not None else (spec.cache or Path(spec.output) / ".cache"))


def referenced_retraining_files(spec: Spec, *, cache: str | Path | None = None,
                                dataset_job: Callable[..., Any] | None = None) -> set[Path]:
    """The retraining cache files the dataset-scope evaluators of ``spec`` reference (see the
    module docstring); ``cache`` and ``dataset_job`` as in :func:`~gmxai_eval.runner.run.run_benchmark`."""
    root = _cache_root(spec, cache)
    ctx = RunContext(spec=spec, timer=StageTimer(False), progress=False, out_root=Path(spec.output),
                     cache_root=root, run_id=spec.run_id, counts={})
    load(ctx, executor=LocalExecutor())  # nothing runs: no cluster is started to compute keys
    drop_truth_images(ctx)  # dataset-scope evaluators see the run's images, as in a run
    out: set[Path] = set()
    evs = [e for e in spec.evaluators if ctx.evaluator_cards[e.label].scope == "dataset"]
    if not evs:
        return out
    job = (dataset_job or default_dataset_job)(ctx.samples, ctx.model, dict(ctx.explainers), ctx.dataset,
                                               spec.replace(cache=str(root)))
    for e in evs:
        ev = ctx.evaluators[e.label]
        if not callable(getattr(ev, "referenced_files", None)):
            raise ConfigError(f"expected dataset-scope evaluator {e.label!r} to name its cache files "
                              f"(referenced_files(job)), got {type(ev).__name__} without it: pruning "
                              "would remove files it may need")
        out |= ev.referenced_files(job)
    return out


def prune_retraining_cache(specs: Sequence[Spec], *, cache: str | Path | None = None, dry_run: bool = False,
                           dataset_job: Callable[..., Any] | None = None) -> list[Path]:
    """Remove the files of ``<cache>/retraining`` that none of ``specs`` references (``cache``
    default: the first spec's cache folder). Returns the removed (``dry_run``: removable) files."""
    if not specs:
        raise ConfigError("expected at least one spec whose retraining files to keep, got none")
    root = _cache_root(specs[0], cache)
    keep: set[Path] = set()
    for s in specs:
        keep |= referenced_retraining_files(s, cache=root, dataset_job=dataset_job)
    roots = {root / "retraining"} | {p.parent.parent for p in keep}
    removed: list[Path] = []
    for r in sorted(roots):
        removed += prune_cache(r, keep, dry_run=dry_run)
    return removed


__all__ = ["referenced_retraining_files", "prune_retraining_cache"]
