"""A toy counterfactual world shared by the counterfactual tests: 8x8 images whose planted
traits are blocks (``BLOCKS``) set to 1, a renderer that switches any subset off exactly, and
the linear score the block models compute (``block_score``), so importances are analytic."""

from __future__ import annotations

import torch

S = 8
BLOCKS = {"a": (slice(0, 4), slice(0, 4)), "b": (slice(0, 4), slice(4, 8)), "c": (slice(4, 8), slice(0, 8))}
W = {"a": 3.0, "b": 1.0, "c": 2.0}  # class-1 logit = sum of W[t] * mean of trait t's block


class BlockRenderer:
    """Image ``sid`` has the traits ``TRAITS[sid]`` (set by a subclass); a trait is its block set
    to 1, off = 0. Counts the images it renders in ``calls``."""

    cache_key = "toy-v1"
    TRAITS: dict[str, tuple[str, ...]] = {}

    def __init__(self) -> None:
        self.calls = 0

    def traits(self, sid):
        return self.TRAITS[sid]

    def trait_masks(self, sid):
        out = torch.zeros(len(self.TRAITS[sid]), S, S, dtype=torch.bool)
        for k, t in enumerate(self.TRAITS[sid]):
            out[(k, *BLOCKS[t])] = True
        return out

    def render(self, ids, off):
        self.calls += len(ids)
        x = torch.zeros(len(ids), 3, S, S)
        for i, (sid, o) in enumerate(zip(ids, off)):
            for t in self.TRAITS[sid]:
                if t not in o:
                    x[(i, slice(None), *BLOCKS[t])] = 1.0
        return x


class HalvesRenderer:
    """Counterfactual provider over a given batch ``x`` (for methods that need sample ids):
    image ``str(i)`` is row ``i``, its two traits are its left and right halves, and switching a
    trait off greys (0.5) that half. ``cache_key`` names the batch (render caches key on it)."""

    def __init__(self, x: torch.Tensor, cache_key: str = "halves-v1") -> None:
        self.x, self.cache_key = x.detach().clone(), cache_key

    def traits(self, sid):
        return ("left", "right")

    def trait_masks(self, sid):
        m = torch.zeros(2, *self.x.shape[-2:], dtype=torch.bool)
        m[0, :, : self.x.shape[-1] // 2] = True
        m[1, :, self.x.shape[-1] // 2:] = True
        return m

    def render(self, ids, off):
        out = torch.stack([self.x[int(s)].clone() for s in ids])
        for i, (sid, o) in enumerate(zip(ids, off)):
            for k, t in enumerate(self.traits(sid)):
                if t in o:
                    out[i][:, self.trait_masks(sid)[k]] = 0.5
        return out


def block_score(x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` sum of ``W[t]`` times the mean of trait ``t``'s block (channel mean)."""
    g = x.mean(1)
    return sum(W[t] * g[(slice(None), *BLOCKS[t])].mean((1, 2)) for t in W)


def default_truth_images(n: int = 16):
    """Up to ``n`` test images of the embedded default, one per subject, of affected classes with
    at least two planted traits (the counterfactual ranking needs two): ``(model in eval mode,
    test split, row indices, images (n, 3, H, W), labels (n,), sample ids, renderer)``."""
    import numpy as np

    from gmxai_eval.models.default import load_default

    torch.set_num_threads(1)
    model, bundle, _ = load_default(progress=False)
    ds = bundle.test
    r = ds.counterfactual_renderer()
    subj, lab, idx, seen = ds.subjects, ds.labels, [], set()
    for i in range(len(ds)):
        if int(lab[i]) > 0 and subj[i] not in seen and len(r.traits(ds[i].image_id)) >= 2:
            seen.add(subj[i])
            idx.append(i)
    idx = idx[:: max(1, len(idx) // n)][:n]
    return model.eval(), ds, idx, ds.images(np.array(idx)), lab[idx], [ds[i].image_id for i in idx], r
