"""IROF: Iterative Removal Of Features (Rieger & Hansen, 2020).

Each image is cut into SLIC superpixels (computed once per image and shared by every method
and evaluator of the batch). Segments are removed cumulatively in order of their mean
relevance (most relevant first; ties by label), each replaced by ``baseline`` (default: the
image's per-channel mean). The curve is the target's softmax probability after ``k`` removals
divided by the clean probability, ``c_0 = 1 .. c_S`` (always the probability: a ratio of
logits or of 0/1 accuracies to their clean value is not meaningful); the score is the area over it.

* ``aoc="normalised"`` (default): ``1 - trapz(c)`` on an x-axis scaled to ``[0, 1]`` (fraction of
  segments removed), comparable across images with different numbers of segments.
* ``aoc="quantus"``: Quantus 0.6.0's ``S - trapz(c_1..c_S)`` (grows with ``S``).

Higher is better (a faithful map destroys the evidence early). ``curves`` are the normalised
curves resampled onto ``curve_points`` fractions in ``[0, 1]``; ``extras["n_segments"]`` holds ``S``.

The definition is :func:`gmxai_eval.functional.superpixels.irof`; this class validates, shares the
segmentation across methods and packs the result.

Quantus's default ``perturb_baseline="mean"`` is the mean of the whole *current batch* array
(so it depends on the other images and on earlier removals); here every baseline is per image.
"""

from __future__ import annotations

from typing import Any

import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.functional.baselines import make_baseline
from gmxai_eval.functional.superpixels import AOC_RULES, irof, slic_segments
from gmxai_eval.types import Degenerate, EvaluatorCard


@register_evaluator
class IROF(Evaluator):
    """Area over the curve of the normalised class probability while superpixels are removed."""

    card = EvaluatorCard(
        name="irof", category="perturbation", higher_is_better=True,
        paper="Rieger & Hansen. IROF: a low resource evaluation metric for explanation methods. "
              "ICLR 2020 Workshop AI for Affordable Healthcare",
        default_config={"n_segments": 100, "compactness": 10.0, "slic_sigma": 0.0, "slic_max_iter": 10,
                        "baseline": "image_mean", "aoc": "normalised",
                        "curve_points": 21, "forward_batch": 32},
        description="SLIC superpixels removed by mean relevance; area over the normalised probability curve",
        degenerate=Degenerate("map-independent", "map-independent", "ties broken by segment index"))
    quick_config = {"n_segments": 16}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if c["aoc"] not in AOC_RULES:
            raise ConfigError(f"expected aoc in {AOC_RULES}, got {c['aoc']!r}")
        if int(c["curve_points"]) < 2 or int(c["forward_batch"]) < 1 or int(c["n_segments"]) < 2:
            raise ConfigError("expected curve_points >= 2, forward_batch >= 1 and n_segments >= 2, got "
                              f"{c['curve_points']}, {c['forward_batch']}, {c['n_segments']}")

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "ordering_unit": "SLIC superpixel by mean relevance (ties by label)",
                "space": "pixel [0,1]", "curve": "f(x_k)/f(x), k = 0..S", "segmentation": "skimage slic, start_label=0"}

    def segments(self, batch: EvalBatch) -> torch.Tensor:
        """``(B, H, W)`` superpixel labels, computed once per batch (shared across methods)."""
        c = self.config
        key = ("slic", int(c["n_segments"]), float(c["compactness"]), float(c["slic_sigma"]), int(c["slic_max_iter"]))
        return batch.shared(key, lambda: slic_segments(
            batch.x, n_segments=int(c["n_segments"]), compactness=float(c["compactness"]),
            sigma=float(c["slic_sigma"]), max_num_iter=int(c["slic_max_iter"])).to(batch.x.device))

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        c = self.config
        seg = self.segments(batch)
        logits = batch.clean_logits()
        f0 = torch.softmax(logits.double(), 1).gather(1, batch.target.to(logits.device).view(-1, 1)).squeeze(1)
        base = make_baseline(c["baseline"], batch.x, sample_ids=batch.sample_ids, seed=batch.seed)
        results = {}
        for m, maps in batch.maps.items():
            scores, curves, n_seg = irof(batch.model, batch.x, batch.target, maps, seg, base, f0, aoc=c["aoc"],
                                         curve_points=int(c["curve_points"]), forward_batch=int(c["forward_batch"]))
            results[m] = EvalResult(scores, curves=curves, curve_x=torch.linspace(0, 1, int(c["curve_points"])),
                                    extras={"n_segments": n_seg})
        return results
