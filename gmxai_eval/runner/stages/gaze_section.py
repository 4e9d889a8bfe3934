"""The ``gaze`` section's computation: the run's cached maps against clinician gaze, with the
human ceiling (leave one observer out) and the centre-bias floor.

The gaze is the spec's ``[gaze]`` table (the same fixations the ``gaze_*`` evaluators score
against: a fixation file with its study, or simulated clinicians) or, without one, 6 simulated
clinicians on the images with landmarks. The metrics, their options and the map transform are
those of the run's ``gaze_*`` evaluators (without any: the default metrics on ``abs`` maps);
the intervals use ``[gaze] n_boot`` bootstrap resamples (default 1000).
"""

from __future__ import annotations

from typing import Any

import torch

import gmxai_eval.data.gaze.simulate as simulate
import gmxai_eval.evaluators.gaze_reference as gaze_reference
from gmxai_eval.data.gaze.maps import image_gaze_set
from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.runner.context import RunContext
from gmxai_eval.runner.stages.sections import SECTION_DATA


def gaze_metrics(ctx: RunContext) -> tuple[tuple[str, ...], dict[str, dict[str, Any]], str]:
    """``(metrics, {metric: options}, transform)`` of the run's ``gaze_*`` evaluators, in spec
    order (none: the default metrics, no options, ``"abs"``). Raises ``ConfigError`` when they
    transform the maps differently (the section scores one transform) or repeat a metric."""
    entries = [e for e in ctx.spec.evaluators if e.name.startswith("gaze_")]
    if not entries:
        return tuple(gaze_reference.DEFAULT_METRICS), {}, "abs"
    metrics = tuple(e.name[len("gaze_"):] for e in entries)
    if len(set(metrics)) != len(metrics):
        raise ConfigError(f"{ctx.spec.source}: the gaze section scores each metric once; expected each gaze_* "
                          f"evaluator once, got {[e.label for e in entries]}")
    transforms = {e.label: dict(ctx.evaluators[e.label].config).get("transform", "abs") for e in entries}
    if len(set(transforms.values())) > 1:
        raise ConfigError(f"{ctx.spec.source}: the gaze section scores one map transform; expected one transform "
                          f"for every gaze_* evaluator, got {transforms}")
    options = {m: {k: v for k, v in dict(e.config).items() if k != "transform"} for m, e in zip(metrics, entries)}
    return metrics, {m: o for m, o in options.items() if o}, next(iter(transforms.values()))


@SECTION_DATA.register(name="gaze")
def gaze_section_data(ctx: RunContext) -> dict[str, Any]:
    """The ``gaze`` section (see the module docstring and
    :func:`gmxai_eval.evaluators.gaze_reference.gaze_section_data`)."""
    seed = ctx.seeds[0]
    gz = dict(ctx.spec.gaze)
    if ctx.gaze is not None:  # the [gaze] table's fixations, loaded once by the load stage
        fixations, study, gazes = ctx.gaze.fixations, ctx.gaze.study, ctx.gaze.gazes
        keep = [i for i in range(ctx.n_run) if ctx.image_ids[i] in gazes]
    else:
        keep = [i for i, s in enumerate(ctx.samples) if getattr(s, "landmarks", None) is not None]
        if not keep:
            raise ShapeError("the gaze section simulates gaze from landmarks: expected samples with "
                             "landmarks (the synthetic faces have them), got none")
        samples = [ctx.samples[i] for i in keep]
        fixations, study = simulate.simulate_study(samples, 6, seed=seed)
        gazes = image_gaze_set(fixations, {s.image_id: tuple(s.image.shape[-2:]) for s in samples}, study.sigma_px)
    metrics, options, transform = gaze_metrics(ctx)
    ix = torch.tensor(keep, dtype=torch.long)
    regions = None if ctx.region_masks is None else ctx.region_masks[ix]
    return gaze_reference.gaze_section_data(
        {lab: m[ix] for lab, m in ctx.maps.items()}, [ctx.image_ids[i] for i in keep], gazes, study, regions,
        ctx.region_names if regions is not None else (), metrics=metrics, metric_config=options, transform=transform,
        seed=seed, n_boot=int(gz.get("n_boot", 1000)), duration_weighted=bool(gz.get("duration_weighted", False)),
        fixations_summary=fixations.summary())
