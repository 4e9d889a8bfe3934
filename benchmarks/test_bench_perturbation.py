"""Speed of the perturbation evaluators (pytest-benchmark, same process).

1. Efficiency: evaluator wall time vs the floor = the same number of forward images in chunks of
   the same ``max_batch`` (``forward_share = floor / evaluator``; goal >= 0.8).
2. Against Quantus 0.6.0 on identical work (same images, same number of perturbed forward
   passes): pixel flipping, region perturbation, faithfulness correlation (goal >= 2x).
3. Forward images of the shared path (one batch, all methods, several evaluators) vs the naive
   sum (each evaluator and method on its own).

Runs single-threaded (``torch.set_num_threads(1)``) so that figures on a shared machine are
stable; every ratio compares runs in the same process on the same thread count.
Run: ``python -m pytest benchmarks/test_bench_perturbation.py --benchmark-only -s``.
"""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from gmxai_eval.evaluators.base import EVALUATORS, EvalBatch
from gmxai_eval.utils import hooks

N_IMG, N_METHODS, MAX_BATCH = 4, 2, 16  # 16 = the CPU default of max_batch=None


def _model() -> nn.Module:
    """The default architecture (random weights: speed does not depend on training)."""
    from gmxai_eval.models import MODELS

    return MODELS.create("gmx_small", num_classes=13).eval()


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    model = _model()
    x = torch.rand(N_IMG, 3, 112, 112, generator=g)
    t = torch.arange(N_IMG) % 13
    maps = {f"m{i}": torch.randn(N_IMG, 112, 112, generator=g) for i in range(N_METHODS)}
    yield model, x, t, maps
    torch.set_num_threads(threads)


class _Count:
    def __init__(self) -> None:
        self.images = 0

    def __call__(self, module, args):  # noqa: ANN001
        self.images += int(args[0].shape[0])


def _count_images(model, fn) -> int:
    c = _Count()
    with hooks() as hs:
        hs.append(model.register_forward_pre_hook(c))
        fn()
    return c.images


def _floor_fn(model, n_images: int):
    xs = torch.rand(MAX_BATCH, 3, 112, 112)

    def run() -> None:
        with torch.no_grad():
            for lo in range(0, n_images, MAX_BATCH):
                model(xs[: min(MAX_BATCH, n_images - lo)])
    return run


