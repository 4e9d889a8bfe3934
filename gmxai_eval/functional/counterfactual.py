"""Counterfactual ground truth: interventional importance of planted traits and the scores of a
map against it (pure kernels; the model and the renderer enter as one callable).

A *trait* is a part of the image that can be switched off in distribution (a planted phenotype
re-rendered as normal facial variation, a sticker removed). Images carry different numbers of
traits, so per-image trait data are padded to ``T`` slots with a ``valid (B, T)`` bool mask;
padded slots hold NaN in every output.

``subset_score(rows, off) -> (N,) float64`` is the one callable every kernel uses: the
explained class's score of image ``rows[i]`` (a row of the batch) re-rendered with the traits
``off[i]`` (a ``frozenset`` of trait slots) switched off; ``off[i] = frozenset()`` is the
image itself. Callers memoise it (the same subset is asked for by several methods).

Definitions (Hesse et al., FunnyBirds, ICCV 2023, for the interventional idea):

* interventional importance of trait ``t``: ``s(x) - s(x without t)`` (:func:`interventional_importance`);
* mass of a map per trait: the sum of its positive part (or signed values, or absolute values)
  over the trait's pixels (:func:`trait_mass`);
* region rank: Spearman correlation between mass and importance over an image's traits
  (:func:`region_rank`); NaN with fewer than two traits or a constant vector;
* counterfactual deletion: switch traits off cumulatively in a given order, record
  ``s(x), s(x without t1), s(x without t1, t2), ...`` and take the trapezoidal area under that
  curve over the fraction of traits removed (``[0, 1]``; lower = the order finds what the model
  uses sooner) (:func:`deletion_curves`, :func:`normalised_auc`);
* the importance map (the truth as a map): every trait's pixels carry its importance divided by
  its area, summed over traits, so a trait's signed mass is its importance (plus the share of
  any trait that overlaps it) (:func:`importance_map`);
* interventional Shapley value of trait ``t`` (Shapley 1953, over the game
  ``v(S) = s(x with only the traits S on)``, every other trait re-rendered off):
  ``phi_t = sum_{S without t} |S|! (n - |S| - 1)! / n! * (v(S + t) - v(S))``; the values sum to
  ``v(all) - v(none) = s(x) - s(x with every trait off)`` (efficiency) (:func:`shapley_values`);
* Shapley overlap: the class score splits exactly into the score the image keeps with every
  trait re-rendered away (*the rest of the image*: ``v(none)``) and the traits' Shapley values,
  ``s(x) = v(none) + sum_t phi_t``; the truth's shares are the positive parts of these ``n + 1``
  terms, normalised; the map's shares are its positive mass on each trait and on the pixels in no
  trait (mass on the rest beyond the rest's share of the score, or on a trait beyond its share,
  is wasted); the score is the histogram intersection ``sum_u min(p_u, q_u)`` in ``[0, 1]``
  (1 = the map's mass is where the score comes from, in the same proportions)
  (:func:`unit_shares`, :func:`shapley_overlap`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.similarity import spearman

#: Class scores: ``"probability"`` (softmax of the logits) or ``"logit"``.
OUTPUTS = ("probability", "logit")
#: Which part of a map counts as mass: positive part, signed values, absolute values.
PARTS = ("positive", "signed", "abs")

SubsetScore = Callable[[Sequence[int], Sequence[frozenset]], torch.Tensor]


def class_score(logits: torch.Tensor, target: torch.Tensor, output: str = "probability") -> torch.Tensor:
    """``(N,)`` float64 score of class ``target (N,)`` from ``logits (N, K)``."""
    if output not in OUTPUTS:
        raise ConfigError(f"expected output in {OUTPUTS}, got {output!r}")
    if logits.ndim != 2 or target.shape != (logits.shape[0],):
        raise ShapeError(f"expected logits (N, K) and target (N,), got {tuple(logits.shape)} and "
                         f"{tuple(target.shape)}")
    z = logits.to(torch.float64)
    if output == "probability":
        z = z.softmax(1)
    return z.gather(1, target.to(z.device).long().view(-1, 1))[:, 0]


def _check_valid(valid: torch.Tensor) -> torch.Tensor:
    if not isinstance(valid, torch.Tensor) or valid.ndim != 2 or valid.dtype != torch.bool:
        raise ShapeError(f"expected valid as a (B, T) bool tensor, got "
                         f"{getattr(valid, 'dtype', type(valid).__name__)} {tuple(getattr(valid, 'shape', ()))}")
    if (valid[:, 1:] & ~valid[:, :-1]).any():
        raise ShapeError("expected valid trait slots first in every row (padding at the end)")
    return valid


def _query(subset_score: SubsetScore, rows: list[int], off: list[frozenset]) -> torch.Tensor:
    if not rows:
        return torch.zeros(0, dtype=torch.float64)
    s = torch.as_tensor(subset_score(rows, off)).to("cpu", torch.float64).reshape(-1)
    if s.shape[0] != len(rows):
        raise ShapeError(f"expected subset_score to return {len(rows)} scores, got {s.shape[0]}")
    return s


def interventional_importance(subset_score: SubsetScore, valid: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` float64: drop of the class score when trait ``t`` alone is switched off,
    ``s(x) - s(x without t)``; NaN in padded slots.

    Args:
        subset_score: see the module docstring.
        valid: ``(B, T)`` bool, real trait slots (first ``n_b`` of each row).
    """
    valid = _check_valid(valid)
    b, t = valid.shape
    clean = _query(subset_score, list(range(b)), [frozenset()] * b)
    pairs = valid.nonzero().tolist()
    single = _query(subset_score, [i for i, _ in pairs], [frozenset({j}) for _, j in pairs])
    out = torch.full((b, t), float("nan"), dtype=torch.float64)
    if pairs:
        ix = torch.as_tensor(pairs)
        out[ix[:, 0], ix[:, 1]] = clean[ix[:, 0]] - single
    return out


