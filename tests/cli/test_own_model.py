"""The README's "your own model" path, end to end: a factory spec (a Python file + a state dict)
and a TorchScript file from the command line on a CSV manifest of the user's images, a model
that does not fit the data refused before any work, and the Python API with a Captum class and
a plain explain function."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from gmxai_eval.cli import main

NET = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=3):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8 * 4 * 4, num_classes)
        def forward(self, x):
            h = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 4)
            return self.fc(h.flatten(1))

    def build(num_classes=3):
        torch.manual_seed(0)
        return Net(num_classes)
""")


@pytest.fixture
def project(tmp_path):
    """A user's folder: 9 images of 3 classes (32 px), a manifest, a model file and weights."""
    rng = np.random.default_rng(0)
    rows = ["path,label,subject"]
    for i in range(9):
        img = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        rows.append(f"im{i}.png,{'abc'[i % 3]},s{i}")
    (tmp_path / "faces.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "mynet.py").write_text(NET)
    import importlib.util

    spec = importlib.util.spec_from_file_location("mynet_for_test", tmp_path / "mynet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.build(3).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    torch.jit.save(torch.jit.script(model), tmp_path / "model.ts")
    return tmp_path, model


def _spec(folder, model_table: str) -> str:
    p = folder / f"spec_{abs(hash(model_table))}.toml"
    p.write_text(textwrap.dedent(f"""
        [run]
        name = "mine"
        n_images = 6
        select = "first"
        batch_size = 3
        bootstrap = 100
        html = false
        target = "label"

        [dataset]
        path = "faces.csv"

        [model]
        {model_table}

        [[methods]]
        name = "saliency"

        [[methods]]
        name = "random"

        [[evaluators]]
        name = "deletion"
        config = {{ steps = 4, baseline = "black" }}

        [[evaluators]]
        name = "sparseness"
    """))
    return str(p)


@pytest.mark.parametrize("table", [
    'factory = "mynet.py:build"\nconfig = { num_classes = 3 }\nstate_dict = "weights.pt"',
    'torchscript = "model.ts"',
])
def test_run_with_a_factory_or_torchscript_model(project, table, capsys):
    folder, _ = project
    out = folder / "out"
    assert main(["run", _spec(folder, table), "--output", str(out), "--run-id", "r", "--no-progress"]) == 0
    res = json.loads((out / "r" / "results.json").read_text())
    assert res["n_images"] == 6 and {a["method"] for a in res["aggregates"]} == {"saliency", "random"}
    return res


def test_factory_and_torchscript_give_the_same_scores(project, capsys):
    folder, _ = project
    got = {}
    for i, table in enumerate(['factory = "mynet.py:build"\nstate_dict = "weights.pt"', 'torchscript = "model.ts"']):
        assert main(["run", _spec(folder, table), "--output", str(folder / "o"), "--run-id", f"r{i}",
                     "--no-progress"]) == 0
        res = json.loads((folder / "o" / f"r{i}" / "results.json").read_text())
        got[i] = {(a["evaluator"], a["method"]): a["mean"] for a in res["aggregates"]}
    assert got[0].keys() == got[1].keys()
    for k in got[0]:
        assert got[0][k] == pytest.approx(got[1][k], rel=1e-5, abs=1e-7), k


@pytest.mark.parametrize("table, msg", [
    ('factory = "mynet.py:build"\nconfig = { num_classes = 4 }', "expected 3 outputs (the dataset's classes), got 4"),
    ('factory = "mynet.py:nope"', "expected a callable 'nope'"),
    ('factory = "mynet.py:build"\nstate_dict = "missing.pt"', "missing.pt"),
    ('torchscript = "faces.csv"', "expected a TorchScript file"),
])
def test_a_model_that_does_not_fit_is_refused_before_any_work(project, capsys, table, msg):
    folder, _ = project
    out = folder / "out"
    assert main(["run", _spec(folder, table), "--output", str(out), "--run-id", "bad", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0] and "Traceback" not in err[0]
    assert not (out / "bad").exists()


def test_python_api_with_a_captum_class_and_a_plain_explain_function(project):
    from captum.attr import IntegratedGradients

    from gmxai_eval.evaluators.api import evaluate
    from gmxai_eval.methods.interop import from_captum

    folder, model = project
    x = np.stack([np.asarray(Image.open(folder / f"im{i}.png")) for i in range(6)]).transpose(0, 3, 1, 2)
    y = [i % 3 for i in range(6)]

    def brightest(model, inputs, targets):  # a gradient-free explain function, (B, 1, H, W)
        return inputs.mean(1, keepdim=True)

    scores = evaluate(model, x, y, methods={"ig": from_captum(IntegratedGradients, attribute_kwargs={"n_steps": 8}),
                                            "bright": brightest},
                      evaluators=["deletion", "sparseness"])
    df = scores.to_frame()
    assert set(df.method) == {"ig", "bright"} and len(df) == 2 * 2 * 6
    assert df.score.notna().all()
    summary = scores.summary()
    assert list(summary.index) == ["deletion", "sparseness"]


def test_listing_shows_models_and_every_default_as_json(capsys):
    assert main(["models", "gmx_*"]) == 0
    assert "gmx_small" in capsys.readouterr().out
    assert main(["evaluators", "deletion", "--json"]) == 0
    (card,) = json.loads(capsys.readouterr().out)
    assert card["default_config"]["baseline"] == "input_zero" and card["higher_is_better"] is False
    assert main(["methods", "saliency", "--json"]) == 0
    (m,) = json.loads(capsys.readouterr().out)
    assert {"reduce", "chunk_size", "seed"} <= set(m["default_config"]) and m["needs_masks"] is False


def test_user_facing_errors_name_no_internal_label(toy_model):
    from gmxai_eval.errors import ShapeError
    from gmxai_eval.evaluators import EVALUATORS

    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ShapeError) as e:
        EVALUATORS.create("deletion")(toy_model, x, torch.tensor([0, 1]), torch.zeros(2, 8, 8))
    assert "'_'" not in str(e.value) and "maps['maps']" in str(e.value)
