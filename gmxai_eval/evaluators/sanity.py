"""Input-dependence sanity check (randomisation family, next to MPRT).

Registered: ``input_dependence`` (kernel and score in :mod:`gmxai_eval.functional.sanity`):
``D_b / (D_b + D_n)`` per image, higher is better; 0 = the map does not depend on the image
(the same map for every image explained for a class), 0.5 = maps vary between images only as
much as under the model's own noise, 1 = maps vary between images and are stable under noise.

How the evaluator feeds the kernel (all draws keyed on ``(seed, sample_id)``):

* **partners**: for image ``i``, the ``n_partners`` other images ``j`` of the unit's batch with
  the smallest ``stable_hash(seed, id_i, id_j)`` (independent of batch order; the images that
  share the batch are the pool, so the between-image term is a property of that pool). Each is
  explained for ``i``'s class ``t_i`` (maps already computed for ``(j, t_j = t_i)`` are reused).
* **the model's own noise**: ``n_noise`` copies ``clip(x_i + N(0, noise_sigma^2), 0, 1)``;
  ``noise_sigma = 0.01`` (2.6 grey levels of 255, below the sensor noise of a face photo). A
  draw that changes the model's predicted class is redrawn (at most ``max_tries`` times, as the
  minor perturbations of MetaQuantus must keep the prediction); an image whose every try
  changes the prediction scores NaN (``extras["prediction_kept"]`` is False).
* methods that need the evidence masks (``needs_masks``, the oracle) get each image's own mask.
"""

from __future__ import annotations

from typing import Any

import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.evaluators.randomisation import _reference_maps, _sim_options, _targets
from gmxai_eval.functional.sanity import input_dependence
from gmxai_eval.functional.similarity import SIMILARITIES
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import rng_for, stable_hash

_TAG = "input_dependence"


def partner_index(sample_ids: list[str], seed: int, n_partners: int) -> torch.Tensor:
    """``(B, P)`` int64, ``P = min(n_partners, B - 1)``: for row ``i`` the other rows with the
    smallest ``stable_hash(seed, id_i, id_j)`` (in that order)."""
    b = len(sample_ids)
    p = max(0, min(int(n_partners), b - 1))
    rows = []
    for i, si in enumerate(sample_ids):
        others = sorted((j for j in range(b) if j != i),
                        key=lambda j: stable_hash(seed, _TAG, "partner", si, sample_ids[j]))
        rows.append(others[:p])
    return torch.tensor(rows, dtype=torch.int64).reshape(b, p)


