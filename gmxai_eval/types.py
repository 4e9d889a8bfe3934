"""Frozen cards (metadata) for registered objects and small shared records."""

from __future__ import annotations

import math
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


#: what an evaluator may return for a degenerate map (see :class:`Degenerate`); a number
#: (``"0"``, ``"0.5"``) is also allowed
DEGENERATE_KINDS: tuple[str, ...] = ("nan", "finite", "map-independent", "mask fraction", "log(H W)")

_DEGENERATE_TEXT = {"nan": "NaN (counted in n_nan)", "finite": "a defined finite value",
                    "map-independent": "a defined finite value, the same for every constant map",
                    "mask fraction": "the ground-truth mask's share of the image (chance level)",
                    "log(H W)": "log(H W) (the uniform distribution's entropy)"}


@dataclass(frozen=True)
class Degenerate:
    """What an evaluator returns for a degenerate map ``(B, H, W)``: all zero, or constant.

    ``zero`` (the all-zero map), ``constant`` (a positive constant map) and ``negative`` (a
    negative constant map; ``None``: as ``constant``) are each one of :data:`DEGENERATE_KINDS` or
    a number:

    * ``"nan"``: every score NaN (dropped and counted as ``n_nan`` by the aggregation);
    * a number (``"0"``, ``"0.5"``): exactly that value;
    * ``"mask fraction"``: the share of the image the ground-truth mask covers;
    * ``"log(H W)"``: the logarithm of the number of pixels;
    * ``"map-independent"``: finite and the same for every constant map, zero included (ties
      broken by flat index, or the map is recomputed by the method's explainer);
    * ``"finite"``: a finite value that depends on the map.

    Never ``+-inf``. The evaluator contract test checks every registered batch evaluator against
    its card; ``note`` says why.
    """

    zero: str
    constant: str
    note: str = ""
    negative: str | None = None

    def problem(self) -> str | None:
        """Why this declaration is malformed ("expected X, got Y"), or None;
        :func:`gmxai_eval.evaluators.base.register_evaluator` raises it as a ConfigError."""
        for key in ("zero", "constant", "negative"):
            if getattr(self, key) is None:
                continue
            v = str(getattr(self, key))
            if v in DEGENERATE_KINDS:
                continue
            try:
                ok = math.isfinite(float(v))
            except ValueError:
                ok = False
            if not ok:
                return f"expected Degenerate.{key} one of {list(DEGENERATE_KINDS)} or a finite number, got {v!r}"
        kinds = {self.zero, self.constant, self.negative or self.constant}
        if "map-independent" in kinds and kinds != {"map-independent"}:
            return (f"expected 'map-independent' for the zero, the constant and the negative map alike (a zero "
                    f"map is constant), got zero={self.zero!r}, constant={self.constant!r}, "
                    f"negative={self.negative!r}")
        return None

    @staticmethod
    def describe(kind: str) -> str:
        """Words for one of :data:`DEGENERATE_KINDS` or a number."""
        return _DEGENERATE_TEXT.get(kind, f"exactly {kind}")

    def __str__(self) -> str:
        if self.zero == self.constant:
            text = f"all-zero or constant map: {self.describe(self.zero)}"
        else:
            text = f"all-zero map: {self.describe(self.zero)}; constant map: {self.describe(self.constant)}"
        if self.negative is not None and self.negative != self.constant:
            text += f"; negative constant map: {self.describe(self.negative)}"
        return text + (f" ({self.note})" if self.note else "")


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
        degenerate: what it returns for an all-zero or a constant map (:class:`Degenerate`);
            every registered evaluator declares it (``None`` only for ad-hoc evaluators).
    """

    name: str
    category: EvaluatorCategory
    higher_is_better: bool
    paper: str
    default_config: Mapping[str, Any] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()
    scope: Literal["batch", "dataset"] = "batch"
    description: str = ""
    degenerate: Degenerate | None = None

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
