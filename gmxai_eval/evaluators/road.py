"""ROAD (Rong et al., ICML 2022): remove pixels by relevance, replace them by noisy linear
imputation, and track the model's accuracy (or target probability).

Two registered evaluators, because their score directions differ:

* ``road_morf``: remove the ``p`` most relevant pixels; a faithful map makes the model fail
  fast, so **lower is better**.
* ``road_lerf``: keep only the ``p`` most relevant pixels (the paper's percent semantics: ``p``
  is the fraction *kept*); a faithful map keeps the model right, so **higher is better**.

``curves (B, P)``: per sample and level ``p`` (``curve_x``), 1/0 correct (``output="accuracy"``:
arg-max equals the target) or the softmax probability of the target (``output="probability"``).
``scores (B,)``: the mean of the curve over the levels (every level weighs the same, as the
paper's tables average over levels; not a trapezoid over the uneven ``p`` grid).

Config: ``percentages`` (default the paper's 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9), ``noise``
(std of the imputation noise in pixel units, default 0.01), ``output``, ``solver`` (how the
imputation's linear system is solved; every choice solves the same system:
``"direct"``, the banded Cholesky, exact; ``"splu"``, sparse LU, exact; ``"cg"``, batched
multigrid-preconditioned conjugate gradients in float64 on the tensors' device, which agrees
with ``"direct"`` to 1e-5 pixel units (1e-6 or better in the tests) at the default ``cg_tol``
= 1e-8 relative residual; ``"auto"``, the default: ``"direct"`` on a CPU, where it is the
faster, and ``"cg"`` on any other device; the conventions record it), ``cg_tol``,
``forward_batch`` (images per
forward pass; 32 suits CPUs, where small batches stay in cache; raise it on a GPU). Noise is drawn per (sample id, order, level) from ``rng_for(seed, ...)``, so results
do not depend on batch size or order. Ties in the map are broken by pixel index. The
metric's definition is :func:`gmxai_eval.functional.road.road`; this class validates and packs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.functional.road import (NLI_SOLVERS, PAPER_PERCENTAGES, ROAD_OUTPUTS, forward_chunked,  # noqa: F401
                                        road, road_images)
from gmxai_eval.types import Degenerate, EvaluatorCard

_PAPER = ("Rong, Leemann, Nguyen, Fiedler, Ravikumar, Kasneci. A Consistent and Efficient Evaluation "
          "Strategy for Attribution Methods. ICML 2022")

#: The solver convention recorded per evaluator (see the module docstring).
_SOLVER_NOTE = {"auto": "auto: direct (banded Cholesky) on CPU, cg (multigrid-preconditioned, float64) elsewhere",
                "direct": "direct (banded Cholesky)", "splu": "splu (sparse LU)",
                "cg": "cg (multigrid-preconditioned conjugate gradients, float64)"}

_DEFAULTS = {"percentages": PAPER_PERCENTAGES, "noise": 0.01, "output": "accuracy", "solver": "auto",
             "cg_tol": 1e-8, "forward_batch": 32}


class _ROAD(Evaluator):
    mode: ClassVar[str]

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        c["percentages"] = tuple(float(p) for p in c["percentages"])
        # MoRF removes p (p = 1 would leave nothing to impute from); LeRF keeps p (p = 0 likewise)
        lo_ok, hi_ok = (lambda p: p >= 0.0, lambda p: p < 1.0) if self.mode == "morf" else \
            (lambda p: p > 0.0, lambda p: p <= 1.0)
        if not c["percentages"] or not all(lo_ok(p) and hi_ok(p) for p in c["percentages"]):
            rng = "[0, 1)" if self.mode == "morf" else "(0, 1]"
            raise ConfigError(f"expected percentages in {rng} for road_{self.mode}, got {c['percentages']}")
        if c["output"] not in ROAD_OUTPUTS:
            raise ConfigError(f"expected output in {sorted(ROAD_OUTPUTS)}, got {c['output']!r}")
        if c["solver"] not in (*NLI_SOLVERS, "auto"):
            raise ConfigError(f"expected solver in {sorted(NLI_SOLVERS) + ['auto']}, got {c['solver']!r}")
        if float(c["noise"]) < 0 or int(c["forward_batch"]) < 1:
            raise ConfigError(f"expected noise >= 0 and forward_batch >= 1, got {c['noise']}, {c['forward_batch']}")

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "order": self.mode, "imputation": "noisy_linear",
                "space": "pixel [0,1], unclipped", "ordering_unit": "pixel (ties by index)",
                "p_semantics": "fraction removed" if self.mode == "morf" else "fraction of most relevant kept",
                "score": "mean of the curve over levels", "solver": _SOLVER_NOTE.get(self.config["solver"],
                                                                                       self.config["solver"])}

    def perturbed(self, batch: EvalBatch, maps: torch.Tensor) -> torch.Tensor:
        """``(B, P, C, H, W)`` imputed images for ``maps (B, H, W)`` (:func:`road_images`)."""
        c = self.config
        return road_images(batch.x, maps, percentages=c["percentages"], mode=self.mode, noise=float(c["noise"]),
                           solver=c["solver"], tol=float(c["cg_tol"]), sample_ids=batch.sample_ids,  # type: ignore[arg-type]
                           seed=batch.seed)

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        c = self.config
        scores, curve = road(batch.model, batch.x, batch.target, batch.maps[method], percentages=c["percentages"],
                             mode=self.mode, output=c["output"], noise=float(c["noise"]), solver=c["solver"],
                             tol=float(c["cg_tol"]), forward_batch=int(c["forward_batch"]),
                             sample_ids=batch.sample_ids, seed=batch.seed)  # type: ignore[arg-type]
        return EvalResult(scores, curves=curve, curve_x=torch.tensor(c["percentages"]),
                          curve_labels=tuple(f"p={p:g}" for p in c["percentages"]))


def _card(mode: str, higher_is_better: bool, imputed: str) -> EvaluatorCard:
    """The card of ``road_<mode>``, whose ``imputed`` pixels are replaced."""
    return EvaluatorCard(
        name=f"road_{mode}", category="perturbation", higher_is_better=higher_is_better, paper=_PAPER,
        default_config=_DEFAULTS, description=f"{imputed} by noisy linear imputation; mean accuracy over p",
        degenerate=Degenerate("map-independent", "map-independent", "ties broken by flat index: the raster order is scored"))


@register_evaluator
class ROADMoRF(_ROAD):
    """ROAD, most relevant first: lower accuracy / probability after removal is better."""

    mode = "morf"
    card = _card(mode, False, "remove the top-p pixels")


@register_evaluator
class ROADLeRF(_ROAD):
    """ROAD, least relevant first (keep the top ``p``): higher accuracy / probability is better."""

    mode = "lerf"
    card = _card(mode, True, "keep the top-p pixels, impute the rest")