@register_evaluator
class InputDependence(Evaluator):
    """Do a method's maps depend on the image? Between-image dissimilarity of maps for the same
    class relative to their dissimilarity under small prediction-preserving input noise.

    ``extras``: ``between`` (``D_b``), ``noise`` (``D_n``), ``prediction_kept`` (every noisy
    copy kept the predicted class)."""

    card = EvaluatorCard(
        name="input_dependence", category="randomisation", higher_is_better=True,
        paper="after Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018 (maps must depend "
              "on the input) and Hedström et al., MetaQuantus, TMLR 2023 (minor, prediction-keeping noise)",
        default_config={"similarity": "spearman_abs", "n_partners": 3, "n_noise": 3, "noise_sigma": 0.01,
                        "max_tries": 5, "atol": 1e-6, "target": "predicted", "hog_pixels_per_cell": 16,
                        "hog_cells_per_block": 3, "topk_fraction": 0.1},
        needs=frozenset({"explainer"}),
        description="between-image map dissimilarity (same class) over itself plus the dissimilarity "
                    "under the model's own noise",
        degenerate=Degenerate("map-independent", "map-independent", "the maps are recomputed by the method's explainer: the passed map is not used"))

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        for k in ("n_partners", "n_noise", "max_tries"):
            if isinstance(c[k], bool) or not isinstance(c[k], int) or c[k] < 1:
                raise ConfigError(f"evaluator {self.name!r}: expected {k} as an int >= 1, got {c[k]!r}")
        if isinstance(c["noise_sigma"], bool) or not isinstance(c["noise_sigma"], (int, float)) \
                or not c["noise_sigma"] > 0:
            raise ConfigError(f"evaluator {self.name!r}: expected noise_sigma > 0, got {c['noise_sigma']!r}")
        if c["similarity"] not in SIMILARITIES.list():
            raise ConfigError(f"evaluator {self.name!r}: expected similarity in {SIMILARITIES.list()}, "
                              f"got {c['similarity']!r}")

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(),
                "score": "D_between / (D_between + D_noise), 0 when both are 0; D = mean(1 - similarity)",
                "between": "partners from the unit's batch (smallest stable hash of the id pair), "
                           "explained for the image's class",
                "noise": "clip(x + N(0, noise_sigma^2), 0, 1), redrawn while the predicted class changes",
                "constant_maps": "similarity 1 if identical else 0"}

    # -- the model's own noise (method-independent, shared by every method of the batch) ----------
    def noisy_inputs(self, batch: EvalBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, C, H, W)`` prediction-preserving noisy copies and ``(B,)`` bool: every copy of
        the image kept the predicted class."""
        x = batch.x
        n, tries, sigma = int(self.config["n_noise"]), int(self.config["max_tries"]), float(self.config["noise_sigma"])
        pred = batch.clean_logits().argmax(1)
        out = torch.empty((x.shape[0], n, *x.shape[1:]), dtype=x.dtype, device=x.device)
        kept = torch.ones(x.shape[0], dtype=torch.bool)
        gens = [rng_for(batch.seed, _TAG, "noise", sid) for sid in batch.sample_ids]  # type: ignore[union-attr]
        todo = torch.ones(x.shape[0], n, dtype=torch.bool)
        for _ in range(tries):
            z = torch.stack([torch.randn((n, *x.shape[1:]), generator=g) for g in gens]).to(x.device, x.dtype)
            cand = (x.unsqueeze(1) + sigma * z).clamp(0.0, 1.0)
            with torch.no_grad():
                p = batch.model(cand.reshape(-1, *x.shape[1:])).argmax(1).view(x.shape[0], n).cpu()
            take = todo & (p == pred.cpu().unsqueeze(1))
            out[take.to(x.device)] = cand[take.to(x.device)]
            todo &= ~take
            if not todo.any():
                break
        if todo.any():  # the last try fills the rest; those images score NaN
            out[todo.to(x.device)] = cand[todo.to(x.device)]
            kept &= ~todo.any(1)
        return out, kept

    def _explain(self, batch: EvalBatch, method: str, x: torch.Tensor, target: torch.Tensor,
                 rows: torch.Tensor) -> torch.Tensor:
        """Maps of ``x`` (images of batch rows ``rows``) for ``target``; methods that need masks
        get those rows' evidence masks, methods that need sample ids those rows' ids
        (:meth:`EvalBatch.explain`)."""
        ex = batch.explainers[method]
        if getattr(ex, "needs_samples", False) or (getattr(ex, "needs_masks", False) and batch.masks is not None):
            return batch.explain(method, batch.model, x, target, rows=rows)
        return ex(batch.model, x, target)

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        target = _targets(self, batch)
        b = batch.x.shape[0]
        part = partner_index(list(batch.sample_ids), batch.seed, int(self.config["n_partners"]))  # type: ignore[arg-type]
        noisy, kept = batch.shared((_TAG, "noise", self.config["n_noise"], self.config["noise_sigma"],
                                    self.config["max_tries"]), lambda: self.noisy_inputs(batch))
        n = noisy.shape[1]
        dev = batch.x.device
        tgt = target.to(dev)
        # partner (image j, class t_i) pairs; those with t_j == t_i reuse the reference map of j
        pj = part.reshape(-1)
        pt = tgt.repeat_interleave(part.shape[1]) if part.numel() else tgt[:0]
        reuse = (tgt[pj.to(dev)] == pt).cpu() if part.numel() else torch.zeros(0, dtype=torch.bool)
        rows_noise = torch.arange(b).repeat_interleave(n)
        out: dict[str, EvalResult] = {}
        opts = _sim_options(self)
        for m in batch.maps:
            a = _reference_maps(self, batch, m, target)
            pm = torch.empty((pj.numel(), *a.shape[1:]), dtype=a.dtype, device=a.device)
            if reuse.any():
                pm[reuse.to(a.device)] = a[pj[reuse].to(a.device)]
            fresh = ~reuse
            if fresh.any():
                rows = pj[fresh]
                pm[fresh.to(a.device)] = self._explain(batch, m, batch.x[rows.to(dev)], pt[fresh.to(dev)], rows).to(a.dtype)
            nm = self._explain(batch, m, noisy.reshape(b * n, *batch.x.shape[1:]), tgt.repeat_interleave(n), rows_noise)
            res = input_dependence(a, pm.view(b, part.shape[1], *a.shape[1:]),
                                   nm.to(a.device).view(b, n, *a.shape[1:]), self.config["similarity"],
                                   atol=float(self.config["atol"]), **opts)
            scores = torch.where(kept, res.scores, torch.full_like(res.scores, float("nan")))
            out[m] = EvalResult(scores, extras={"between": res.between, "noise": res.noise,
                                                "prediction_kept": kept})
        return out
