"""Training time of the default model (``gmx_small`` on the default synthetic data, default
``TrainConfig``: 2 threads) and its test metrics. Run: ``pytest benchmarks/test_bench_train.py``.
Generates the default data under a temporary root first (not timed)."""

from __future__ import annotations

from gmxai_eval.data import synth
from gmxai_eval.models.default import PRESETS, open_splits
from gmxai_eval.models.train import evaluate, train_model


def test_bench_train_default(benchmark, tmp_path):
    folder = synth.load("default", root=tmp_path, progress=False).folder
    b = open_splits(folder)
    cfg = PRESETS["default"].train

    def run():
        return train_model(b.train, len(b.classes), cfg, progress=False)

    model, hist = benchmark.pedantic(run, rounds=1, iterations=1)
    m = evaluate(model, b.gallery, b.test)
    benchmark.extra_info.update({"train_seconds": hist["seconds"], **m})
    assert m["gallery_top1"] > 0
