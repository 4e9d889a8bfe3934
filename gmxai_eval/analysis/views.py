"""Clinical views of attribution maps: which facial regions a syndrome classifier relies on.

Pure functions over tensors (no model): they take maps that a run already computed (the map
cache) and summarise them per patient, per syndrome and per named region.

* :func:`region_mass`: each map's share of positive attribution mass per named region, plus
  ``background`` (pixels in no named region);
* :func:`syndrome_maps`: per class, the mean and the spread (std) of the aligned maps of its
  images (typically the correctly classified test images), with their count;
* :func:`composite_faces`: per class, the mean aligned face;
* :func:`generic_and_difference`: the model-level mean map over every class and each class's
  difference from it (signed: show it with a diverging colour map centred at zero);
* :func:`region_table`: per class, mass per region against the regions of the class's
  annotated traits (HPO terms mapped to regions by an editable table,
  :func:`gmxai_eval.data.regions.load_hpo_regions`): mass inside annotated regions, the rank of
  the best annotated region, whether the top region is annotated, and the regions with high
  mass that no annotated trait explains (candidate traits, or biases such as a sticker or the
  background);
* :func:`best_methods` / :func:`methods_from_results`: which methods the views show by default
  (the best-ranked real methods on the counterfactual ground truth, else the overall rank).

The ``views`` report section (:mod:`gmxai_eval.runner.stages.views_section`) and
``gmxai-eval explain`` (:mod:`gmxai_eval.analysis.explain`) are built on these.

Shapes: maps ``(N, H, W)``; images ``(N, C, H, W)``; region masks ``(N, R, H, W)`` or
``(R, H, W)`` (one template for every aligned face) bool; labels ``(N,)`` int.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from gmxai_eval.errors import ShapeError

BACKGROUND = "background"


def _positive(maps: torch.Tensor, relevance: str) -> torch.Tensor:
    if relevance == "positive":
        return maps.clamp_min(0)
    if relevance == "absolute":
        return maps.abs()
    raise ShapeError(f"expected relevance 'positive' or 'absolute', got {relevance!r}")


def region_mass(maps: torch.Tensor, region_masks: torch.Tensor, relevance: str = "positive") -> torch.Tensor:
    """``(N, R + 1)`` float64: share of each map's (positive or absolute) mass per region, the
    last column for :data:`BACKGROUND` (pixels in no region; overlapping regions count a pixel in
    each). A map without mass gives NaN rows.

    Args:
        maps: ``(N, H, W)``.
        region_masks: ``(N, R, H, W)`` or ``(R, H, W)`` bool.
        relevance: ``"positive"`` (clip at zero, default) or ``"absolute"``.
    """
    if maps.ndim != 3:
        raise ShapeError(f"expected maps (N, H, W), got {tuple(maps.shape)}")
    m = region_masks if region_masks.ndim == 4 else region_masks.unsqueeze(0).expand(maps.shape[0], -1, -1, -1)
    if m.ndim != 4 or m.shape[0] != maps.shape[0] or tuple(m.shape[-2:]) != tuple(maps.shape[-2:]):
        raise ShapeError(f"expected region masks (N, R, H, W) or (R, H, W) matching maps {tuple(maps.shape)}, "
                         f"got {tuple(region_masks.shape)}")
    a = _positive(maps.double(), relevance)
    m = m.to(a.device, torch.bool)
    per = (a.unsqueeze(1) * m).flatten(2).sum(2)
    bg = (a * ~m.any(1)).flatten(1).sum(1, keepdim=True)
    total = a.flatten(1).sum(1, keepdim=True)
    out = torch.cat([per, bg], 1) / total
    out[total.squeeze(1) <= 0] = float("nan")
    return out


def region_area(maps_shape: tuple[int, ...], region_masks: torch.Tensor) -> torch.Tensor:
    """``(N, R + 1)`` float64: each region's share of the image area (last column background),
    the mass share a map spreading its mass uniformly would give."""
    n, h, w = maps_shape
    m = region_masks if region_masks.ndim == 4 else region_masks.unsqueeze(0).expand(n, -1, -1, -1)
    m = m.to(torch.bool)
    per = m.flatten(2).sum(2).double()
    bg = (~m.any(1)).flatten(1).sum(1, keepdim=True).double()
    return torch.cat([per, bg], 1) / float(h * w)


def _groups(labels: torch.Tensor, keep: torch.Tensor | None) -> dict[int, torch.Tensor]:
    labels = torch.as_tensor(labels).long().cpu()
    k = torch.ones_like(labels, dtype=torch.bool) if keep is None else torch.as_tensor(keep).bool().cpu()
    if k.shape != labels.shape:
        raise ShapeError(f"expected keep of shape {tuple(labels.shape)}, got {tuple(k.shape)}")
    return {int(c): torch.nonzero((labels == c) & k).flatten() for c in labels[k].unique().tolist()}


def syndrome_maps(maps: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None,
                  normalise: bool = True) -> dict[int, dict[str, Any]]:
    """Per class: ``{"mean": (H, W), "std": (H, W), "n": int}`` over the kept images.

    ``normalise`` divides each map by its maximum absolute value first, so every image weighs
    the same (maps of different images differ in scale); the std is the population std
    (0 for one image)."""
    if maps.ndim != 3 or maps.shape[0] != len(labels):
        raise ShapeError(f"expected maps (N, H, W) with N = {len(labels)} labels, got {tuple(maps.shape)}")
    a = maps.double()
    if normalise:
        a = a / a.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1)
    out = {}
    for c, ix in _groups(labels, keep).items():
        sub = a[ix.to(a.device)]
        out[c] = {"mean": sub.mean(0), "std": sub.std(0, unbiased=False), "n": int(len(ix))}
    return out


def composite_faces(images: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
    """Per class, the mean aligned face ``(C, H, W)`` of the kept images."""
    if images.ndim != 4 or images.shape[0] != len(labels):
        raise ShapeError(f"expected images (N, C, H, W) with N = {len(labels)}, got {tuple(images.shape)}")
    return {c: images[ix.to(images.device)].double().mean(0) for c, ix in _groups(labels, keep).items()}


def generic_and_difference(per_class: Mapping[int, Mapping[str, Any]]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """``(generic (H, W), {class: mean - generic})``: the generic map is the mean of the class
    means (every syndrome weighs the same, whatever its size)."""
    if not per_class:
        raise ShapeError("expected at least one class, got none")
    generic = torch.stack([v["mean"] for v in per_class.values()]).mean(0)
    return generic, {c: v["mean"] - generic for c, v in per_class.items()}


def region_table(shares: torch.Tensor, labels: torch.Tensor, region_names: Sequence[str],
                 class_names: Sequence[str], class_regions: Mapping[str, Sequence[str]],
                 keep: torch.Tensor | None = None, top: int = 3, area: torch.Tensor | None = None) -> Any:
    """Per class: mean mass share per region against the class's annotated regions.

    Regions are ranked by **density** when ``area`` is given: mean mass share divided by mean
    area share (1 = as much mass as a uniform map would put there). Large regions (cheeks,
    hair, background) otherwise collect mass by size alone and small trait regions (eyes,
    philtrum) could never rank first; on the default model raw shares rank an annotated region
    first for 1 of 12 syndromes with Grad-CAM or saliency; ranked by density, for 6 of 12
    with Grad-CAM and 11 of 12 with saliency (156 test images, measured 2026-11-30).

    Args:
        shares: ``(N, R + 1)`` from :func:`region_mass` (last column background).
        area: ``(N, R + 1)`` from :func:`region_area` (rank by density), or None (rank by share).
        labels: ``(N,)`` class indices into ``class_names``.
        region_names: the ``R`` region names.
        class_regions: ``{class name: regions of its annotated traits}`` (classes without an
            entry, e.g. the unaffected class, have none).
        keep: which images count (e.g. correctly classified).
        top: how many top regions are listed and searched for unexplained mass.

    Returns:
        a ``pandas.DataFrame`` indexed by class name, columns ``n``, one column per region and
        ``background`` (mean share), ``annotated`` (the annotated regions), ``annotated_mass``
        (mean share inside them), ``best_annotated_rank`` (1 = the top-ranked region is
        annotated), ``top_is_annotated``, ``top_regions`` and ``unexplained`` (top regions that
        no annotated trait explains and that hold more mass than a uniform map would put there:
        density > 1, or share > ``1 / (R + 1)`` when ranking by share).
    """
    import pandas as pd

    names = [*region_names, BACKGROUND]
    if shares.ndim != 2 or shares.shape[1] != len(names):
        raise ShapeError(f"expected shares (N, {len(names)}), got {tuple(shares.shape)}")
    unknown = sorted({r for rs in class_regions.values() for r in rs} - set(region_names))
    if unknown:
        raise ShapeError(f"expected annotated regions among {list(region_names)}, got {unknown}")
    rows = []
    for c, ix in sorted(_groups(labels, keep).items()):
        name = class_names[c] if 0 <= c < len(class_names) else str(c)
        sub = shares[ix.to(shares.device)]
        ok = ~sub.isnan().any(1)
        sub = sub[ok]
        mean = sub.mean(0) if len(sub) else torch.full((len(names),), float("nan"), dtype=torch.float64)
        score = mean
        if area is not None:
            a = area[ix.to(area.device)][ok].mean(0)
            score = torch.where(a > 0, mean / a.clamp_min(1e-12), torch.zeros_like(mean))
        order = [names[i] for i in torch.argsort(-score.nan_to_num(-1.0), stable=True).tolist()]
        annotated = list(dict.fromkeys(class_regions.get(name, ())))
        ann_mass = float(sum(mean[names.index(r)] for r in annotated)) if annotated else float("nan")
        ranks = [order.index(r) + 1 for r in annotated]
        unexplained = [r for r in order[:top] if r not in annotated and (
            float(score[names.index(r)]) > 1.0 if area is not None else float(mean[names.index(r)]) > 1.0 / len(names))]
        rows.append({"class": name, "n": int(len(sub)), **{r: float(mean[i]) for i, r in enumerate(names)},
                     **({f"{r} density": float(score[i]) for i, r in enumerate(names)} if area is not None else {}),
                     "annotated": ", ".join(annotated), "annotated_mass": ann_mass,
                     "best_annotated_rank": min(ranks) if ranks else None,
                     "top_is_annotated": bool(annotated) and order[0] in annotated,
                     "top_regions": ", ".join(order[:top]), "unexplained": ", ".join(unexplained)})
    return pd.DataFrame(rows).set_index("class")


def best_methods(by_evaluator: Mapping[str, Mapping[str, float]], categories: Mapping[str, str],
                 excluded: Sequence[str] = (), n: int = 2, truth: str = "counterfactual") -> tuple[list[str], str]:
    """The ``n`` best-ranked methods (and the rule used, in words) for the clinical views.

    The rule: the mean of the per-evaluator ranks over the evaluators of category ``truth``
    (the counterfactual evaluators, whose ground truth the validity table checks every other
    evaluator against), or, in a run without any, the mean over evaluator families of the family
    mean rank (every family weighs the same: the leaderboard's overall rank). ``excluded``
    (controls and the oracle) are never chosen; ties keep the leaderboard order.

    Args:
        by_evaluator: ``{evaluator: {method: rank}}`` (1 = best), e.g.
            ``results["rankings"]["by_evaluator"]``.
        categories: ``{evaluator: card category}``.
    """
    if n < 1:
        raise ShapeError(f"expected n >= 1 methods, got {n}")
    skip = set(excluded)
    methods = list(dict.fromkeys(m for ranks in by_evaluator.values() for m in ranks if m not in skip))
    if not methods:
        raise ShapeError(f"expected at least one ranked real method, got none (excluded {sorted(skip)})")
    evs = [e for e in by_evaluator if categories.get(e) == truth]
    if evs:
        rule = f"mean rank on the {truth} (ground-truth) evaluators {', '.join(evs)}"
        score = {m: sum(float(by_evaluator[e].get(m, len(methods) + 1)) for e in evs) / len(evs) for m in methods}
    else:
        fams: dict[str, list[str]] = {}
        for e in by_evaluator:
            fams.setdefault(categories.get(e, ""), []).append(e)
        rule = "overall rank (mean over evaluator families of the family mean rank)"
        score = {m: sum(sum(float(by_evaluator[e].get(m, len(methods) + 1)) for e in es) / len(es)
                        for es in fams.values()) / len(fams) for m in methods}
    return sorted(methods, key=lambda m: score[m])[:n], rule


def methods_from_results(results: Mapping[str, Any], n: int = 2) -> tuple[list[str], str]:
    """:func:`best_methods` of a ``results.json`` document: its real methods (no control, no
    oracle) by its per-evaluator ranks."""
    try:
        by_ev = results["rankings"]["by_evaluator"]
        cards = {m: v.get("card", {}) for m, v in results["methods"].items()}
        cats = {e: str(v.get("card", {}).get("category", "")) for e, v in results["evaluators"].items()}
    except (KeyError, TypeError, AttributeError) as err:
        raise ShapeError(f"expected a results document with rankings.by_evaluator, methods and evaluators, "
                         f"got none at {err}") from None
    excluded = [m for m, c in cards.items() if c.get("control") or c.get("name") == "oracle" or c.get("needs_masks") or c.get("reference")]
    return best_methods(by_ev, cats, excluded, n)
