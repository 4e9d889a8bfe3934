"""One rule for stochastic models: a dropout (or batch-norm) left in training mode inside an
eval-mode parent makes two identical calls give different maps and scores, so every entry point
that explains or scores a model refuses it with a ``ModelStateError`` naming the module (never a
silent switch to eval mode, which would hide the caller's bug). Evaluators are covered by
``tests/evaluators/test_contract.py`` (every registered batch evaluator)."""

from __future__ import annotations

import pytest
import torch
from counterfactual_toys import HalvesRenderer
from runner_report_toys import toy_faces, toy_spec
from torch import nn

from gmxai_eval.errors import ModelStateError
from gmxai_eval.methods import create_method, list_methods
from gmxai_eval.models import MODELS
from gmxai_eval.models.base import training_modules

#: the name of the offending module, as every refusal must give it
WHERE = r"head\.0"


def stochastic_model() -> nn.Module:
    """``toy_cnn`` (eval mode) whose head starts with a dropout left in training mode."""
    m = MODELS.create("toy_cnn", num_classes=4, seed=0)
    m.head = nn.Sequential(nn.Dropout(0.5), m.head)
    m.eval()
    m.head[0].train()
    assert not m.training and training_modules(m) == ["head.0"]
    return m


def _modes(m: nn.Module) -> list[bool]:
    return [x.training for x in m.modules()]


def test_the_case_matters_two_identical_forward_passes_differ():
    """The oracle for refusing: with the dropout active the same input gives other logits."""
    m, x = stochastic_model(), torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    a = m(x)
    assert not torch.equal(a, m(x))


@pytest.mark.parametrize("name", list_methods())
def test_every_method_refuses_naming_the_module(name):
    m = stochastic_model()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1])
    e = create_method(name)
    kw: dict = {}
    if getattr(e, "needs_masks", False):
        kw["masks"] = torch.ones(2, 32, 32, dtype=torch.bool)
    if getattr(e, "needs_samples", False):
        kw.update(samples=["0", "1"], renderer=HalvesRenderer(x, "model-state-halves-v1"))
    before = _modes(m)
    with pytest.raises(ModelStateError, match=WHERE):
        e(m, x, target, **kw)
    assert _modes(m) == before


def test_runner_refuses_naming_the_module(tmp_path, toys):
    from gmxai_eval.runner.run import run_benchmark

    with pytest.raises(ModelStateError, match=WHERE):
        run_benchmark(toy_spec(), model=stochastic_model(), output=tmp_path / "out", cache=tmp_path / "c",
                      run_id="r", progress=False, verbose=False)
    assert not (tmp_path / "out" / "r" / "results.json").exists()


def test_explain_refuses_naming_the_module():
    from gmxai_eval.analysis.explain import explain_image

    with pytest.raises(ModelStateError, match=WHERE):
        explain_image(stochastic_model(), torch.rand(3, 32, 32), {"saliency": create_method("saliency")},
                      ["a", "b", "c", "d"])


def test_gaze_refuses_naming_the_module(tmp_path):
    """The gaze command is a spec for the runner (``cli.gaze.gaze_spec``), whose load stage
    refuses the model before any map."""
    from gmxai_eval.runner.run import run_benchmark
    from gmxai_eval.runner.spec import parse_spec

    spec = parse_spec({"run": {"name": "gaze", "n_images": 4, "output": str(tmp_path)},
                       "methods": [{"name": "saliency"}], "evaluators": [{"name": "gaze_nss"}],
                       "gaze": {"fixations": "simulated", "observers": 2}, "report": {"sections": ["gaze"]}})
    with pytest.raises(ModelStateError, match=WHERE):
        run_benchmark(spec, model=stochastic_model(), samples=list(toy_faces(4)), progress=False, verbose=False)


def test_questionnaire_refuses_naming_the_module(monkeypatch, toys):
    """``questionnaire make`` rebuilds the run's model; a loader that hands back a model whose
    ``eval()`` leaves a dropout active (an MC-dropout model) is refused before any map."""
    import gmxai_eval.runner.run as run_mod
    from gmxai_eval.cli.questionnaire import cases_from_run

    monkeypatch.setattr(run_mod, "load_model", lambda spec, dataset=None: stochastic_model())
    results = {"spec": toy_spec().to_dict(), "methods": {"saliency": {"name": "saliency"}},
               "model_hash": "x", "samples": []}
    with pytest.raises(ModelStateError, match=WHERE):
        cases_from_run(results, 2, ["saliency"])


def test_retraining_refuses_a_stochastic_reference_model(tmp_path):
    from gmxai_eval.evaluators import EVALUATORS
    from gmxai_eval.evaluators.base import DatasetJob

    ev = EVALUATORS.create("roar", cache=str(tmp_path))
    job = DatasetJob(train_data=[], test_data=[], model_factory=None, train_fn=None,
                     explainers={}, reference_model=stochastic_model())
    with pytest.raises(ModelStateError, match=WHERE):
        ev._layout(job)
