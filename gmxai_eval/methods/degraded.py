"""Degraded copies of a method for the known-order test (after F-Fidelity, ICLR 2025).

``degraded`` explains with a base method and randomises a known share of the map's ranking:
the values of a random ``level`` share of the pixels are permuted among those pixels
(:func:`gmxai_eval.functional.known_order.degrade_maps`), so the map keeps its value
distribution and only its ranking gets worse as ``level`` grows (0: the base map, 1: a random
ranking of the same values). The draws are keyed on ``(seed, image content)``, like the random
control, so they do not depend on batch size or order.

A spec adds the copies as ordinary methods (each a map-cache entry of its own)::

    [[methods]]
    name = "degraded"
    label = "grad_cam@50"
    config = { base = "grad_cam", base_config = {}, level = 0.5 }

The report's known-order validity (:mod:`gmxai_eval.report.known_order`) groups the copies by
``(base, base_config, seed)`` and asks each evaluator to recover the order of the levels.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.functional.known_order import degrade_maps
from gmxai_eval.methods._common import sample_generators
from gmxai_eval.methods.base import METHODS, Explainer, Target, register_method
from gmxai_eval.types import MethodCard

_FFID = "Zheng et al., F-Fidelity, ICLR 2025 (explanations degraded by known amounts)"


@register_method
class DegradedMap(Explainer):
    """A base method's map with a ``level`` share of its pixel ranking randomised."""

    card = MethodCard(
        name="degraded", family="user", signed=True, paper=_FFID,
        default_config={"base": "grad_cam", "base_config": {}, "level": 0.5},
        description="a base method's map with the values of a random share of its pixels permuted "
                    "(known-order test)")

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        lv = c["level"]
        if isinstance(lv, bool) or not isinstance(lv, (int, float)) or not 0.0 <= float(lv) <= 1.0:
            raise ConfigError(f"method 'degraded': expected level as a number in [0, 1], got {lv!r}")
        if not isinstance(c["base_config"], Mapping):
            raise ConfigError(f"method 'degraded': expected base_config as a table, got {c['base_config']!r}")
        if c["base"] == "degraded":
            raise ConfigError("method 'degraded': expected a base other than 'degraded'")
        self.base: Explainer = METHODS.create(str(c["base"]), **dict(c["base_config"]))
        if getattr(self.base, "needs_masks", False) or getattr(self.base, "needs_samples", False):
            raise ConfigError(f"method 'degraded': expected a base that explains from (model, x, target) "
                              f"alone, got {c['base']!r} (it needs masks or sample ids)")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        maps = self.base(model, x, target)
        gens = sample_generators(x, int(self.config["seed"]), "degraded")
        return degrade_maps(maps, float(self.config["level"]), gens)


__all__ = ["DegradedMap"]
