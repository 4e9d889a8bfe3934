"""The all-traits-off drop of the run's model (does it use the planted evidence?).

On a dataset with a counterfactual renderer (the synthetic faces), the report stage renders each
of the run's images that has planted traits once more with every trait switched off and scores
both with the run's model (the explained class's softmax probability); the statistic and its
bootstrap CI are :func:`gmxai_eval.functional.evidence.all_off_drop` (subjects as the resampling
unit when a subject holds several images). Stored in ``results.json`` under ``evidence``; the
model comparison counts a model's validity only when the drop's CI lies above 0.
"""

from __future__ import annotations

from typing import Any

import torch

from gmxai_eval.functional.counterfactual import RENDERER_API, class_score
from gmxai_eval.functional.evidence import all_off_drop
from gmxai_eval.runner.context import RunContext


def evidence_drop(ctx: RunContext) -> dict[str, Any] | None:
    """``results["evidence"]``: the all-traits-off drop on the run's images with planted traits
    (``None`` without a model or a counterfactual renderer with the full renderer API)."""
    r = ctx.counterfactual
    if r is None or any(not hasattr(r, a) for a in RENDERER_API) or ctx.model is None or ctx.images is None \
            or ctx.target is None:
        return None
    ids = list(ctx.image_ids)
    traits = [tuple(r.traits(s)) for s in ids]
    rows = [i for i, t in enumerate(traits) if t]
    clean = torch.full((len(ids),), float("nan"), dtype=torch.float64)
    off = clean.clone()
    step = max(1, int(ctx.batch_size))
    with torch.no_grad():
        for a in range(0, len(rows), step):
            ix = rows[a:a + step]
            tgt = ctx.target[ix]
            x = ctx.images[ix].to(ctx.device)
            clean[ix] = class_score(ctx.model(x), tgt).cpu()
            xo = torch.as_tensor(r.render([ids[i] for i in ix], [traits[i] for i in ix])).to(ctx.device, x.dtype)
            off[ix] = class_score(ctx.model(xo), tgt).cpu()
    subjects = list(ctx.subjects) if len(ctx.subjects) == len(ids) else None
    out = all_off_drop(clean.numpy(), off.numpy(), [len(t) for t in traits], subjects,
                       n_boot=int(ctx.spec.bootstrap), seed=int(ctx.spec.seeds[0]))
    out["output"] = "probability"
    out["description"] = ("all-traits-off drop: mean over the images with planted traits of the explained class's "
                          "probability minus its probability with every planted trait rendered off, 95% percentile "
                          f"CI over {int(ctx.spec.bootstrap)} bootstrap resamples of the {out['resampling_unit']}s; "
                          "the model uses the planted evidence when the CI lies above 0")
    return out
