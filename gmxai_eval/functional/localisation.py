"""Localisation of attribution maps against ground-truth masks. Pure kernels.

Every kernel takes ``maps (B, H, W)`` float and ``masks (B, H, W)`` bool and returns ``(B,)``
float64. A sample with an **empty mask gets NaN** (never a hit, never 0); callers decide whether
that is an error. ``relevance`` picks what is scored: ``"positive"`` (``max(a, 0)``), ``"abs"``
(``|a|``) or ``"signed"`` (``a`` as is).

* :func:`relevance_mass_accuracy` (Arras et al. 2022): ``sum(a * s) / sum(a)``, by default on the
  positive part; NaN when ``sum(a) == 0``.
* :func:`energy_pointing_game` (Wang et al. 2020, Score-CAM): the same ratio; for the default
  positive part it coincides with relevance mass accuracy (both are kept because papers report
  them under both names; Quantus calls it ``AttributionLocalisation``).
* :func:`relevance_rank_accuracy` (Arras et al. 2022): with ``K = |s|``, the share of the ``K``
  highest-ranked pixels inside ``s`` (ties by pixel index).
* :func:`pointing_game` (Zhang et al. 2018): is the arg-max inside ``s``? Ties at the maximum
  follow ``ties``: ``"fraction"`` (default) scores the share of arg-max pixels inside ``s`` (the
  expected hit under a uniformly random tie break; a constant map scores ``|s| / (H W)``,
  chance level), ``"any"`` scores a hit if any arg-max pixel is inside (Quantus; a constant map
  always "hits"), ``"nan"`` gives NaN unless the maximum is unique.
* :func:`mask_roc_auc`: ROC-AUC of the map as a score for the mask (Mann-Whitney statistic, ties
  count one half, as ``sklearn.metrics.roc_auc_score``); NaN when the mask covers everything.
* :func:`top_k_intersection` (Theiner et al. 2022): share of the ``k`` highest pixels inside ``s``;
  ``concept_influence`` divides by ``|s| / (H W)``.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.stats import rankdata

#: What part of a signed map is scored.
RELEVANCE: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "positive": lambda a: a.clamp_min(0), "abs": torch.abs, "signed": lambda a: a}

POINTING_TIES = ("fraction", "any", "nan")


def _prep(maps: torch.Tensor, masks: torch.Tensor, relevance: str = "signed") -> tuple[torch.Tensor, torch.Tensor]:
    if maps.ndim != 3 or tuple(masks.shape) != tuple(maps.shape) or masks.dtype != torch.bool:
        raise ShapeError(f"expected maps (B, H, W) and bool masks of the same shape, got maps "
                         f"{tuple(maps.shape)} and masks {masks.dtype} {tuple(masks.shape)}")
    if relevance not in RELEVANCE:
        raise ConfigError(f"expected relevance in {sorted(RELEVANCE)}, got {relevance!r}")
    b = maps.shape[0]
    a = RELEVANCE[relevance](maps.detach().reshape(b, -1).double())
    return a, masks.reshape(b, -1).to(a.device)


def _nan_empty(score: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.where(s.any(1), score, torch.full_like(score, float("nan")))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)),
                       torch.full_like(num, float("nan")))


def relevance_mass_accuracy(maps: torch.Tensor, masks: torch.Tensor, relevance: str = "positive") -> torch.Tensor:
    """``sum(a * s) / sum(a)`` per sample -> ``(B,)``; NaN for an empty mask or zero total."""
    a, s = _prep(maps, masks, relevance)
    return _nan_empty(_ratio((a * s).sum(1), a.sum(1)), s)


def energy_pointing_game(maps: torch.Tensor, masks: torch.Tensor, relevance: str = "positive") -> torch.Tensor:
    """Energy inside the mask over total energy -> ``(B,)`` (see the module docstring)."""
    return relevance_mass_accuracy(maps, masks, relevance)


def _rank_desc(a: torch.Tensor) -> torch.Tensor:
    """Rank of each element in a stable descending sort (0 = highest, ties by index)."""
    order = torch.sort(a, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(a.shape[1], device=a.device).expand_as(order))
    return rank


def relevance_rank_accuracy(maps: torch.Tensor, masks: torch.Tensor, relevance: str = "signed") -> torch.Tensor:
    """Share of the ``|s|`` top-ranked pixels inside ``s`` -> ``(B,)``."""
    a, s = _prep(maps, masks, relevance)
    k = s.sum(1, keepdim=True)
    hits = ((_rank_desc(a) < k) & s).sum(1).double()
    return _nan_empty(_ratio(hits, k.squeeze(1).double()), s)


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, relevance: str = "signed",
                  ties: str = "fraction") -> torch.Tensor:
    """Arg-max inside the mask -> ``(B,)`` in ``[0, 1]`` (1 = hit); see the module docstring."""
    if ties not in POINTING_TIES:
        raise ConfigError(f"expected ties in {POINTING_TIES}, got {ties!r}")
    a, s = _prep(maps, masks, relevance)
    top = a == a.max(1, keepdim=True).values
    n_top = top.sum(1).double()
    inside = (top & s).sum(1).double()
    if ties == "fraction":
        hit = inside / n_top
    elif ties == "any":
        hit = (inside > 0).double()
    else:
        hit = torch.where(n_top == 1, inside, torch.full_like(inside, float("nan")))
    return _nan_empty(hit, s)


def mask_roc_auc(maps: torch.Tensor, masks: torch.Tensor, relevance: str = "signed") -> torch.Tensor:
    """ROC-AUC of the map against the mask -> ``(B,)``; NaN if the mask is empty or full."""
    a, s = _prep(maps, masks, relevance)
    n = a.shape[1]
    ranks = rankdata(a)  # average ranks (1-based), ties shared
    n_pos = s.sum(1).double()
    n_neg = n - n_pos
    u = (ranks * s).sum(1) - n_pos * (n_pos + 1) / 2
    return _ratio(u, n_pos * n_neg)


def top_k_intersection(maps: torch.Tensor, masks: torch.Tensor, k: int, relevance: str = "signed",
                       concept_influence: bool = False) -> torch.Tensor:
    """Share of the ``k`` top-ranked pixels inside the mask -> ``(B,)``."""
    a, s = _prep(maps, masks, relevance)
    n = a.shape[1]
    if not 1 <= int(k) <= n:
        raise ConfigError(f"expected 1 <= k <= {n} (pixels per map), got {k}")
    tki = ((_rank_desc(a) < int(k)) & s).sum(1).double() / int(k)
    if concept_influence:
        tki = _ratio(tki * n, s.sum(1).double())
    return _nan_empty(tki, s)
