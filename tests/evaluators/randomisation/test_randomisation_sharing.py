"""Randomised states shared across the MPRT family: same scores as each evaluator randomising
and re-explaining on its own, fewer explanations, and maps persisted through a MapStore.

Oracle for "same scores": the pre-sharing algorithm re-implemented here naively (one deep copy
walked through :func:`randomised_models` per evaluator, every map explained anew), compared with
``torch.equal`` (bit for bit) on a model with BatchNorm and a stochastic method (SmoothGrad)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators import EVALUATORS
from gmxai_eval.evaluators.base import EvalBatch
from gmxai_eval.evaluators.randomisation import MAP_STORE_KEY, MapStore, randomised_state
from gmxai_eval.functional.randomisation import (
    execution_order, fully_randomised, randomisation_steps, randomise, randomised_models)
from gmxai_eval.functional.similarity import SIMILARITIES
from gmxai_eval.methods import create_method

SMALL = {"hog_pixels_per_cell": 8, "hog_cells_per_block": 2}


def _cfg(name):
    return {} if name == "efficient_mprt" else SMALL
FAMILY = ("mprt_cascading", "mprt_independent", "smooth_mprt", "efficient_mprt")


class DictStore:
    """A MapStore in memory that counts what it serves."""

    def __init__(self):
        self.maps, self.loads, self.hits, self.saves = {}, 0, 0, 0

    def load(self, method, key, sample_ids):
        self.loads += 1
        rows = [self.maps.get((method, key, s)) for s in sample_ids]
        if any(r is None for r in rows):
            return None
        self.hits += 1
        return torch.stack(rows)

    def save(self, method, key, sample_ids, maps):
        self.saves += 1
        for s, m in zip(sample_ids, maps):
            self.maps[(method, key, s)] = m.clone()


class Counting:
    """Wraps an explainer, counting images explained per call."""

    def __init__(self, ex):
        self.ex, self.images = ex, 0
        self.config, self.name, self.card = ex.config, ex.name, ex.card

    def __call__(self, model, x, target, **kw):
        self.images += int(x.shape[0])
        return self.ex(model, x, target, **kw)


@pytest.fixture
def setup(toy_model, toy_batch, grad_input):
    x, _, ids = toy_batch
    with torch.no_grad():
        target = toy_model(x).argmax(1)
    explainers = {"gi": grad_input, "sg": create_method("smoothgrad", n_samples=3)}
    layers = execution_order(toy_model, x[:1])
    return toy_model, x, target, ids, explainers, layers


def _batch(model, x, target, ids, explainers, store=None):
    maps = {k: e(model, x, target) for k, e in explainers.items()}
    return EvalBatch(model, x, target, maps, ids, explainers, seed=5,
                     extra={} if store is None else {MAP_STORE_KEY: store})


def _naive_curves(ev, model, x, target, ids, explainers, layers, seed):
    """The pre-sharing algorithm: spearman_abs per layer, each state explained anew (smooth_mprt:
    its noisy-average explanation, original model included)."""
    fn = SIMILARITIES.create("spearman_abs")
    out = {}
    for m, ex in explainers.items():
        if ev.name == "smooth_mprt":
            b = EvalBatch(model, x, target, {m: ex(model, x, target)}, ids, {m: ex}, seed=seed)
            explain = lambda mod, b=b, m=m: ev._explain(b, m, mod, target)  # noqa: E731
        else:
            explain = lambda mod, ex=ex: ex(mod, x, target)  # noqa: E731
        a0 = explain(model)
        out[m] = torch.stack([fn(a0, explain(r)) for _, r in randomised_models(model, layers, ev._order(), seed)], 1)
    return out


@pytest.mark.parametrize("name", ["mprt_cascading", "mprt_independent", "smooth_mprt"])
def test_shared_scores_equal_the_naive_per_evaluator_scores(setup, name):
    model, x, target, ids, explainers, layers = setup
    cfg = {**SMALL, "similarities": ["spearman_abs"], "floor": False}
    if name == "smooth_mprt":
        cfg["n_noise"] = 3
    ev = EVALUATORS.create(name, **cfg)
    batch = _batch(model, x, target, ids, explainers)
    for other in FAMILY:  # the other evaluators of the family fill the memo first
        if other != name:
            EVALUATORS.create(other, **({"n_noise": 3} if other == "smooth_mprt" else {})).evaluate(batch)
    got = ev.evaluate(batch)
    ref = _naive_curves(ev, model, x, target, ids, explainers, layers, 5)
    for m in explainers:
        assert torch.equal(got[m].curves, ref[m].double()), m


def test_emprt_equals_fully_randomised_model(setup):
    model, x, target, ids, explainers, layers = setup
    batch = _batch(model, x, target, ids, explainers)
    EVALUATORS.create("mprt_cascading", **SMALL).evaluate(batch)  # its last state = every layer
    got = EVALUATORS.create("efficient_mprt").evaluate(batch)
    rmodel = fully_randomised(model, layers, 5)
    from gmxai_eval.functional.randomisation import discrete_entropy, emprt_score
    for m, ex in explainers.items():
        h0, h1 = discrete_entropy(batch.maps[m]), discrete_entropy(ex(rmodel, x, target))
        assert torch.equal(got[m].scores, emprt_score(h0, h1)), m


def test_states_equal_the_walked_states(toy_model, toy_batch):
    x = toy_batch[0]
    layers = execution_order(toy_model, x[:1])
    for order in ("top_down", "bottom_up", "independent"):
        steps = randomisation_steps(layers, order)
        walked = randomised_models(toy_model, layers, order, 2)  # one copy, modified in place: lazily
        n_steps = 0
        for (name, state), (walked_name, m) in zip(steps, walked):
            n_steps += 1
            assert name == walked_name
            fresh = randomise(toy_model, state, 2)
            ref = m.state_dict()
            assert all(torch.equal(v, ref[k]) for k, v in fresh.state_dict().items()), (order, sorted(state))
        assert n_steps == len(layers)
    with pytest.raises(ConfigError, match="expected order"):
        randomisation_steps(layers, "sideways")


def test_each_state_is_explained_once_across_the_family(setup):
    """Explained images = B x (number of distinct (state, input) pairs), counted analytically."""
    model, x, target, ids, explainers, layers = setup
    gi = Counting(explainers["gi"])
    batch = _batch(model, x, target, ids, {"gi": gi})
    gi.images = 0
    for name in ("mprt_cascading", "mprt_independent", "efficient_mprt"):
        EVALUATORS.create(name, **_cfg(name)).evaluate(batch)
    states = {s for o in ("top_down", "independent") for _, s in randomisation_steps(layers, o)}
    states.add(frozenset(layers))
    before = 2 * len(layers) + 1  # each evaluator on its own
    assert len(states) < before
    assert gi.images == len(ids) * len(states)


def test_map_store_serves_a_second_batch_without_explaining(setup):
    model, x, target, ids, explainers, layers = setup
    store = DictStore()
    assert isinstance(store, MapStore)
    first = {n: EVALUATORS.create(n, **_cfg(n)).evaluate(_batch(model, x, target, ids, explainers, store))
             for n in FAMILY}
    assert store.saves > 0 and store.saves + store.hits == store.loads  # states shared across evaluators hit
    counted = {k: Counting(e) for k, e in explainers.items()}
    batch = _batch(model, x, target, ids, counted, store)  # a fresh memo: only the store remembers
    for c in counted.values():
        c.images = 0
    second = {n: EVALUATORS.create(n, **_cfg(n)).evaluate(batch) for n in FAMILY}
    assert all(c.images == 0 for c in counted.values())
    for n in FAMILY:
        for m in explainers:
            np.testing.assert_array_equal(first[n][m].scores.numpy(), second[n][m].scores.numpy())


def test_a_store_that_is_not_a_map_store_is_refused(setup):
    model, x, target, ids, explainers, _ = setup
    batch = _batch(model, x, target, ids, explainers, store={"not": "a store"})
    with pytest.raises(ConfigError, match="expected batch.extra"):
        EVALUATORS.create("efficient_mprt").evaluate(batch)


def test_one_state_kept_at_a_time(setup):
    model, x, target, ids, explainers, layers = setup
    batch = _batch(model, x, target, ids, explainers)
    a = randomised_state(batch, frozenset(layers[:1]))
    assert randomised_state(batch, frozenset(layers[:1])) is a
    b = randomised_state(batch, frozenset(layers[1:2]))
    assert b is not a and randomised_state(batch, frozenset()) is model
