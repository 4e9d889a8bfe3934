"""Counterfactual evaluators: score a map against the interventional importance of the planted
traits (category ``"counterfactual"``; definitions in :mod:`gmxai_eval.functional.counterfactual`).

Both need a counterfactual renderer in ``batch.extra["counterfactual"]`` (the runner puts the
dataset's ``counterfactual_renderer()`` there; for the synthetic faces that is
:class:`gmxai_eval.data.synth.CounterfactualRenderer`): an object with ``cache_key: str``,
``traits(sample_id) -> tuple[str, ...]``, ``trait_masks(sample_id) -> (T, H, W) bool`` and
``render(sample_ids, off) -> (B, C, H, W)`` float pixels. Renders and their class scores are
memoised per batch, keyed by ``(cache_key, sample_id, traits off)``, and shared by both
evaluators and all methods: an image with ``T`` traits costs at most ``2^T`` renders and
forward passes (every subset of its traits, the image itself included), whatever the number
of methods.

The explained class is ``batch.target``. Images with fewer than two traits (unaffected faces,
syndromes with a single trait) have no ranking to reproduce: their score is NaN, and
``extras["n_traits"]`` says how many traits each image has, so a reader can count them.
"""

from __future__ import annotations

from typing import Any

import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.base import (
    EvalBatch,
    EvalResult,
    Evaluator,
    register_evaluator,
)
from gmxai_eval.functional.counterfactual import (
    OUTPUTS,
    PARTS,
    check_renderer,
    class_score,
    deletion_curves,
    interventional_importance,
    normalised_auc,
    order_by,
    region_rank,
    shapley_overlap,
    shapley_values,
    trait_mass,
    unit_shares,
)
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import rng_for

_FUNNYBIRDS = ("Hesse, Schaub-Meyer & Roth, FunnyBirds: A Synthetic Vision Dataset for a Part-Based "
               "Analysis of Explainable AI Methods, ICCV 2023 (interventional part importance)")


class _Counterfactual(Evaluator):
    """Shared plumbing: the renderer, padded trait masks and the memoised subset scores."""

    def _renderer(self, batch: EvalBatch) -> Any:
        return check_renderer(batch.extra.get("counterfactual"),
                              f"evaluator {self.name!r} (batch.extra['counterfactual'])")

    def validate(self, batch: EvalBatch) -> None:
        super().validate(batch)
        self._renderer(batch)
        if self.config["output"] not in OUTPUTS:
            raise ConfigError(f"evaluator {self.name!r}: expected output in {OUTPUTS}, got {self.config['output']!r}")
        if int(self.config["max_batch"]) < 1:
            raise ConfigError(f"evaluator {self.name!r}: expected max_batch >= 1, got {self.config['max_batch']}")

    def traits(self, batch: EvalBatch) -> tuple[list[tuple[str, ...]], torch.Tensor, torch.Tensor]:
        """Trait names per image, masks ``(B, T, H, W)`` bool and ``valid (B, T)`` (shared per batch)."""
        r = self._renderer(batch)
        return batch.shared(("cf_traits", r.cache_key), lambda: self._load_traits(batch, r))

    def _load_traits(self, batch: EvalBatch, r: Any) -> tuple[list[tuple[str, ...]], torch.Tensor, torch.Tensor]:
        names = [tuple(r.traits(s)) for s in batch.sample_ids]  # type: ignore[union-attr]
        h, w = batch.x.shape[-2:]
        t = max([len(n) for n in names] + [1])
        masks = torch.zeros((len(names), t, h, w), dtype=torch.bool)
        valid = torch.zeros((len(names), t), dtype=torch.bool)
        for i, (sid, n) in enumerate(zip(batch.sample_ids, names)):  # type: ignore[arg-type]
            m = torch.as_tensor(r.trait_masks(sid))
            if m.dtype != torch.bool or tuple(m.shape) != (len(n), h, w):
                raise ShapeError(f"evaluator {self.name!r}: expected trait_masks({sid!r}) bool of shape "
                                 f"{(len(n), h, w)}, got {m.dtype} {tuple(m.shape)}")
            masks[i, :len(n)] = m
            valid[i, :len(n)] = True
        return names, masks, valid

    def subset_score(self, batch: EvalBatch):  # -> SubsetScore
        """The memoised ``subset_score(rows, off)`` of this batch (see the functional module)."""
        r = self._renderer(batch)
        output = self.config["output"]
        step = int(self.config["max_batch"])
        names = self.traits(batch)[0]
        memo: dict[tuple[str, frozenset[str], int], float] = batch.shared(("cf_scores", r.cache_key, output), dict)
        ids = list(batch.sample_ids)  # type: ignore[arg-type]
        target = batch.target

        def score(rows, off):
            keys = [(ids[i], frozenset(names[i][j] for j in o), int(target[i])) for i, o in zip(rows, off)]
            todo = [k for k in dict.fromkeys(keys) if k not in memo]
            for a in range(0, len(todo), step):
                chunk = todo[a:a + step]
                x = r.render([k[0] for k in chunk], [tuple(sorted(k[1])) for k in chunk])
                x = torch.as_tensor(x).to(batch.x.device, batch.x.dtype)
                if tuple(x.shape) != (len(chunk), *batch.x.shape[1:]):
                    raise ShapeError(f"evaluator {self.name!r}: expected renders of shape "
                                     f"{(len(chunk), *batch.x.shape[1:])}, got {tuple(x.shape)}")
                with torch.no_grad():
                    s = class_score(batch.model(x), torch.as_tensor([k[2] for k in chunk]), output)
                for k, v in zip(chunk, s.tolist()):
                    memo[k] = v
            return torch.tensor([memo[k] for k in keys], dtype=torch.float64)

        return score

    def importance(self, batch: EvalBatch) -> torch.Tensor:
        """``(B, T)`` interventional importance of each trait for the explained class (shared)."""
        r = self._renderer(batch)
        return batch.shared(("cf_importance", r.cache_key, self.config["output"]),
                            lambda: interventional_importance(self.subset_score(batch), self.traits(batch)[2]))

    def shapley(self, batch: EvalBatch) -> torch.Tensor:
        """``(B, T)`` interventional Shapley values of the traits for the explained class (shared;
        every subset of an image's traits is rendered once per batch)."""
        r = self._renderer(batch)
        return batch.shared(("cf_shapley", r.cache_key, self.config["output"]),
                            lambda: shapley_values(self.subset_score(batch), self.traits(batch)[2]))

    def all_off(self, batch: EvalBatch) -> torch.Tensor:
        """``(B,)`` class score of each image with every trait re-rendered away (shared memo)."""
        valid = self.traits(batch)[2]
        n = valid.sum(1).tolist()
        return self.subset_score(batch)(list(range(len(n))), [frozenset(range(k)) for k in n])

    def random_keys(self, batch: EvalBatch, t: int, purpose: str = "random_order") -> torch.Tensor:
        """``(B, T)`` uniform draws keyed on ``(seed, purpose, sample_id)`` (random orders, tie-breaks)."""
        return torch.stack([torch.rand(t, generator=rng_for(batch.seed, "counterfactual", purpose, s),
                                       dtype=torch.float64)
                            for s in batch.sample_ids])  # type: ignore[union-attr]

    def _part(self) -> str:
        part = self.config["part"]
        if part not in PARTS:
            raise ConfigError(f"evaluator {self.name!r}: expected part in {PARTS}, got {part!r}")
        return part


