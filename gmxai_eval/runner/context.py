"""What the stages of a run share: :class:`RunContext`, the stage timer and progress bars.

A stage is a function ``stage(ctx, ...) -> output``: it reads the fields of the context it
documents and returns its output; :func:`gmxai_eval.runner.run.run_benchmark` stores each output
on the context for the next stage. Nothing else is shared between stages.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from gmxai_eval.runner.spec import Spec


class StageTimer:
    """Accumulates wall time per named stage (``with timer("attribute"): ...``).

    ``progress=None`` (auto) also prints a line on stdout when a stage starts and ends if stderr
    is not a terminal (CI logs, pipes), so a long run is never silent; ``False`` never prints."""

    def __init__(self, progress: bool | None = False, on_start: Callable[[str], Any] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.progress = progress
        self.on_start = on_start  # called with the stage's name before it starts (the thread policy)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        from gmxai_eval.progress import announce

        announce(f"stage {stage}: started", self.progress)
        if self.on_start is not None:
            self.on_start(stage)
        t0 = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            dt = time.perf_counter() - t0
            self.seconds[stage] = self.seconds.get(stage, 0.0) + dt
            if ok:
                announce(f"stage {stage}: done in {dt:.1f} s", self.progress)

    def summary(self) -> str:
        total = sum(self.seconds.values()) or 1.0
        lines = ["time per stage:"]
        for k, v in self.seconds.items():
            lines.append(f"  {k:<12} {v:8.2f} s  {100 * v / total:5.1f} %")
        return "\n".join(lines)


def progress_bar(total: int, desc: str, enabled: bool | None) -> Any:
    """Progress on stderr (:func:`gmxai_eval.progress.progress`): a tqdm bar on a terminal (or
    when ``enabled`` is True), plain lines with done/total and ETA when stderr is not a terminal
    and ``enabled`` is None, nothing when False."""
    from gmxai_eval.progress import progress

    return progress(total, desc, enabled)


@dataclass
class RunContext:
    """Everything the stages of one run share (filled stage by stage).

    Set before the first stage: ``spec``, ``timer``, ``progress``, ``out_root``, ``cache_root``,
    ``run_id``, ``counts``. The ``load`` stage sets the model, data and selection fields;
    ``attribute`` sets ``maps``; ``evaluate`` sets ``table``; ``reliability`` and ``sections``
    set their results.

    Attributes:
        spec: the spec that runs.
        device: ``torch.device`` of the model and of every batch.
        model: eval-mode model on ``device``; ``model_key``: its content hash.
        dataset: the dataset object (``None`` when samples were given without one).
        samples: the selected samples, in run order.
        images: ``(N, C, H, W)`` float32 cpu; ``labels``: ``(N,)`` int64 cpu.
        image_ids / subjects: ``N`` strings.
        target: ``(N,)`` int64 cpu, the explained class of each image.
        image_keys: ``N`` cache keys of (image, id, target).
        batch_size / batches: images per unit of work and the index tensors of the batches.
        channel_mean: ``(C,)`` mean of the selected images (for a ``dataset_mean`` baseline).
        explainers / evaluators: ``{label: object}`` in spec order; ``method_cards`` /
            ``evaluator_cards``: their cards.
        executor: where units of work run.
        maps: ``{method label: (N, H, W)}`` float32 cpu attributions (from the map cache).
        masks: ``(N, H, W)`` bool evidence masks or ``None``; ``region_masks``:
            ``(N, R, H, W)`` bool or ``None`` with ``region_names``.
        batch_extra: added to every ``EvalBatch.extra``; ``extra_key``: its part of unit keys.
        gaze: the :class:`~gmxai_eval.data.gaze.load.GazeData` of the spec's ``[gaze]`` table
            (``None`` without one or with the caller's ``batch_extra``).
        counterfactual: what ``dataset.counterfactual_renderer()`` returned (or ``None``);
            its ``cache_key`` string is part of the unit keys.
        cache_root: map cache and unit store folder.
        seeds: the run seeds (``spec.seeds``).
        timer / progress: the stage timer and how progress shows (None: bars on a terminal,
            lines otherwise; True: bars; False: nothing).
        counts: ``attributed`` {method: images explained now}, ``units_run``, ``units_reused``.
        seconds_per_method / seconds_per_evaluator: compute time spent in this run.
        table: the per-sample DataFrame; ``conventions`` / ``curve_labels`` per evaluator.
        reliability / sections: the results of those stages (JSON-able).
        n_run: the run's images, the first ``n_run`` of the selection (the others, up to
            ``[run] truth_images``, are scored by the truth evaluators only).
        power: the ``[run] power`` plan that chose ``n_images`` (:func:`gmxai_eval.runner.power.plan_n`),
            or ``None``; written to ``results.json`` under ``power``.
        threads: the :class:`~gmxai_eval.threads.ThreadPolicy` that sets torch's intra-op threads
            at stage starts and between units (``None``: the process's count is left alone).
    """

    spec: Spec
    timer: StageTimer
    progress: bool | None
    out_root: Path
    cache_root: Path
    run_id: str
    counts: dict[str, Any]
    device: torch.device = torch.device("cpu")
    model: nn.Module | None = None
    model_key: str = ""
    dataset: Any = None
    samples: Sequence[Any] = ()
    images: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    image_ids: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    target: torch.Tensor | None = None
    image_keys: list[str] = field(default_factory=list)
    batch_size: int = 1
    batches: list[torch.Tensor] = field(default_factory=list)
    channel_mean: torch.Tensor | None = None
    explainers: dict[str, Any] = field(default_factory=dict)
    evaluators: dict[str, Any] = field(default_factory=dict)
    method_cards: dict[str, Any] = field(default_factory=dict)
    evaluator_cards: dict[str, Any] = field(default_factory=dict)
    executor: Any = None
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    masks: torch.Tensor | None = None
    region_masks: torch.Tensor | None = None
    region_names: tuple[str, ...] = ()
    batch_extra: dict[str, Any] = field(default_factory=dict)
    extra_key: str = ""
    gaze: Any = None
    counterfactual: Any = None
    seconds_per_method: dict[str, float] = field(default_factory=dict)
    seconds_per_evaluator: dict[str, float] = field(default_factory=dict)
    table: Any = None
    conventions: dict[str, Any] = field(default_factory=dict)
    curve_labels: dict[str, list[str]] = field(default_factory=dict)
    reliability: dict[str, Any] | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    dataset_job: Callable[..., Any] | None = None
    power: dict[str, Any] | None = None
    n_run: int = 0
    threads: Any = None

    def apply_threads(self, at: str) -> None:
        """Let the thread policy re-decide (cheap: at most every few seconds it reads the load)."""
        if self.threads is not None:
            self.threads.apply(at)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.spec.seeds)

    @property
    def class_names(self) -> list[str]:
        """The dataset's class names (``[]`` when it has none)."""
        return [str(c) for c in (getattr(self.dataset, "classes", None) or [])]

    def class_name(self, k: int) -> str:
        names = self.class_names
        return names[k] if 0 <= k < len(names) else str(k)


@dataclass
class ModelsContext:
    """What the sections that compare the models of a ``[[models]]`` run read (registered with
    ``axis = "models"``, see :mod:`gmxai_eval.runner.stages.sections`): the run's results only.

    Attributes:
        spec: the several-model spec.
        results: ``{label: results document}`` of every model (its ``models/<label>/results.json``).
        tables: ``{label: per-sample DataFrame}`` (``samples.csv`` rows).
        trained: ``{label: training result}`` of the ``source = "train"`` models (top-1,
            ``classes``, ``train_sizes``, ``train_patients``, ``seconds``, ``cached``).
        maps: ``{label: RunMapStore}``: each model's cached maps
            (:meth:`~gmxai_eval.runner.map_store.RunMapStore.maps`).
        sample_classes: ``{sample id: class name}`` of the run's images (the same for every model).
    """

    spec: Spec
    results: dict[str, Any]
    tables: dict[str, Any]
    trained: dict[str, Any]
    maps: dict[str, Any]
    sample_classes: dict[str, str]


def bind_masks(explainers: Mapping[str, Any], masks: torch.Tensor | None,
               sample_ids: Sequence[str] | None = None, counterfactual: Any = None) -> dict[str, Any]:
    """``{label: explainer}`` with every explainer that declares ``needs_masks`` (the oracle)
    replaced by ``explainer.with_masks(masks)`` (``masks (B, H, W)`` bool), and every one that
    declares ``needs_samples`` (the counterfactual oracle) by
    ``explainer.with_samples(sample_ids, counterfactual)`` (the ``B`` sample ids of the rows and
    the dataset's counterfactual renderer).

    Raises:
        ConfigError: an explainer needs masks and ``masks`` is ``None``, or needs samples and
            ``sample_ids`` or ``counterfactual`` is ``None``.
    """
    from gmxai_eval.errors import ConfigError

    out = {}
    for label, ex in explainers.items():
        if getattr(ex, "needs_masks", False):
            if masks is None:
                raise ConfigError(f"method {label!r} needs evidence masks (needs_masks = True), got a "
                                  "dataset without evidence masks; remove it from the spec or use a "
                                  "dataset with evidence")
            ex = ex.with_masks(masks)
        if getattr(ex, "needs_samples", False):
            if sample_ids is None or counterfactual is None:
                raise ConfigError(f"method {label!r} needs sample ids and a counterfactual renderer "
                                  f"(needs_samples = True), got {'no sample ids' if sample_ids is None else 'a dataset without counterfactual_renderer()'}; "
                                  "remove it from the spec or use a dataset with counterfactuals")
            ex = ex.with_samples(list(sample_ids), counterfactual)
        out[label] = ex
    return out
