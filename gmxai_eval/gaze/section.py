"""TRANSITIONAL: the gaze comparison of explainers, computing each method's maps once.

The gaze section's numbers come from
:func:`gmxai_eval.evaluators.gaze_reference.gaze_section_data` (given maps, no model) and its
HTML from :func:`gmxai_eval.report.gaze.render_gaze_section` (given that data). This module
only closes the gap until the runner computes the maps in its attribute stage and calls
``gaze_section_data`` in its reference-rows stage: :func:`run_gaze` computes every method's
maps once (:func:`compute_maps`) and hands them over; :func:`gaze_section` (the ``gaze``
command, the API) and :func:`gaze_report_section` (the ``"gaze"`` entry of
``gmxai_eval.report.html.SECTIONS``) call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from gmxai_eval.data.base import Sample
from gmxai_eval.data.gaze.fixations import FixationTable
from gmxai_eval.data.gaze.maps import ImageGaze, image_gaze_set
from gmxai_eval.data.gaze.study import Study
from gmxai_eval.errors import ConfigError, DataError, ShapeError
from gmxai_eval.models.base import require_eval_mode
from gmxai_eval.evaluators.gaze_reference import DEFAULT_METRICS, MetricConfig, gaze_section_data
from gmxai_eval.report.gaze import gaze_aoi, gaze_per_image, gaze_table


@dataclass(frozen=True)
class GazeReport:
    """Everything :func:`run_gaze` computed.

    Attributes:
        table: the summary (see :func:`gmxai_eval.evaluators.gaze_reference.summarise`).
        per_image: ``{row name: per-image scores}`` (methods, ceiling, floor).
        gazes: the per-image gaze data used.
        study: the study description; ``fixations``: the table used.
        aoi: areas of interest (when the samples have region masks): rows ``"gaze (dwell)"``
            and each method, columns region names + ``"outside"``; the gaze row is the mean over
            images of the share of dwell time per region, a method row the mean share of its
            positive (transformed) attribution mass. ``None`` without region masks.
    """

    table: pd.DataFrame
    per_image: Mapping[str, pd.DataFrame]
    gazes: Mapping[str, ImageGaze]
    study: Study
    fixations: FixationTable
    aoi: pd.DataFrame | None = None
    data: Mapping[str, Any] | None = None


def compute_maps(model: nn.Module, samples: Sequence[Sample], explainer: Callable[..., torch.Tensor], *,
                 target: str = "predicted", batch_size: int = 16) -> dict[str, np.ndarray]:
    """``{image_id: (H, W) float64}`` raw (signed) maps of ``explainer`` for ``samples``.

    Args:
        target: ``"predicted"`` (the model's top class) or ``"label"`` (``Sample.label``).

    Explainers with ``needs_masks = True`` (the oracle control) get ``masks=`` the samples'
    evidence masks.
    """
    if target not in ("predicted", "label"):
        raise ConfigError(f"expected target 'predicted' or 'label', got {target!r}")
    require_eval_mode(model, owner="gaze")
    out: dict[str, np.ndarray] = {}
    device = next(iter(model.parameters()), torch.empty(0)).device
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        x = torch.stack([s.image for s in chunk]).to(device)
        if target == "label":
            t = torch.tensor([s.label for s in chunk], dtype=torch.long, device=device)
        else:
            with torch.no_grad():
                t = model(x).argmax(1)
        if getattr(explainer, "needs_masks", False):  # e.g. the oracle control: the evidence masks
            if any(s.evidence is None for s in chunk):
                raise ShapeError("an explainer needs evidence masks, but some samples have no evidence")
            ev = torch.stack([s.evidence for s in chunk]).to(device)  # type: ignore[misc]
            maps_t = explainer(model, x, t, masks=ev)
        else:
            maps_t = explainer(model, x, t)
        maps = maps_t.detach().to("cpu", torch.float64).numpy()
        out.update({s.image_id: maps[i] for i, s in enumerate(chunk)})
    return out


def run_gaze(model: nn.Module, samples: Sequence[Sample], explainers: Mapping[str, Callable[..., torch.Tensor]], *,
             fixations: FixationTable | None = None, study: Study | None = None, seed: int = 0,
             metrics: Sequence[str] = DEFAULT_METRICS, metric_config: MetricConfig | None = None,
             transform: str = "abs", target: str = "predicted", batch_size: int = 16,
             duration_weighted: bool = False, n_boot: int = 1000, n_observers: int = 6) -> GazeReport:
    """Score every explainer's maps against fixations, with ceiling and floor rows.

    Args:
        model: eval-mode model (pixel space -> logits); a module in training mode is refused
            (:class:`~gmxai_eval.errors.ModelStateError` naming it).
        samples: the images (``Sample``); simulated gaze also needs ``landmarks`` / ``evidence``.
        explainers: ``{name: Explainer}`` (any callable ``(model, x, target) -> (B, H, W)``).
        fixations, study: a validated fixation table and its study; both ``None`` simulates
            ``n_observers`` clinicians with ``seed`` (labelled simulated everywhere).
        metrics, metric_config: ``gaze_*`` evaluator names without the prefix and
            ``{metric: {option: value}}``.
        transform: ``abs`` / ``relu`` / ``none`` applied to every map before scoring.
        target: explain the ``"predicted"`` class or the ``"label"``.
    """
    if (fixations is None) != (study is None):
        raise ConfigError("expected both fixations and study, or neither (to simulate gaze)")
    require_eval_mode(model, owner="gaze")
    if fixations is None:
        from gmxai_eval.data.gaze.simulate import simulate_study

        fixations, study = simulate_study(samples, n_observers, seed=seed)
    if not isinstance(study, Study):
        raise ConfigError(f"expected study as a Study, got {type(study).__name__}")
    shapes = {s.image_id: (int(s.image.shape[-2]), int(s.image.shape[-1])) for s in samples}
    if study.image_size is not None:
        other = sorted({v for v in shapes.values() if v != tuple(study.image_size)})
        if other:
            raise DataError(f"expected the images at the study's image_size {tuple(study.image_size)} "
                            f"(fixation coordinates are image pixels), got images of size {other}; "
                            "rescale the coordinates or load the images at that size", column="image_size")
    gazes = image_gaze_set(fixations, shapes, study.sigma_px, duration_weighted=duration_weighted)
    if not gazes:
        raise ShapeError(f"expected fixations on at least one of the {len(samples)} images, got none "
                         f"(fixation image ids e.g. {fixations.image_ids[:3]}, sample ids e.g. "
                         f"{[s.image_id for s in samples[:3]]})")
    scored = [s for s in samples if s.image_id in gazes]
    ids = [s.image_id for s in scored]
    # every method's maps, computed once
    maps = {name: np.stack([m[i] for i in ids]) for name, m in
            ((name, compute_maps(model, scored, ex, target=target, batch_size=batch_size))
             for name, ex in explainers.items())}
    with_regions = all(x.region_masks is not None for x in scored)
    masks = torch.stack([x.region_masks for x in scored]) if with_regions else None  # type: ignore[misc]
    data = gaze_section_data(maps, ids, gazes, study, masks, scored[0].region_names if with_regions else (),
                             metrics=metrics, metric_config=metric_config, transform=transform, seed=seed,
                             n_boot=n_boot, duration_weighted=duration_weighted,
                             fixations_summary=fixations.summary())
    return GazeReport(gaze_table(data), gaze_per_image(data), gazes, study, fixations, gaze_aoi(data), data)


def gaze_section(model: nn.Module, samples: Sequence[Sample], explainers: Mapping[str, Callable[..., torch.Tensor]],
                 study: Study | None = None, fixations: FixationTable | None = None, seed: int = 0,
                 **options: Any) -> pd.DataFrame:
    """The gaze table for a benchmark run (simulated clinicians when no study is given).

    Returns:
        rows: each method, ``"human ceiling (LOO)"``, ``"centre bias floor"``; columns per metric
        ``m``, ``m_lo``, ``m_hi``, ``m_frac_ceiling``, plus ``n_images`` and ``simulated``;
        ``attrs["caption"]`` says "SIMULATED" when the gaze is simulated. ``options`` are
        those of :func:`run_gaze`.
    """
    return run_gaze(model, samples, explainers, fixations=fixations, study=study, seed=seed, **options).table
