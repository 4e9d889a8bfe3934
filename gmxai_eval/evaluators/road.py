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
(std of the imputation noise in pixel units, default 0.01), ``output``, ``solver``
(``"auto"``: sparse direct on CPU, batched CG on GPU), ``cg_tol``, ``forward_batch`` (images per
forward pass; 32 suits CPUs, where small batches stay in cache; raise it on a GPU). Noise is drawn per (sample id, order, level) from ``rng_for(seed, ...)``, so results
do not depend on batch size or order. Ties in the map are broken by pixel index.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.functional.baselines import order_pixels
from gmxai_eval.functional.road import NLI_SOLVERS, PAPER_PERCENTAGES, noisy_linear_impute, road_masks
from gmxai_eval.types import EvaluatorCard
from gmxai_eval.utils import rng_for

_PAPER = ("Rong, Leemann, Nguyen, Fiedler, Ravikumar, Kasneci. A Consistent and Efficient Evaluation "
          "Strategy for Attribution Methods. ICML 2022")


def _accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == target).to(torch.float64)


def _probability(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.double(), 1).gather(1, target.view(-1, 1)).squeeze(1)


#: What a ROAD curve records per perturbed image: ``(logits (n, K), target (n,)) -> (n,)``.
ROAD_OUTPUTS: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "accuracy": _accuracy, "probability": _probability}


@torch.no_grad()
def forward_chunked(model: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    """``model(x)`` in chunks of ``batch`` images -> logits ``(N, K)``."""
    return torch.cat([model(x[i:i + batch]).detach() for i in range(0, x.shape[0], batch)])


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
                "score": "mean of the curve over levels"}

    def perturbed(self, batch: EvalBatch, maps: torch.Tensor) -> torch.Tensor:
        """``(B, P, C, H, W)`` imputed images for ``maps (B, H, W)``."""
        c = self.config
        x = batch.x
        b, ch, h, w = x.shape
        order = order_pixels(maps, "morf")  # most relevant first; LeRF keeps a prefix of it
        rm = road_masks(order, c["percentages"], self.mode, (h, w))  # (B, P, H, W)
        n_p = rm.shape[1]
        xs = x.unsqueeze(1).expand(b, n_p, ch, h, w).reshape(b * n_p, ch, h, w)
        gens = None
        if float(c["noise"]) > 0:
            gens = [rng_for(batch.seed, "road", self.mode, p, sid)
                    for sid in batch.sample_ids for p in c["percentages"]]  # type: ignore[union-attr]
        out = noisy_linear_impute(xs, rm.reshape(b * n_p, h, w), noise=float(c["noise"]), generators=gens,
                                  solver=c["solver"], tol=float(c["cg_tol"]))
        return out.view(b, n_p, ch, h, w)

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        c = self.config
        xp = self.perturbed(batch, batch.maps[method])
        b, n_p = xp.shape[:2]
        logits = forward_chunked(batch.model, xp.flatten(0, 1), int(c["forward_batch"]))
        tgt = batch.target.to(logits.device).repeat_interleave(n_p)
        curve = ROAD_OUTPUTS[c["output"]](logits, tgt).view(b, n_p).cpu()
        return EvalResult(curve.mean(1), curves=curve, curve_x=torch.tensor(c["percentages"]),
                          curve_labels=tuple(f"p={p:g}" for p in c["percentages"]))


@register_evaluator
class ROADMoRF(_ROAD):
    """ROAD, most relevant first: lower accuracy / probability after removal is better."""

    mode = "morf"
    card = EvaluatorCard(
        name="road_morf", category="perturbation", higher_is_better=False, paper=_PAPER,
        default_config=_DEFAULTS,
        description="remove the top-p pixels by noisy linear imputation; mean accuracy over p")


@register_evaluator
class ROADLeRF(_ROAD):
    """ROAD, least relevant first (keep the top ``p``): higher accuracy / probability is better."""

    mode = "lerf"
    card = EvaluatorCard(
        name="road_lerf", category="perturbation", higher_is_better=True, paper=_PAPER,
        default_config=_DEFAULTS,
        description="keep the top-p pixels, impute the rest by noisy linear imputation; mean accuracy over p")
