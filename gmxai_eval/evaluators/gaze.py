"""Gaze evaluators: attribution maps scored against human (or simulated) fixations.

One evaluator per metric, generated from :data:`gmxai_eval.gaze.metrics.GAZE_METRICS`, so
each has its own score direction on its card: ``gaze_nss``, ``gaze_auc_judd``,
``gaze_auc_borji``, ``gaze_sauc``, ``gaze_cc``, ``gaze_sim``, ``gaze_kl`` (lower is better),
``gaze_ig``, ``gaze_emd`` (lower is better). Category ``"gaze"``, needs ``{"fixations"}``.

Per-batch fixations: ``batch.extra["fixations"]`` is a mapping ``{sample_id: ImageGaze}``
(:class:`gmxai_eval.gaze.maps.ImageGaze`: pooled fixations ``(N, 2)``, their density
``(H, W)``, other images' fixations for the shuffled AUC and the centre-bias baseline), built
once per study with :func:`gmxai_eval.gaze.maps.image_gaze_set`. Keying by sample id (not
position) keeps it valid under :meth:`EvalBatch.subset` and any batching.

Config: the metric's options (``preset`` where benchmarks differ, ``n_splits`` ...) plus
``transform`` (``"abs"`` default, ``"relu"``, ``"none"``: how a signed map becomes a saliency
map, see :data:`~gmxai_eval.gaze.metrics.MAP_TRANSFORMS`). A map whose resolution differs from
the gaze data is resized bilinearly. Random metrics draw from a generator keyed on
``(seed, sample_id, metric)``.

Example::

    gazes = image_gaze_set(table, {s.image_id: s.image.shape[1:] for s in samples}, study.sigma_px)
    ev = create_evaluator("gaze_nss")
    res = ev(model, x, target, maps, sample_ids=ids, fixations=gazes)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gmxai_eval.errors import ShapeError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.gaze.maps import ImageGaze
from gmxai_eval.gaze.metrics import GAZE_METRICS, MAP_TRANSFORMS, GazeMetric, metric_rng
from gmxai_eval.types import EvaluatorCard


class GazeEvaluator(Evaluator):
    """Base of the generated per-metric gaze evaluators (see the module docstring)."""

    metric: GazeMetric

    def validate(self, batch: EvalBatch) -> None:
        super().validate(batch)
        MAP_TRANSFORMS.get(self.config["transform"])
        fx = batch.extra.get("fixations")
        if fx is None or not hasattr(fx, "get"):
            raise ShapeError(f"evaluator {self.name!r}: expected batch.extra['fixations'] as a mapping "
                             f"{{sample_id: ImageGaze}}, got {type(fx).__name__}")
        missing = [s for s in batch.sample_ids if not isinstance(fx.get(s), ImageGaze)]  # type: ignore[union-attr]
        if missing:
            raise ShapeError(f"evaluator {self.name!r}: expected ImageGaze for every sample id, missing "
                             f"for {missing[:5]} ({len(missing)} of {len(batch.sample_ids)})")  # type: ignore[arg-type]

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "metric": self.metric.name,
                "coordinates": "0-based image pixels, fixated pixel = (floor(y), floor(x))",
                "map_resize": "bilinear to the gaze resolution when it differs"}

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        fx = batch.extra["fixations"]
        opts = {k: v for k, v in self.config.items() if k != "transform"}
        transform = MAP_TRANSFORMS.get(self.config["transform"])
        maps = batch.maps[method].detach().to("cpu", torch.float64)
        scores = []
        for i, sid in enumerate(batch.sample_ids):  # type: ignore[arg-type]
            g: ImageGaze = fx[sid]
            m = maps[i]
            if tuple(m.shape) != tuple(g.shape):
                m = F.interpolate(m[None, None], size=tuple(g.shape), mode="bilinear", align_corners=False)[0, 0]
            smap = transform(m.numpy())
            rng = metric_rng(batch.seed, str(sid), self.metric.name) if self.metric.random else None
            scores.append(self.metric(np.asarray(smap), g, rng, **opts))
        return EvalResult(torch.tensor(scores, dtype=torch.float64))


def _make(metric: GazeMetric) -> type[GazeEvaluator]:
    card = EvaluatorCard(
        name=f"gaze_{metric.name}", category="gaze", higher_is_better=metric.higher_is_better,
        paper=metric.paper, default_config={**metric.default_config, "transform": "abs"},
        needs=frozenset({"fixations"}),
        description=f"{metric.label} of the attribution map against fixations"
                    f"{' (lower is better)' if not metric.higher_is_better else ''}")
    cls = type(f"Gaze{metric.name.title().replace('_', '')}", (GazeEvaluator,),
               {"card": card, "metric": metric, "__module__": __name__,
                "__doc__": f"{metric.label} gaze evaluator (generated from GAZE_METRICS)."})
    return register_evaluator(cls)  # type: ignore[return-value]


for _name in GAZE_METRICS.list():
    _make(GAZE_METRICS.get(_name))
