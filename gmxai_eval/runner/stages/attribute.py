"""Stage ``attribute``: the maps of every method for every selected image, through the map cache.

Inputs: ``explainers``, ``model``, ``images``, ``target``, ``image_keys``, ``batches``,
``masks`` (bound to explainers with ``needs_masks``, e.g. the ``oracle``), ``counterfactual``
(bound with the image ids to explainers with ``needs_samples``), ``cache_root``,
``model_key``. Output: ``{method label: (N, H, W)}`` float32 cpu. A second run computes only maps
it has not seen (new method, new config, new image); ``counts["attributed"]`` and
``seconds_per_method`` record what was computed now.
"""

from __future__ import annotations

import time

import torch

from gmxai_eval.runner.cache import MapCache, entry_hash
from gmxai_eval.runner.context import RunContext, bind_masks, progress_bar
from gmxai_eval.runner.devices import call_halving


def method_keys(ctx: RunContext) -> dict[str, str]:
    """``{method label: cache key of (name, config, class)}`` (labels are display only)."""
    return {e.label: entry_hash(e.name, ctx.explainers[e.label].config, type(ctx.explainers[e.label]))
            for e in ctx.spec.methods}


def attribute(ctx: RunContext) -> dict[str, torch.Tensor]:
    """Maps of every method (see the module docstring)."""
    cache = MapCache(ctx.cache_root, ctx.model_key)
    keys = method_keys(ctx)
    n, (h, w) = len(ctx.image_ids), ctx.images.shape[-2:]  # type: ignore[union-attr]
    out: dict[str, torch.Tensor] = {}
    bar = progress_bar(len(ctx.spec.methods) * len(ctx.batches), "attribute", ctx.progress)
    for e in ctx.spec.methods:
        lab, mk = e.label, keys[e.label]
        full = torch.empty(n, h, w, dtype=torch.float32)
        for ix in ctx.batches:
            bkeys = [ctx.image_keys[i] for i in ix.tolist()]
            found, missing = cache.get(e.name, mk, bkeys)
            if missing:
                ctx.apply_threads("attribute")
                t0 = time.perf_counter()
                sel = ix[torch.tensor(missing, dtype=torch.long)]
                new = call_halving(lambda s, lab=lab: _explain(ctx, lab, s), sel,
                                   lambda s: (s[: len(s) // 2], s[len(s) // 2:]),
                                   lambda p, q: torch.cat([p, q]), len)
                cache.put(e.name, mk, [bkeys[i] for i in missing], new)
                ctx.counts["attributed"][lab] += len(missing)
                ctx.seconds_per_method[lab] = ctx.seconds_per_method.get(lab, 0.0) + time.perf_counter() - t0
                found, _ = cache.get(e.name, mk, bkeys)
            full[ix] = torch.stack([found[k] for k in bkeys])
            bar.update(1)
        out[lab] = full
    bar.close()
    return out


def _explain(ctx: RunContext, label: str, index: torch.Tensor) -> torch.Tensor:
    """Maps of method ``label`` for the images ``index`` (the oracle bound to their masks)."""
    ex = bind_masks({label: ctx.explainers[label]},
                    None if ctx.masks is None else ctx.masks[index].to(ctx.device),
                    [ctx.image_ids[i] for i in index.tolist()], ctx.counterfactual)[label]
    x, t = ctx.images[index].to(ctx.device), ctx.target[index].to(ctx.device)  # type: ignore[index]
    return ex(ctx.model, x, t).detach().cpu()
