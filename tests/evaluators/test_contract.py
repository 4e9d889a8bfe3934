"""Contract tests parametrised over every registered evaluator (a new entry is tested on sight).

Each evaluator is created from its card's defaults overridden by its class's documented
``quick_config`` (small settings; never a table of names here), and run on a toy batch. Inputs
beyond (model, x, target, maps) come from providers keyed by the card's ``needs``; a new need
without a provider fails :func:`test_every_need_has_a_provider`.

Oracles: determinism (the same seed twice), invariance (float64 images give the float32 scores;
a dropout left in training mode inside an eval-mode model gives the all-eval scores), the
model's state before the call (hooks, gradients, modes), and the typed errors of the contract.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pytest
import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ModelStateError, NonFiniteError, ShapeError
from gmxai_eval.evaluators import EVALUATORS, EvalBatch, EvalResult
from gmxai_eval.evaluators.base import DatasetEvaluator, Evaluator
from gmxai_eval.methods import create_method
from gmxai_eval.models import MODELS

B, H = 4, 32
NAMES = EVALUATORS.list()


# -- inputs ----------------------------------------------------------------------------------------
def _masks() -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    m = torch.zeros(B, H, H, dtype=torch.bool)
    for i in range(B):
        m[i, 4 + 2 * i: 14 + 2 * i, 6: 20] = True
    regions = torch.zeros(B, 2, H, H, dtype=torch.bool)
    regions[:, 0, :16] = True
    regions[:, 1, 16:] = True
    return m, regions, ("upper", "lower")


def _fixations(ids: list[str]) -> dict[str, Any]:
    from gmxai_eval.data.gaze.maps import ImageGaze
    from gmxai_eval.functional.gaze_maps import centre_bias_map, density_map

    out = {}
    for i, sid in enumerate(ids):
        rng = np.random.default_rng(i)
        pts = rng.uniform(2, H - 2, size=(12, 2))
        others = rng.uniform(2, H - 2, size=(20, 2))
        out[sid] = ImageGaze(sid, (H, H), pts, np.array(["o1", "o2"] * 6), np.full(12, 200.0),
                             density_map(pts, (H, H), 2.0), others, centre_bias_map((H, H)))
    return out


class _HalvesRenderer:
    """Counterfactual provider for the contract: every image has two traits, its left and right
    halves; switching a trait off greys (0.5) that half of the batch's own image."""

    cache_key = "contract-halves-v1"

    def __init__(self, x: torch.Tensor, ids: Sequence[str]) -> None:
        self.images = {sid: x[i].detach().cpu().clone() for i, sid in enumerate(ids)}

    def traits(self, sid: str) -> tuple[str, ...]:
        return ("left", "right")

    def trait_masks(self, sid: str) -> torch.Tensor:
        m = torch.zeros(2, H, H, dtype=torch.bool)
        m[0, :, : H // 2] = True
        m[1, :, H // 2:] = True
        return m

    def render(self, ids: Sequence[str], off: Sequence[Sequence[str]]) -> torch.Tensor:
        out = torch.stack([self.images[sid].clone() for sid in ids])
        for i, (sid, o) in enumerate(zip(ids, off)):
            for k, t in enumerate(self.traits(sid)):
                if t in o:
                    out[i][:, self.trait_masks(sid)[k]] = 0.5
        return out


#: ``need -> (batch kwargs) -> extra EvalBatch fields``: every input a card may ask for.
NEED_PROVIDERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "explainer": lambda b: {"explainers": {m: create_method("saliency") for m in b["maps"]}},
    "masks": lambda b: dict(zip(("masks", "region_masks", "region_names"), _masks())),
    "fixations": lambda b: {"extra": {"fixations": _fixations(b["sample_ids"])}},
    "counterfactual": lambda b: {"extra": {"counterfactual": _HalvesRenderer(b["x"], b["sample_ids"])}},
}


class Dropped(nn.Module):
    """``toy_cnn`` with a dropout on the features: in training mode it changes every output."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = MODELS.create("toy_cnn", num_classes=4, seed=0)
        self.inner.backbone = nn.Sequential(self.inner.backbone, nn.Dropout(0.5))
        self.preprocess = self.inner.preprocess  # the input zero of the RISE substrate
        self.num_classes = 4
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class NaNModel(nn.Module):
    """Finite weights, but logits NaN for the second image (an overflow in one sample)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = MODELS.create("toy_cnn", num_classes=4, seed=0)
        self.preprocess = self.inner.preprocess
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out * torch.where(x[:, :1, 0, 0] > 0.999, float("nan"), 1.0)


def _inputs(model: nn.Module, maps: torch.Tensor | None = None, x: torch.Tensor | None = None) -> dict[str, Any]:
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand(B, 3, H, H, generator=g)
    m0 = torch.randn(B, H, H, generator=g)
    return {"model": model, "x": x0 if x is None else x, "target": torch.tensor([0, 1, 2, 3]),
            "maps": {"m": m0 if maps is None else maps}, "sample_ids": [f"c{i}" for i in range(B)], "seed": 7}


def _create(name: str) -> Evaluator:
    cls = EVALUATORS.get(name)
    return EVALUATORS.create(name, **dict(getattr(cls, "quick_config", {})))


def _batch(ev: Evaluator, **kw: Any) -> EvalBatch:
    for need in sorted(ev.card.needs):
        for k, v in NEED_PROVIDERS[need](kw).items():
            kw[k] = {**kw.get(k, {}), **v} if k == "extra" else v
    return EvalBatch(**kw)


def _run(name: str, **kw: Any) -> EvalResult:
    ev = _create(name)
    return ev.evaluate(_batch(ev, **kw))["m"]


def _state(model: nn.Module) -> list[Any]:
    return [(n, m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks),
             dict(m._backward_pre_hooks)) for n, m in model.named_modules()] + \
           [(n, p.requires_grad, p.grad) for n, p in model.named_parameters()]


