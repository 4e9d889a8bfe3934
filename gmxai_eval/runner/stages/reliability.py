"""Stage ``reliability`` (opt-in, ``[reliability] enabled = true``): metric reliability, after
MetaQuantus (Hedström et al., TMLR 2023). It re-runs explainers and evaluators on perturbed
inputs and models, so it is a runner stage; the report only renders ``results["reliability"]``
(:mod:`gmxai_eval.report.reliability`).

A reliable evaluator's scores barely move under a *minor* perturbation that keeps the model's
predictions (resilience) and move a lot under a *disruptive* one (reactivity). Two kinds:

* input: ``x' = clamp(x + sigma * N(0, 1), 0, 1)`` with noise drawn by
  ``torch.randn(x.shape, generator=rng_for(seed, "reliability", kind, attempt))``;
* model: every floating-point parameter ``p' = p * (1 + sigma * N(0, 1))`` (multiplicative, as in
  MetaQuantus), noise from ``rng_for(seed, "reliability", kind, attempt)`` in parameter order.

For a minor perturbation only images whose predicted class is unchanged are kept (input: each
image takes the first of ``max_tries`` draws that keeps it; model: the draw that keeps the most
images). Maps are recomputed on the perturbed input / model, for the same target.

Per evaluator:

* ``minor_change`` / ``disruptive_change``: mean over methods and images of
  ``|s'_i - s_i| / sd`` (``sd``: population std of the original scores over every method and
  image; ``1`` when that is 0), averaged over the input and model perturbations;
* ``ratio = disruptive_change / minor_change`` (higher is better);
* ``minor_tau`` / ``disruptive_tau``: Kendall tau-b between the methods' original mean scores
  and their perturbed mean scores (ranking stability), averaged over the two kinds.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from gmxai_eval.evaluators.base import EvalBatch, Evaluator
from gmxai_eval.methods.base import Explainer
from gmxai_eval.report.aggregate import kendall_tau_b  # until functional.stats holds it
from gmxai_eval.runner.context import RunContext, bind_masks, progress_bar
from gmxai_eval.utils import rng_for


def perturb_input(x: torch.Tensor, sigma: float, seed: int, kind: str, attempt: int) -> torch.Tensor:
    """``clamp(x + sigma * N(0, 1), 0, 1)`` with noise keyed on ``(seed, kind, attempt)``."""
    g = rng_for(seed, "reliability", kind, attempt)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float32).to(x.device)
    return (x + sigma * noise).clamp(0.0, 1.0)


def perturb_model(model: nn.Module, sigma: float, seed: int, kind: str, attempt: int) -> nn.Module:
    """A deep copy with every floating parameter multiplied by ``1 + sigma * N(0, 1)``."""
    g = rng_for(seed, "reliability", kind, attempt)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            if p.is_floating_point():
                noise = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.device, p.dtype)
                p.mul_(1.0 + sigma * noise)
    return m.eval()


def _scores(model: nn.Module, x: torch.Tensor, target: torch.Tensor, ids: Sequence[str],
            explainers: Mapping[str, Explainer], evaluators: Mapping[str, Evaluator], seed: int,
            masks: torch.Tensor | None, region_masks: torch.Tensor | None,
            region_names: tuple[str, ...], counterfactual: Any = None) -> dict[str, dict[str, np.ndarray]]:
    bound = bind_masks(explainers, masks, list(ids), counterfactual)
    maps = {m: ex(model, x, target) for m, ex in bound.items()}
    batch = EvalBatch(model, x, target, maps, list(ids), bound, masks, region_masks,
                      region_names, seed, {} if counterfactual is None else {"counterfactual": counterfactual})
    out = {}
    for ev_name, ev in evaluators.items():
        res = ev.evaluate(batch)
        out[ev_name] = {m: r.scores.numpy().astype(np.float64) for m, r in res.items()}
    return out


@torch.no_grad()
def _pred(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def metric_reliability(model: nn.Module, x: torch.Tensor, target: torch.Tensor, sample_ids: Sequence[str],
                       explainers: Mapping[str, Explainer], evaluators: Mapping[str, Evaluator], *,
                       masks: torch.Tensor | None = None, region_masks: torch.Tensor | None = None,
                       region_names: tuple[str, ...] = (), seed: int = 0, counterfactual: Any = None,
                       minor_input_sigma: float = 0.005, disruptive_input_sigma: float = 0.5,
                       minor_model_sigma: float = 0.005, disruptive_model_sigma: float = 1.0,
                       max_tries: int = 5, progress: bool | None = False) -> dict[str, Any]:
    """Reliability of every evaluator (see the module docstring).

    Args:
        model: eval-mode model; x ``(N, C, H, W)`` in ``[0, 1]``; target ``(N,)`` int64.
        explainers / evaluators: ``{label: object}``; evaluators must be batch-scope.

    Returns:
        ``{"evaluators": {label: {minor_change, disruptive_change, ratio, minor_tau,
        disruptive_tau, n_kept}}, "settings": {...}, "description": str}``.
    """
    ids = list(sample_ids)
    ctx = dict(masks=masks, region_masks=region_masks, region_names=region_names, counterfactual=counterfactual)
    bar = progress_bar(5, "reliability", progress)
    base = _scores(model, x, target, ids, explainers, evaluators, seed, **ctx)
    bar.update(1)
    pred0 = _pred(model, x)
    idx_all = torch.arange(len(ids))

    runs: dict[str, tuple[dict[str, dict[str, np.ndarray]], np.ndarray]] = {}

    def sub(t: torch.Tensor | None, ix: torch.Tensor) -> torch.Tensor | None:
        return None if t is None else t[ix.to(t.device)]

    def rescore(m: nn.Module, xs: torch.Tensor, kind: str, ix: torch.Tensor) -> None:
        """Scores of model ``m`` on the samples ``ix`` of ``xs`` into ``runs[kind]`` (none if ``ix`` is empty)."""
        if len(ix):
            scores = _scores(m, xs[ix.to(xs.device)], target[ix.to(target.device)], [ids[i] for i in ix],
                             explainers, evaluators, seed, masks=sub(masks, ix),
                             region_masks=sub(region_masks, ix), region_names=region_names,
                             counterfactual=counterfactual)
            runs[kind] = (scores, ix.numpy())

    # input perturbations
    for kind, sigma, keep_pred in (("input_minor", minor_input_sigma, True),
                                   ("input_disruptive", disruptive_input_sigma, False)):
        xp = perturb_input(x, sigma, seed, kind, 0)
        if keep_pred:
            kept = (_pred(model, xp) == pred0).cpu()
            for attempt in range(1, max_tries):
                if bool(kept.all()):
                    break
                xa = perturb_input(x, sigma, seed, kind, attempt)
                ok = (_pred(model, xa) == pred0).cpu() & ~kept
                xp[ok.to(xp.device)] = xa[ok.to(xa.device)]
                kept |= ok
            ix = idx_all[kept]
        else:
            ix = idx_all
        rescore(model, xp, kind, ix)
        bar.update(1)
    # model perturbations
    for kind, sigma, keep_pred in (("model_minor", minor_model_sigma, True),
                                   ("model_disruptive", disruptive_model_sigma, False)):
        best, best_kept = None, None
        for attempt in range(max_tries if keep_pred else 1):
            mp = perturb_model(model, sigma, seed, kind, attempt)
            kept = (_pred(mp, x) == pred0).cpu() if keep_pred else torch.ones(len(ids), dtype=torch.bool)
            if best_kept is None or int(kept.sum()) > int(best_kept.sum()):
                best, best_kept = mp, kept
            if bool(kept.all()):
                break
        rescore(best, x, kind, idx_all[best_kept])
        bar.update(1)

    bar.close()
    out: dict[str, dict[str, Any]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN evaluator gives NaN on purpose
        for ev in evaluators:
            out[ev] = _summary(ev, base, runs)
    return {
        "evaluators": out,
        "settings": {"n_images": len(ids), "seed": seed, "minor_input_sigma": minor_input_sigma,
                     "disruptive_input_sigma": disruptive_input_sigma,
                     "minor_model_sigma": minor_model_sigma,
                     "disruptive_model_sigma": disruptive_model_sigma, "max_tries": max_tries},
        "description": ("Scores should barely change under minor noise that keeps predictions and "
                        "change a lot under disruptive noise; changes are mean |score change| in units "
                        "of the original scores' standard deviation."),
    }


def _summary(ev: str, base: Mapping[str, Any], runs: Mapping[str, Any]) -> dict[str, Any]:
    """The per-evaluator numbers of :func:`metric_reliability` (see the module docstring)."""
    allv = np.concatenate([v for v in base[ev].values()])
    sd = float(np.nanstd(allv))
    sd = sd if math.isfinite(sd) and sd > 0 else 1.0
    methods = list(base[ev])
    res: dict[str, Any] = {}
    for level in ("minor", "disruptive"):
        changes, taus, kept_counts = [], [], []
        for kind in (f"input_{level}", f"model_{level}"):
            if kind not in runs:
                continue
            scores, ix = runs[kind]
            diffs = [np.abs(scores[ev][m] - base[ev][m][ix]) / sd for m in methods]
            changes.append(float(np.nanmean(np.concatenate(diffs))))
            taus.append(kendall_tau_b([np.nanmean(base[ev][m][ix]) for m in methods],
                                      [np.nanmean(scores[ev][m]) for m in methods]))
            kept_counts.append(len(ix))
        res[f"{level}_change"] = float(np.mean(changes)) if changes else math.nan
        res[f"{level}_tau"] = float(np.nanmean(taus)) if taus and np.isfinite(taus).any() else math.nan
        if level == "minor":
            res["n_kept"] = int(min(kept_counts)) if kept_counts else 0
    mc, dc = res["minor_change"], res["disruptive_change"]
    res["ratio"] = dc / mc if mc > 0 else (math.inf if dc > 0 else math.nan)
    return res


def reliability(ctx: RunContext) -> dict[str, Any]:
    """The stage: :func:`metric_reliability` of the batch-scope evaluators on the first
    ``[reliability] n_images`` images of the run (settings from ``spec.reliability``)."""
    r, n = ctx.spec.reliability, min(ctx.spec.reliability.n_images, len(ctx.image_ids))
    dev = ctx.device
    batch_evs = {k: v for k, v in ctx.evaluators.items() if ctx.evaluator_cards[k].scope == "batch"}
    return metric_reliability(
        ctx.model, ctx.images[:n].to(dev), ctx.target[:n].to(dev), ctx.image_ids[:n],  # type: ignore[arg-type,index]
        ctx.explainers, batch_evs, masks=None if ctx.masks is None else ctx.masks[:n].to(dev),
        region_masks=None if ctx.region_masks is None else ctx.region_masks[:n].to(dev),
        region_names=ctx.region_names, seed=ctx.seeds[0], counterfactual=ctx.counterfactual,
        minor_input_sigma=r.minor_input_sigma,
        disruptive_input_sigma=r.disruptive_input_sigma, minor_model_sigma=r.minor_model_sigma,
        disruptive_model_sigma=r.disruptive_model_sigma, max_tries=r.max_tries, progress=ctx.progress)
