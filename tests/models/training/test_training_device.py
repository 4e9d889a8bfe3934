"""Training on the run's device: the CPU path stays deterministic, a CUDA training follows the
same recipe (same initialisation, batch order and flips) to float tolerance and is keyed apart in
the retraining cache, and a Ray executor asks for GPUs only when the run's device is cuda."""

from __future__ import annotations

import pytest
import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.models.train import RetrainRecipe, TrainConfig, evaluate_classifier, train_model, train_stacked
from gmxai_eval.runner.devices import executor_for
from gmxai_eval.runner.spec import parse_spec
from test_training import _Squares

CFG = TrainConfig(epochs=2, batch_size=8, lr=3e-3, threads=1, seed=0, label_smoothing=0.0)
BASE = {"methods": [{"name": "saliency"}], "evaluators": [{"name": "sparseness"}]}

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_explicit_cpu_device_is_the_default_path_bitwise():
    tr = _Squares(24, 0)
    m0, h0 = train_model(tr, 3, CFG, progress=False)
    m1, h1 = train_model(tr, 3, CFG, progress=False, device="cpu")
    assert _equal(m0, m1) and h0["loss"] == h1["loss"] and h1["device"] == "cpu"
    assert next(m1.parameters()).device.type == "cpu"


def test_recipe_key_keeps_cpu_keys_and_separates_cuda():
    r = RetrainRecipe(CFG, {"width": 0.25}, 3)
    assert r.key() == RetrainRecipe(CFG, {"width": 0.25}, 3, device="cpu").key()
    assert r.key() != RetrainRecipe(CFG, {"width": 0.25}, 3, device="cuda").key()
    assert RetrainRecipe(CFG, {}, 3, device="cuda").key() == RetrainRecipe(CFG, {}, 3, device="cuda:1").key()


def test_ray_tasks_ask_for_gpus_only_on_a_cuda_run():
    pytest.importorskip("ray")
    cpu = parse_spec({**BASE, "run": {"executor": "ray"}})
    gpu = parse_spec({**BASE, "run": {"executor": "ray", "device": "cuda", "gpus_per_task": 0.25}})
    ex_cpu, ex_gpu = executor_for(cpu, workers=1), executor_for(gpu, workers=1)
    try:  # constructing the executor starts no Ray instance; the request is what tasks will carry
        assert ex_cpu.num_gpus == 0.0 and ex_gpu.num_gpus == 0.25
        assert executor_for(gpu, "local").name == "local"  # other executors have no GPU request
    finally:
        ex_cpu.close(), ex_gpu.close()


def test_gpus_per_task_is_checked_and_leaves_the_spec_hash_alone():
    plain = parse_spec(BASE)
    assert parse_spec({**BASE, "run": {"gpus_per_task": 0.5}}).hash() == plain.hash()
    assert "gpus_per_task" not in plain.to_dict()["run"]
    for bad in (0, -1, "1", True, 65):
        with pytest.raises(ConfigError, match="run.gpus_per_task"):
            parse_spec({**BASE, "run": {"gpus_per_task": bad}})


@requires_cuda
def test_cuda_training_follows_the_cpu_recipe():
    tr, te = _Squares(48, 0), _Squares(30, 1)
    cfg = TrainConfig(epochs=6, batch_size=8, lr=3e-3, threads=1, seed=0, label_smoothing=0.0)
    m_cpu, h_cpu = train_model(tr, 3, cfg, progress=False)
    m_gpu, h_gpu = train_model(tr, 3, cfg, progress=False, device="cuda")
    assert next(m_gpu.parameters()).device.type == "cpu" and h_gpu["device"].startswith("cuda")
    # same initialisation, batches and flips: the loss curves agree to float tolerance
    assert h_gpu["loss"] == pytest.approx(h_cpu["loss"], rel=1e-2, abs=1e-3)
    assert abs(evaluate_classifier(m_gpu, te)["top1"] - evaluate_classifier(m_cpu, te)["top1"]) <= 0.1
    stacked, hist = train_stacked(tr, 3, cfg, [0, 1], device="cuda")
    assert hist["device"].startswith("cuda") and all(next(m.parameters()).device.type == "cpu" for m in stacked)
