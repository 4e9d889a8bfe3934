"""ROAD's imputation and forward share per device, and the agreement of its solvers.

On ``--images`` default test images (3x112x112, the default model, Saliency maps), the default
ROAD config (7 levels) in both orders, for each device given: the solver ``auto`` picks there,
the imputation alone, ROAD's total (``evaluate``), the forward floor (the same forward passes in
chunks of 32, nothing else), the forward share (floor / total), and the largest absolute
difference of the imputed images (noise 0) from the CPU's banded Cholesky (the reference).
``benchmarks/gpu_check.sh`` runs it on ``cpu,cuda``.

    python benchmarks/road_devices.py [--devices cpu,cuda] [--images 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import torch

PCT = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _best(fn: Callable[[], Any], device: str, rounds: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def _one(dev: str, mode: str, model: torch.nn.Module, x0: torch.Tensor, y0: torch.Tensor, maps0: torch.Tensor,
         ids: list[str], rounds: int) -> dict[str, Any]:
    """Times of one device and order: imputation, ROAD's evaluate, the forward floor."""
    from gmxai_eval.evaluators import EvalBatch, create_evaluator
    from gmxai_eval.functional.road import road_images

    x, y, maps = x0.to(dev), y0.to(dev), maps0.to(dev)
    xs = x.repeat(len(PCT), 1, 1, 1)
    with torch.no_grad():
        floor, _ = _best(lambda: [model(xs[i:i + 32]) for i in range(0, len(xs), 32)], dev, rounds)
    t_imp, out = _best(lambda: road_images(x, maps, percentages=PCT, mode=mode, noise=0.0, solver="auto",
                                           sample_ids=ids), dev, rounds)
    ev = create_evaluator(f"road_{mode}")
    t_road, _ = _best(lambda: ev.evaluate(EvalBatch(model, x, y, {"saliency": maps}, ids)), dev, rounds)
    return {"imputation": t_imp, "road": t_road, "floor": floor, "images": out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", default="cpu")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()

    from gmxai_eval.functional.road import road_images
    from gmxai_eval.methods import METHODS
    from gmxai_eval.models.default import load_default
    from gmxai_eval.runner.stages.load import select_samples

    model, splits, _ = load_default(progress=False)
    ss = select_samples(splits.test, "test", a.images, "stratified")
    x0 = torch.stack([s.image for s in ss])
    ids = [s.image_id for s in ss]
    with torch.no_grad():
        y0 = model(x0).argmax(1)
    maps0 = METHODS.create("saliency")(model, x0, y0).detach()
    refs = {m: road_images(x0, maps0, percentages=PCT, mode=m, noise=0.0, solver="direct", sample_ids=ids)
            for m in ("morf", "lerf")}

    print(f"\n{a.images} images 3x112x112, {len(PCT)} levels, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU thread(s)\n")
    print("| device | order | solver (auto) | imputation s | ROAD s | forward floor s | forward share | "
          "max abs diff vs CPU direct |\n|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for dev in a.devices.split(","):
        for mode in ("morf", "lerf"):
            row = _one(dev, mode, model.to(dev), x0, y0, maps0, ids, a.rounds)
            diff = float((row.pop("images").cpu() - refs[mode]).abs().max())
            worst = max(worst, diff)
            print(f"| {dev} | {mode} | {'direct' if dev == 'cpu' else 'cg'} | {row['imputation']:.3f} | "
                  f"{row['road']:.3f} | {row['floor']:.3f} | {100 * row['floor'] / row['road']:.0f} % | {diff:.1e} |")
    print(f"\nlargest difference {worst:.1e} (stated agreement 1e-5)")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
