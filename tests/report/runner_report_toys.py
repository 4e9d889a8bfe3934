"""Toy methods and evaluators with analytic behaviour, registered only inside a test.

* ``toy_grad``: gradient x input summed over channels; counts the images it explains.
* ``toy_random``: a control; uniform noise maps from its config seed.
* ``toy_mass``: share of positive map mass inside the evidence mask (localisation, higher better).
* ``toy_deletion``: zero the top-k pixels for k in 0, 25, 50, 75, 100 % of pixels, target
  softmax probability, trapezoid AUC (perturbation, lower better), with curves.
* ``toy_flaky``: like ``toy_mass`` but raises once its class counter reaches ``fail_at``.
* ``toy_grad_oom``: ``toy_grad`` that raises ``torch.OutOfMemoryError`` on more than 2 images.
* dataset ``toy_faces``: :func:`gmxai_eval.testing.toy_samples` as a list with ``classes``.
"""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.data.base import DATASETS
from gmxai_eval.evaluators.base import EVALUATORS, EvalBatch, EvalResult, Evaluator
from gmxai_eval.methods.base import METHODS, Explainer, as_target_fn
from gmxai_eval.runner.spec import parse_spec
from gmxai_eval.types import EvaluatorCard, MethodCard


class ToyGrad(Explainer):
    card = MethodCard(name="toy_grad", family="gradient", signed=True, paper="test")
    calls = 0  # images explained

    def _attribute(self, model, x, target):
        type(self).calls += x.shape[0]
        x = x.clone().requires_grad_(True)
        out = as_target_fn(target, x.shape[0])(model(x)).sum()
        (g,) = torch.autograd.grad(out, x)
        return g * x


class ToyRandom(Explainer):
    card = MethodCard(name="toy_random", family="control", signed=False, paper="test", control=True)
    calls = 0

    def _attribute(self, model, x, target):
        type(self).calls += x.shape[0]
        g = torch.Generator().manual_seed(int(self.config["seed"]))
        return torch.rand(x.shape[0], *x.shape[-2:], generator=g)


class ToyMass(Evaluator):
    card = EvaluatorCard(name="toy_mass", category="localisation", higher_is_better=True, paper="test",
                         needs=frozenset({"masks"}))
    calls = 0

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        type(self).calls += 1
        a = batch.maps[method].clamp(min=0).double()
        inside = (a * batch.masks).flatten(1).sum(1)
        return EvalResult(inside / a.flatten(1).sum(1).clamp(min=1e-12))


class ToyDeletion(Evaluator):
    card = EvaluatorCard(name="toy_deletion", category="perturbation", higher_is_better=False,
                         paper="test", default_config={"steps": 4})
    calls = 0

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        type(self).calls += 1
        b, _, h, w = batch.x.shape
        steps = int(self.config["steps"])
        order = batch.maps[method].flatten(1).argsort(1, descending=True)
        probs = []
        for s in range(steps + 1):
            k = round(s * h * w / steps)
            keep = torch.ones(b, h * w)
            keep.scatter_(1, order[:, :k], 0.0)
            xp = batch.x * keep.view(b, 1, h, w)
            p = batch.model(xp).softmax(1).gather(1, batch.target.view(-1, 1)).squeeze(1)
            probs.append(p.double())
        curve = torch.stack(probs, 1)
        auc = (curve[:, 1:] + curve[:, :-1]).sum(1) / (2 * steps)
        return EvalResult(auc, curve, torch.linspace(0, 1, steps + 1))


class ToyFlaky(ToyMass):
    card = EvaluatorCard(name="toy_flaky", category="localisation", higher_is_better=True, paper="test",
                         needs=frozenset({"masks"}))
    seen = 0
    fail_at = -1  # class-level so that the evaluator's config (and cache key) does not change

    def _evaluate(self, batch, method):
        type(self).seen += 1
        if type(self).seen == type(self).fail_at:
            raise RuntimeError("injected failure")
        return super()._evaluate(batch, method)


class ToyGradOOM(ToyGrad):
    card = MethodCard(name="toy_grad_oom", family="gradient", signed=True, paper="test")
    calls = 0

    def _attribute(self, model, x, target):
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super()._attribute(model, x, target)


class ToyFaces(list):
    """A list of samples with ``classes`` (enough for the runner)."""

    classes = ["alpha", "beta", "gamma", "delta"]


def toy_faces(n: int = 8, seed: int = 0) -> ToyFaces:
    from gmxai_eval.testing import toy_samples

    return ToyFaces(toy_samples(n, seed=seed))


TOY_METHODS = (ToyGrad, ToyRandom, ToyGradOOM)
TOY_EVALUATORS = (ToyMass, ToyDeletion, ToyFlaky)


@pytest.fixture
def toys():
    """Register the toy classes for one test (counters reset) and unregister them after."""
    for c in TOY_METHODS:
        METHODS.register(c)
        c.calls = 0
    for c in TOY_EVALUATORS:
        EVALUATORS.register(c)
        c.calls = 0
    ToyFlaky.seen, ToyFlaky.fail_at = 0, -1
    DATASETS.register(toy_faces, name="toy_faces")
    yield
    DATASETS.unregister("toy_faces")
    for c in TOY_METHODS:
        METHODS.unregister(c.card.name)
    for c in TOY_EVALUATORS:
        EVALUATORS.unregister(c.card.name)


def toy_spec(methods=("toy_grad", "toy_random"), evaluators=("toy_mass", "toy_deletion"), **run):
    """A spec over the toy registry entries (toy_cnn model from the registry). The toy faces
    have two images per subject; these specs take the first ``n_images`` (``select = "first"``)
    unless told otherwise."""
    run = {"name": "toy", "n_images": 8, "batch_size": 4, "bootstrap": 200, "html": False, "select": "first", **run}
    return parse_spec({
        "run": run,
        "dataset": {"name": "toy_faces", "config": {"n": run.pop("n_dataset", 8)}},
        "model": {"source": "registry", "arch": "toy_cnn", "config": {"num_classes": 4}},
        "methods": [m if isinstance(m, dict) else {"name": m} for m in methods],
        "evaluators": [e if isinstance(e, dict) else {"name": e} for e in evaluators],
    }, source="toy.toml")
