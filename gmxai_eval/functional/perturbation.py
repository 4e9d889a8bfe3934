"""Pure kernels of the pixel-perturbation evaluators (deletion/insertion, pixel flipping, region
perturbation/AOPC, faithfulness correlation/estimate, monotonicity correlation, sensitivity-n,
infidelity, sufficiency).

Every kernel takes tensors and returns per-sample tensors; no state, no hooks. All perturbed
images of a call are built on ``x.device`` and scored in forward passes of at most ``max_batch``
images (:func:`batched_outputs`), however many methods, steps and draws they come from.

Conventions shared by all kernels
---------------------------------
* **Space**: perturbations are applied to pixel-space images ``(B, C, H, W)`` in ``[0, 1]``; the
  model owns its normalisation. Values are never clamped.
* **Ordering unit** (``unit``): ``"pixel"`` (one map value per pixel; all channels of a pixel are
  replaced together), ``"patch"`` (non-overlapping ``patch x patch`` squares ranked by summed
  relevance; border remainders are their own, smaller patches) or ``"element"`` (the map is
  broadcast over channels and every channel element is its own feature, Quantus's convention;
  flat index ``c*H*W + h*W + w``).
* **Ties** are broken by the flat index (stable sort), so every ordering is deterministic.
* **Output** (``output``): ``"probability"`` (softmax of the logits at the target) or
  ``"logit"`` (the target logit); internally also ``"agreement"`` (1.0 if the arg-max equals the
  given class, else 0.0; used by sufficiency). A forward pass with non-finite logits gives NaN.
* **Ranks**: a ranking is stored as ``ranks (B, c, H, W)`` int64, the position of each pixel's
  (or element's) unit in the removal order (0 = removed first), ``c`` = 1 or ``C``. A window
  ``[lo, hi)`` of ranks selects the units removed at one step; cumulative curves use ``lo = 0``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.baselines import order_patches, order_pixels
from gmxai_eval.functional.stats import pearson, spearman
from gmxai_eval.utils import rng_for

UNITS = ("pixel", "patch", "element")
OUTPUTS = ("probability", "logit")
AUC_RULES = ("rise", "trapz_unit", "mean")


# --------------------------------------------------------------------------------------------
# outputs and batching
# --------------------------------------------------------------------------------------------
def _output_probability(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.double(), dim=1).gather(1, target.view(-1, 1)).squeeze(1)


def _output_logit(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return logits.double().gather(1, target.view(-1, 1)).squeeze(1)


def _output_agreement(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == target).to(torch.float64)


_OUTPUT_FNS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "probability": _output_probability, "logit": _output_logit, "agreement": _output_agreement}


def select_output(logits: torch.Tensor, target: torch.Tensor, output: str) -> torch.Tensor:
    """``(n, K)`` logits -> ``(n,)`` float64 model output at ``target (n,)`` (see ``OUTPUTS``).

    A row whose logits are not all finite gives NaN (a broken forward pass is never a number;
    the NaN propagates to that sample's score)."""
    fn = _OUTPUT_FNS.get(output)
    if fn is None:
        raise ConfigError(f"expected output in {tuple(_OUTPUT_FNS)}, got {output!r}")
    return nan_if_nonfinite(fn(logits, target.to(logits.device)), logits)


def nan_if_nonfinite(values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``values (n,)`` with NaN where the row of ``logits (n, K)`` has a NaN/inf entry."""
    ok = torch.isfinite(logits).all(1).to(values.device)
    return torch.where(ok, values, torch.full_like(values, float("nan")))


def batched_outputs(model: nn.Module, n_jobs: int, build: Callable[[torch.Tensor], torch.Tensor],
                    target_of: Callable[[torch.Tensor], torch.Tensor], output: str, max_batch: int,
                    device: torch.device) -> torch.Tensor:
    """Score ``n_jobs`` perturbed images in forward passes of at most ``max_batch`` images.

    Args:
        build: ``job indices (n,) -> images (n, C, H, W)`` built on ``device``; the indices of
            one call are always a contiguous ascending range.
        target_of: ``job indices (n,) -> target (n,)``.
    Returns:
        ``(n_jobs,)`` float64 outputs on ``device``.
    """
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError(f"expected max_batch as a positive int, got {max_batch!r}")
    out = torch.empty(n_jobs, dtype=torch.float64, device=device)
    with torch.no_grad():
        for lo in range(0, n_jobs, max_batch):
            j = torch.arange(lo, min(lo + max_batch, n_jobs), device=device)
            out[j] = select_output(model(build(j)), target_of(j), output).to(device)
    return out


# --------------------------------------------------------------------------------------------
# rankings and schedules
# --------------------------------------------------------------------------------------------
def unit_count(shape: Sequence[int], unit: str, patch: int = 1) -> int:
    """Number of units of an image ``(C, H, W)``."""
    c, h, w = shape
    if unit == "pixel":
        return h * w
    if unit == "element":
        return c * h * w
    if unit == "patch":
        return (-(-h // patch)) * (-(-w // patch))
    raise ConfigError(f"expected unit in {UNITS}, got {unit!r}")


def rank_map(maps: torch.Tensor, order: str = "morf", *, unit: str = "pixel", patch: int = 1,
             channels: int = 1, sample_ids: Sequence[str] | None = None, seed: int = 0) -> torch.Tensor:
    """Removal rank of every pixel/element: ``maps (B, H, W)`` -> ``ranks (B, c, H, W)`` int64.

    ``order`` is ``"morf"`` (descending map), ``"lerf"`` (ascending) or ``"random"`` (keyed on
    ``(seed, sample_id)``). ``c = channels`` for ``unit="element"``, else 1.
    """
    if maps.ndim != 3:
        raise ShapeError(f"expected maps (B, H, W), got {tuple(maps.shape)}")
    b, h, w = maps.shape
    if unit == "pixel":
        idx = order_pixels(maps, order, sample_ids=sample_ids, seed=seed)
        pid = None
    elif unit == "element":
        flat = maps[:, None].expand(b, channels, h, w).reshape(b, channels * h, w)
        idx = order_pixels(flat, order, sample_ids=sample_ids, seed=seed)
        pid = None
    elif unit == "patch":
        if not isinstance(patch, int) or patch < 1:
            raise ConfigError(f"expected patch_size as a positive int, got {patch!r}")
        idx, pid = order_patches(maps, patch, order, sample_ids=sample_ids, seed=seed)
    else:
        raise ConfigError(f"expected unit in {UNITS}, got {unit!r}")
    n = idx.shape[1]
    rank = torch.empty_like(idx)
    rank.scatter_(1, idx, torch.arange(n, device=idx.device).expand(b, n))
    if pid is not None:
        rank = rank[:, pid.reshape(-1)]
    return rank.view(b, -1, h, w)


def step_counts(n_units: int, *, steps: int | None = None, features_in_step: int | None = None,
                include_start: bool = True) -> torch.Tensor:
    """Cumulative number of removed units at each curve point ``(T,)`` int64.

    * ``steps=n``: ``round(k * N / n)`` for ``k = 0..n`` (RISE's schedule, ``n + 1`` points).
    * ``features_in_step=f``: ``min(k * f, N)`` for ``k = 0..ceil(N / f)`` (Quantus's schedule).
    ``include_start=False`` drops the ``k = 0`` point (Quantus's curves start after one step).
    """
    if (steps is None) == (features_in_step is None):
        raise ConfigError(f"expected exactly one of steps / features_in_step, got {steps!r} / {features_in_step!r}")
    if steps is not None:
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"expected steps as a positive int, got {steps!r}")
        k = torch.arange(steps + 1, dtype=torch.float64)
        counts = torch.round(k * n_units / steps).long()
    else:
        if not isinstance(features_in_step, int) or features_in_step < 1:
            raise ConfigError(f"expected features_in_step as a positive int, got {features_in_step!r}")
        k = torch.arange(math.ceil(n_units / features_in_step) + 1)
        counts = torch.clamp(k * features_in_step, max=n_units)
    return counts if include_start else counts[1:]


# --------------------------------------------------------------------------------------------
# window curves (deletion, insertion, pixel flipping, region perturbation, estimate, monotonicity)
# --------------------------------------------------------------------------------------------
def window_outputs(model: nn.Module, x: torch.Tensor, target: torch.Tensor, ranks: torch.Tensor,
                   lo: torch.Tensor, hi: torch.Tensor, fill: torch.Tensor, *, output: str = "probability",
                   max_batch: int = 128, restore: bool = False) -> torch.Tensor:
    """Model outputs with the units of rank ``[lo_t, hi_t)`` replaced, for every step ``t``.

    Args:
        x: ``(B, C, H, W)`` images; target: ``(B,)`` int64.
        ranks: ``(G, B, c, H, W)`` int64 removal ranks of ``G`` orderings (methods, controls).
        lo, hi: ``(T,)`` int64 rank windows (``lo = 0`` for cumulative curves).
        fill: ``(S, B, C, H, W)`` replacement values; ``S`` independent draws (e.g. noise).
        restore: insertion: start from ``fill`` and *restore* the window from ``x``.
    Returns:
        ``(G, S, B, T)`` float64 outputs (on ``x.device``).
    """
    g_, b_, t_, s_ = ranks.shape[0], x.shape[0], lo.shape[0], fill.shape[0]
    if ranks.ndim != 5 or ranks.shape[1] != b_ or tuple(ranks.shape[3:]) != tuple(x.shape[2:]):
        raise ShapeError(f"expected ranks (G, {b_}, c, {x.shape[2]}, {x.shape[3]}), got {tuple(ranks.shape)}")
    if fill.ndim != 5 or tuple(fill.shape[1:]) != tuple(x.shape):
        raise ShapeError(f"expected fill (S, *{tuple(x.shape)}), got {tuple(fill.shape)}")
    dev = x.device
    small = int(ranks.max()) < 2**31 if ranks.numel() else True
    rdt = torch.int32 if small else torch.int64
    lo, hi, ranks, fill = lo.to(dev, rdt), hi.to(dev, rdt), ranks.to(dev, rdt), fill.to(dev, x.dtype)
    cumulative = bool((lo == 0).all())
    target = target.to(dev)
    buf = x.new_empty(min(max_batch, g_ * s_ * b_ * t_), *x.shape[1:])  # reused input buffer

    def build(j: torch.Tensor) -> torch.Tensor:
        # Jobs are ordered (g, s, b, t): a chunk is a few runs of consecutive steps of one image,
        # each built by broadcasting (no gathers of images or ranks).
        j0, j1 = int(j[0]), int(j[-1]) + 1
        out = buf[: j1 - j0]
        i = j0
        while i < j1:
            run, t0 = divmod(i, t_)
            e = min(j1, (run + 1) * t_)
            g, s, b = run // (s_ * b_), (run // b_) % s_, run % b_
            r = ranks[g, b][None]
            m = r < hi[t0: t0 + e - i].view(-1, 1, 1, 1)
            if not cumulative:
                m &= r >= lo[t0: t0 + e - i].view(-1, 1, 1, 1)
            a, z = (x[b], fill[s, b]) if restore else (fill[s, b], x[b])
            torch.where(m, a[None], z[None], out=out[i - j0: e - j0])
            i = e
        return out

    out = batched_outputs(model, g_ * s_ * b_ * t_, build, lambda j: target[(j // t_) % b_], output, max_batch, dev)
    return out.view(g_, s_, b_, t_)


def curve_auc(curve: torch.Tensor, rule: str = "rise") -> torch.Tensor:
    """Area under ``(B, T)`` curves -> ``(B,)`` float64.

    * ``"rise"``: trapezoid on an x axis normalised to ``[0, 1]`` with equal steps,
      ``(sum s - s_0/2 - s_n/2) / n`` with ``n = T - 1`` (Petsiuk et al.);
    * ``"trapz_unit"``: trapezoid with unit spacing (Quantus's ``calculate_auc``, ``np.trapz(dx=1)``);
    * ``"mean"``: mean of the curve.
    """
    c = curve.double()
    if rule == "mean":
        return c.mean(1)
    if c.shape[1] < 2:
        raise ShapeError(f"expected curves with at least 2 points for an AUC, got {tuple(c.shape)}")
    trap = c.sum(1) - 0.5 * (c[:, 0] + c[:, -1])
    if rule == "trapz_unit":
        return trap
    if rule == "rise":
        return trap / (c.shape[1] - 1)
    raise ConfigError(f"expected auc rule in {AUC_RULES}, got {rule!r}")


def aopc(drops: torch.Tensor) -> torch.Tensor:
    """AOPC of ``(B, L+1)`` drops ``f(x) - f(x^(k))``, ``k = 0..L`` -> ``(B,)``:
    ``1/(L+1) * sum_k drops_k`` (Samek et al. 2017; ``drops_0 = 0``)."""
    return drops.double().mean(1)


# --------------------------------------------------------------------------------------------
# random subsets and correlations
# --------------------------------------------------------------------------------------------
def random_subsets(n_units: int, size: int, runs: int, sample_ids: Sequence[str], seed: int = 0,
                   key: str = "subsets") -> torch.Tensor:
    """``(B, runs, size)`` int64 unit indices drawn without replacement, keyed on
    ``(seed, key, size, runs, sample_id)`` (independent of batch composition and order)."""
    if not isinstance(size, int) or not 0 < size <= n_units:
        raise ConfigError(f"expected subset size in [1, {n_units}], got {size!r}")
    out = torch.empty(len(sample_ids), runs, size, dtype=torch.long)
    for i, sid in enumerate(sample_ids):
        g = rng_for(seed, key, size, runs, sid)
        for r in range(runs):
            out[i, r] = torch.randperm(n_units, generator=g)[:size]
    return out


def subset_masks(subsets: torch.Tensor, shape: Sequence[int], unit: str = "pixel", patch: int = 1) -> torch.Tensor:
    """``subsets (B, R, n)`` unit indices -> ``(B, R, c, H, W)`` bool masks for images ``(C, H, W)``."""
    c, h, w = shape
    b, r, _ = subsets.shape
    n = unit_count(shape, unit, patch)
    m = torch.zeros(b, r, n, dtype=torch.bool, device=subsets.device)
    m.scatter_(2, subsets, True)
    if unit == "patch":
        pw = -(-w // patch)
        pid = (torch.arange(h, device=m.device)[:, None] // patch) * pw + torch.arange(w, device=m.device)[None] // patch
        return m[:, :, pid.reshape(-1)].view(b, r, 1, h, w)
    return m.view(b, r, -1, h, w)


def masked_outputs(model: nn.Module, x: torch.Tensor, target: torch.Tensor, masks: torch.Tensor,
                   fill: torch.Tensor, *, output: str, max_batch: int) -> torch.Tensor:
    """Outputs with ``masks (B, R, c, H, W)`` replaced by ``fill (B, C, H, W)`` -> ``(B, R)``."""
    b_, r_ = masks.shape[:2]
    dev = x.device
    masks, fill, target = masks.to(dev), fill.to(dev, x.dtype), target.to(dev)

    def build(j: torch.Tensor) -> torch.Tensor:
        b, r = j // r_, j % r_
        return torch.where(masks[b, r], fill[b], x[b])

    return batched_outputs(model, b_ * r_, build, lambda j: target[j // r_], output, max_batch, dev).view(b_, r_)


def unit_sums(maps: torch.Tensor, masks: torch.Tensor | None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Attribution mass of masked features: ``maps (B, H, W)``, ``masks (B, R, c, H, W)`` ->
    ``(B, R)`` float64. With ``c > 1`` (element unit) a pixel's value counts once per masked
    channel. ``weights`` = :func:`mask_weights` of ``masks`` may be passed to reuse it."""
    if weights is None:
        if masks is None:
            raise ShapeError("expected masks or weights, got neither")
        weights = mask_weights(masks)
    w = weights
    return torch.bmm(w, maps.to(w.device, torch.float64).flatten(1)[:, :, None])[..., 0]


def mask_weights(masks: torch.Tensor) -> torch.Tensor:
    """``(B, R, c, H, W)`` bool -> ``(B, R, H*W)`` float64: masked channels per pixel."""
    return masks.sum(2, dtype=torch.float64).flatten(2)


# --------------------------------------------------------------------------------------------
# infidelity
# --------------------------------------------------------------------------------------------
def gaussian_perturbations(shape: Sequence[int], n: int, std: float, sample_ids: Sequence[str],
                           seed: int = 0) -> torch.Tensor:
    """``(B, n, C, H, W)`` i.i.d. N(0, std^2) perturbations ``I`` keyed on ``(seed, sample_id)``."""
    out = torch.empty(len(sample_ids), n, *shape)
    for i, sid in enumerate(sample_ids):
        torch.randn(n, *shape, generator=rng_for(seed, "infidelity", n, sid), out=out[i])
    return out.mul_(std)


def infidelity_score(a_dot_i: torch.Tensor, drops: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Captum's infidelity from ``a_dot_i = I^T phi`` and ``drops = f(x) - f(x - I)``, both
    ``(B, n)`` -> ``(B,)``: ``mean((beta I^T phi - drop)^2)`` with ``beta = 1`` or, with
    ``normalize``, ``beta = mean(I^T phi * drop) / mean((I^T phi)^2)`` (0 when the denominator is 0)."""
    p, d = a_dot_i.double(), drops.double()
    if normalize:
        den = (p * p).mean(1)
        beta = torch.where(den > 0, (p * d).mean(1) / torch.where(den > 0, den, torch.ones_like(den)),
                           torch.zeros_like(den))
        p = beta[:, None] * p
    return ((p - d) ** 2).mean(1)


# --------------------------------------------------------------------------------------------
# sufficiency
# --------------------------------------------------------------------------------------------
def seuclidean_distances(a: torch.Tensor) -> torch.Tensor:
    """Standardised Euclidean distances between the rows of ``a (B, F)`` -> ``(B, B)`` float64
    (SciPy's ``seuclidean`` with ``V`` = the unbiased per-feature variance over the rows).
    Features with zero variance are ignored (SciPy would divide by zero)."""
    a = a.double()
    v = a.var(0, unbiased=True) if a.shape[0] > 1 else torch.zeros(a.shape[1], dtype=a.dtype, device=a.device)
    keep = v > 0
    z = a[:, keep] / v[keep].sqrt()
    return torch.cdist(z, z).clamp_min(0)


#: Estimators of :func:`sufficiency`-type evaluators: ``"keep"`` (per image, batch-invariant,
#: the default) and ``"quantus_batch"`` (Quantus 0.6.0's neighbourhood-in-the-batch estimator).
SUFFICIENCY_ESTIMATORS = ("keep", "quantus_batch")


def keep_masks(maps: torch.Tensor, keep: Sequence[float]) -> torch.Tensor:
    """``maps (B, H, W)`` -> ``(B, P, 1, H, W)`` bool, True where a pixel is *replaced* at level
    ``p``: every pixel but the ``floor(p * H * W)`` highest of the map (ties by flat index)."""
    n = maps.shape[1] * maps.shape[2]
    ranks = rank_map(maps, "morf", unit="pixel")  # (B, 1, H, W)
    ks = []
    for p in keep:
        if not 0.0 < float(p) <= 1.0:
            raise ConfigError(f"expected keep fractions in (0, 1], got {p!r}")
        ks.append(int(math.floor(float(p) * n + 1e-9)))
    k = torch.tensor(ks, device=ranks.device).view(1, -1, 1, 1, 1)
    return ranks.unsqueeze(1) >= k


def sufficiency(model: nn.Module, x: torch.Tensor, predicted: torch.Tensor, maps: torch.Tensor,
                fills: torch.Tensor, *, keep: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
                max_batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Sufficiency (Dasgupta, Frost, Moshkovitz 2022), per image: the probability that an input
    agreeing with ``x`` on the features the explanation highlights gets the same prediction.

    At each level ``p`` the ``floor(p H W)`` highest pixels of the map are kept and every other
    pixel is replaced by a fill draw; the level's value is the share of draws whose arg-max equals
    ``predicted`` (the clean prediction). Score = mean over levels. Everything is per image (fills
    keyed on the sample id by the caller), so a score never depends on the other images of the
    batch. Higher is better.

    Args:
        model: pixel space -> logits; x: ``(B, C, H, W)``; predicted: ``(B,)`` clean arg-max;
        maps: ``(B, H, W)`` (take ``|map|`` before if magnitudes rank); fills: ``(S, B, C, H, W)``
        replacement draws (one for a deterministic substrate).
    Returns:
        ``scores (B,)`` float64 (NaN where a forward pass gave non-finite logits) and
        ``curves (B, P)`` (the share per level).
    """
    if fills.ndim != 5 or tuple(fills.shape[1:]) != tuple(x.shape):
        raise ShapeError(f"expected fills (S, *{tuple(x.shape)}), got {tuple(fills.shape)}")
    replace = keep_masks(maps.to(x.device), keep)
    hits = torch.stack([masked_outputs(model, x, predicted, replace, f, output="agreement", max_batch=max_batch)
                        for f in fills])  # (S, B, P)
    curves = hits.mean(0)
    return curves.mean(1), curves


def sufficiency_scores(maps: torch.Tensor, predicted: torch.Tensor, threshold: float = 0.6) -> torch.Tensor:
    """Sufficiency, Quantus 0.6.0's estimator (``estimator="quantus_batch"``) of ``maps (B, ...)``
    with predicted classes ``(B,)`` -> ``(B,)`` float64: distances between flattened maps are
    divided by their maximum; for each sample, the share of the *other* samples within
    ``threshold`` that have the same predicted class (0 when it has no such neighbour).

    **Batch-dependent**: the neighbourhood, the variances of the standardised distance and the
    normalising maximum are all taken over the batch, so a score changes when other images join
    or leave it (on 32 test images of the default model, going from batches of 16 to batches of
    8 changed scores of 5 of 6 methods). Kept for parity with Quantus; :func:`sufficiency` is the
    batch-invariant default."""
    d = seuclidean_distances(maps.reshape(maps.shape[0], -1))
    mx = d.abs().max()
    d = d / mx if mx > 0 else d
    near = (d <= threshold) & ~torch.eye(len(d), dtype=torch.bool, device=d.device)
    same = predicted.view(-1, 1) == predicted.view(1, -1)
    n = near.sum(1)
    return torch.where(n > 0, (near & same).sum(1) / n.clamp_min(1), torch.zeros_like(n)).double()


# ============================================================================================
# The metrics: one function per metric, its whole definition. The model enters only through
# callbacks (the evaluator batches forward passes and shares method-independent work); every
# kernel below is otherwise pure. See each evaluator class for its card and defaults.
# ============================================================================================
#: ``(order, counts (T,), restore) -> (B, T)`` float64 model outputs along the *cumulative*
#: curve of one map: the units of rank ``< counts[t]`` (in ``order`` = ``"morf"``/``"lerf"``)
#: replaced by the substrate (``restore=False``) or restored from ``x`` into it (``restore=True``).
CurveFn = Callable[[str, torch.Tensor, bool], torch.Tensor]
#: ``(counts (T,)) -> (B, T)`` the same curve in a random unit order (method independent).
RandomCurveFn = Callable[[torch.Tensor], torch.Tensor]
#: ``(size, runs) -> (weights (B, R, H*W), drops (B, R))``: random subsets of ``size`` units
#: (their masked channels per pixel) and the output drops ``f(x) - f(x_S)`` when replaced.
SubsetFn = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
#: ``(order, lo (T,), hi (T,)) -> (ranks (B, c, H, W), outputs (S, B, T))``: the map's removal
#: ranks and the outputs with only the units of rank ``[lo_t, hi_t)`` replaced (``S`` fill draws).
WindowFn = Callable[[str, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _nan_rows(scores: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
    """``scores (B,)`` with NaN where any ``values (B, ...)`` row has a NaN/inf entry."""
    ok = torch.ones_like(scores, dtype=torch.bool)
    for v in values:
        ok &= torch.isfinite(v.reshape(v.shape[0], -1)).all(1).to(ok.device)
    return torch.where(ok, scores, torch.full_like(scores, float("nan")))


def _cumulative_auc(curve: CurveFn, n_units: int, order: str, restore: bool, *, steps: int | None,
                    features_in_step: int | None, include_start: bool, auc: str
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    counts = step_counts(n_units, steps=steps, features_in_step=features_in_step, include_start=include_start)
    cv = curve(order, counts, restore)
    return _nan_rows(curve_auc(cv, auc), cv), cv, counts.double() / n_units


def deletion(curve: CurveFn, n_units: int, *, steps: int | None = 28, features_in_step: int | None = None,
             include_start: bool = True, auc: str = "rise") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RISE deletion (Petsiuk et al. 2018): units most relevant first (MoRF), cumulatively
    replaced by the substrate, at :func:`step_counts`; score = :func:`curve_auc` of the output
    curve under ``auc``. Lower is better.

    Returns ``scores (B,)``, ``curves (B, T)``, ``curve_x (T,)`` = fraction of units removed.
    A sample whose curve has a non-finite output scores NaN."""
    return _cumulative_auc(curve, n_units, "morf", False, steps=steps, features_in_step=features_in_step,
                           include_start=include_start, auc=auc)


def insertion(curve: CurveFn, n_units: int, *, steps: int | None = 28, features_in_step: int | None = None,
              include_start: bool = True, auc: str = "rise") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RISE insertion: start from the substrate and *restore* units most relevant first,
    cumulatively; score = AUC of the output curve. Higher is better. Returns as :func:`deletion`."""
    return _cumulative_auc(curve, n_units, "morf", True, steps=steps, features_in_step=features_in_step,
                           include_start=include_start, auc=auc)


def pixel_flipping(curve: CurveFn, n_units: int, *, steps: int | None = 28, features_in_step: int | None = None,
                   include_start: bool = True, auc: str = "rise") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel flipping (Bach et al. 2015): flip units most relevant first, cumulatively, to the
    baseline; score = AUC of the output curve, lower is better. The same curve as
    :func:`deletion` (kept under the paper's name; Quantus's schedule via ``features_in_step``,
    ``include_start=False``, ``auc="trapz_unit"``)."""
    return _cumulative_auc(curve, n_units, "morf", False, steps=steps, features_in_step=features_in_step,
                           include_start=include_start, auc=auc)


def monotonicity_arya(curve: CurveFn, n_units: int, *, steps: int | None = 28, features_in_step: int | None = None,
                      include_start: bool = True, score: str = "all"
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Monotonicity (Arya et al. 2019): restore units least relevant first (LeRF), cumulatively,
    into the baseline; ``score="all"``: 1.0 if the output never decreases along the curve, else
    0.0; ``score="fraction"``: the share of non-decreasing steps. Higher is better. NaN when the
    curve has a non-finite output. Returns as :func:`deletion`."""
    if score not in ("all", "fraction"):
        raise ConfigError(f"expected score in ('all', 'fraction'), got {score!r}")
    counts = step_counts(n_units, steps=steps, features_in_step=features_in_step, include_start=include_start)
    cv = curve("lerf", counts, True)
    ok = (cv[:, 1:] - cv[:, :-1]) >= 0
    s = ok.all(1).double() if score == "all" else ok.double().mean(1)
    return _nan_rows(s, cv), cv, counts.double() / n_units


def region_perturbation(curve: CurveFn, n_patches: int, *, regions: int = 100,
                        random_curve: RandomCurveFn | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Region perturbation with AOPC (Samek et al. 2017): patches most relevant first (MoRF),
    cumulatively replaced, ``k = 0..L`` with ``L = min(regions, n_patches)``; ``drops_k = f(x) -
    f(x^(k))``; score = :func:`aopc` ``= 1/(L+1) sum_k drops_k``. Higher is better.

    With ``random_curve``: extras ``aopc_random`` (the same in a random patch order) and
    ``aopc_minus_random``. Returns ``scores (B,)``, ``drops (B, L+1)``, ``curve_x (L+1,)`` = k,
    extras."""
    counts = torch.arange(min(int(regions), n_patches) + 1)
    cv = curve("morf", counts, False)
    drops = cv[:, :1] - cv
    extras = {}
    if random_curve is not None:
        rnd = random_curve(counts)
        a_r = aopc(rnd[:, :1] - rnd)
        extras = {"aopc_random": a_r, "aopc_minus_random": aopc(drops) - a_r}
    return _nan_rows(aopc(drops), drops), drops, counts.double(), extras


def faithfulness_correlation(maps: torch.Tensor, subsets: SubsetFn, *, subset_size: int = 224,
                             nr_runs: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Faithfulness correlation (Bhatt et al. 2020): ``nr_runs`` random subsets of
    ``subset_size`` units are replaced; score = Pearson correlation over runs between the
    subset's attribution sum and the output drop (``constant="zero"``: a constant map or flat
    drops score 0; a non-finite output NaN). Higher is better.

    Returns ``scores (B,)``, ``attribution sums (B, R)``, ``drops (B, R)``."""
    w, dr = subsets(int(subset_size), int(nr_runs))
    sums = unit_sums(maps, None, w)
    return pearson(sums, dr, constant="zero"), sums, dr


def sensitivity_n(maps: torch.Tensor, subsets: SubsetFn, n_units: int, *,
                  subset_fractions: Sequence[float] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8),
                  nr_runs: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sensitivity-n (Ancona et al. 2018): for each subset size ``n = round(f * n_units)``
    (``f`` in ``subset_fractions``, clipped to ``[1, n_units]``, deduplicated, ascending), the
    per-image Pearson correlation (``constant="zero"``) between the attribution sums of
    ``nr_runs`` random subsets and the output drops; score = mean over ``n``. Higher is better.

    Returns ``scores (B,)``, ``curves (B, len(n))``, ``sizes (len(n),)``."""
    sizes = sorted({max(1, min(n_units, int(round(f * n_units)))) for f in subset_fractions})
    data = [subsets(s, int(nr_runs)) for s in sizes]
    cv = torch.stack([pearson(unit_sums(maps, None, w), dr, constant="zero") for w, dr in data], 1)
    return cv.mean(1), cv, torch.tensor(sizes, dtype=torch.float64)


def window_sums(maps: torch.Tensor, ranks: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Attribution mass of the units of rank ``[lo_t, hi_t)``: ``maps (B, H, W)``, ``ranks
    (B, c, H, W)`` -> ``(B, T)`` float64 (with ``c > 1``, element unit, a pixel counts once per
    channel)."""
    b = maps.shape[0]
    a = maps.double()[:, None]
    per_rank = torch.zeros(b, int(ranks.max()) + 1, dtype=torch.float64, device=ranks.device)
    per_rank.scatter_add_(1, ranks.reshape(b, -1), a.expand(ranks.shape).reshape(b, -1).to(ranks.device))
    cum = torch.cat([per_rank.new_zeros(b, 1), per_rank.cumsum(1)], 1)
    return cum[:, hi.to(cum.device)] - cum[:, lo.to(cum.device)]


def _windows(n_units: int, features_in_step: int) -> tuple[torch.Tensor, torch.Tensor]:
    counts = step_counts(n_units, features_in_step=int(features_in_step))
    return counts[:-1], counts[1:]


def faithfulness_estimate(maps: torch.Tensor, windows: WindowFn, clean: torch.Tensor, n_units: int, *,
                          features_in_step: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Faithfulness estimate (Alvarez-Melis & Jaakkola 2018): units in MoRF order, in windows of
    ``features_in_step``; each window *alone* is replaced; score = Pearson correlation
    (``constant="zero"``) over windows between the window's attribution sum and the output drop
    ``clean - f(x_window)``. Higher is better.

    Returns ``scores (B,)``, ``drops (B, T)``, ``curve_x (T,)`` = window start, ``sums (B, T)``."""
    lo, hi = _windows(n_units, features_in_step)
    ranks, vals = windows("morf", lo, hi)
    sums = window_sums(maps, ranks, lo, hi)
    drops = clean[:, None] - vals[0]
    return pearson(sums, drops, constant="zero"), drops, lo.double(), sums


def monotonicity_correlation(maps: torch.Tensor, windows: WindowFn, clean: torch.Tensor, n_units: int, *,
                             features_in_step: int = 256, eps: float = 1e-5
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Monotonicity correlation (Nguyen & Martinez 2020): units in ascending (LeRF) order, windows
    of ``features_in_step`` replaced one at a time by ``S`` fill draws; per window
    ``v = mean_s (f(x_s) - f(x))^2 / f(x)^2`` (the ``1/f(x)^2`` factor only when
    ``|f(x)| >= eps``, as Quantus); score = Spearman correlation (``constant="zero"``) between
    window attribution sums and ``v``. Higher is better.

    Returns ``scores (B,)``, ``v (B, T)``, ``curve_x (T,)`` = window start, ``sums (B, T)``."""
    lo, hi = _windows(n_units, features_in_step)
    ranks, vals = windows("lerf", lo, hi)
    sums = window_sums(maps, ranks, lo, hi)
    y = clean
    inv = torch.where(y.abs() >= eps, 1.0 / y.abs().clamp_min(1e-300), torch.ones_like(y)) ** 2
    v = ((vals - y[None, :, None]) ** 2).mean(0) * inv[:, None]
    return spearman(sums, v, constant="zero"), v, lo.double(), sums


def infidelity(maps: torch.Tensor, noise_channel_sum: torch.Tensor, drops: torch.Tensor, *,
               normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Infidelity (Yeh et al. 2019, Captum's definition): ``mean_I (beta I^T phi - (f(x) -
    f(x - I)))^2`` with the map broadcast over channels (``I^T phi = sum_{c,h,w} I_chw phi_hw``).

    Args:
        maps: ``(B, H, W)``; noise_channel_sum: ``(B, n, H*W)`` the perturbations summed over
            channels; drops: ``(B, n)`` ``f(x) - f(x - I)``; normalize: Captum's optimal ``beta``.
    Returns:
        ``scores (B,)`` (lower is better; NaN where a drop is not finite) and ``I^T phi (B, n)``.
    """
    p = torch.bmm(noise_channel_sum, maps.double().flatten(1)[:, :, None].to(noise_channel_sum.device))[..., 0]
    return _nan_rows(infidelity_score(p, drops, normalize), drops), p
