"""Stage ``sections``: the data of the report sections a spec asks for (``[report] sections``).

A section is two registered functions with the same name: a *computation* here,
``SECTION_DATA.register(fn, name=...)`` with ``fn(ctx: RunContext) -> JSON-able data`` (it
reads the run's cached ``maps``; it never recomputes them), and a *renderer* in
:data:`gmxai_eval.report.html.SECTIONS` that turns ``results["sections"][name]`` into HTML.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import torch

from gmxai_eval.errors import ShapeError
from gmxai_eval.registry import Registry
from gmxai_eval.runner.context import RunContext

#: Section computations: ``fn(ctx: RunContext) -> JSON-able data`` (stored in
#: ``results["sections"][name]``).
SECTION_DATA: Registry = Registry("report section", entry_point_group="gmxai_eval.section_data")


def check_sections(names: Sequence[str]) -> None:
    """Every name has a computation and a renderer (raises ``UnknownNameError`` otherwise)."""
    from gmxai_eval.report.html import SECTIONS

    for name in names:
        SECTION_DATA.get(name)
        SECTIONS.get(name)


def sections(ctx: RunContext) -> dict[str, Any]:
    """``{name: data}`` for the spec's sections, in spec order (JSON round-tripped)."""
    out = {}
    for name in ctx.spec.sections:
        fn: Callable[[RunContext], Any] = SECTION_DATA.get(name)
        out[name] = json.loads(json.dumps(fn(ctx), default=str))
    return out


def frame_data(title: str, df: Any) -> dict[str, Any]:
    """A DataFrame as a table section (rendered by ``report.html.table_section``): ``title``,
    ``caption`` (``df.attrs["caption"]``), ``columns`` (index name first) and ``rows``."""
    flat = df.reset_index()
    rows = [[_plain(v) for v in r] for r in flat.itertuples(index=False, name=None)]
    return {"title": str(title), "caption": df.attrs.get("caption"), "columns": [str(c) for c in flat.columns],
            "rows": rows}


def _plain(v: Any) -> Any:
    """A cell as a JSON value: numpy scalars as Python numbers, NaN as ``None``."""
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and v != v else v


def gaze_section_data(ctx: RunContext) -> dict[str, Any]:
    """The ``gaze`` section: the run's cached maps (``abs``) against simulated clinician gaze
    on the images with landmarks, with the human ceiling (leave one observer out) and the
    centre-bias floor (6 simulated observers, the default metrics, 1000 bootstrap resamples);
    see :func:`gmxai_eval.evaluators.gaze_reference.gaze_section_data`."""
    from gmxai_eval.data.gaze.maps import image_gaze_set
    from gmxai_eval.data.gaze.simulate import simulate_study
    from gmxai_eval.evaluators.gaze_reference import gaze_section_data as compute

    keep = [i for i, s in enumerate(ctx.samples) if getattr(s, "landmarks", None) is not None]
    if not keep:
        raise ShapeError("the gaze section simulates gaze from landmarks: expected samples with "
                         "landmarks (the synthetic faces have them), got none")
    seed, samples = ctx.seeds[0], [ctx.samples[i] for i in keep]
    fixations, study = simulate_study(samples, 6, seed=seed)
    gazes = image_gaze_set(fixations, {s.image_id: tuple(s.image.shape[-2:]) for s in samples}, study.sigma_px)
    ix = torch.tensor(keep, dtype=torch.long)
    regions = None if ctx.region_masks is None else ctx.region_masks[ix]
    return compute({lab: m[ix] for lab, m in ctx.maps.items()}, [ctx.image_ids[i] for i in keep], gazes, study,
                   regions, ctx.region_names if regions is not None else (), seed=seed,
                   fixations_summary=fixations.summary())


SECTION_DATA.register(gaze_section_data, name="gaze")
import gmxai_eval.runner.stages.sign_section  # noqa: E402,F401  (registers the sign_variants section)