def trait_mass(maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, part: str = "positive") -> torch.Tensor:
    """``(B, T)`` float64 attribution mass of ``maps (B, H, W)`` inside ``masks (B, T, H, W)``
    bool: the sum of the map's ``part`` (``"positive"``: ``max(a, 0)``; ``"signed"``: ``a``;
    ``"abs"``: ``|a|``) over each trait's pixels; NaN in padded slots."""
    if part not in PARTS:
        raise ConfigError(f"expected part in {PARTS}, got {part!r}")
    valid = _check_valid(valid)
    if maps.ndim != 3 or masks.ndim != 4 or masks.shape[0] != maps.shape[0] or \
            masks.shape[2:] != maps.shape[1:] or masks.shape[:2] != valid.shape or masks.dtype != torch.bool:
        raise ShapeError(f"expected maps (B, H, W), masks bool (B, T, H, W) and valid (B, T), got "
                         f"{tuple(maps.shape)}, {masks.dtype} {tuple(masks.shape)}, {tuple(valid.shape)}")
    a = maps.to(torch.float64)
    a = a.clamp(min=0) if part == "positive" else a.abs() if part == "abs" else a
    mass = torch.einsum("bhw,bthw->bt", a, masks.to(a.device, torch.float64))
    return torch.where(valid.to(mass.device), mass, torch.full_like(mass, float("nan"))).cpu()


