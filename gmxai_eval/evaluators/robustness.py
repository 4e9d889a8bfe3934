"""Robustness of explanations to small input perturbations.

Registered evaluators (category ``"robustness"``, lower is better):

* ``max_sensitivity`` / ``avg_sensitivity`` (Yeh et al. 2019): max / mean over ``n_samples``
  perturbations ``delta`` uniform in the L-infinity ball of ``radius`` of
  ``||phi(x) - phi(x + delta)||_F / ||phi(x)||_F``. Presets (``preset=``):
  ``"captum"`` (default; Captum's ``sensitivity_max``: radius 0.02, 10 samples, a zero-norm
  original map divides by 1) and ``"quantus"`` (Quantus 0.6.0 defaults: radius 0.2, 200 samples,
  a zero-norm original map gives NaN). ``radius`` / ``n_samples`` override the preset.
* ``local_lipschitz_estimate`` (Alvarez-Melis & Jaakkola 2018): max over ``n_samples``
  Gaussian perturbations (std ``std``) of ``||phi(x) - phi(x')||_2 / (||x - x'||_2 + 1e-10)``.
  Quantus 0.6.0 also divides every map by the batch's maximum (``normalise=True``), which makes
  the score depend on the other images of the batch; we do not.

``phi(x)`` is ``batch.maps[method]`` (explaining ``batch.target``); the perturbed maps explain the
same target, computed in few explainer calls of at most ``max_batch`` images each (``None``: by
device, :func:`gmxai_eval.utils.device_chunk`). Inputs are not clipped to [0, 1] after
perturbation (as both references). Noise is keyed on ``(batch.seed, sample_id)``.

``max_sensitivity`` and ``avg_sensitivity`` with the same radius, sample count and zero-norm rule
reduce the same ratios (max and mean): the perturbed maps are computed once per batch and method
and shared through the batch memo, so the second of the two costs no explanation.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.functional.robustness import lipschitz_ratio, sensitivity, uniform_linf_noise
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import check_chunk, device_chunk, rng_for

#: Named conventions of max/avg sensitivity.
SENSITIVITY_PRESETS = MappingProxyType({
    "captum": MappingProxyType({"radius": 0.02, "n_samples": 10, "zero_norm": "one"}),
    "quantus": MappingProxyType({"radius": 0.2, "n_samples": 200, "zero_norm": "nan"}),
})

#: degenerate maps (see :class:`gmxai_eval.types.Degenerate`)
_RECOMPUTED = Degenerate("finite", "finite", "distance between the passed and the recomputed maps")
_YEH = "Yeh et al., On the (In)fidelity and Sensitivity of Explanations, NeurIPS 2019"


def _perturbed_maps(ev: Evaluator, batch: EvalBatch, method: str, xp: torch.Tensor) -> torch.Tensor:
    """Maps of ``xp (B, n, C, H, W)`` explaining ``batch.target`` -> ``(B, n, H, W)``."""
    b, n = xp.shape[:2]
    flat = xp.reshape(b * n, *xp.shape[2:])
    tgt = batch.target.repeat_interleave(n)
    check_chunk(f"evaluator {ev.name!r}", ev.config["max_batch"])
    step = device_chunk(batch.x.device, ev.config["max_batch"])
    rows = torch.arange(b).repeat_interleave(n)
    maps = torch.cat([batch.explain(method, batch.model, flat[i:i + step], tgt[i:i + step], rows=rows[i:i + step])
                      for i in range(0, b * n, step)])
    return maps.reshape(b, n, *maps.shape[1:])


class _Sensitivity(Evaluator):
    reduce: str = "max"
    quick_config = {"n_samples": 3}

    def settings(self) -> dict[str, Any]:
        preset = self.config["preset"]
        if preset not in SENSITIVITY_PRESETS:
            raise ConfigError(f"evaluator {self.name!r}: expected preset in {sorted(SENSITIVITY_PRESETS)}, got {preset!r}")
        s = dict(SENSITIVITY_PRESETS[preset])
        for k in ("radius", "n_samples"):
            if self.config[k] is not None:
                s[k] = self.config[k]
        if float(s["radius"]) <= 0 or int(s["n_samples"]) < 1:
            raise ConfigError(f"evaluator {self.name!r}: expected radius > 0 and n_samples >= 1, got {s}")
        return s

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), **self.settings(), "norm": "frobenius", "reduce": self.reduce,
                "denominator": "||phi(x)||", "clip": False}

    def noise(self, batch: EvalBatch) -> torch.Tensor:
        """``(B, n, C, H, W)`` perturbations, uniform in the L-inf ball, keyed on the sample id."""
        s = self.settings()
        shape = (int(s["n_samples"]), *batch.x.shape[1:])
        return torch.stack([uniform_linf_noise(shape, s["radius"], rng_for(batch.seed, "sensitivity", sid))
                            for sid in batch.sample_ids]).to(batch.x.device)  # type: ignore[union-attr]

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        s = self.settings()
        key = ("sensitivity_noise", s["radius"], s["n_samples"])
        xp = batch.x[:, None] + batch.shared(key, lambda: self.noise(batch))
        out = {}
        for m in batch.maps:
            r = batch.shared(("sensitivity_ratios", s["radius"], s["n_samples"], s["zero_norm"],
                              device_chunk(batch.x.device, self.config["max_batch"]), m),
                             lambda m=m: sensitivity(batch.maps[m], _perturbed_maps(self, batch, m, xp),
                                                     zero_norm=s["zero_norm"]).cpu())
            score = r.amax(1) if self.reduce == "max" else r.mean(1)
            out[m] = EvalResult(score, extras={"ratios": r})
        return out


def _sensitivity_card(name: str, reduced: str) -> EvaluatorCard:
    """The card of a sensitivity evaluator whose ratios are reduced by their ``reduced`` value."""
    return EvaluatorCard(name=name, category="robustness", higher_is_better=False, paper=_YEH,
                         default_config={"preset": "captum", "radius": None, "n_samples": None, "max_batch": None},
                         needs=frozenset({"explainer"}),
                         description=f"{reduced} relative change of the map under small uniform input noise",
                         degenerate=_RECOMPUTED)


@register_evaluator
class MaxSensitivity(_Sensitivity):
    """Max-sensitivity (Yeh et al. 2019); ``extras["ratios"] (B, n)``."""

    reduce = "max"
    card = _sensitivity_card("max_sensitivity", "max")


@register_evaluator
class AvgSensitivity(_Sensitivity):
    """Average sensitivity (Yeh et al. 2019); ``extras["ratios"] (B, n)``."""

    reduce = "mean"
    card = _sensitivity_card("avg_sensitivity", "mean")


@register_evaluator
class LocalLipschitzEstimate(Evaluator):
    """Local Lipschitz estimate: max over Gaussian perturbations of the map-change to
    input-change ratio; ``extras["ratios"] (B, n)``."""

    card = EvaluatorCard(
        name="local_lipschitz_estimate", category="robustness", higher_is_better=False,
        paper="Alvarez-Melis & Jaakkola, On the Robustness of Interpretability Methods, WHI @ ICML 2018",
        default_config={"n_samples": 50, "std": 0.1, "mean": 0.0, "eps": 1e-10, "max_batch": None},
        needs=frozenset({"explainer"}),
        description="max ||phi(x) - phi(x')|| / ||x - x'|| over Gaussian perturbations",
        degenerate=_RECOMPUTED)
    quick_config = {"n_samples": 3}

    def noise(self, batch: EvalBatch) -> torch.Tensor:
        """``(B, n, C, H, W)`` Gaussian perturbations keyed on the sample id."""
        n = int(self.config["n_samples"])
        if n < 1 or float(self.config["std"]) <= 0:
            raise ConfigError(f"evaluator {self.name!r}: expected n_samples >= 1 and std > 0, got "
                              f"{n}, {self.config['std']}")
        shape = (n, *batch.x.shape[1:])
        return torch.stack([torch.randn(shape, generator=rng_for(batch.seed, "lipschitz", sid)) * self.config["std"]
                            + self.config["mean"] for sid in batch.sample_ids]).to(batch.x.device)  # type: ignore[union-attr]

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        key = ("lipschitz_noise", self.config["n_samples"], self.config["std"], self.config["mean"])
        xp = batch.x[:, None] + batch.shared(key, lambda: self.noise(batch))
        out = {}
        for m in batch.maps:
            r = lipschitz_ratio(batch.maps[m], _perturbed_maps(self, batch, m, xp), batch.x, xp,
                                eps=self.config["eps"]).cpu()
            out[m] = EvalResult(r.amax(1), extras={"ratios": r})
        return out
