"""Gaze evaluators: attribution maps scored against human (or simulated) fixations.

One registered class per metric, each a thin wrapper over its kernel in
:mod:`gmxai_eval.functional.gaze`, with its own direction and defaults on its card:

================== ======================= =========== ==========================================
evaluator          kernel                  direction   options (defaults)
================== ======================= =========== ==========================================
``gaze_nss``       ``nss``                 higher      ``preset`` (``"fixation"`` | ``"mit"``)
``gaze_auc_judd``  ``auc_judd``            higher      ``preset`` (``"mit"`` | ``"pysaliency"``)
``gaze_auc_borji`` ``auc_borji`` (random)  higher      ``n_splits`` (100), ``step`` (0.1)
``gaze_sauc``      ``auc_shuffled``        higher      ``preset`` (``"pysaliency"`` | ``"mit"``:
                   (``"mit"``: random)                 sampled), ``n_splits``, ``step``
``gaze_cc``        ``cc``                  higher      -
``gaze_sim``       ``sim``                 higher      ``preset`` (``"mit"`` | ``"pysaliency"``)
``gaze_kl``        ``kl_div``              lower       ``preset`` (``"mit"`` | ``"pysaliency"``)
``gaze_ig``        ``information_gain``    higher      ``uniform_mix`` (0.01)
``gaze_emd``       ``emd``                 lower       ``bins`` (8)
``gaze_iou``       ``iou_regions``         higher      ``preset`` (``"duong2024"``: cut 70/255 |
                                                       ``"duong2024_110"``), ``cut`` (None)
================== ======================= =========== ==========================================

Every one also takes ``transform`` (``"abs"`` default, ``"relu"``, ``"none"``: how a signed map
becomes a saliency map, see :data:`~gmxai_eval.functional.gaze.MAP_TRANSFORMS`). Category
``"gaze"``, needs ``{"fixations"}``.

Per-batch fixations: ``batch.extra["fixations"]`` is a mapping ``{sample_id: ImageGaze}``
(:class:`gmxai_eval.data.gaze.maps.ImageGaze`: pooled fixations ``(N, 2)``, their density
``(H, W)``, other images' fixations for the shuffled AUC and the centre-bias baseline), built
once per study with :func:`gmxai_eval.data.gaze.maps.image_gaze_set`. Keying by sample id (not
position) keeps it valid under :meth:`EvalBatch.subset` and any batching. A map whose
resolution differs from the gaze data is resized bilinearly.

Besides the batch interface, :meth:`GazeEvaluator.score_map` scores one already transformed
``(H, W)`` map against one :class:`ImageGaze`: the human-ceiling and centre-bias-floor rows
(:mod:`gmxai_eval.evaluators.gaze_reference`) go through it, so a row and an evaluator can never
disagree on a definition. Random metrics draw from
``numpy_rng_for(seed, "gaze", metric, key)`` with ``key`` the sample id.

Example::

    gazes = image_gaze_set(table, {s.image_id: s.image.shape[1:] for s in samples}, study.sigma_px)
    ev = create_evaluator("gaze_nss")
    res = ev(model, x, target, maps, sample_ids=ids, fixations=gazes)
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from gmxai_eval.data.gaze.maps import ImageGaze
from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.functional import gaze as G
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import numpy_rng_for

BYLINSKII = "Bylinskii et al., What do different evaluation metrics tell us about saliency models?, TPAMI 2019"
KUEMMERER = "Kümmerer, Wallis & Bethge, Saliency benchmarking made easy, ECCV 2018"


#: degenerate maps (see :class:`gmxai_eval.types.Degenerate`)
_UNIFORM = Degenerate("map-independent", "map-independent", "a constant map is the uniform distribution")
_CHANCE = Degenerate("0.5", "0.5", "every threshold ties: chance level")


def _card(metric: str, label: str, higher_is_better: bool, paper: str, degenerate: Degenerate,
          **defaults: Any) -> EvaluatorCard:
    return EvaluatorCard(degenerate=degenerate,
        name=f"gaze_{metric}", category="gaze", higher_is_better=higher_is_better, paper=paper,
        default_config={**defaults, "transform": "abs"}, needs=frozenset({"fixations"}),
        description=f"{label} of the attribution map against fixations"
                    f"{' (lower is better)' if not higher_is_better else ''}")


class GazeEvaluator(Evaluator):
    """Base of the per-metric gaze evaluators (see the module docstring).

    Subclasses set ``card``, ``metric`` (the short name, ``"nss"``), ``label`` (the table
    column, ``"NSS"``), ``presets`` (the named variants of ``preset``, if any) and implement
    :meth:`_score` with their kernel.
    """

    metric: ClassVar[str]
    label: ClassVar[str]
    presets: ClassVar[tuple[str, ...]] = ()
    #: compares two maps (CC, SIM, KL, EMD) rather than a map with fixations
    distribution: ClassVar[bool] = False
    #: gaze metrics compare maps with fixations: no forward pass
    uses_model: ClassVar[bool] = False

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.presets and self.config["preset"] not in self.presets:
            raise ConfigError(f"evaluator {self.name!r}: expected preset in {self.presets}, "
                              f"got {self.config['preset']!r}")
        G.MAP_TRANSFORMS.get(self.config["transform"])

    @property
    def random(self) -> bool:
        """Whether this configuration draws random numbers (needs a seeded generator)."""
        return False

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        raise NotImplementedError

    def metric_rng(self, seed: int, key: str) -> np.random.Generator | None:
        """The generator of one image (``key``: its sample id), or ``None`` if not random."""
        return numpy_rng_for(seed, "gaze", self.metric, key) if self.random else None

    def score_map(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None = None) -> float:
        """Score one saliency map ``smap (H, W)`` (already transformed) against ``gaze``.

        Raises:
            ConfigError: a random metric without ``rng``.
            ShapeError: a map not at the gaze resolution (and the kernels' own checks).
        """
        if self.random and rng is None:
            raise ConfigError(f"gaze metric {self.metric!r} is random: expected a seeded rng, got None")
        s = np.asarray(smap, np.float64)
        if s.shape != tuple(gaze.shape):
            raise ShapeError(f"{self.name}: expected the map of {gaze.image_id!r} at the gaze resolution "
                             f"{tuple(gaze.shape)}, got {s.shape}")
        return self._score(s, gaze, rng)

    def validate(self, batch: EvalBatch) -> None:
        super().validate(batch)
        G.MAP_TRANSFORMS.get(self.config["transform"])
        fx = batch.extra.get("fixations")
        if fx is None or not hasattr(fx, "get"):
            raise ShapeError(f"evaluator {self.name!r}: expected batch.extra['fixations'] as a mapping "
                             f"{{sample_id: ImageGaze}}, got {type(fx).__name__}")
        missing = [s for s in batch.sample_ids if not isinstance(fx.get(s), ImageGaze)]  # type: ignore[union-attr]
        if missing:
            raise ShapeError(f"evaluator {self.name!r}: expected ImageGaze for every sample id, missing "
                             f"for {missing[:5]} ({len(missing)} of {len(batch.sample_ids)})")  # type: ignore[arg-type]

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "metric": self.metric,
                "coordinates": "0-based image pixels, fixated pixel = (floor(y), floor(x))",
                "map_resize": "bilinear to the gaze resolution when it differs"}

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        fx = batch.extra["fixations"]
        transform = G.MAP_TRANSFORMS.get(self.config["transform"])
        maps = batch.maps[method].detach().to("cpu", torch.float64)
        scores = []
        for i, sid in enumerate(batch.sample_ids):  # type: ignore[arg-type]
            g: ImageGaze = fx[sid]
            m = maps[i]
            if tuple(m.shape) != tuple(g.shape):
                m = F.interpolate(m[None, None], size=tuple(g.shape), mode="bilinear", align_corners=False)[0, 0]
            scores.append(self.score_map(np.asarray(transform(m.numpy())), g, self.metric_rng(batch.seed, str(sid))))
        return EvalResult(torch.tensor(scores, dtype=torch.float64))


@register_evaluator
class GazeNss(GazeEvaluator):
    """Normalised scanpath saliency (:func:`gmxai_eval.functional.gaze.nss`)."""

    card = _card("nss", "NSS", True, BYLINSKII, Degenerate("0", "0", "a constant map has no spread: NSS 0 (pysaliency)"), preset="fixation")
    metric, label, presets = "nss", "NSS", ("fixation", "mit")

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        return G.nss(smap, gaze.points, self.config["preset"])


@register_evaluator
class GazeAucJudd(GazeEvaluator):
    """AUC-Judd (:func:`gmxai_eval.functional.gaze.auc_judd`)."""

    card = _card("auc_judd", "AUC-Judd", True, BYLINSKII, _CHANCE, preset="mit")
    metric, label, presets = "auc_judd", "AUC-Judd", ("mit", "pysaliency")

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        return G.auc_judd(smap, gaze.points, self.config["preset"])


@register_evaluator
class GazeAucBorji(GazeEvaluator):
    """AUC-Borji, uniform random negatives (:func:`gmxai_eval.functional.gaze.auc_borji`)."""

    card = _card("auc_borji", "AUC-Borji", True, BYLINSKII, _CHANCE, n_splits=100, step=0.1)
    metric, label = "auc_borji", "AUC-Borji"

    @property
    def random(self) -> bool:
        return True

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        return G.auc_borji(smap, gaze.points, rng, self.config["n_splits"], self.config["step"])  # type: ignore[arg-type]


@register_evaluator
class GazeSauc(GazeEvaluator):
    """Shuffled AUC, other images' fixations as negatives
    (:func:`gmxai_eval.functional.gaze.auc_shuffled`)."""

    card = _card("sauc", "sAUC", True, BYLINSKII, _CHANCE, preset="pysaliency", n_splits=100, step=0.1)
    metric, label, presets = "sauc", "sAUC", ("pysaliency", "mit")

    @property
    def random(self) -> bool:
        return self.config["preset"] == "mit"  # "pysaliency" uses every other-image fixation

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        c = self.config
        return G.auc_shuffled(smap, gaze.points, gaze.other_points(), c["preset"], rng, c["n_splits"], c["step"])


@register_evaluator
class GazeCc(GazeEvaluator):
    """Pearson correlation with the fixation density (:func:`gmxai_eval.functional.gaze.cc`)."""

    card = _card("cc", "CC", True, BYLINSKII, Degenerate("0", "0", "correlation with a constant is 0"))
    metric, label, distribution = "cc", "CC", True

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        return G.cc(smap, gaze.density)


@register_evaluator
class GazeSim(GazeEvaluator):
    """Histogram intersection with the fixation density (:func:`gmxai_eval.functional.gaze.sim`)."""

    card = _card("sim", "SIM", True, BYLINSKII, _UNIFORM, preset="mit")
    metric, label, presets, distribution = "sim", "SIM", ("mit", "pysaliency"), True

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        return G.sim(smap, gaze.density, self.config["preset"])


@register_evaluator
class GazeKl(GazeEvaluator):
    """KL(density || map) (:func:`gmxai_eval.functional.gaze.kl_div`); lower is better."""

    card = _card("kl", "KL", False, BYLINSKII, _UNIFORM, preset="mit")
    metric, label, presets, distribution = "kl", "KL", ("mit", "pysaliency"), True

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        return G.kl_div(smap, gaze.density, self.config["preset"])


@register_evaluator
class GazeIg(GazeEvaluator):
    """Information gain over the centre-bias baseline, bits per fixation
    (:func:`gmxai_eval.functional.gaze.information_gain`)."""

    card = _card("ig", "IG (bits/fix)", True, KUEMMERER, _UNIFORM, uniform_mix=0.01)
    metric, label = "ig", "IG (bits/fix)"

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        return G.information_gain(smap, gaze.points, gaze.baseline, self.config["uniform_mix"])


@register_evaluator
class GazeEmd(GazeEvaluator):
    """Earth mover's distance to the fixation density in image pixels
    (:func:`gmxai_eval.functional.gaze.emd`); lower is better."""

    card = _card("emd", "EMD (px)", False, BYLINSKII, _UNIFORM, bins=8)
    metric, label, distribution = "emd", "EMD (px)", True

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        return G.emd(smap, gaze.density, self.config["bins"])


DUONG = "Duong et al., PLoS Genetics 2024 (clinicians' gaze vs model saliency); IoU as in cheXlocalize"


@register_evaluator
class GazeIou(GazeEvaluator):
    """IoU of the thresholded map and the thresholded fixation density
    (:func:`gmxai_eval.functional.gaze.iou_regions`), Duong et al.'s overlap measure. ``cut``
    (a fraction of the min-max scaled maps) overrides the preset's."""

    card = _card("iou", "IoU", True, DUONG,
                 Degenerate("0", "0", "a constant map scales to zeros: the empty region, IoU 0"),
                 preset="duong2024", cut=None)
    metric, label, presets, distribution = "iou", "IoU", tuple(G.IOU_PRESETS), True

    def _score(self, smap: np.ndarray, gaze: ImageGaze, rng: np.random.Generator | None) -> float:
        return G.iou_regions(smap, gaze.density, self.config["preset"], self.config["cut"])
