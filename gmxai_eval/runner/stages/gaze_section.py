"""The ``gaze`` section's computation: the run's cached maps against simulated clinician gaze."""

from __future__ import annotations

from typing import Any

import torch

import gmxai_eval.data.gaze.simulate as simulate
import gmxai_eval.evaluators.gaze_reference as gaze_reference
from gmxai_eval.data.gaze.maps import image_gaze_set
from gmxai_eval.errors import ShapeError
from gmxai_eval.runner.context import RunContext
from gmxai_eval.runner.stages.sections import SECTION_DATA


@SECTION_DATA.register(name="gaze")
def gaze_section_data(ctx: RunContext) -> dict[str, Any]:
    """The ``gaze`` section: the run's cached maps (``abs``) against simulated clinician gaze
    on the images with landmarks, with the human ceiling (leave one observer out) and the
    centre-bias floor (6 simulated observers, the default metrics, 1000 bootstrap resamples);
    see :func:`gmxai_eval.evaluators.gaze_reference.gaze_section_data`."""
    keep = [i for i, s in enumerate(ctx.samples) if getattr(s, "landmarks", None) is not None]
    if not keep:
        raise ShapeError("the gaze section simulates gaze from landmarks: expected samples with "
                         "landmarks (the synthetic faces have them), got none")
    seed, samples = ctx.seeds[0], [ctx.samples[i] for i in keep]
    fixations, study = simulate.simulate_study(samples, 6, seed=seed)
    gazes = image_gaze_set(fixations, {s.image_id: tuple(s.image.shape[-2:]) for s in samples}, study.sigma_px)
    ix = torch.tensor(keep, dtype=torch.long)
    regions = None if ctx.region_masks is None else ctx.region_masks[ix]
    return gaze_reference.gaze_section_data({lab: m[ix] for lab, m in ctx.maps.items()},
                                            [ctx.image_ids[i] for i in keep], gazes, study, regions,
                                            ctx.region_names if regions is not None else (), seed=seed,
                                            fixations_summary=fixations.summary())
