"""Truth that travels, on a user's own model and CSV manifest (no planted truth): the run scores
the in-distribution patch truth on a fine-tuned surrogate and shows a known-order validity
column computed from degraded copies of a method."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from PIL import Image

from gmxai_eval.cli import main
from tests.cli.test_own_model import NET


@pytest.fixture
def project(tmp_path):
    """18 images of 3 classes (32 px; a bright square whose corner depends on the class), 12 for
    training and 6 for testing, a manifest with a split column, a model file and its weights."""
    rng = np.random.default_rng(0)
    rows = ["path,label,subject,split"]
    for i in range(18):
        img = (rng.random((32, 32, 3)) * 80).astype(np.uint8)
        k = i % 3
        img[4 + 10 * k:12 + 10 * k, 4:12] = 255
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        rows.append(f"im{i}.png,{'abc'[k]},s{i},{'train' if i < 12 else 'test'}")
    (tmp_path / "faces.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "mynet.py").write_text(NET)
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("mynet_for_known_order", tmp_path / "mynet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.save(mod.build(3).state_dict(), tmp_path / "weights.pt")
    copies = "\n".join(textwrap.dedent(f"""
        [[methods]]
        name = "degraded"
        label = "saliency@{int(100 * lv)}"
        config = {{ base = "saliency", level = {lv} }}
    """) for lv in (0.0, 0.5, 1.0))
    (tmp_path / "spec.toml").write_text(textwrap.dedent("""
        [run]
        name = "mine"
        n_images = 6
        select = "first"
        batch_size = 3
        bootstrap = 200
        html = false
        target = "label"

        [dataset]
        path = "faces.csv"
        split = "test"

        [model]
        factory = "mynet.py:build"
        config = { num_classes = 3 }
        state_dict = "weights.pt"
    """) + copies + textwrap.dedent("""
        [[evaluators]]
        name = "deletion"
        config = { steps = 4, baseline = "black" }

        [[evaluators]]
        name = "patch_truth"
        config = { grid = 4, epochs = 1, test_images = 6, substrate = "black", progress = false }

        [[evaluators]]
        name = "surrogate_morf"
        config = { grid = 4, epochs = 1, test_images = 6, substrate = "black", steps = 4, progress = false }
    """))
    return tmp_path


def test_own_model_run_shows_patch_truth_and_the_known_order_column(project, capsys):
    out = project / "out"
    assert main(["run", str(project / "spec.toml"), "--output", str(out), "--run-id", "r", "--no-progress"]) == 0
    res = json.loads((out / "r" / "results.json").read_text())
    pt = [a for a in res["aggregates"] if a["evaluator"] == "patch_truth"]
    assert {a["method"] for a in pt} == {"saliency@0", "saliency@50", "saliency@100"}
    assert all(a["n"] + a["n_nan"] == 6 for a in pt) and any(a["mean"] is not None for a in pt)
    sur = res["evaluators"]["patch_truth"]["conventions"]["surrogate"]
    assert 0.0 <= sur["agreement"] <= 1.0 and sur["n_train"] == 12 and sur["patch_px"] == [8, 8]
    ko = res["validity"]["known_order"]
    assert ko["series"] == [{"base": "saliency", "base_config": {}, "levels": [0.0, 0.5, 1.0],
                             "methods": ["saliency@0", "saliency@50", "saliency@100"]}]
    assert set(ko["evaluators"]) == {"deletion", "patch_truth", "surrogate_morf"}
    for r in ko["evaluators"].values():
        assert r["n"] == 6 and (r["tau"] is None or -1.0 <= r["tau"] <= 1.0)
    rows = [r for r in res["samples"] if r[1] == "patch_truth" and r[2] == "saliency@0"]
    deletion_ids = [r[3] for r in res["samples"] if r[1] == "deletion" and r[2] == "saliency@0"]
    assert [r[3] for r in rows] == deletion_ids  # the run's own images, under their ids
    table = (out / "r" / "validity.md").read_text()
    assert "known-order τ [95% CI]" in table and "patch_truth" in table
