"""Speed of ROAD and IROF against Quantus 0.6.0 on identical work (single-channel input, where
Quantus runs), and against the forward floor (the same number of forward passes in large
batches, nothing else).

Run: ``python -m pytest benchmarks/test_bench_road.py -s --benchmark-disable-gc``. Ratios are
printed and stored in each benchmark's ``extra_info``; every timing is the minimum of
``ROUNDS`` runs in this process with one torch and one BLAS thread (small forward passes only contend for
threads on a shared machine).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gmxai_eval.evaluators import EvalBatch, create_evaluator
from gmxai_eval.functional.baselines import make_baseline
from gmxai_eval.models import MODELS
from _timing import best_of

quantus = pytest.importorskip("quantus")

ROUNDS = 3
N, SIZE = 16, 64
PCT = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread and one BLAS thread for both sides (threads only contend when shared)."""
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def _work(n: int, size: int):
    """``n`` grayscale ``size x size`` images, a 16-wide toy CNN, smooth blob maps (one large
    connected hole under MoRF: the hard case for the imputation)."""
    model = MODELS.create("toy_cnn", num_classes=4, in_channels=1, width=16, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, size, size, generator=g)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = torch.randint(8, size - 8, (n, 2, 1, 1), generator=g)
    maps = -((yy - c[:, 0]) ** 2 + (xx - c[:, 1]) ** 2).float() + torch.rand(n, size, size, generator=g)
    maps = maps - maps.min() + 1e-3  # positive (Quantus refuses some all-negative inputs)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, maps


@pytest.fixture(scope="module")
def work():
    return _work(N, SIZE)


def _best(fn, rounds: int = ROUNDS) -> float:
    return best_of(fn, rounds)[0]