def region_rank(mass: torch.Tensor, importance: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(B,)`` float64 Spearman correlation (average ranks for ties) between ``mass (B, T)``
    and ``importance (B, T)`` over each image's valid traits; NaN for fewer than two traits or a
    constant vector (no ranking is defined)."""
    valid = _check_valid(valid)
    if mass.shape != valid.shape or importance.shape != valid.shape:
        raise ShapeError(f"expected mass and importance of shape {tuple(valid.shape)}, got "
                         f"{tuple(mass.shape)} and {tuple(importance.shape)}")
    out = torch.full((valid.shape[0],), float("nan"), dtype=torch.float64)
    for i, n in enumerate(valid.sum(1).tolist()):
        if n >= 2:
            out[i] = spearman(mass[i:i + 1, :n], importance[i:i + 1, :n])[0]
    return out


def order_by(values: torch.Tensor, valid: torch.Tensor, tiebreak: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` long: trait slots by decreasing ``values (B, T)``, ties broken by decreasing
    ``tiebreak (B, T)`` (e.g. uniform draws), padded slots last."""
    valid = _check_valid(valid)
    v = torch.where(valid, values.to(torch.float64), torch.full(valid.shape, -float("inf"), dtype=torch.float64))
    if torch.isnan(v).any():
        raise ShapeError("expected finite values in valid trait slots, got NaN")
    # lexicographic: stable sort by the tie-break first, then by the value
    idx = torch.argsort(tiebreak.to(torch.float64), dim=1, descending=True, stable=True)
    v2 = v.gather(1, idx)
    idx2 = torch.argsort(v2, dim=1, descending=True, stable=True)
    out = idx.gather(1, idx2)
    # keep padded slots last in index order
    return torch.where(valid.gather(1, out), out, torch.arange(valid.shape[1]).expand_as(out))


def deletion_curves(subset_score: SubsetScore, order: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(B, T + 1)`` float64: class score after switching off the first ``k`` traits of
    ``order (B, T)`` cumulatively, ``k = 0..n_b``; NaN after ``n_b``."""
    valid = _check_valid(valid)
    if order.shape != valid.shape:
        raise ShapeError(f"expected order of shape {tuple(valid.shape)}, got {tuple(order.shape)}")
    b, t = valid.shape
    ns = valid.sum(1).tolist()
    rows, offs, where = [], [], []
    for i, n in enumerate(ns):
        o = order[i, :n].tolist()
        if sorted(o) != list(range(n)):
            raise ShapeError(f"expected row {i} of order to permute the {n} valid slots, got {o}")
        for k in range(n + 1):
            rows.append(i)
            offs.append(frozenset(o[:k]))
            where.append((i, k))
    s = _query(subset_score, rows, offs)
    out = torch.full((b, t + 1), float("nan"), dtype=torch.float64)
    if where:
        ix = torch.as_tensor(where)
        out[ix[:, 0], ix[:, 1]] = s
    return out


def normalised_auc(curves: torch.Tensor, valid: torch.Tensor, min_traits: int = 2) -> torch.Tensor:
    """``(B,)`` trapezoidal area under ``curves (B, T + 1)`` over the fraction of traits removed
    (``k / n_b`` in ``[0, 1]``); NaN for rows with fewer than ``min_traits`` traits."""
    valid = _check_valid(valid)
    if curves.shape != (valid.shape[0], valid.shape[1] + 1):
        raise ShapeError(f"expected curves of shape {(valid.shape[0], valid.shape[1] + 1)}, got {tuple(curves.shape)}")
    out = torch.full((valid.shape[0],), float("nan"), dtype=torch.float64)
    for i, n in enumerate(valid.sum(1).tolist()):
        if n >= max(min_traits, 1):
            c = curves[i, :n + 1].to(torch.float64)
            out[i] = ((c[1:] + c[:-1]) / 2).sum() / n
    return out


def importance_map(masks: torch.Tensor, valid: torch.Tensor, importance: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` float32 map ``sum_t importance[b, t] * masks[b, t] / |masks[b, t]|`` over the
    valid traits: each trait spreads its interventional importance evenly over its pixels.

    A trait's signed mass (:func:`trait_mass` with ``part="signed"``) is then its importance when
    no other trait overlaps it, so the map reproduces the importance ranking of the traits; where
    traits overlap (two phenotypes acting on the same region) their densities add. An empty trait
    mask contributes nothing; an image without traits gets an all-zero map.

    Args:
        masks: ``(B, T, H, W)`` bool trait masks.
        valid: ``(B, T)`` bool, real trait slots first.
        importance: ``(B, T)`` float, finite in valid slots (NaN allowed in padded slots).
    """
    valid = _check_valid(valid)
    if masks.ndim != 4 or masks.dtype != torch.bool or masks.shape[:2] != valid.shape or \
            importance.shape != valid.shape:
        raise ShapeError(f"expected masks bool (B, T, H, W), valid (B, T) and importance (B, T), got "
                         f"{masks.dtype} {tuple(masks.shape)}, {tuple(valid.shape)}, {tuple(importance.shape)}")
    imp = importance.to("cpu", torch.float64)
    ok = valid.cpu()
    if not torch.isfinite(imp[ok]).all():
        raise ShapeError("expected finite importance in valid trait slots, got NaN/inf")
    m = masks.to("cpu", torch.float64)
    area = m.sum((2, 3))
    dens = torch.where(ok & (area > 0), imp.nan_to_num() / area.clamp(min=1.0), torch.zeros_like(imp))
    return torch.einsum("bt,bthw->bhw", dens, m).to(torch.float32)


def _subsets(n: int) -> list[frozenset]:
    return [frozenset(j for j in range(n) if k >> j & 1) for k in range(1 << n)]


def shapley_values(subset_score: SubsetScore, valid: torch.Tensor, max_traits: int = 12) -> torch.Tensor:
    """``(B, T)`` float64 interventional Shapley values of each image's traits (see the module
    docstring); NaN in padded slots. Queries every subset of an image's ``n`` traits (``2^n``
    renders, shared with the other kernels through the memoised ``subset_score``).

    >>> v = {frozenset(): 1.0, frozenset({0}): 0.7, frozenset({1}): 0.5, frozenset({0, 1}): 0.1}
    >>> f = lambda rows, off: torch.tensor([v[o] for o in off], dtype=torch.float64)
    >>> [round(v, 6) for v in shapley_values(f, torch.tensor([[True, True]]))[0].tolist()]
    [0.35, 0.55]

    Raises:
        ConfigError: an image with more than ``max_traits`` traits (``2^n`` renders).
    """
    valid = _check_valid(valid)
    b, t = valid.shape
    ns = valid.sum(1).tolist()
    if ns and max(ns) > max_traits:
        raise ConfigError(f"expected at most max_traits = {max_traits} traits per image (2^n renders), got {max(ns)}")
    rows, offs = [], []
    for i, n in enumerate(ns):
        for off in _subsets(n):
            rows.append(i)
            offs.append(off)
    s = _query(subset_score, rows, offs)
    out = torch.full((b, t), float("nan"), dtype=torch.float64)
    at = 0
    for i, n in enumerate(ns):
        full = frozenset(range(n))
        v = {full - off: float(s[at + k]) for k, off in enumerate(_subsets(n))}  # v(traits on)
        at += 1 << n
        for j in range(n):
            phi = 0.0
            for on, val in v.items():
                if j in on:
                    continue
                k = len(on)
                phi += math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) * (v[on | {j}] - val)
            out[i, j] = phi
    return out


def unit_shares(maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(B, T + 1)`` float64 shares of each map's positive mass on its traits (slots ``0..T-1``,
    a pixel in two overlapping traits counts for each) and on the rest of the image (slot ``T``:
    pixels in no valid trait); the shares of a row sum to 1; NaN in padded slots, and a row of
    NaN for a map without positive mass."""
    mass = trait_mass(maps, masks, valid, "positive")
    a = maps.to(torch.float64).clamp(min=0).cpu()
    union = (masks.cpu() & valid.cpu()[:, :, None, None]).any(1)
    rest = (a * (~union).to(torch.float64)).sum((1, 2))
    units = torch.cat([mass, rest[:, None]], 1)
    total = torch.nan_to_num(units).sum(1, keepdim=True)
    return torch.where(total > 0, units / total.clamp(min=1e-300), torch.full_like(units, float("nan")))


def shapley_overlap(shares: torch.Tensor, shapley: torch.Tensor, valid: torch.Tensor,
                    rest: torch.Tensor) -> torch.Tensor:
    """``(B,)`` float64 histogram intersection ``sum_u min(p_u, q_u)`` of the map's unit shares
    ``p = shares (B, T + 1)`` (:func:`unit_shares`) and the truth's ``q``: the positive parts of
    ``shapley (B, T)`` on the traits and of ``rest (B,)`` (the score with every trait off) on the
    rest of the image, normalised to sum 1. NaN for an image without traits, without any positive
    term, or a map without positive mass.

    >>> p = torch.tensor([[0.5, 0.2, 0.3]], dtype=torch.float64)  # two traits, then the rest
    >>> q = torch.tensor([[0.3, 0.1]], dtype=torch.float64)  # with rest 0: truth shares 0.75, 0.25, 0
    >>> v0 = torch.tensor([0.0], dtype=torch.float64)
    >>> [round(v, 6) for v in shapley_overlap(p, q, torch.tensor([[True, True]]), v0).tolist()]
    [0.7]
    """
    valid = _check_valid(valid)
    b, t = valid.shape
    if shares.shape != (b, t + 1) or shapley.shape != (b, t) or rest.shape != (b,):
        raise ShapeError(f"expected shares {(b, t + 1)}, shapley {(b, t)} and rest {(b,)}, got "
                         f"{tuple(shares.shape)}, {tuple(shapley.shape)} and {tuple(rest.shape)}")
    q = torch.where(valid, shapley.to(torch.float64).clamp(min=0), torch.zeros(b, t, dtype=torch.float64))
    q = torch.cat([torch.nan_to_num(q), torch.nan_to_num(rest.to(torch.float64).clamp(min=0))[:, None]], 1)
    tot = q.sum(1, keepdim=True)
    q = q / tot.clamp(min=1e-300)
    p = torch.where(torch.cat([valid, torch.ones(b, 1, dtype=torch.bool)], 1), shares.to(torch.float64),
                    torch.zeros(b, t + 1, dtype=torch.float64))
    out = torch.minimum(p, q).sum(1)
    bad = (tot[:, 0] <= 0) | ~valid.any(1) | torch.isnan(p).any(1)
    return torch.where(bad, torch.full_like(out, float("nan")), out)


#: What a counterfactual renderer provides (``SyntheticFaces.counterfactual_renderer()``).
RENDERER_API = ("cache_key", "traits", "trait_masks", "render")


def check_renderer(renderer: object, owner: str) -> object:
    """``renderer`` if it has :data:`RENDERER_API`, else :class:`ConfigError` naming ``owner``."""
    if renderer is None:
        raise ConfigError(f"{owner}: expected a counterfactual renderer (the dataset's "
                          "counterfactual_renderer()), got none")
    missing = [a for a in RENDERER_API if not hasattr(renderer, a)]
    if missing:
        raise ConfigError(f"{owner}: expected a counterfactual renderer with {RENDERER_API}, got "
                          f"{type(renderer).__name__} without {missing}")
    return renderer


__all__ = [
    "RENDERER_API",
    "check_renderer",
    "OUTPUTS",
    "PARTS",
    "class_score",
    "deletion_curves",
    "importance_map",
    "interventional_importance",
    "normalised_auc",
    "order_by",
    "region_rank",
    "shapley_overlap",
    "shapley_values",
    "trait_mass",
    "unit_shares",
]