def _interleaved_min(fns, rounds: int = 3) -> list[float]:
    """Best-of-``rounds`` seconds of each function, calls interleaved (load drifts on a shared
    machine affect all of them alike)."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


EFFICIENCY = {
    "deletion": {"steps": 28},
    "insertion": {"steps": 28},
    "region_perturbation": {"patch_size": 9, "regions": 28},
    "faithfulness_correlation": {"nr_runs": 28, "subset_size": 224},
    "faithfulness_estimate": {"features_in_step": 448},
    "monotonicity_correlation": {"features_in_step": 1568, "nr_samples": 4},
    "infidelity": {"n_perturb_samples": 28},
}


@pytest.mark.parametrize("name", sorted(EFFICIENCY))
def test_efficiency(benchmark, setup, name):
    model, x, t, maps = setup
    ev = EVALUATORS.create(name, max_batch=MAX_BATCH, **EFFICIENCY[name])
    run = lambda: ev.evaluate(EvalBatch(model, x, t, maps))  # noqa: E731
    n = _count_images(model, run)
    ours, floor = _interleaved_min([run, _floor_fn(model, n)])
    share = floor / ours
    benchmark.group = "perturbation-efficiency"
    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update({"forward_images": n, "floor_s": floor, "evaluator_s": ours, "forward_share": share})
    print(f"\n[efficiency] {name}: {n} forward images, floor {floor:.2f}s, evaluator {ours:.2f}s, "
          f"forward share {share:.2f}")


def _quantus_case(name, model, x, t, a):
    import quantus

    common = dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)
    xn, an = x.numpy(), a[:, None].numpy()
    if name == "pixel_flipping":  # 24 steps of 1568 elements (Quantus needs H*W % step == 0)
        q = quantus.PixelFlipping(features_in_step=1568, perturb_baseline="black", **common)
        ours = EVALUATORS.create("pixel_flipping", steps=None, features_in_step=1568, include_start=False,
                                 unit="element", baseline="sample_min", max_batch=MAX_BATCH)
        kw = {"softmax": True}
    elif name == "region_perturbation":  # 28 regions of 8x8
        q = quantus.RegionPerturbation(patch_size=8, regions_evaluation=28, perturb_baseline="black", **common)
        ours = EVALUATORS.create("region_perturbation", patch_size=8, regions=28, baseline="sample_min",
                                 random_control=False, max_batch=MAX_BATCH)
        kw = {"softmax": True}
    else:  # 28 random subsets of 224 elements
        q = quantus.FaithfulnessCorrelation(nr_runs=28, subset_size=224, perturb_baseline="black",
                                            return_aggregate=False, **common)
        ours = EVALUATORS.create("faithfulness_correlation", nr_runs=28, subset_size=224, unit="element",
                                 baseline="sample_min", output="logit", max_batch=MAX_BATCH)
        kw = {"softmax": False}
    run_q = lambda: q(model=model, x_batch=xn, y_batch=t.numpy(), a_batch=an, device="cpu",  # noqa: E731
                      batch_size=len(x), **kw)
    return run_q, ours


@pytest.mark.parametrize("n_methods", [1, 4])
@pytest.mark.parametrize("name", ["pixel_flipping", "region_perturbation", "faithfulness_correlation"])
def test_vs_quantus(benchmark, setup, name, n_methods):
    """Score ``n_methods`` maps: Quantus is called once per method (it has no multi-method path);
    ours scores them in one call (identical perturbed images per method)."""
    model, x, t, maps = setup
    g = torch.Generator().manual_seed(1)
    many = {f"m{i}": torch.randn(N_IMG, 112, 112, generator=g) for i in range(n_methods)}
    cases = [_quantus_case(name, model, x, t, a) for a in many.values()]
    ev = cases[0][1]
    run = lambda: ev.evaluate(EvalBatch(model, x, t, many))  # noqa: E731

    def run_quantus() -> None:
        for run_q, _ in cases:
            run_q()
    ours, best_q = _interleaved_min([run, run_quantus])
    speedup = best_q / ours
    benchmark.group = "perturbation-vs-quantus"
    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update({"quantus_s": best_q, "ours_s": ours, "speedup_vs_quantus": speedup})
    print(f"\n[vs quantus] {name} x{n_methods} methods: quantus {best_q:.2f}s, ours {ours:.2f}s, "
          f"speedup {speedup:.2f}x")


def test_shared_forward_passes(benchmark, setup):
    """deletion + pixel_flipping + faithfulness_correlation + infidelity, 2 methods."""
    model, x, t, maps = setup
    evs = [EVALUATORS.create("deletion", steps=28), EVALUATORS.create("pixel_flipping", steps=28),
           EVALUATORS.create("faithfulness_correlation", nr_runs=28),
           EVALUATORS.create("infidelity", n_perturb_samples=28)]

    def shared():
        b = EvalBatch(model, x, t, maps)
        for ev in evs:
            ev.evaluate(b)

    def naive():
        for ev in evs:
            for m, a in maps.items():
                ev.evaluate(EvalBatch(model, x, t, {m: a}))

    n_shared, n_naive = _count_images(model, shared), _count_images(model, naive)
    benchmark.group = "perturbation-sharing"
    benchmark.pedantic(shared, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update({"images_shared": n_shared, "images_naive": n_naive,
                                 "naive_over_shared": n_naive / n_shared})
    print(f"\n[sharing] forward images shared {n_shared}, naive {n_naive}, ratio {n_naive / n_shared:.2f}x")
    assert n_shared < n_naive
