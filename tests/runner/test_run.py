"""The runner: cache reuse, resume after a failure, executors, dataset-scope path, devices, OOM."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from gmxai_eval.cli import main
from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EVALUATORS, DatasetEvaluator, DatasetJob, EvalResult
from gmxai_eval.execution import LocalExecutor
from gmxai_eval.models import MODELS
from gmxai_eval.runner.run import EvalUnit, call_halving, run_benchmark
from gmxai_eval.runner.store import read_table
from gmxai_eval.types import EvaluatorCard
from runner_report_toys import ToyDeletion, ToyFlaky, ToyGrad, ToyMass, ToyRandom, toy_spec

SCORE_COLS = ["seed", "evaluator", "method", "sample_id", "subject", "score", "curve", "curve_x"]


def _run(spec, tmp_path, **kw):
    kw.setdefault("output", tmp_path / "out")
    return run_benchmark(spec, progress=False, verbose=False, **kw)


def test_second_run_recomputes_only_new_method_and_evaluator(tmp_path, toys):
    first = _run(toy_spec(methods=["toy_grad"], evaluators=["toy_mass"]), tmp_path)
    assert ToyGrad.calls == 8 and ToyMass.calls == 2  # 8 images, 2 batches of 4
    assert first.counts == {"attributed": {"toy_grad": 8}, "units_run": 2, "units_reused": 0}

    second = _run(toy_spec(methods=["toy_grad", "toy_random"], evaluators=["toy_mass", "toy_deletion"]),
                  tmp_path)
    assert ToyGrad.calls == 8  # cached: not explained again
    assert ToyRandom.calls == 8
    assert ToyMass.calls == 2 + 2  # only the new method's units
    assert ToyDeletion.calls == 2 * 2
    assert second.counts["attributed"] == {"toy_grad": 0, "toy_random": 8}
    assert second.counts["units_reused"] == 2 and second.counts["units_run"] == 6
    old = first.table[SCORE_COLS]
    new = second.table[(second.table.evaluator == "toy_mass") & (second.table.method == "toy_grad")][SCORE_COLS]
    pd.testing.assert_frame_equal(old.reset_index(drop=True), new.reset_index(drop=True))

    # a new image is the only one explained; a changed method config is a new cache entry
    third = _run(toy_spec(methods=["toy_grad"], evaluators=["toy_mass"], n_images=9, n_dataset=9), tmp_path)
    assert third.counts["attributed"] == {"toy_grad": 1}
    fourth = _run(toy_spec(methods=[{"name": "toy_random", "config": {"seed": 3}}], evaluators=["toy_mass"]),
                  tmp_path)
    assert fourth.counts["attributed"] == {"toy_random": 8}


def test_resume_after_injected_failure_matches_uninterrupted_run(tmp_path, toys):
    spec = toy_spec(evaluators=["toy_mass", "toy_flaky", "toy_deletion"])
    clean = _run(spec, tmp_path, cache=tmp_path / "clean-cache")
    total = clean.counts["units_run"]  # 3 evaluators x 2 methods x 2 batches
    assert total == 12

    ToyFlaky.seen, ToyFlaky.fail_at = 0, 3  # fails on its 3rd method-batch evaluation
    with pytest.raises(RuntimeError, match="injected failure"):
        _run(spec, tmp_path, cache=tmp_path / "cache")
    stored = len(list((tmp_path / "cache" / "units").rglob("*.json")))
    assert 0 < stored < total
    ToyFlaky.fail_at = -1
    calls_before = ToyMass.calls
    resumed = _run(spec, tmp_path, cache=tmp_path / "cache")
    assert resumed.counts["units_run"] == total - stored
    assert resumed.counts["units_reused"] == stored
    assert ToyMass.calls - calls_before == 0  # toy_mass units (first in order) had all finished
    pd.testing.assert_frame_equal(clean.table[SCORE_COLS], resumed.table[SCORE_COLS])


class RecordingExecutor(LocalExecutor):
    name = "recording"

    def __init__(self):
        self.items = []

    def imap(self, fn, items):
        for it in items:
            self.items.append(it)
            yield fn(it)


class ToyRetrain(DatasetEvaluator):
    card = EvaluatorCard(name="toy_retrain", category="retraining", higher_is_better=True, paper="test",
                         scope="dataset", needs=frozenset({"dataset"}))

    def run(self, job, executor):
        accs = executor.map(lambda s: float(s) / 10, list(job.seeds))
        return {m: EvalResult(torch.tensor(accs) + i, torch.tensor([[a, a / 2] for a in accs]), torch.tensor([0.0, 0.5]))
                for i, m in enumerate(job.explainers)}


def test_units_go_through_the_executor_and_dataset_scope_gets_a_job(tmp_path, toys):
    EVALUATORS.register(ToyRetrain)
    try:
        jobs = []

        def make_job(samples, model, explainers, dataset, spec):
            jobs.append(len(samples))
            return DatasetJob(samples, samples, lambda: model, lambda m, d, s: m, explainers, model, seeds=(1, 2, 3))

        ex = RecordingExecutor()
        res = _run(toy_spec(evaluators=["toy_mass", "toy_retrain"]), tmp_path, executor=ex, dataset_job=make_job)
        assert jobs == [8]
        units = [u for u in ex.items if isinstance(u, EvalUnit)]
        assert len(units) == 2  # toy_mass: one unit per batch, both methods in it
        assert all(set(u.methods) == {"toy_grad", "toy_random"} for u in units)
        assert [u for u in ex.items if not isinstance(u, EvalUnit)] == [1, 2, 3]  # the retrainings
        rows = res.table[res.table.evaluator == "toy_retrain"]
        assert sorted(rows.sample_id.unique()) == ["retrain-0", "retrain-1", "retrain-2"]
        got = rows[rows.method == "toy_random"].sort_values("sample_id").score.tolist()
        assert got == pytest.approx([1.1, 1.2, 1.3])
        agg = {(r["evaluator"], r["method"]): r for r in res.results["aggregates"]}
        assert agg[("toy_retrain", "toy_grad")]["mean"] == pytest.approx(0.2)
        assert res.results["curves"]["toy_retrain"]["toy_grad"]["mean"] == pytest.approx([0.2, 0.1])
        # stored: the rerun does not retrain
        again = _run(toy_spec(evaluators=["toy_mass", "toy_retrain"]), tmp_path, dataset_job=make_job)
        assert jobs == [8] and again.counts["units_run"] == 0
    finally:
        EVALUATORS.unregister("toy_retrain")


def test_oom_halving_gives_identical_results(tmp_path, toys):
    res = _run(toy_spec(methods=["toy_grad", "toy_grad_oom"], evaluators=["toy_mass"]), tmp_path)
    t = res.table
    a = t[t.method == "toy_grad"].score.to_numpy()
    b = t[t.method == "toy_grad_oom"].score.to_numpy()
    assert (a == b).all()

    seen = []

    def fn(xs):
        seen.append(len(xs))
        if len(xs) > 3:
            raise torch.OutOfMemoryError("out of memory")
        return [v * 2 for v in xs]

    out = call_halving(fn, list(range(10)), lambda v: (v[: len(v) // 2], v[len(v) // 2:]),
                       lambda p, q: p + q, len)
    assert out == [2 * v for v in range(10)] and max(s for s in seen if s <= 3) <= 3
    with pytest.raises(ValueError):
        call_halving(lambda v: (_ for _ in ()).throw(ValueError("other")), [1, 2], lambda v: (v[:1], v[1:]),
                     lambda p, q: p + q, len)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path, toys, capsys):
    with pytest.raises(ConfigError, match="CUDA.*torch.cuda.is_available\\(\\) is False"):
        _run(toy_spec(device="cuda"), tmp_path)
    spec = tmp_path / "s.toml"
    spec.write_text("[run]\ndevice = 'cuda'\n[model]\nsource = 'registry'\narch = 'toy_cnn'\n"
                    "[dataset]\nname = 'toy_faces'\n[[methods]]\nname = 'toy_grad'\n[[evaluators]]\nname = 'toy_mass'\n")
    assert main(["run", str(spec), "--output", str(tmp_path / "o")]) == 1
    assert "CUDA" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(tmp_path, toys):
    cpu = _run(toy_spec(), tmp_path, cache=tmp_path / "c1")
    gpu = _run(toy_spec(device="cuda"), tmp_path, cache=tmp_path / "c2")
    assert gpu.results["device"].startswith("cuda")
    assert gpu.table.score.to_numpy() == pytest.approx(cpu.table.score.to_numpy(), rel=1e-4, abs=1e-5)


def test_cli_run_writes_every_output(tmp_path, toys, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text("[run]\nname = 'cli'\nn_images = 6\nbatch_size = 3\nbootstrap = 100\nhtml = false\nselect = 'first'\n"
                    "[model]\nsource = 'registry'\narch = 'toy_cnn'\n[dataset]\nname = 'toy_faces'\n"
                    "[[methods]]\nname = 'toy_grad'\n[[methods]]\nname = 'toy_random'\n"
                    "[[evaluators]]\nname = 'toy_mass'\n")
    assert main(["run", str(spec), "--output", str(tmp_path / "o"), "--run-id", "r1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    d = tmp_path / "o" / "r1"
    # the compact summary (ranks, then the paths of the full tables), not the wide Markdown table
    assert any(line.split()[:1] == ["toy_grad"] for line in out.splitlines()) and "| toy_grad" not in out
    assert f"  {d / 'leaderboard.md'}" in out.splitlines() and "time per stage" in out
    assert {p.name for p in d.iterdir()} >= {"samples.csv", "leaderboard.md", "leaderboard.tex",
                                             "leaderboard.csv", "results.json"}
    doc = json.loads((d / "results.json").read_text())
    assert doc["n_images"] == 6 and doc["spec_hash"] and doc["environment"]["versions"]["torch"]
    assert doc["evaluators"]["toy_mass"]["conventions"]["evaluator"] == "toy_mass"
    table = read_table(d / "samples.csv")
    assert len(table) == 12 and set(table.method) == {"toy_grad", "toy_random"}
    # scores in the table are the per-sample numbers of results.json
    assert sorted(table.score) == sorted(r[4] for r in doc["samples"])
    assert main(["run", str(spec), "--preset", "quick"]) == 1  # both given


def test_cli_lists_methods_and_evaluators(toys, capsys):
    assert main(["methods", "toy_*"]) == 0
    out = capsys.readouterr().out
    assert "| toy_grad " in out and "| toy_random " in out and "3 methods matching 'toy_*'" in out
    assert main(["evaluators", "toy_d*"]) == 0
    out = capsys.readouterr().out
    assert "toy_deletion" in out and "toy_mass" not in out and "perturbation" in out


def test_model_in_training_mode_is_refused(tmp_path, toys):
    from gmxai_eval.errors import ModelStateError

    model = MODELS.create("toy_cnn", num_classes=4).train()
    with pytest.raises(ModelStateError, match="eval mode"):
        _run(toy_spec(), tmp_path, model=model)


def test_default_source_uses_load_default_model_and_splits(tmp_path, toys, monkeypatch):
    import types

    import gmxai_eval.models.default as default_mod
    from gmxai_eval.runner.spec import parse_spec
    from gmxai_eval.testing import toy_samples

    calls = []
    test_split = toy_samples(6, split="test")
    splits = types.SimpleNamespace(test=test_split, dataset=test_split + toy_samples(4, split="train", seed=1))

    def fake_load_default(**kw):
        calls.append(kw)
        return MODELS.create("toy_cnn", num_classes=4), splits, {"card": True}

    monkeypatch.setattr(default_mod, "load_default", fake_load_default)
    spec = parse_spec({"run": {"n_images": 4, "batch_size": 4, "bootstrap": 100, "html": False, "select": "first"},
                       "dataset": {"name": "default", "split": "test"},
                       "model": {"source": "default", "config": {"preset": "tiny"}},
                       "methods": [{"name": "toy_grad"}], "evaluators": [{"name": "toy_mass"}]})
    res = _run(spec, tmp_path)  # progress=False: the run's progress setting reaches data and training
    assert calls == [{"preset": "tiny", "progress": False}]
    run_benchmark(spec, output=tmp_path / "auto", progress=None, verbose=False)  # auto: lines off a terminal
    assert calls[-1] == {"preset": "tiny", "progress": True}
    assert sorted(res.table.sample_id) == [s.image_id for s in test_split[:4]]
    with pytest.raises(ConfigError, match="default data comes with the default model"):
        _run(spec.replace(model={"source": "registry", "arch": "toy_cnn"}), tmp_path)


def test_stratified_selection_round_robins_over_classes():
    from gmxai_eval.runner.run import select_samples
    from gmxai_eval.testing import toy_samples

    samples = sorted(toy_samples(12), key=lambda s: s.label)  # grouped by class
    first = select_samples(samples, "", 4, "first")
    assert [s.label for s in first] == [0, 0, 0, 1]
    strat = select_samples(samples, "", 6, "stratified")
    assert [s.label for s in strat] == [0, 1, 2, 3, 0, 1]
    from gmxai_eval.errors import DataError

    # a split the dataset does not carry: a configuration error listing the splits it has
    with pytest.raises(ConfigError, match=r"\['test'\].*got 'train'"):
        select_samples(samples, "train", 0, "first")
    # a split it carries, emptied by the class filter: a data error
    with pytest.raises(DataError, match="split 'test' and the selected classes"):
        select_samples(samples, "test", 0, "first", classes={7})


def test_reliability_stage_is_opt_in(tmp_path, toys):
    off = _run(toy_spec(evaluators=["toy_mass"]), tmp_path)
    assert off.results["reliability"] is None and "reliability" not in off.timings
    spec = toy_spec(evaluators=["toy_mass", "toy_deletion"]).replace(
        reliability={"enabled": True, "n_images": 4, "disruptive_model_sigma": 2.0})
    on = _run(spec, tmp_path)
    rel = on.results["reliability"]
    assert set(rel["evaluators"]) == {"toy_mass", "toy_deletion"} and rel["settings"]["n_images"] == 4
    assert "reliability" in on.timings
    # a disruptive perturbation moves toy_mass scores more than a prediction-keeping one
    r = rel["evaluators"]["toy_mass"]
    assert r["disruptive_change"] > r["minor_change"]


def test_relabelling_reuses_maps_and_units(tmp_path, toys):
    _run(toy_spec(methods=["toy_grad"], evaluators=["toy_mass"]), tmp_path)
    again = _run(toy_spec(methods=[{"name": "toy_grad", "label": "Gradient x input"}],
                          evaluators=[{"name": "toy_mass", "label": "mass"}]), tmp_path)
    assert again.counts == {"attributed": {"Gradient x input": 0}, "units_run": 0, "units_reused": 2}
    assert set(again.table.method) == {"Gradient x input"} and set(again.table.evaluator) == {"mass"}
