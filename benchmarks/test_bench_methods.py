"""Speed of the attribution methods: maps per second on the default model, and our batched
occlusion against Captum's ``Occlusion`` on identical work (same images, patch, stride,
baseline and target; the maps are checked equal before timing).

Model: ``gmx_small`` (3x112x112, 13 classes) when registered, else ``toy_cnn`` at 3x112x112.
Each method runs with its registered defaults on ``N_IMG`` images;
``extra_info["maps_per_s"]`` is the throughput. Run:
``python -m pytest benchmarks/test_bench_methods.py --benchmark-only -s``.
"""

from __future__ import annotations


import pytest
import torch
from captum.attr import Occlusion as CaptumOcclusion

from gmxai_eval.methods import create_method, list_methods
from gmxai_eval.models import MODELS
from _timing import best_of

N_IMG = 4


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    if "gmx_small" in MODELS:
        model = MODELS.create("gmx_small", num_classes=13).eval()
    else:
        model = MODELS.create("toy_cnn", num_classes=13).eval()
    x = torch.rand(N_IMG, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t = model(x).argmax(1)
    return model, x, t


@pytest.mark.parametrize("name", list_methods())
def test_maps_per_second(benchmark, setup, name):
    model, x, t = setup
    e = create_method(name)
    kw = {"masks": torch.ones(N_IMG, 112, 112, dtype=torch.bool)} if getattr(e, "needs_masks", False) else {}
    benchmark.group = "methods-throughput"
    maps = benchmark.pedantic(lambda: e(model, x, t, **kw), rounds=3, iterations=1, warmup_rounds=1)
    assert maps.shape == (N_IMG, 112, 112)
    rate = N_IMG / benchmark.stats.stats.min
    benchmark.extra_info["maps_per_s"] = rate
    print(f"\n[methods] {name}: {rate:.2f} maps/s")


def _best(fn, rounds=2):
    return best_of(fn, rounds)


@pytest.mark.parametrize("per_eval", [1, 64])
def test_occlusion_vs_captum(benchmark, setup, per_eval):
    """Same work: 10x10 black patch, stride 5 (441 windows per 112x112 image).
    ``per_eval`` is Captum's ``perturbations_per_eval`` (1 = its default)."""
    model, x, t = setup
    ours = create_method("occlusion", patch=10, stride=5, baseline=0.0, max_batch=256)
    cap = CaptumOcclusion(model)

    def run_captum():
        with torch.no_grad():
            return cap.attribute(x, sliding_window_shapes=(3, 10, 10), strides=(3, 5, 5), baselines=0.0,
                                 target=t, perturbations_per_eval=per_eval)[:, 0]

    benchmark.group = "occlusion-vs-captum"
    a = benchmark.pedantic(lambda: ours(model, x, t), rounds=2, iterations=1, warmup_rounds=0)
    t_cap, b = _best(run_captum)
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    ratio = t_cap / benchmark.stats.stats.min
    benchmark.extra_info.update({"captum_s": t_cap, "speedup_vs_captum": ratio})
    print(f"\n[occlusion] ours {benchmark.stats.stats.min:.2f}s, Captum (perturbations_per_eval="
          f"{per_eval}) {t_cap:.2f}s, speed-up x{ratio:.2f}")
