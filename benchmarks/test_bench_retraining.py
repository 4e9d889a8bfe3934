"""Retraining benchmarks: what stacking the repeats of a point buys, 1 vs 2 workers, and the cost
of the two retraining presets. Run: ``pytest benchmarks/test_bench_retraining.py -s``.

Uses the embedded default (data + model under ``$GMXAI_DATA``). Every figure is measured in this
run (ratios compare measurements taken one after the other in the same process); record the
machine and its load (``uptime``) next to them.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np
import pytest

from _timing import best_of
from gmxai_eval.evaluators import create_evaluator
from gmxai_eval.evaluators.base import DatasetJob
from gmxai_eval.execution import EXECUTORS
from gmxai_eval.methods import METHODS
from gmxai_eval.models.default import PRESETS, load_default
from gmxai_eval.models.train import ArrayDataset, RetrainRecipe, TrainConfig, train_model, train_stacked
from gmxai_eval.runner.spec import preset_spec

QUICK = preset_spec("roar-quick")
ROAR_QUICK = dict(next(e for e in QUICK.evaluators if e.name == "roar").config)


def _quick_problem():
    """The roar-quick retraining problem: 4 classes, 90 training images per class."""
    model, splits, card = load_default(progress=False, preset="default")
    ds = splits.train
    lab = np.asarray(ds.labels)
    rows = np.concatenate([np.nonzero(lab == c)[0][:90] for c in range(4)])
    x = np.ascontiguousarray(np.stack([np.asarray(ds._images[ds.indices[i]]) for i in np.sort(rows)]))
    return model, splits, card, ArrayDataset(x, lab[np.sort(rows)])


def _load() -> str:
    return os.getloadavg().__repr__()


def test_bench_stacked_repeats(benchmark):
    """R repeats trained one after another vs as one torch.func stacked ensemble."""
    _, _, _, train = _quick_problem()
    r = ROAR_QUICK["recipe"]
    cfg = replace(TrainConfig(), epochs=1, batch_size=r["batch_size"], bn_images=r["bn_images"])
    kw = {"width": r["width"]}
    out = {}
    for repeats in (2, 5):
        seeds = list(range(repeats))
        seq, _ = best_of(lambda seeds=seeds: [train_model(train, 13, replace(cfg, seed=s), progress=False,
                                                          arch_kwargs=kw) for s in seeds], rounds=1)
        stk, _ = best_of(lambda seeds=seeds: train_stacked(train, 13, cfg, seeds, kw), rounds=1)
        out[repeats] = {"sequential_s": seq, "stacked_s": stk, "speedup": seq / stk,
                        "trainings_per_hour_sequential": 3600 * repeats / seq,
                        "trainings_per_hour_stacked": 3600 * repeats / stk}
    benchmark.extra_info.update({"stacked": out, "load": _load(), "images": len(train), "epochs": 1})
    print("stacked vs sequential (1 epoch, 360 images, half-width gmx_small):", out, "load", _load())
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def _scaling_job(cache: str):
    model, splits, card = load_default(progress=False, preset="default")
    kw = {k: v for k, v in card["arch_kwargs"].items() if k not in ("num_classes", "seed")}
    recipe = RetrainRecipe(PRESETS["default"].train, kw, 13, cache)
    ex = {m: METHODS.create(m) for m in ("saliency", "oracle")}
    return DatasetJob(splits.train, splits.test, recipe.model_factory, recipe, ex, model.eval())


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_bench_worker_scaling(benchmark, tmp_path, executor):
    """The quick preset's ROAR recipe and data (saliency + oracle + the random control, one
    fraction: 8 trainings and 3 masked datasets) with 1 and 2 workers: wall time and speedup."""
    if executor == "ray":
        pytest.importorskip("ray")
    cfg = {**ROAR_QUICK, "fractions": [0.3], "progress": False}
    times = {}
    for workers in (1, 2):
        job = _scaling_job(str(tmp_path / f"{executor}{workers}"))
        kw = {"workers": workers}
        if executor == "ray":
            kw["init_kwargs"] = {"object_store_memory": 200 * 2**20}
        with EXECUTORS.create(executor, **kw) as ex:
            t0 = time.perf_counter()
            create_evaluator("roar", **cfg).run(job, ex)
            times[workers] = time.perf_counter() - t0
    info = {"seconds_1_worker": times[1], "seconds_2_workers": times[2], "speedup": times[1] / times[2],
            "load": _load()}
    benchmark.extra_info.update(info)
    print(f"{executor}: {info}")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def test_bench_preset_costs(benchmark):
    """Trainings, seconds per training and total (one core per training) of both presets, from
    one measured training of each recipe (the paper recipe: one epoch, scaled to its epochs)."""
    model, splits, card, train = _quick_problem()
    r = ROAR_QUICK["recipe"]
    qcfg = replace(TrainConfig(), epochs=r["epochs"], batch_size=r["batch_size"], bn_images=r["bn_images"])
    q, _ = best_of(lambda: train_model(train, 13, qcfg, progress=False, arch_kwargs={"width": r["width"]}), rounds=1)
    pcfg = replace(PRESETS["default"].train, epochs=1)
    p1, _ = best_of(lambda: train_model(splits.train, 13, pcfg, progress=False), rounds=1)
    paper_s = p1 * PRESETS["default"].train.epochs
    paper = preset_spec("roar-paper")
    n_methods = len(paper.methods)
    roar_cfg = dict(next(e for e in paper.evaluators if e.name == "roar").config)
    # t = 0 trainings are shared by ROAR and KAR; the internal random control is the spec's random
    paper_n = roar_cfg["repeats"] + 2 * n_methods * len(roar_cfg["fractions"]) * roar_cfg["repeats"] + 1
    quick_n = 1 * ROAR_QUICK["repeats"] + len(QUICK.methods) * len(ROAR_QUICK["fractions"]) * ROAR_QUICK["repeats"]
    table = {"roar-quick": {"trainings": quick_n + 1, "seconds_per_training": q, "total_core_s": (quick_n + 1) * q},
             "roar-paper": {"trainings": paper_n, "seconds_per_training": paper_s,
                            "total_core_s": paper_n * paper_s}}
    benchmark.extra_info.update({"costs": table, "load": _load()})
    print("preset costs (CPU, one core per training):", table, "load", _load())
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
