"""Randomisation sanity checks: model parameter randomisation (cascading / independent, smooth,
efficient) and random logit.

Registered evaluators (category ``"randomisation"``):

* ``mprt_cascading``: re-initialise layers from the output towards the input, cumulatively
  (Adebayo et al. 2018); ``mprt_independent``: one layer at a time, the others trained.
  Layers are the modules with own parameters, in forward *execution* order (see
  :mod:`gmxai_eval.functional.randomisation`). Per layer, the original and randomised maps of
  every image are compared with each similarity in ``similarities`` (registered in
  :data:`gmxai_eval.functional.similarity.SIMILARITIES`): ``curves (B, L)`` hold the
  ``similarity`` per layer (``curve_labels`` = layer names, in randomisation order),
  ``scores`` their mean over layers (lower is better: the map depends on the weights),
  ``extras["layers_<s>"] (B, L)`` / ``extras["mean_<s>"] (B,)`` every similarity, and
  ``extras["floor_<s>"] (B,)`` the similarity of the original maps of random image pairs
  (the level "no relation" sits at). A rank correlation with a constant map (a CAM that a
  randomised layer turns all-zero) is undefined; ``constant_maps="zero_unless_equal"``
  (default) scores it 0 (1 if both maps are identical), ``"nan"`` keeps NaN.
* ``smooth_mprt`` (Hedström et al. 2023): as MPRT with maps averaged over ``n_noise`` noisy
  copies of the input (Gaussian noise, std = ``noise_magnitude`` x the image's value range; the
  last copy is noise-free); default order ``bottom_up`` as Quantus.
* ``efficient_mprt`` (Hedström et al. 2023): relative rise of the discrete entropy (histogram of
  the map values, ``n_bins`` bins) from the trained to the fully randomised model:
  ``(H_rand - H_orig) / H_orig``, higher is better.
* ``random_logit`` (Sixt et al. 2020): SSIM (or any registered similarity) between the map of
  the explained class and that of a random other class drawn per sample; lower is better.

``target``: ``"predicted"`` (default, as Adebayo et al.) explains the original model's
predicted class in every model; ``"batch"`` explains ``batch.target``. ``batch.maps[method]``
serve as the unrandomised maps whenever they explain the same classes (always with
``"batch"``; with ``"predicted"`` when ``batch.target`` equals the predictions), otherwise they
are recomputed with the method's explainer.
Randomness: layer ``l`` is re-initialised with a seed derived from ``(batch.seed, l)``; noise
and random classes are keyed on ``(batch.seed, sample_id)``. The user's model is never
modified (a deep copy is randomised).

Sharing: a randomised state is named by the set of layers it re-initialises
(:func:`gmxai_eval.functional.randomisation.randomisation_steps`), so states that coincide across
evaluators (cascading's first step = independent's output layer; cascading's last step = every
listed layer) are one state. :func:`randomised_maps` builds each state once per batch and
memoises its maps per method in :meth:`EvalBatch.shared`, so every evaluator of the family that
needs a ``(state, method, input)`` map explains it once; with a :class:`MapStore` under
``batch.extra[MAP_STORE_KEY]`` (the runner passes its map cache) the maps also persist across
runs and units. smooth_mprt's noisy explanations are its own (keyed with its noise settings).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.functional.randomisation import (
    CONSTANT_MAP_RULES, ORDERS, constant_map_rule, discrete_entropy, emprt_score, execution_order,
    random_other_class, random_pairs, randomisation_steps, randomise)
from gmxai_eval.functional.similarity import SIMILARITIES, MapSimilarity
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import rng_for, stable_hash

_ADEBAYO = "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018"
_HEDSTROM = "Hedström et al., Sanity Checks Revisited: An Exploration to Repair the Model Parameter " \
            "Randomisation Test, XAI in Action workshop @ NeurIPS 2023"
_ALL_SIMS = ("spearman_abs", "spearman", "ssim", "hog", "topk_iou")

_MPRT_CONFIG: dict[str, Any] = {
    "similarity": "spearman_abs",   # the similarity in scores / curves
    "similarities": _ALL_SIMS,      # every similarity reported in extras (must include `similarity`)
    "target": "predicted",          # predicted | batch
    "layers": None,                 # restrict to these layer names (None: every layer)
    "floor": True,                  # random-image-pair floor in extras["floor_<s>"]
    "constant_maps": "zero_unless_equal",  # NaN similarity with a constant map -> 0 (1 if identical) | nan
    "hog_pixels_per_cell": 16,
    "hog_cells_per_block": 3,
    "topk_fraction": 0.1,
}


def _check_sequence(name: str, value: Sequence[str]) -> None:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"expected {name} as a list or tuple of names, got {value!r}")


def _targets(ev: Evaluator, batch: EvalBatch) -> torch.Tensor:
    how = ev.config["target"]
    if how == "predicted":
        return batch.shared("predicted_class", lambda: batch.clean_logits().argmax(1))
    if how == "batch":
        return batch.target
    raise ConfigError(f"evaluator {ev.name!r}: expected target 'predicted' or 'batch', got {how!r}")


def _reference_maps(ev: Evaluator, batch: EvalBatch, method: str, target: torch.Tensor) -> torch.Tensor:
    """``batch.maps[method]`` when they explain ``target``, else recomputed (shared per batch)."""
    if ev.config["target"] == "batch" or torch.equal(target.cpu(), batch.target.cpu()):
        return batch.maps[method]
    return batch.shared(("explained_predicted", method),
                        lambda: batch.explain(method, batch.model, batch.x, target))


#: ``EvalBatch.extra`` key of the optional :class:`MapStore` of randomised-model maps.
MAP_STORE_KEY = "map_store"


@runtime_checkable
class MapStore(Protocol):
    """Persistent maps of re-explained inputs: ``(method label, key, sample ids)`` -> maps.

    ``key`` names everything besides the model, the method's config and the image that the
    maps depend on (randomised state, target rule, noise settings); the store adds those three."""

    def load(self, method: str, key: str, sample_ids: Sequence[str]) -> torch.Tensor | None:
        """``(B, H, W)`` float32 maps of every sample, or ``None`` if any is missing."""
        ...

    def save(self, method: str, key: str, sample_ids: Sequence[str], maps: torch.Tensor) -> None:
        """Store ``maps (B, H, W)`` under ``sample_ids``."""
        ...


def _map_store(batch: EvalBatch) -> MapStore | None:
    store = batch.extra.get(MAP_STORE_KEY)
    if store is not None and not isinstance(store, MapStore):
        raise ConfigError(f"expected batch.extra[{MAP_STORE_KEY!r}] to be a MapStore (load/save), got "
                          f"{type(store).__name__}")
    return store


def randomised_state(batch: EvalBatch, layers: frozenset[str]) -> nn.Module:
    """``batch.model`` with exactly ``layers`` re-initialised under ``batch.seed`` (the original
    model for an empty set). The last state built is kept in the batch memo, so consecutive
    requests for one state build it once without holding every state in memory."""
    if not layers:
        return batch.model
    key = (batch.seed, layers)
    last = batch.shared("randomised_state_last", lambda: {})
    if last.get("key") != key:
        last.clear()
        last.update(key=key, model=randomise(batch.model, layers, batch.seed))
    return last["model"]


def randomised_maps(batch: EvalBatch, method: str, layers: frozenset[str], target: torch.Tensor,
                    target_rule: str, explain: Callable[[nn.Module], torch.Tensor] | None = None,
                    variant: Any = None) -> torch.Tensor:
    """Maps ``(B, H, W)`` of ``method`` on the model with ``layers`` re-initialised, computed once
    per batch for every evaluator (memo key: method, seed, layers, target rule, ``variant``) and
    read from / written to the batch's :class:`MapStore` when there is one.

    Args:
        target: ``(B,)`` explained classes, named by ``target_rule`` (``"predicted"`` / ``"batch"``).
        explain: ``model -> maps`` (default: ``batch.explain(method, model, batch.x, target)``).
        variant: what else the maps depend on (e.g. smooth_mprt's noise settings); part of the keys.
    """
    ids = list(batch.sample_ids)  # type: ignore[arg-type]

    def compute() -> torch.Tensor:
        store = _map_store(batch)
        skey = stable_hash("randomised_maps", batch.seed, sorted(layers), target_rule, repr(variant))
        if store is not None:
            hit = store.load(method, skey, ids)
            if hit is not None:
                return hit.to(batch.x.device)
        model = randomised_state(batch, layers)
        maps = (explain(model) if explain is not None else batch.explain(method, model, batch.x, target))
        if store is not None:
            store.save(method, skey, ids, maps)
        return maps

    return batch.shared(("randomised_maps", method, batch.seed, layers, target_rule, variant), compute)


def _layers(ev: Evaluator, batch: EvalBatch) -> list[str]:
    order = batch.shared("execution_order", lambda: execution_order(batch.model, batch.x[:1]))
    want = ev.config["layers"]
    if want is not None:
        _check_sequence("layers", want)
    if want is None:
        layers = list(order)
    else:
        missing = [n for n in want if n not in order]
        if missing:
            raise ConfigError(f"evaluator {ev.name!r}: expected layers among the executed parameterised "
                              f"modules {order}, got unknown {missing}")
        layers = [n for n in order if n in set(want)]
    if not layers:
        raise ConfigError(f"evaluator {ev.name!r}: expected at least one parameterised layer, got none")
    return layers


def _similarity_fns(ev: Evaluator) -> dict[str, MapSimilarity]:
    _check_sequence("similarities", ev.config["similarities"])
    names = tuple(ev.config["similarities"])
    if ev.config["similarity"] not in names:
        names = (ev.config["similarity"], *names)
    return {n: SIMILARITIES.create(n) for n in names}


def _sim_options(ev: Evaluator) -> dict[str, Any]:
    return {k: ev.config[k] for k in ("hog_pixels_per_cell", "hog_cells_per_block", "topk_fraction")
            if k in ev.config}


class _MPRT(Evaluator):
    """Shared implementation of the parameter randomisation tests."""

    order: ClassVar[str] = "top_down"

    def _order(self) -> str:
        order = self.config.get("order", self.order)
        if order not in ORDERS:
            raise ConfigError(f"evaluator {self.name!r}: expected order in {ORDERS}, got {order!r}")
        return order

    def _explain(self, batch: EvalBatch, method: str, model: nn.Module, target: torch.Tensor) -> torch.Tensor:
        return batch.explain(method, model, batch.x, target)

    def _maps(self, batch: EvalBatch, method: str, layers: frozenset[str], target: torch.Tensor) -> torch.Tensor:
        """Maps on the state with ``layers`` re-initialised, shared with the family through
        :func:`randomised_maps` (the unrandomised clean maps are ``batch.maps``)."""
        if not layers and self._smooth_key() is None:
            return _reference_maps(self, batch, method, target)
        return randomised_maps(batch, method, layers, target, self.config["target"],
                               lambda model: self._explain(batch, method, model, target), self._smooth_key())

    def _smooth_key(self) -> Any:
        return None

    def _similarity(self, fn: MapSimilarity, a: torch.Tensor, pa: torch.Tensor, b: torch.Tensor,
                    opts: dict[str, Any]) -> torch.Tensor:
        """``fn(a, b)`` given ``pa = fn.prepare(a)``, with the ``constant_maps`` convention for the
        NaN a rank correlation gives when one map is constant (e.g. a CAM that a randomised layer
        turns all-zero)."""
        v = fn.compare(pa, fn.prepare(b, **opts)).cpu()
        rule = self.config["constant_maps"]
        if rule not in CONSTANT_MAP_RULES:
            raise ConfigError(f"evaluator {self.name!r}: expected constant_maps 'zero_unless_equal' or 'nan', "
                              f"got {rule!r}")
        return constant_map_rule(v, a, b, rule)

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "order": self._order(), "layers_counted":
                "modules with own parameters, execution order, first call",
                "reinit": "reset_parameters() (PyTorch default; BatchNorm -> weight 1, bias 0, stats reset)",
                "ssim_input": "minmax(|map|), gaussian sigma 1.5, data_range 1",
                "hog_input": "minmax(|map|)", "score": "mean over layers of `similarity`"}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        target = _targets(self, batch)
        layers = _layers(self, batch)
        sims = _similarity_fns(self)
        opts = _sim_options(self)
        methods = list(batch.maps)
        orig = {m: self._maps(batch, m, frozenset(), target) for m in methods}
        prep = {(m, s): fn.prepare(orig[m], **opts) for m in methods for s, fn in sims.items()}
        per: dict[str, dict[str, list[torch.Tensor]]] = {m: {s: [] for s in sims} for m in methods}
        labels: list[str] = []
        for name, state in randomisation_steps(layers, self._order()):  # type: ignore[arg-type]
            labels.append(name)
            for m in methods:
                ar = self._maps(batch, m, state, target)
                for s, fn in sims.items():
                    per[m][s].append(self._similarity(fn, orig[m], prep[m, s], ar, opts))
        partner = random_pairs(batch.sample_ids, batch.seed) if self.config["floor"] else None  # type: ignore[arg-type]
        out: dict[str, EvalResult] = {}
        main = self.config["similarity"]
        conv: dict[str, Any] = {"layers": list(labels)}
        if "hog" in sims:
            ppc = int(self.config["hog_pixels_per_cell"])
            conv["hog_cells_per_block_effective"] = min(int(self.config["hog_cells_per_block"]),
                                                        *(int(d) // ppc for d in batch.x.shape[-2:]))
        if partner is not None:
            conv["floor"] = "similarity of the unrandomised maps of random image pairs within the batch"
        for m in methods:
            extras: dict[str, torch.Tensor] = {}
            for s, fn in sims.items():
                curve = torch.stack(per[m][s], 1)
                extras[f"layers_{s}"] = curve
                extras[f"mean_{s}"] = curve.mean(1)
                if partner is not None:
                    a = orig[m]
                    v = self._similarity(fn, a, prep[m, s], a[partner.to(a.device)], opts)
                    alone = partner == torch.arange(len(partner))  # a batch of one has no pair
                    extras[f"floor_{s}"] = torch.where(alone, torch.full_like(v, float("nan")), v)
            curve = extras[f"layers_{main}"]
            out[m] = EvalResult(curve.mean(1), curve, torch.arange(len(labels)), extras, conv, tuple(labels))
        return out


def _mprt_card(name: str, description: str, extra: dict[str, Any] | None = None, paper: str = _ADEBAYO) -> EvaluatorCard:
    return EvaluatorCard(name=name, category="randomisation", higher_is_better=False, paper=paper,
                         default_config={**_MPRT_CONFIG, **(extra or {})}, needs=frozenset({"explainer"}),
                         description=description,
                         degenerate=Degenerate("map-independent", "map-independent",
                                               "the maps are recomputed by the method's explainer: the passed "
                                               "map is not used"))


@register_evaluator
class MPRTCascading(_MPRT):
    """Cascading model parameter randomisation: layers re-initialised from the output towards the
    input, cumulatively. Lower similarity = the method passes the sanity check."""

    order = "top_down"
    card = _mprt_card("mprt_cascading", "similarity of maps under cumulative re-initialisation from the output")


@register_evaluator
class MPRTIndependent(_MPRT):
    """Independent model parameter randomisation: one layer re-initialised at a time."""

    order = "independent"
    card = _mprt_card("mprt_independent", "similarity of maps with one layer re-initialised at a time")


@register_evaluator
class SmoothMPRT(_MPRT):
    """sMPRT: MPRT on maps averaged over ``n_noise`` noisy copies of the input (the last copy
    noise-free); noise std = ``noise_magnitude * (max(x_i) - min(x_i))`` per image, drawn once per
    sample and shared by every model."""

    card = _mprt_card("smooth_mprt", "MPRT on noise-averaged maps",
                      {"order": "bottom_up", "n_noise": 50, "noise_magnitude": 0.1}, _HEDSTROM)
    quick_config = {"n_noise": 2}

    def _smooth_key(self) -> Any:
        return ("smooth", self.config["n_noise"], self.config["noise_magnitude"])

    def noise(self, batch: EvalBatch) -> torch.Tensor:
        """``(B, n_noise - 1, C, H, W)`` standard normal draws keyed on ``(seed, sample_id)``."""
        n = int(self.config["n_noise"])
        if n < 1:
            raise ConfigError(f"evaluator {self.name!r}: expected n_noise >= 1, got {n}")
        shape = (n - 1, *batch.x.shape[1:])
        return torch.stack([torch.randn(shape, generator=rng_for(batch.seed, "smooth_mprt", sid), dtype=torch.float32)
                            for sid in batch.sample_ids]).to(batch.x.device)  # type: ignore[union-attr]

    def _explain(self, batch: EvalBatch, method: str, model: nn.Module, target: torch.Tensor) -> torch.Tensor:
        x = batch.x
        b, n = x.shape[0], int(self.config["n_noise"])
        z = batch.shared(("smooth_mprt_noise", n), lambda: self.noise(batch))
        dims = tuple(range(1, x.ndim))
        std = self.config["noise_magnitude"] * (x.amax(dims, keepdim=True) - x.amin(dims, keepdim=True))
        xs = torch.cat([x[:, None] + z * std[:, None], x[:, None]], 1)  # (B, n, C, H, W)
        maps = batch.explain(method, model, xs.reshape(b * n, *x.shape[1:]), target.repeat_interleave(n),
                             rows=torch.arange(b).repeat_interleave(n))
        return maps.reshape(b, n, *maps.shape[1:]).mean(1)


@register_evaluator
class EfficientMPRT(Evaluator):
    """eMPRT: relative rise in explanation complexity (discrete entropy of the map-value
    histogram) from the trained to the fully randomised model; higher is better.
    ``extras``: ``complexity_original``, ``complexity_randomised``, ``delta``. Score:
    :func:`gmxai_eval.functional.randomisation.emprt_score`; a constant original map gives NaN
    (counted), a map that becomes constant under randomisation gives -1; never +-inf."""

    card = EvaluatorCard(
        name="efficient_mprt", category="randomisation", higher_is_better=True, paper=_HEDSTROM,
        default_config={"n_bins": 100, "abs": False, "target": "predicted", "layers": None},
        needs=frozenset({"explainer"}),
        description="relative entropy rise of maps after full parameter randomisation",
        degenerate=Degenerate("map-independent", "map-independent", "the maps are recomputed by the method's explainer: the passed map is not used; a constant recomputed map gives NaN"))

    def conventions(self) -> dict[str, Any]:
        return {**super().conventions(), "complexity": "discrete entropy (nats) of an n_bins histogram "
                "between each map's min and max", "score": "(H_rand - H_orig) / H_orig"}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        target = _targets(self, batch)
        layers = _layers(self, batch)
        state = frozenset(layers)
        n_bins = int(self.config["n_bins"])
        if n_bins < 1:
            raise ConfigError(f"evaluator {self.name!r}: expected n_bins >= 1, got {n_bins}")
        prep = (lambda a: a.abs()) if self.config["abs"] else (lambda a: a)
        out = {}
        for m in batch.maps:
            a0 = _reference_maps(self, batch, m, target)
            a1 = randomised_maps(batch, m, state, target, self.config["target"])
            h0 = discrete_entropy(prep(a0), n_bins).cpu()
            h1 = discrete_entropy(prep(a1), n_bins).cpu()
            out[m] = EvalResult(emprt_score(h0, h1), extras={"complexity_original": h0, "complexity_randomised": h1,
                                                         "delta": h1 - h0}, conventions={"layers": list(layers)})
        return out


@register_evaluator
class RandomLogit(Evaluator):
    """Random logit test: similarity between the map of the explained class and the map of a
    random other class (drawn per sample from ``(seed, sample_id)``); lower is better."""

    card = EvaluatorCard(
        name="random_logit", category="randomisation", higher_is_better=False,
        paper="Sixt, Granz & Landgraf, When Explanations Lie: Why Many Modified BP Attributions Fail, ICML 2020",
        default_config={"similarity": "ssim", "target": "predicted", "hog_pixels_per_cell": 16,
                        "hog_cells_per_block": 3, "topk_fraction": 0.1},
        needs=frozenset({"explainer"}),
        description="similarity of maps for the explained class and a random other class",
        degenerate=Degenerate("map-independent", "map-independent", "the maps are recomputed by the method's explainer: the passed map is not used"))

    def offsets(self, batch: EvalBatch, num_classes: int) -> torch.Tensor:
        """``(B,)`` offsets in ``[0, K - 2]`` selecting the other class (see
        :func:`gmxai_eval.functional.randomisation.random_other_class`)."""
        return torch.stack([torch.randint(0, num_classes - 1, (), generator=rng_for(batch.seed, "random_logit", s))
                            for s in batch.sample_ids])  # type: ignore[union-attr]

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        target = _targets(self, batch)
        k = int(batch.clean_logits().shape[1])
        other = random_other_class(target.cpu(), k, self.offsets(batch, k)).to(target.device)
        fn = SIMILARITIES.create(self.config["similarity"])
        opts = _sim_options(self)
        out = {}
        for m in batch.maps:
            a0 = _reference_maps(self, batch, m, target)
            a1 = batch.explain(m, batch.model, batch.x, other)
            out[m] = EvalResult(fn(a0, a1, **opts), extras={"other_class": other.cpu()})
        return out


