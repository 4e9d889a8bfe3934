"""Frozen cards (metadata) for registered objects and small shared records."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

MethodFamily = Literal["gradient", "path", "propagation", "perturbation", "cam", "control", "user"]
EvaluatorCategory = Literal[
    "randomisation", "perturbation", "retraining", "agreement", "localisation",
    "robustness", "complexity", "gaze", "counterfactual",
]


def _freeze(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class MethodCard:
    """What an attribution method is.

    Attributes:
        name: registry name (``"integrated_gradients"``).
        family: method family, used to group rows in reports.
        signed: whether raw maps carry a meaningful sign.
        needs_layer: CAM-style methods that need a layer (default: the model's ``cam_layer``).
        paper: citation (authors, venue, year).
        default_config: every configurable keyword with its default; unknown keywords raise.
        control: a control (random, edges, centre bias, oracle) rather than an explanation.
        description: one line.
        reference: non-empty for a ground-truth reference (a leaderboard reference row, not a
            ranked method): ``"evidence"`` (the evidence mask, ``oracle``) or
            ``"counterfactual"`` (the interventional truth, ``counterfactual_oracle``).
    """

    name: str
    family: MethodFamily
    signed: bool
    paper: str
    default_config: Mapping[str, Any] = field(default_factory=dict)
    needs_layer: bool = False
    control: bool = False
    description: str = ""
    reference: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_config", _freeze(self.default_config))


@dataclass(frozen=True)
class EvaluatorCard:
    """What an evaluator measures.

    Attributes:
        name: registry name (``"deletion"``).
        category: evaluator family (the leaderboard groups by it).
        higher_is_better: score direction; the leaderboard ranks with it.
        paper: citation.
        default_config: every configurable keyword with its default; unknown keywords raise.
        needs: inputs beyond (model, x, target, maps): any of ``"explainer"`` (recomputes maps),
            ``"masks"`` (ground-truth regions), ``"fixations"``, ``"dataset"`` (retraining),
            ``"counterfactual"`` (a trait re-renderer in ``EvalBatch.extra["counterfactual"]``).
        scope: ``"batch"`` evaluators score a batch of images at a time;
            ``"dataset"`` evaluators (ROAR/KAR retraining) need the whole dataset and an executor.
        description: one line.
    """

    name: str
    category: EvaluatorCategory
    higher_is_better: bool
    paper: str
    default_config: Mapping[str, Any] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()
    scope: Literal["batch", "dataset"] = "batch"
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_config", _freeze(self.default_config))
        object.__setattr__(self, "needs", frozenset(self.needs))


@dataclass(frozen=True)
class ModelCard:
    """A registered architecture: input contract and default CAM layer."""

    name: str
    input_channels: int
    input_size: tuple[int, int]
    embedding_dim: int
    cam_layer: str
    paper: str = ""
    description: str = ""


@dataclass(frozen=True)
class DatasetCard:
    """A registered dataset source (synthetic generator, manifest, GMDB release)."""

    name: str
    description: str
    default_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_config", _freeze(self.default_config))
