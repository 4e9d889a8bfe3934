"""Synthetic-face generation speed: images/s of the batched renderer and the time for 10,000
images (target: < 60 s on 2 cores). Run: ``pytest benchmarks/test_bench_synth.py``."""

from __future__ import annotations

import time

from gmxai_eval.data import synth

CFG = synth.SynthConfig(num_images=10_000)


def _render(n: int) -> dict:
    return synth.render_arrays(CFG, limit=n)


def test_bench_render_1k(benchmark):
    """1,000 images (default mix of classes) per round, one process with one thread."""
    out = benchmark.pedantic(_render, args=(1000,), rounds=2, iterations=1)
    benchmark.extra_info["images_per_s"] = 1000 / benchmark.stats["mean"]
    assert out["images"].shape == (1000, 3, 112, 112)


def test_bench_generate_10k(benchmark, tmp_path):
    """The full 10,000-image dataset rendered (2 worker processes) and written (one round)."""

    def run():
        t = time.perf_counter()
        folder = synth.generate(CFG, name="bench10k", root=tmp_path, overwrite=True, progress=False)
        return folder, time.perf_counter() - t

    folder, seconds = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["seconds_10k"] = seconds
    benchmark.extra_info["images_per_s"] = 10_000 / seconds
    assert (folder / "card.json").exists()