def _batch_scope(name: str) -> bool:
    return EVALUATORS.card(name).scope == "batch" and not issubclass(EVALUATORS.get(name), DatasetEvaluator)


BATCH_NAMES = [n for n in NAMES if _batch_scope(n)]


# -- the contract ------------------------------------------------------------------------------
def test_every_need_has_a_provider():
    needs = {need for n in NAMES for need in EVALUATORS.card(n).needs} - {"dataset"}
    assert needs <= set(NEED_PROVIDERS), f"add a provider for {sorted(needs - set(NEED_PROVIDERS))}"


@pytest.mark.parametrize("name", NAMES)
def test_card_declares_direction_and_defaults(name):
    card = EVALUATORS.card(name)
    cls = EVALUATORS.get(name)
    assert card.name == name and isinstance(card.higher_is_better, bool) and card.category
    assert set(dict(cls.quick_config)) <= set(card.default_config), "quick_config may only override defaults"
    ev = _create(name)
    assert ev.higher_is_better is ev.card.higher_is_better


@pytest.mark.parametrize("name", BATCH_NAMES)
def test_scores_shape_determinism_and_model_untouched(name):
    model = Dropped()
    before = _state(model)
    r1 = _run(name, **_inputs(model))
    assert _state(model) == before  # modes, hooks, requires_grad and .grad as they were
    r2 = _run(name, **_inputs(model))
    assert r1.scores.shape == (B,) and r1.scores.dtype == torch.float64
    assert not torch.isinf(r1.scores).any()
    torch.testing.assert_close(r1.scores, r2.scores, rtol=0, atol=0, equal_nan=True)
    # a dropout left in training mode inside the eval-mode model: refused, naming the module
    # (never silently scored in eval mode), and the model is left as it was
    model.inner.backbone[1].train()
    before = _state(model)
    with pytest.raises(ModelStateError, match=r"inner\.backbone\.1"):
        _run(name, **_inputs(model))
    assert _state(model) == before


@pytest.mark.parametrize("name", BATCH_NAMES)
def test_model_state_restored_after_an_error(name):
    model = Dropped()
    before = _state(model)

    class Boom(RuntimeError):
        pass

    def explode(*_: Any) -> None:
        raise Boom("injected")

    ev = _create(name)
    b = _batch(ev, **_inputs(model))
    ev._evaluate_methods = explode  # type: ignore[method-assign]
    with pytest.raises(Boom):
        ev.evaluate(b)
    assert _state(model) == before


