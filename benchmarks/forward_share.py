"""Where each evaluator's time goes: the share spent in model forward and backward passes.

Runs every batch evaluator of the default spec (``gmxai_eval/specs/default.toml``) on a few
images of the default model, through the runner (so each evaluator gets exactly the inputs of a
real run: masks, gaze, counterfactual renderer, re-explainers), and measures per evaluator:

* total: the wall time of its units of work (``execute_unit``), excluding the attribution stage;
* forward: time inside the model's top-level ``forward`` (forward pre/post hooks on the model;
  the hooks travel with ``copy.deepcopy``, so randomised copies of the model are timed too;
  nested calls are counted once);
* backward: time inside ``torch.autograd.grad`` / ``torch.autograd.backward`` (and so
  ``Tensor.backward``).

The rest ("other") is the evaluator's own work: perturbations, imputation solves, superpixels,
sorting, statistics. A large "other" share marks the next bottleneck.

Run (data and model cached under ``$GMXAI_DATA``)::

    python benchmarks/forward_share.py [--images 4] [--methods saliency,grad_cam,random] [--threads 1]
        [--road-solver auto]

and it prints a Markdown table, slowest evaluator first. On a CUDA device the timers
synchronise the device first, so the shares stay meaningful.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch


class PassTimer:
    """Accumulates seconds spent in model forward passes and in autograd backward calls."""

    def __init__(self) -> None:
        self.forward = 0.0
        self.backward = 0.0
        self._depth = 0
        self._t0 = 0.0

    @staticmethod
    def _sync() -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def attach(self, model: torch.nn.Module) -> None:
        """Time ``model``'s forward passes (top level only)."""
        def pre(_m: Any, _a: Any) -> None:
            if self._depth == 0:
                self._sync()
                self._t0 = time.perf_counter()
            self._depth += 1

        def post(_m: Any, _a: Any, _o: Any) -> None:
            self._depth -= 1
            if self._depth == 0:
                self._sync()
                self.forward += time.perf_counter() - self._t0

        model.register_forward_pre_hook(pre)
        model.register_forward_hook(post)

    @contextmanager
    def autograd_patched(self) -> Iterator[None]:
        """Time ``torch.autograd.grad`` and ``torch.autograd.backward`` while active."""
        originals = {"grad": torch.autograd.grad, "backward": torch.autograd.backward}

        def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                self._sync()
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self._sync()
                    self.backward += time.perf_counter() - t0
            return wrapper

        torch.autograd.grad = timed(originals["grad"])  # type: ignore[assignment]
        torch.autograd.backward = timed(originals["backward"])  # type: ignore[assignment]
        try:
            yield
        finally:
            torch.autograd.grad = originals["grad"]  # type: ignore[assignment]
            torch.autograd.backward = originals["backward"]  # type: ignore[assignment]


def measure(images: int, methods: list[str] | None, road_solver: str | None) -> list[dict[str, Any]]:
    """Run the default spec's batch evaluators on ``images`` images -> one row per evaluator."""
    import gmxai_eval.runner.stages.evaluate as stage
    from gmxai_eval.models.default import load_default
    from gmxai_eval.runner.run import run_benchmark
    from gmxai_eval.runner.spec import preset_spec

    spec = preset_spec("default")
    ms = [m for m in spec.methods if methods is None or m.label in methods]
    evs = list(spec.evaluators)
    if road_solver is not None:
        evs = [e if not e.name.startswith("road_") else
               type(e)(e.name, {**dict(e.config), "solver": road_solver}, e.label, e.images) for e in evs]
    spec = spec.replace(n_images=images, batch_size=images, methods=ms, evaluators=evs, sections=[])
    model, _, _ = load_default(progress=False)
    timer = PassTimer()
    timer.attach(model)
    rows: dict[str, dict[str, Any]] = {}
    original = stage.execute_unit

    def timed_unit(unit: Any) -> Any:
        f0, b0 = timer.forward, timer.backward
        t0 = time.perf_counter()
        out = original(unit)
        timer._sync()
        row = rows.setdefault(unit.evaluator_label, {"evaluator": unit.evaluator_label, "total": 0.0,
                                                     "forward": 0.0, "backward": 0.0})
        row["total"] += time.perf_counter() - t0
        row["forward"] += timer.forward - f0
        row["backward"] += timer.backward - b0
        return out

    stage.execute_unit = timed_unit
    try:
        with tempfile.TemporaryDirectory() as tmp, timer.autograd_patched():
            run_benchmark(spec, model=model, output=tmp, cache=f"{tmp}/cache", progress=False, write=False,
                          verbose=False)
    finally:
        stage.execute_unit = original
    return sorted(rows.values(), key=lambda r: -r["total"])


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`measure`'s rows."""
    lines = ["| evaluator | total s | forward s | backward s | forward % | backward % | other % |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        t = max(r["total"], 1e-12)
        f, b = 100 * r["forward"] / t, 100 * r["backward"] / t
        lines.append(f"| {r['evaluator']} | {r['total']:.2f} | {r['forward']:.2f} | {r['backward']:.2f} | "
                     f"{f:.0f} | {b:.0f} | {100 - f - b:.0f} |")
    tot = {k: sum(r[k] for r in rows) for k in ("total", "forward", "backward")}
    t = max(tot["total"], 1e-12)
    lines.append(f"| **all** | {tot['total']:.2f} | {tot['forward']:.2f} | {tot['backward']:.2f} | "
                 f"{100 * tot['forward'] / t:.0f} | {100 * tot['backward'] / t:.0f} | "
                 f"{100 - 100 * (tot['forward'] + tot['backward']) / t:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--methods", default="saliency,grad_cam,random",
                    help="comma-separated method labels of the default spec, or 'all'")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave as is)")
    ap.add_argument("--road-solver", default=None, help="override the ROAD evaluators' solver")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    methods = None if a.methods == "all" else a.methods.split(",")
    import os

    load0 = os.getloadavg()
    rows = measure(a.images, methods, a.road_solver)
    print(f"\n{a.images} images, methods {a.methods}, {torch.get_num_threads()} torch thread(s), "
          f"ROAD solver {a.road_solver or 'as configured'}, load {load0} -> {os.getloadavg()}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