@register_evaluator
class CounterfactualRegionRank(_Counterfactual):
    """Spearman correlation between a map's mass per planted trait and the traits'
    interventional importance (higher is better; NaN for images with < 2 traits, or when the
    mass or the importance is constant over the image's traits, e.g. two traits acting on the
    same region of a two-trait image, or a map with no positive mass on any trait).

    The ``oracle`` (the evidence mask, uniform on every trait) has mass proportional to each
    trait's area, so it scores as a size prior here, not as the truth: the evidence mask says
    where the evidence is, not how much the model uses each part of it.

    ``extras``: ``random`` (the same correlation for a random ranking of the traits, keyed on
    ``(seed, sample_id)``: the floor), ``n_traits``."""

    card = EvaluatorCard(
        name="counterfactual_region_rank", category="counterfactual", higher_is_better=True, paper=_FUNNYBIRDS,
        default_config={"part": "positive", "output": "probability", "max_batch": 32},
        needs=frozenset({"counterfactual"}),
        description="Spearman between map mass per planted trait and the drop in the class score when "
                    "that trait alone is re-rendered away; NaN for images with < 2 traits or with tied "
                    "mass / importance throughout (traits sharing one region)",
        degenerate=Degenerate("nan", "nan", "a constant map ranks no region above another"))

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "mass": f"sum of the map's {self.config['part']} part over the trait's pixels",
                "importance": f"{self.config['output']}(x) - {self.config['output']}(x, trait re-rendered off)",
                "fewer_than_2_traits": "NaN", "ties": "average ranks"}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        _, masks, valid = self.traits(batch)
        imp = self.importance(batch)
        rand = region_rank(self.random_keys(batch, valid.shape[1]), imp, valid)
        n = valid.sum(1)
        out = {}
        for m, a in batch.maps.items():
            mass = trait_mass(a.cpu(), masks, valid, self._part())
            out[m] = EvalResult(region_rank(mass, imp, valid), extras={"random": rand, "n_traits": n})
        return out