@pytest.mark.parametrize("name", BATCH_NAMES)
def test_float64_images_are_cast_like_methods(name):
    model = Dropped()
    r32 = _run(name, **_inputs(model))
    x64 = _inputs(model)["x"].double()
    r64 = _run(name, **_inputs(model, x=x64))
    torch.testing.assert_close(r64.scores, r32.scores, rtol=0, atol=0, equal_nan=True)
    with pytest.raises(ShapeError):
        _run(name, **_inputs(model, x=(x64 * 255).to(torch.uint8)))


@pytest.mark.parametrize("name", BATCH_NAMES)
@pytest.mark.parametrize("case", ["nan_map", "wrong_shape", "training_model"])
def test_typed_errors(name, case):
    model = Dropped()
    kw = _inputs(model)
    err: type[Exception]
    if case == "nan_map":
        m = kw["maps"]["m"].clone()
        m[0, 3, 3] = float("nan")
        kw["maps"] = {"m": m}
        err = NonFiniteError
    elif case == "wrong_shape":
        kw["maps"] = {"m": kw["maps"]["m"][:, :16]}
        err = ShapeError
    else:
        model.train()
        err = ModelStateError
    with pytest.raises(err):
        _run(name, **kw)


@pytest.mark.parametrize("name", BATCH_NAMES)
def test_non_finite_model_output_is_refused(name):
    kw = _inputs(NaNModel())
    kw["x"][1, 0, 0, 0] = 1.0  # image c1 makes the model's logits NaN
    if not EVALUATORS.get(name).uses_model:
        assert _run(name, **kw).scores.shape == (B,)  # scores the maps alone: no forward pass
        return
    with pytest.raises(NonFiniteError, match=r"NaNModel.*c1"):
        _run(name, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_card_declares_degenerate_behaviour(name):
    from gmxai_eval.types import Degenerate

    deg = EVALUATORS.card(name).degenerate
    assert isinstance(deg, Degenerate), f"{name}: declare card.degenerate (what an all-zero/constant map gives)"
    assert deg.problem() is None


def _expected(kind: str, masks: torch.Tensor) -> torch.Tensor | None:
    """The scores a card's ``zero``/``constant`` declaration promises (None: a check other than a value)."""
    if kind in ("nan", "finite", "map-independent"):
        return None
    if kind == "mask fraction":
        return masks.double().mean((1, 2))
    if kind == "log(H W)":
        return torch.full((B,), float(np.log(H * H)), dtype=torch.float64)
    return torch.full((B,), float(kind), dtype=torch.float64)


@pytest.mark.parametrize("name", BATCH_NAMES)
def test_degenerate_maps_give_what_the_card_states(name):
    """All-zero and constant maps (two values, one negative) against ``card.degenerate``;
    never +-inf. Oracle: the card (NaN, an exact value, the mask fraction, log(H W), or the same
    finite value for every constant map)."""
    deg = EVALUATORS.card(name).degenerate
    masks = _masks()[0]
    got = {label: _run(name, **_inputs(Dropped(), maps=maps)).scores
           for label, maps in (("zero", torch.zeros(B, H, H)), ("constant", torch.full((B, H, H), 0.3)),
                               ("negative", torch.full((B, H, H), -2.0)))}
    for label, scores in got.items():
        kind = {"zero": deg.zero, "constant": deg.constant, "negative": deg.negative or deg.constant}[label]
        assert scores.shape == (B,) and not torch.isinf(scores).any(), (label, scores)
        if kind == "nan":
            assert torch.isnan(scores).all(), (label, scores)
            continue
        assert torch.isfinite(scores).all(), (label, kind, scores)
        want = _expected(kind, masks)
        if want is not None:
            torch.testing.assert_close(scores, want, rtol=0, atol=1e-9, msg=f"{name} {label}: {kind}")
    if deg.zero == "map-independent":
        torch.testing.assert_close(got["constant"], got["zero"], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got["negative"], got["zero"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", BATCH_NAMES)
def test_unknown_call_keyword_raises(name):
    ev = _create(name)
    kw = _inputs(Dropped())
    with pytest.raises(ConfigError, match="seeed"):
        ev(kw["model"], kw["x"], kw["target"], kw["maps"]["m"], seeed=1)
