"""Localisation evaluators: how much of a map falls on the ground-truth evidence.

Registered: ``relevance_mass_accuracy``, ``relevance_rank_accuracy``, ``pointing_game``,
``energy_pointing_game``, ``localisation_auc``, ``top_k_intersection`` (kernels and conventions
in :mod:`gmxai_eval.functional.localisation`). All are higher-is-better and need masks.

Common config:

* ``mask``: ``"evidence"`` (default: ``batch.masks``, where the class evidence was planted) or
  the name of one facial region in ``batch.region_names`` to score against.
* ``on_empty``: ``"raise"`` (default: an empty scoring mask raises :class:`ShapeError` before
  anything is computed) or ``"nan"`` (that sample's score is NaN).
* ``per_region``: when ``batch.region_masks`` is given, ``extras["region/<name>"] (B,)`` holds the
  same metric against every facial region (NaN where a region is empty in an image).
* ``relevance``: ``"positive"`` / ``"abs"`` / ``"signed"`` part of the map that is scored.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.functional import localisation as L
from gmxai_eval.types import Degenerate, EvaluatorCard

_COMMON = {"mask": "evidence", "on_empty": "raise", "per_region": True}


class _Localisation(Evaluator):
    kernel: ClassVar[Callable[..., torch.Tensor]]
    uses_model = False  # scores the maps alone

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if c["on_empty"] not in ("raise", "nan"):
            raise ConfigError(f"expected on_empty 'raise' or 'nan', got {c['on_empty']!r}")
        if c["relevance"] not in L.RELEVANCE:
            raise ConfigError(f"expected relevance in {sorted(L.RELEVANCE)}, got {c['relevance']!r}")

    def kernel_options(self, n_pixels: int) -> dict[str, Any]:
        return {"relevance": self.config["relevance"]}

    def scoring_mask(self, batch: EvalBatch) -> torch.Tensor:
        """``(B, H, W)`` bool mask the score is computed against."""
        name = self.config["mask"]
        if name == "evidence":
            if batch.masks is None:
                raise ShapeError(f"evaluator {self.name!r}: expected batch.masks for mask='evidence', got none "
                                 f"(or pass mask=<region name> to score against a facial region)")
            return batch.masks
        if batch.region_masks is None or name not in batch.region_names:
            raise ConfigError(f"evaluator {self.name!r}: expected mask 'evidence' or a region in "
                              f"{list(batch.region_names)}, got {name!r}")
        return batch.region_masks[:, list(batch.region_names).index(name)]

    def validate(self, batch: EvalBatch) -> None:
        super().validate(batch)
        b, _, h, w = batch.x.shape
        if batch.region_masks is not None:
            rm = batch.region_masks
            if rm.ndim != 4 or tuple(rm.shape[:1] + rm.shape[2:]) != (b, h, w) or rm.dtype != torch.bool \
                    or rm.shape[1] != len(batch.region_names):
                raise ShapeError(f"evaluator {self.name!r}: expected region_masks bool ({b}, "
                                 f"{len(batch.region_names)}, {h}, {w}) matching region_names, got "
                                 f"{rm.dtype} {tuple(rm.shape)}")
        s = self.scoring_mask(batch)
        empty = ~s.reshape(b, -1).any(1)
        if self.config["on_empty"] == "raise" and bool(empty.any()):
            ids = [batch.sample_ids[i] for i in torch.nonzero(empty).flatten().tolist()]  # type: ignore[index]
            raise ShapeError(f"evaluator {self.name!r}: expected a non-empty ground-truth mask for every sample, "
                             f"got empty masks for {ids[:8]} (pass on_empty='nan' to score them NaN)")

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "empty_mask": "error" if self.config["on_empty"] == "raise" else "NaN"}

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        maps = batch.maps[method]
        opts = self.kernel_options(maps.shape[1] * maps.shape[2])
        kern = type(self).kernel
        score = kern(maps, self.scoring_mask(batch).to(maps.device), **opts)
        extras: dict[str, torch.Tensor] = {}
        if self.config["per_region"] and batch.region_masks is not None:
            rm = batch.region_masks.to(maps.device)
            for r, name in enumerate(batch.region_names):
                extras[f"region/{name}"] = kern(maps, rm[:, r], **opts)
        return EvalResult(score, extras=extras)


def _card(name: str, paper: str, description: str, degenerate: Degenerate, **config: Any) -> EvaluatorCard:
    """A localisation card: higher is better, needs masks, config :data:`_COMMON` plus ``config``."""
    return EvaluatorCard(name=name, category="localisation", higher_is_better=True, paper=paper,
                         needs={"masks"}, default_config={**_COMMON, **config}, description=description,
                         degenerate=degenerate)


#: degenerate maps (see :class:`gmxai_eval.types.Degenerate`)
_POSITIVE_NAN = Degenerate("nan", "mask fraction", "positive relevance: 0/0 for a zero or negative map", negative="nan")
_BY_INDEX = Degenerate("map-independent", "map-independent", "ties broken by flat index")
_ARRAS = ("Arras, Osman, Samek. CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural "
          "network explanations. Information Fusion 2022")


@register_evaluator
class RelevanceMassAccuracy(_Localisation):
    kernel = staticmethod(L.relevance_mass_accuracy)
    card = _card("relevance_mass_accuracy", _ARRAS, "share of the (positive) relevance inside the mask",
                 _POSITIVE_NAN, relevance="positive")


@register_evaluator
class RelevanceRankAccuracy(_Localisation):
    kernel = staticmethod(L.relevance_rank_accuracy)
    card = _card("relevance_rank_accuracy", _ARRAS, "share of the |mask| top-ranked pixels inside the mask",
                 _BY_INDEX, relevance="signed")


@register_evaluator
class PointingGame(_Localisation):
    kernel = staticmethod(L.pointing_game)
    card = _card("pointing_game", "Zhang, Bargal, Lin, Brandt, Shen, Sclaroff. Top-down neural attention by "
                                  "excitation backprop. IJCV 2018",
                 "is the arg-max inside the mask (ties: share of arg-max pixels inside)",
                 Degenerate("mask fraction", "mask fraction", "ties='fraction': the chance level"),
                 relevance="signed", ties="fraction")

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config["ties"] not in L.POINTING_TIES:
            raise ConfigError(f"expected ties in {L.POINTING_TIES}, got {self.config['ties']!r}")

    def kernel_options(self, n_pixels: int) -> dict[str, Any]:
        return {**super().kernel_options(n_pixels), "ties": self.config["ties"]}


@register_evaluator
class EnergyPointingGame(_Localisation):
    kernel = staticmethod(L.energy_pointing_game)
    card = _card("energy_pointing_game", "Wang, Wang, Du, Yang, Zhang, Ding, Mardziel, Hu. Score-CAM. CVPR-W 2020",
                 "energy of the (positive) map inside the mask over its total energy",
                 _POSITIVE_NAN, relevance="positive")


@register_evaluator
class LocalisationAUC(_Localisation):
    kernel = staticmethod(L.mask_roc_auc)
    card = _card("localisation_auc", "Fawcett. An introduction to ROC analysis. Pattern Recognition Letters 2006",
                 "ROC-AUC of the map as a detector of mask pixels (ties count 1/2)",
                 Degenerate("0.5", "0.5", "every threshold ties"), relevance="signed")


@register_evaluator
class TopKIntersection(_Localisation):
    kernel = staticmethod(L.top_k_intersection)
    card = _card("top_k_intersection",
                 "Theiner, Mueller-Budack, Ewerth. Interpretable semantic photo geolocation. WACV 2022",
                 "share of the top-k pixels inside the mask (k: count, or a fraction of H*W)",
                 _BY_INDEX, relevance="signed", k=0.1, concept_influence=False)

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        k = self.config["k"]
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k <= 0 or (isinstance(k, float) and k > 1):
            raise ConfigError(f"expected k as a pixel count (int >= 1) or a fraction (float in (0, 1]), got {k!r}")

    def kernel_options(self, n_pixels: int) -> dict[str, Any]:
        k = self.config["k"]
        k_px = max(1, int(k * n_pixels + 1e-9)) if isinstance(k, float) else int(k)
        return {**super().kernel_options(n_pixels), "k": k_px, "concept_influence": bool(self.config["concept_influence"])}
