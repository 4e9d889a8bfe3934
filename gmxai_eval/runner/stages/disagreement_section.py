"""Section ``disagreement``: why each pixel-perturbation evaluator disagrees with the
interventional truth, measured on the run (kernels in :mod:`gmxai_eval.functional.disagreement`).

For every evaluator entry that removes pixels by a *substrate* (a ``baseline`` in its config:
deletion, insertion, pixel flipping, region perturbation, faithfulness correlation / estimate,
monotonicity, sensitivity-n, sufficiency, IROF, ...; or ROAD's noisy linear imputation, a
``noise`` level with ``percentages``), on the run's images with at least one planted trait:

* the explained class's probability of the image, after the union of its traits' pixels is
  filled with the evaluator's substrate, after the same traits are re-rendered away by the
  generator (in distribution: the truth's intervention), and after a same-area region shifted
  off the traits is filled with the substrate (the control); the share of predictions kept;
  the **out-of-distribution gap** = mean (substrate - re-rendered) with a bootstrap interval;
* **leakage**: for every real method, the class (the explained target) predicted from the
  method's removal masks alone (the top ``LEAK_FRACTION`` of pixels under the evaluator's
  ordering, signed or ``|map|``), by 5-fold cross-validated logistic regression on 14x14
  pooled masks, over all the run's images; accuracy with a Wilson interval against the
  training folds' majority guess.

Nothing here is a score of the leaderboard; the report renders it (:mod:`gmxai_eval.report.disagreement`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gmxai_eval.functional.baselines import input_zero_of, make_baseline
from gmxai_eval.functional.counterfactual import class_score
from gmxai_eval.functional.disagreement import (leakage_accuracy, paste, removal_masks, shifted_region,
                                                wilson)
from gmxai_eval.runner.context import RunContext
from gmxai_eval.runner.stages.sections import SECTION_DATA
from gmxai_eval.utils import rng_for

#: Share of the pixels a removal mask holds in the leakage check.
LEAK_FRACTION = 0.2


def substrate(config: dict[str, Any]) -> str | None:
    """What an evaluator config removes pixels with: its ``baseline``, ``"noisy_linear"`` for
    ROAD's imputation (``noise`` and ``percentages``), else ``None`` (no substrate)."""
    if "baseline" in config:
        return str(config["baseline"])
    if "noise" in config and "percentages" in config:
        return "noisy_linear"
    return None


def _removed(ctx: RunContext, config: dict[str, Any], x: torch.Tensor, ids: list[str],
             mask: torch.Tensor) -> torch.Tensor:
    """``x`` with ``mask`` removed the way the evaluator with ``config`` removes pixels."""
    if substrate(config) == "noisy_linear":
        from gmxai_eval.functional.road import noisy_linear_impute

        gens = [rng_for(ctx.seeds[0], "disagreement", s) for s in ids]
        out = noisy_linear_impute(x.cpu(), mask.cpu(), noise=float(config["noise"]), generators=gens)
        return out.to(x.device, x.dtype)
    z = input_zero_of(ctx.model) if config["baseline"] == "input_zero" else None  # type: ignore[arg-type]
    if config["baseline"] == "input_zero" and z is None:
        z = torch.zeros(x.shape[1], dtype=x.dtype)
    fill = make_baseline(config["baseline"], x, sample_ids=ids, seed=ctx.seeds[0],
                         channel_mean=None if ctx.channel_mean is None else ctx.channel_mean.to(x.device),
                         blur_kernel=config.get("blur_kernel", 11), blur_sigma=config.get("blur_sigma", 5.0),
                         input_zero=z)
    return paste(x, fill, mask.to(x.device))