@register_evaluator
class CounterfactualDeletion(_Counterfactual):
    """Counterfactual deletion: traits are re-rendered away cumulatively in the order of the
    map's mass per trait (ties broken at random, keyed on the sample), and the score is the
    area under the class score over the fraction of traits removed (lower is better; NaN for
    images with < 2 traits).

    ``extras``: ``oracle`` (the same area for the order of decreasing interventional
    importance: the reference), ``random`` (a random order keyed on ``(seed, sample_id)``: the
    floor), ``n_traits``."""

    card = EvaluatorCard(
        name="counterfactual_deletion", category="counterfactual", higher_is_better=False, paper=_FUNNYBIRDS,
        default_config={"part": "positive", "output": "probability", "max_batch": 32},
        needs=frozenset({"counterfactual"}),
        description="area under the class score while planted traits are re-rendered away in the "
                    "map's order (not greyed); NaN for images with < 2 traits",
        degenerate=Degenerate("map-independent", "map-independent", "ties broken by flat index: the raster order is scored"))

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "order": f"decreasing sum of the map's {self.config['part']} part per trait",
                "ties": "random, keyed on (seed, sample_id)", "removal": "in-distribution re-rendering",
                "auc": "trapezoid over k / n_traits in [0, 1]", "fewer_than_2_traits": "NaN"}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        _, masks, valid = self.traits(batch)
        score = self.subset_score(batch)
        keys = self.random_keys(batch, valid.shape[1])
        ties = self.random_keys(batch, valid.shape[1], "ties")
        imp = self.importance(batch)

        def auc(values: torch.Tensor, tiebreak: torch.Tensor) -> torch.Tensor:
            return normalised_auc(deletion_curves(score, order_by(values, valid, tiebreak), valid), valid)

        oracle = auc(torch.nan_to_num(imp), ties)
        rand = auc(keys, ties)
        n = valid.sum(1)
        out = {}
        for m, a in batch.maps.items():
            mass = torch.nan_to_num(trait_mass(a.cpu(), masks, valid, self._part()))
            out[m] = EvalResult(auc(mass, ties), extras={"oracle": oracle, "random": rand, "n_traits": n})
        return out


@register_evaluator
class CounterfactualShapley(_Counterfactual):
    """Shapley overlap: how much of a map's positive mass lies where the class score comes
    from, in the same proportions (higher is better, in ``[0, 1]``).

    The truth splits the class score exactly into the traits' interventional Shapley values
    (every subset of an image's traits re-rendered away, ``2^T`` renders shared by all methods)
    and *the rest of the image*: the score left with every trait off. The map's positive mass is
    split over the same units (the rest = pixels in no trait); mass on a unit beyond its share of
    the score is wasted. Score = histogram intersection of the two share vectors
    (:func:`gmxai_eval.functional.counterfactual.shapley_overlap`). Unlike the region rank it is
    graded and defined for one-trait images; NaN for images without traits or for a map without
    positive mass.

    ``extras``: ``random`` (the overlap of a uniform map: each unit's share is its area share,
    the floor), ``trait_share`` (the map's share on the traits: 1 - the rest's share),
    ``n_traits``."""

    card = EvaluatorCard(
        name="counterfactual_shapley", category="counterfactual", higher_is_better=True, paper=_FUNNYBIRDS,
        default_config={"output": "probability", "max_batch": 32},
        needs=frozenset({"counterfactual"}),
        description="histogram intersection between the map's positive-mass shares over the planted "
                    "traits plus the rest of the image and the class score's split into the traits' "
                    "interventional Shapley values plus the score with every trait off; NaN for images "
                    "without traits",
        degenerate=Degenerate("nan", "finite", "a constant positive map scores the overlap of the units' "
                              "area shares (the random extra); a map without positive mass: NaN",
                              negative="nan"))

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "units": "each planted trait + the rest of the image",
                "truth": f"positive parts of the Shapley values of {self.config['output']}(x with traits S on) "
                         "and of the score with every trait off (the rest), normalised", "score": "sum over units of min(map share, truth share)",
                "no_trait": "NaN"}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        _, masks, valid = self.traits(batch)
        phi, rest = self.shapley(batch), self.all_off(batch)
        flat = torch.ones(masks.shape[0], *masks.shape[2:], dtype=torch.float64)
        rand = shapley_overlap(unit_shares(flat, masks, valid), phi, valid, rest)
        n = valid.sum(1)
        out = {}
        for m, a in batch.maps.items():
            shares = unit_shares(a.cpu(), masks, valid)
            out[m] = EvalResult(shapley_overlap(shares, phi, valid, rest),
                                extras={"random": rand, "trait_share": 1 - shares[:, -1], "n_traits": n})
        return out
