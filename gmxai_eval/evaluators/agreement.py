"""Occlusion agreement: do a method's maps rank pixels like occlusion does?

Occlusion (Zeiler & Fergus 2014, the project's ``occlusion`` method) measures the drop of the
target score when a patch is hidden: a direct, if coarse, perturbation estimate of relevance.
For every patch size in ``patches`` (stride ``round(patch * stride_ratio)``, default half the
patch) the occlusion maps are computed **once per image** and shared by every method of the
batch (``batch.shared``). Per method and patch size:

* ``extras["spearman/p<patch>"]``: Spearman rank correlation with the occlusion map;
* ``extras["iou/p<patch>"]``: IoU of the top-``k`` pixels (``k`` a fraction of H*W or a count).

``scores``: the mean Spearman correlation over patch sizes (higher is better). ``relevance``
(``"signed"`` default, or ``"abs"``) is applied to both maps before comparing. A constant map
has no ranking: its Spearman correlation is NaN.
"""

from __future__ import annotations

from typing import Any

import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.functional.stats import spearman, top_k_iou
from gmxai_eval.methods import create_method
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import check_chunk, device_chunk

_RELEVANCE = {"signed": lambda a: a, "abs": torch.abs}


@register_evaluator
class OcclusionAgreement(Evaluator):
    """Spearman / top-k IoU of a method's maps with occlusion maps at several patch sizes."""

    card = EvaluatorCard(
        name="occlusion_agreement", category="agreement", higher_is_better=True,
        paper="Zeiler & Fergus. Visualizing and understanding convolutional networks. ECCV 2014",
        default_config={"patches": (8, 16), "stride_ratio": 0.5, "baseline": 0.0, "k": 0.1,
                        "relevance": "signed", "max_batch": None},
        description="rank agreement (Spearman, top-k IoU) with occlusion maps, mean over patch sizes",
        degenerate=Degenerate("nan", "nan", "Spearman correlation with a constant map is undefined"))

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        c["patches"] = tuple(int(p) for p in c["patches"])
        if not c["patches"] or min(c["patches"]) < 1 or not 0 < float(c["stride_ratio"]) <= 1:
            raise ConfigError(f"expected patches >= 1 and 0 < stride_ratio <= 1, got {c['patches']}, {c['stride_ratio']}")
        check_chunk(f"evaluator {self.name!r}", c["max_batch"])
        if c["relevance"] not in _RELEVANCE:
            raise ConfigError(f"expected relevance in {sorted(_RELEVANCE)}, got {c['relevance']!r}")
        k = c["k"]
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k <= 0 or (isinstance(k, float) and k > 1):
            raise ConfigError(f"expected k as a pixel count (int >= 1) or a fraction (float in (0, 1]), got {k!r}")

    def stride(self, patch: int) -> int:
        return max(1, int(round(patch * float(self.config["stride_ratio"]))))

    def occlusion_maps(self, batch: EvalBatch, patch: int) -> torch.Tensor:
        """``(B, H, W)`` occlusion maps for ``patch`` (computed once per batch, shared)."""
        c = self.config
        stride = self.stride(patch)
        key = ("occlusion", patch, stride, repr(c["baseline"]), batch.seed)
        return batch.shared(key, lambda: create_method(
            "occlusion", patch=patch, stride=stride, baseline=c["baseline"], max_batch=device_chunk(batch.x.device, c["max_batch"]),
            seed=batch.seed)(batch.model, batch.x, batch.target))

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "strides": [self.stride(p) for p in self.config["patches"]],
                "reference": "occlusion (score drop, mean over covering windows)",
                "score": "mean Spearman over patch sizes"}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        c = self.config
        rel = _RELEVANCE[c["relevance"]]
        h, w = batch.x.shape[-2:]
        k = c["k"]
        k_px = max(1, int(k * h * w + 1e-9)) if isinstance(k, float) else int(k)
        occ = {p: rel(self.occlusion_maps(batch, p)) for p in c["patches"]}
        out = {}
        for m, maps in batch.maps.items():
            a = rel(maps)
            extras = {}
            for p, o in occ.items():
                extras[f"spearman/p{p}"] = spearman(a, o.to(a.device), constant="nan")
                extras[f"iou/p{p}"] = top_k_iou(a, o.to(a.device), k=k_px, relevance="signed", ties="index")
            score = torch.stack([extras[f"spearman/p{p}"] for p in c["patches"]], 1).mean(1)
            out[m] = EvalResult(score, extras=extras)
        return out
