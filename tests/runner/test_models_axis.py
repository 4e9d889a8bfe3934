"""The model axis: ``[[models]]`` parsed and validated, every model run as its one-model spec
would be (same scores), a combined table with a ``model`` column, the cross-model comparison
against scipy, resume, and ``source = "train"`` models trained once through the executor."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import scipy.stats
import torch

from gmxai_eval.data.images import write_image
from gmxai_eval.errors import ConfigError
from gmxai_eval.report.models import comparison, ranking_agreement
from gmxai_eval.runner.run import run_benchmark
from gmxai_eval.runner.spec import parse_spec
from runner_report_toys import toy_spec

SCORES = ["seed", "evaluator", "method", "sample_id", "score"]


def two_models(**run):
    d = toy_spec(**run).to_dict()
    d.pop("model")
    d["models"] = [{"label": "a", "source": "registry", "arch": "toy_cnn", "config": {"num_classes": 4, "seed": 0}},
                   {"label": "b", "source": "registry", "arch": "toy_cnn", "config": {"num_classes": 4, "seed": 1}}]
    return parse_spec(d, source="two.toml")


def test_models_parse_and_one_model_specs_keep_their_hash():
    spec = two_models()
    assert spec.model_labels == ("a", "b") and spec.model["config"]["seed"] == 0
    one = spec.for_model("b")
    assert one.models == () and one.model["config"]["seed"] == 1
    assert one.hash() == toy_spec().replace(model=one.model).hash()
    assert parse_spec(spec.to_dict(), source="again.toml").models == spec.models
    with pytest.raises(ConfigError, match="model label"):
        spec.for_model("c")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(model={"source": "default"}), "got both"),
    (lambda d: d["models"].append(dict(d["models"][0])), "distinct folder name"),
    (lambda d: d["models"][0].pop("label"), "with a 'label'"),
    (lambda d: d.update(models=[]), "non-empty list"),
    (lambda d: d["models"][1].update(source="train", train={"epochs": 1}), "registered 'arch'"),
    (lambda d: d["models"][1].update(source="train", train={"arch": "toy_cnn", "epochs": 0}), "epochs >= 1"),
    (lambda d: d["models"][1].update(source="train", train={"arch": "toy_cnn", "lr": "fast"}), "train.lr"),
    (lambda d: d["models"][1].update(source="train", train={"arch": "toy_cnnn"}), "toy_cnn"),
])
def test_bad_models_tables_name_the_file_and_key(change, message):
    d = two_models().to_dict()
    change(d)
    with pytest.raises(ConfigError, match=message):
        parse_spec(d, source="two.toml")


def test_ranking_agreement_is_scipys_kendall_tau_b():
    a = {"x": 1, "y": 2, "z": 3, "w": 3}
    b = {"x": 2, "y": 1, "z": 3, "w": 4, "only_b": 5}
    got = ranking_agreement({"m1": a, "m2": b})
    common = ["w", "x", "y", "z"]
    ref = scipy.stats.kendalltau([a[k] for k in common], [b[k] for k in common]).statistic
    assert got["pairs"] == [{"a": "m1", "b": "m2", "tau": pytest.approx(ref), "n_methods": 4}]
    assert got["mean_tau"] == pytest.approx(ref)


def test_each_model_scores_as_its_one_model_spec_and_the_run_resumes(tmp_path, toys):
    spec = two_models()
    res = run_benchmark(spec, output=tmp_path / "out", progress=False, verbose=False)
    run_dir = res.run_dir
    assert {p.name for p in (run_dir / "models").iterdir()} == {"a", "b"}
    both = pd.read_csv(run_dir / "samples.csv")
    assert list(both.columns[:1]) == ["model"] and set(both.model) == {"a", "b"}
    for label in ("a", "b"):
        alone = run_benchmark(spec.for_model(label), output=tmp_path / "alone", cache=tmp_path / "c2",
                              progress=False, verbose=False)
        mine = both[both.model == label][SCORES].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone.table[SCORES].reset_index(drop=True))
        sub = json.loads((run_dir / "models" / label / "results.json").read_text())
        assert sub["model_hash"] == alone.results["model_hash"] and sub["run_id"] == spec.for_model(label).run_id
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["format"] == "gmxai_eval.results-models/1" and list(doc["models"]) == ["a", "b"]
    assert doc["models"]["a"]["model_hash"] != doc["models"]["b"]["model_hash"]
    assert doc["comparison"] == json.loads(json.dumps(comparison(
        {k: json.loads((run_dir / "models" / k / "results.json").read_text()) for k in ("a", "b")})))
    board = (run_dir / "leaderboard.md").read_text()
    assert "toy_mass" in board and "Kendall" in board
    again = run_benchmark(spec, output=tmp_path / "out", progress=False, verbose=False)
    assert all(c["units_run"] == 0 for c in again.counts.values())  # everything from the cache


def _manifest(folder, n=24):
    g = torch.Generator().manual_seed(0)
    rows = ["path,label,subject,split"]
    for i in range(n):
        label = i % 2
        x = torch.rand(3, 32, 32, generator=g) * 0.5
        x[:, :16] += 0.5 * label  # the class is in the top half: a model can learn it in one epoch
        write_image(folder / f"{i}.png", x.clamp(0, 1))
        rows.append(f"{i}.png,c{label},p{i},{'test' if i >= 16 else 'train'}")
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    return folder / "m.csv"


def test_trained_models_are_trained_once_and_scored(tmp_path, toys):
    path = _manifest(tmp_path)
    d = toy_spec(n_images=8).to_dict()
    d.pop("model")
    d["dataset"] = {"path": str(path), "split": "test"}
    recipe = {"arch": "toy_cnn", "epochs": 1, "batch_size": 8, "bn_images": 0}
    d["models"] = [{"label": f"s{s}", "source": "train", "train": {**recipe, "seed": s}} for s in (0, 1)]
    d["evaluators"] = [{"name": "toy_deletion"}]
    spec = parse_spec(d, source="trained.toml")
    first = run_benchmark(spec, output=tmp_path / "out", progress=False, verbose=False)
    models = first.results["models"]
    assert {m["trained"]["cached"] for m in models.values()} == {False}
    assert all(0.0 <= m["trained"]["top1"] <= 1.0 for m in models.values())
    assert models["s0"]["model_hash"] != models["s1"]["model_hash"]  # two seeds, two models
    again = run_benchmark(spec, output=tmp_path / "out", progress=False, verbose=False)
    assert {m["trained"]["cached"] for m in again.results["models"].values()} == {True}
    assert again.results["models"]["s0"]["model_hash"] == models["s0"]["model_hash"]