def _boot_mean(v: np.ndarray, seed: int, n: int = 2000) -> list[float]:
    rng = np.random.default_rng([seed, 22])
    means = v[rng.integers(0, len(v), (n, len(v)))].mean(1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def _probe(ctx: RunContext) -> dict[str, Any] | None:
    """Affected images, their trait unions, clean / re-rendered scores (``None`` without a truth)."""
    r = ctx.counterfactual
    if r is None or ctx.images is None or ctx.target is None:
        return None
    keep = [i for i, s in enumerate(ctx.image_ids) if len(r.traits(s)) > 0]
    if not keep:
        return None
    ids = [ctx.image_ids[i] for i in keep]
    x = ctx.images[keep].to(ctx.device)
    t = ctx.target[keep]
    union = torch.stack([torch.as_tensor(r.trait_masks(s)).any(0) for s in ids])
    rerender = torch.as_tensor(r.render(ids, [tuple(r.traits(s)) for s in ids])).to(x.device, x.dtype)
    return {"ids": ids, "x": x, "t": t, "union": union, "shift": shifted_region(union),
            "clean": _score(ctx, x, t), "rerender": _score(ctx, rerender, t)}


def _score(ctx: RunContext, x: torch.Tensor, t: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        logits = ctx.model(x)  # type: ignore[misc]
    p = class_score(logits.cpu(), t, "probability").numpy()
    return p, (logits.argmax(1).cpu() == t).numpy()


def _leakage(ctx: RunContext, methods: list[str], absolute: bool,
             memo: dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    t = ctx.target.cpu()  # type: ignore[union-attr]
    per, pooled_c, pooled_ch = {}, [], []
    for m in methods:
        a = ctx.maps[m].cpu()
        key = (m, absolute and bool((a < 0).any()))  # |map| orders a non-negative map alike
        if key not in memo:
            memo[key] = leakage_accuracy(removal_masks(a, LEAK_FRACTION, key[1]), t)
        c, ch = memo[key]
        k, n = int(c.sum()), len(c)
        per[m] = {"accuracy": k / n, "ci": list(wilson(k, n)), "chance": float(ch.float().mean())}
        pooled_c.append(c)
        pooled_ch.append(ch)
    c, ch = torch.cat(pooled_c), torch.cat(pooled_ch)
    return {"per_method": per, "accuracy": float(c.float().mean()), "chance": float(ch.float().mean()),
            "n_images": int(len(t)), "fraction": LEAK_FRACTION, "ordering": "|map|" if absolute else "map",
            "above_chance": [m for m, d in per.items() if d["ci"][0] > d["chance"]]}


@SECTION_DATA.register(name="disagreement")
def disagreement_data(ctx: RunContext) -> dict[str, Any]:
    """The ``disagreement`` section (see the module docstring)."""
    from gmxai_eval.report.aggregate import is_oracle
    from gmxai_eval.runner.stages.write import card_dict

    probe = _probe(ctx)
    if probe is None:
        return {"available": False, "reason": "the run's dataset has no counterfactual renderer or no "
                                              "image with a planted trait"}
    cards = {e.label: card_dict(ctx.method_cards[e.label]) for e in ctx.spec.methods}
    methods = [m for m, c in cards.items() if not is_oracle(m, c) and not c.get("control")]
    clean_p, clean_k = probe["clean"]
    rr_p, rr_k = probe["rerender"]
    leak_cache: dict[bool, dict[str, Any]] = {}
    leak_memo: dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]] = {}
    evs = {}
    for e in ctx.spec.evaluators:
        cfg = dict(ctx.evaluators[e.label].config)
        sub = substrate(cfg)
        if sub is None:
            continue  # listed by without_substrate
        x, ids = probe["x"], probe["ids"]
        sp, sk = _score(ctx, _removed(ctx, cfg, x, ids, probe["union"]), probe["t"])
        hp, hk = _score(ctx, _removed(ctx, cfg, x, ids, probe["shift"]), probe["t"])
        absolute = bool(cfg.get("abs", False))
        if absolute not in leak_cache and len(ctx.image_ids) >= 10 and methods:
            leak_cache[absolute] = _leakage(ctx, methods, absolute, leak_memo)
        gap = sp - rr_p
        evs[e.label] = {
            "substrate": sub, "n_images": len(ids),
            "p_clean": float(clean_p.mean()), "p_substrate": float(sp.mean()), "p_rerendered": float(rr_p.mean()),
            "p_shifted": float(hp.mean()), "kept_clean": float(clean_k.mean()), "kept_substrate": float(sk.mean()),
            "kept_rerendered": float(rr_k.mean()), "kept_shifted": float(hk.mean()),
            "gap": float(gap.mean()), "gap_ci": _boot_mean(gap, ctx.seeds[0]),
            "truth_effect_reproduced": float((clean_p - sp).mean() / max((clean_p - rr_p).mean(), 1e-12)),
            "leakage": leak_cache.get(absolute)}
    return {"available": True, "evaluators": evs, "methods": methods, "n_affected": len(probe["ids"]),
            "without_substrate": without_substrate(ctx)}


def without_substrate(ctx: RunContext) -> list[str]:
    """The run's perturbation evaluators that remove no pixels by a substrate (e.g. infidelity,
    which subtracts noise): no gap is defined for them."""
    return [e.label for e in ctx.spec.evaluators if substrate(dict(ctx.evaluators[e.label].config)) is None
            and getattr(ctx.evaluator_cards.get(e.label), "category", None) == "perturbation"]