@torch.no_grad()
def _forward_floor(model, x: torch.Tensor, n_images: int) -> float:
    """Fastest time to run ``n_images`` forward passes, over batch sizes 8, 32 and 256."""
    xs = x.repeat((n_images + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[:n_images].contiguous()
    return min(_best(lambda: [model(xs[i:i + b]) for i in range(0, n_images, b)]) for b in (8, 32, 256))


def _report(benchmark, name: str, ours: float, ref: float, floor: float) -> None:
    info = {"ours_s": ours, "quantus_s": ref, "forward_floor_s": floor, "speedup_vs_quantus": ref / ours,
            "forward_share": floor / ours}
    benchmark.extra_info.update(info)
    print(f"\n{name}: ours {ours:.3f} s, Quantus {ref:.3f} s -> {ref / ours:.1f}x faster; "
          f"forward floor {floor:.3f} s = {100 * floor / ours:.0f}% of our wall time")


def _quantus_road(model, x, y, maps, batch_size):
    """A call of Quantus's ROAD MoRF (no noise, signed maps, the same percentages) on this work."""
    q = quantus.ROAD(percentages=[int(100 * p) for p in PCT], noise=0.0, abs=False, normalise=False,
                     return_aggregate=False, disable_warnings=True)

    def run_quantus():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return q(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
                     device="cpu", batch_size=batch_size)

    return run_quantus


@pytest.mark.parametrize("n, size", [(N, SIZE), (8, 100)], ids=["16x64x64", "8x100x100"])
def test_bench_road_morf(benchmark, n, size):
    model, x, y, maps = _work(n, size)
    ev = create_evaluator("road_morf", noise=0.0, percentages=PCT)
    run_quantus = _quantus_road(model, x, y, maps, n)

    ours_res = ev(model, x, y, maps)
    ref_res = run_quantus()
    np.testing.assert_allclose(ours_res.curves.mean(0).numpy(), [ref_res[int(100 * p)] for p in PCT])
    ours = _best(lambda: ev(model, x, y, maps))
    ref = _best(run_quantus)
    floor = _forward_floor(model, x, n * len(PCT))
    _report(benchmark, f"ROAD MoRF ({n} images 1x{size}x{size})", ours, ref, floor)
    benchmark.pedantic(lambda: ev(model, x, y, maps), rounds=ROUNDS, iterations=1)


def test_bench_road_morf_cg(benchmark, work):
    """The batched CG solver (the GPU path) on the CPU, same work."""
    model, x, y, maps = work
    ev = create_evaluator("road_morf", noise=0.0, percentages=PCT, solver="cg", cg_tol=1e-6)
    ours = _best(lambda: ev(model, x, y, maps))
    floor = _forward_floor(model, x, N * len(PCT))
    benchmark.extra_info.update({"ours_s": ours, "forward_share": floor / ours})
    print(f"\nROAD MoRF (CG solver on CPU): {ours:.3f} s; forward floor {100 * floor / ours:.0f}% of wall time")
    benchmark.pedantic(lambda: ev(model, x, y, maps), rounds=ROUNDS, iterations=1)


def test_bench_irof(benchmark, work):
    model, x, y, maps = work
    base = make_baseline("image_mean", x)
    ev = create_evaluator("irof", aoc="quantus", baseline="image_mean")
    q = quantus.IROF(segmentation_method="slic", abs=False, normalise=False, perturb_baseline=base.numpy(),
                     return_aggregate=False, disable_warnings=True)

    def run_quantus():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return q(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
                     device="cpu", batch_size=N, softmax=True)

    ours_res = ev(model, x, y, maps)
    np.testing.assert_allclose(ours_res.scores.numpy(), np.asarray(run_quantus()), rtol=1e-4)  # float32 forwards at other batch sizes
    # a fresh batch each call: the superpixels are recomputed every time (no cross-call caching)
    ours = _best(lambda: ev(model, x, y, maps))
    ref = _best(run_quantus)
    n_images = int(ours_res.extras["n_segments"].sum())
    floor = _forward_floor(model, x, n_images)
    _report(benchmark, "IROF", ours, ref, floor)

    # several methods on one batch share the superpixels
    batch_maps = {"a": maps, "b": maps.flip(-1), "c": maps.flip(-2)}
    t3 = _best(lambda: ev.evaluate(EvalBatch(model, x, y, batch_maps)), rounds=1)
    print(f"IROF, 3 methods on one batch: {t3:.3f} s ({t3 / ours:.2f}x one method)")
    benchmark.pedantic(lambda: ev(model, x, y, maps), rounds=ROUNDS, iterations=1)


class _Gray(torch.nn.Module):
    """A 3-channel model fed a single-channel image (the channel repeated): Quantus's ROAD only
    runs on single-channel input, so this is the default model's cost on the case it runs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.expand(-1, 3, -1, -1))


def _default_work(n: int):
    """``n`` test images of the embedded default (trained ``gmx_small``, 3x112x112, stratified),
    the model's predictions as targets, and Saliency maps (a real method's maps: scattered
    holes under MoRF, not one blob)."""
    from gmxai_eval.methods import METHODS
    from gmxai_eval.models.default import load_default
    from gmxai_eval.runner.stages.load import select_samples

    model, splits, _ = load_default(progress=False)
    ss = select_samples(splits.test, "test", n, "stratified")
    x = torch.stack([s.image for s in ss])
    with torch.no_grad():
        y = model(x).argmax(1)
    maps = METHODS.create("saliency")(model, x, y).detach()
    return model, x, y, maps, [s.image_id for s in ss]


def test_bench_road_default_112(benchmark):
    """ROAD on 16 default test images (3x112x112, the default model): the share of ROAD's wall
    time that the forward passes alone need (RGB, both orders, default config), and the ratio
    to Quantus on the single-channel version of the same work (noise 0 so both compute the
    same curves, which are checked equal first)."""
    import os

    from gmxai_eval.functional.road import road_images

    model, x, y, maps, ids = _default_work(N)
    floor = _forward_floor(model, x, N * len(PCT))
    info: dict[str, float | str] = {"load_before": repr(os.getloadavg())}
    for mode in ("morf", "lerf"):
        for solver in ("auto", "cg"):  # auto = direct on CPU; cg = the GPU path, timed on the CPU
            ev = create_evaluator(f"road_{mode}", solver=solver)
            ours = _best(lambda: ev.evaluate(EvalBatch(model, x, y, {"saliency": maps}, ids)),
                         rounds=ROUNDS if solver == "auto" else 1)
            imputation = _best(lambda: road_images(x, maps, percentages=PCT, mode=mode, noise=0.01, solver=solver,
                                                   sample_ids=ids), rounds=ROUNDS if solver == "auto" else 1)
            info.update({f"{mode}_{solver}_ours_s": ours, f"{mode}_{solver}_imputation_s": imputation,
                         f"{mode}_{solver}_forward_share": floor / ours})
            print(f"\nROAD {mode} RGB ({N} images 3x112x112, default model, solver {solver}): {ours:.3f} s, "
                  f"imputation {imputation:.3f} s; forward floor {floor:.3f} s = {100 * floor / ours:.0f}% of our wall time")

    gray, xg = _Gray(model).eval(), x.mean(1, keepdim=True)
    with torch.no_grad():
        yg = gray(xg).argmax(1)
    ev = create_evaluator("road_morf", noise=0.0, percentages=PCT)
    run_quantus = _quantus_road(gray, xg, yg, maps, N)

    ours_res = ev(gray, xg, yg, maps)
    t_ref, ref_res = best_of(run_quantus, 1)  # Quantus is slow here: one round
    np.testing.assert_allclose(ours_res.curves.mean(0).numpy(), [ref_res[int(100 * p)] for p in PCT])
    ours = _best(lambda: ev(gray, xg, yg, maps))
    _report(benchmark, f"ROAD MoRF single channel ({N} images 1x112x112, default model)", ours, t_ref, floor)
    info["load_after"] = repr(os.getloadavg())
    benchmark.extra_info.update(info)
    print("load (1, 5, 15 min):", info["load_before"], "->", info["load_after"])
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def _jacobi_cg(x: torch.Tensor, remove: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
    """The CG solver before multigrid (main 26b5614), for the before/after row: Jacobi-preconditioned
    CG on the same masked system, float64, convergence checked every 8 iterations."""
    import torch.nn.functional as F

    from gmxai_eval.functional.road import _kernel

    b_, c, h, w = x.shape
    img = x.double().reshape(b_ * c, 1, h, w)
    unk = remove.double().repeat_interleave(c, 0).unsqueeze(1)
    k = _kernel(torch.float64, x.device)
    keep = 1.0 - unk
    conv = lambda t: F.conv2d(t, k, padding=1)  # noqa: E731
    d = conv(torch.ones(1, 1, h, w, dtype=torch.float64))
    apply = lambda v: unk * (d * v - conv(v))  # noqa: E731
    rhs = unk * conv(img * keep)
    u = unk * ((img * keep).sum((2, 3), keepdim=True) / keep.sum((2, 3), keepdim=True).clamp_min(1))
    r = rhs - apply(u)
    z = r / d
    p = z.clone()
    rz = (r * z).sum((2, 3), keepdim=True)
    bnorm = rhs.flatten(1).norm(dim=1).clamp_min(1e-300)
    for it in range(10 * (h + w) + 201):
        if it % 8 == 0 and bool((r.flatten(1).norm(dim=1) / bnorm <= tol).all()):
            break
        ap = apply(p)
        pap = (p * ap).sum((2, 3), keepdim=True)
        alpha = torch.where(pap > 0, rz / torch.where(pap > 0, pap, 1.0), 0.0)
        u, r = u + alpha * p, r - alpha * ap
        z = r / d
        rz_new = (r * z).sum((2, 3), keepdim=True)
        p = unk * (z + torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, 1.0), 0.0) * p)
        rz = rz_new
    return (img * keep + u).reshape(b_, c, h, w).to(x.dtype)


def test_bench_road_solvers_default_112(benchmark):
    """The imputation alone (no forward pass) on 16 default test images at 3x112x112 with
    Saliency maps, per solver, side by side in this process (one torch and one BLAS thread):
    the banded Cholesky (``direct``, what ``auto`` picks on CPU), SuperLU with a minimum-degree
    ordering (``splu``) and the multigrid-preconditioned CG (``cg``, what ``auto`` picks on a
    GPU), checked equal first (``splu`` to the last bits of the float32 images, ``cg`` to the
    stated 1e-5). Then before/after for CG on 2 of the images (14 systems): the Jacobi-
    preconditioned CG it replaced against the multigrid one and the banded Cholesky."""
    import os

    from gmxai_eval.functional.road import road_images, road_masks
    from gmxai_eval.functional.baselines import order_pixels

    _, x, _, maps, ids = _default_work(N)
    info: dict[str, float | str] = {"load_before": repr(os.getloadavg())}
    for mode in ("morf", "lerf"):
        def imp(solver: str) -> torch.Tensor:
            return road_images(x, maps, percentages=PCT, mode=mode, noise=0.0, solver=solver, tol=1e-8,
                               sample_ids=ids)

        ref = imp("direct")
        torch.testing.assert_close(imp("splu"), ref, atol=1e-6, rtol=0)  # float32 images: last-bit differences
        cg_err = float((imp("cg") - ref).abs().max())
        assert cg_err <= 1e-5
        times = {s: _best(lambda s=s: imp(s), rounds=2) for s in ("direct", "splu", "cg")}
        info.update({f"{mode}_{s}_s": t for s, t in times.items()})
        info[f"{mode}_cg_max_abs_diff"] = cg_err
        print(f"\nNLI {mode} ({N} images x {len(PCT)} levels, 3x112x112): "
              + ", ".join(f"{s} {t:.2f} s" for s, t in times.items()) + f"; cg - direct max |diff| {cg_err:.1e}")

        # before / after for the CG solver, on 2 images (the Jacobi CG takes minutes on all 16)
        rm = road_masks(order_pixels(maps[:2], "morf"), PCT, mode, (112, 112)).flatten(0, 1)
        xs = x[:2].unsqueeze(1).expand(2, len(PCT), *x.shape[1:]).flatten(0, 1)
        from gmxai_eval.functional.road import linear_impute

        d2 = linear_impute(xs, rm, solver="direct")
        t_old, old = best_of(lambda: _jacobi_cg(xs, rm), 1)
        t_new, new = best_of(lambda: linear_impute(xs, rm, solver="cg"), 1)
        t_dir = _best(lambda: linear_impute(xs, rm, solver="direct"), rounds=1)
        info.update({f"{mode}_2img_jacobi_cg_s": t_old, f"{mode}_2img_mg_cg_s": t_new, f"{mode}_2img_direct_s": t_dir})
        print(f"CG before/after, {mode}, 2 images x {len(PCT)} levels: Jacobi CG {t_old:.2f} s "
              f"(max |diff| {float((old - d2).abs().max()):.1e}), multigrid CG {t_new:.2f} s "
              f"(max |diff| {float((new - d2).abs().max()):.1e}), direct {t_dir:.2f} s")
    info["load_after"] = repr(os.getloadavg())
    benchmark.extra_info.update(info)
    print("load (1, 5, 15 min):", info["load_before"], "->", info["load_after"])
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
