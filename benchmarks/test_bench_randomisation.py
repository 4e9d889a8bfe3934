"""Speed of the model parameter randomisation test against Quantus 0.6.0 on identical work, and
against the explainer floor (the L + 1 explainer calls the test cannot avoid, nothing else).

Identical work: cascading randomisation of every parameterised layer of a toy CNN, the same
explainer (gradient x input), Spearman of ``|map|`` per layer, the supplied maps as the
unrandomised ones. Run: ``python -m pytest benchmarks/test_bench_randomisation.py -s``.
Ratios are printed and stored in each benchmark's ``extra_info``; timings are the minimum of
``ROUNDS`` runs with one torch thread.
"""

from __future__ import annotations


import pytest
import torch

from gmxai_eval.evaluators import EvalBatch, create_evaluator
from gmxai_eval.evaluators.quantus_adapter import explain_func_for
from gmxai_eval.functional.randomisation import execution_order
from gmxai_eval.methods.base import Explainer, as_target_fn
from gmxai_eval.models import MODELS
from gmxai_eval.types import MethodCard
from _timing import best_of

quantus = pytest.importorskip("quantus")

ROUNDS = 3
N, SIZE = 16, 64


class _GradInput(Explainer):
    card = MethodCard(name="bench_grad_input", family="gradient", signed=True, paper="-")

    def _attribute(self, model, x, target):
        x = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(as_target_fn(target, x.shape[0])(model(x)).sum(), x)
        return g * x


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def work():
    model = MODELS.create("toy_cnn", num_classes=4, width=16, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, 3, SIZE, SIZE, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    ex = _GradInput()
    return model, x, y, ex, ex(model, x, y)


def _best(fn, rounds: int = ROUNDS) -> float:
    return best_of(fn, rounds)[0]


def _report(benchmark, name: str, ours: float, ref: float, floor: float) -> None:
    info = {"ours_s": ours, "quantus_s": ref, "explainer_floor_s": floor, "speedup_vs_quantus": ref / ours,
            "floor_share": floor / ours}
    benchmark.extra_info.update(info)
    print(f"\n{name}: ours {ours:.3f} s, Quantus {ref:.3f} s -> {ref / ours:.2f}x faster; "
          f"explainer floor {floor:.3f} s = {100 * floor / ours:.0f}% of our wall time")


@pytest.mark.parametrize("order", ["top_down", "independent"])
def test_bench_mprt_vs_quantus(benchmark, work, order):
    model, x, y, ex, maps = work
    name = "mprt_cascading" if order == "top_down" else "mprt_independent"
    ev = create_evaluator(name, similarities=["spearman_abs"], floor=False, target="batch")
    batch = lambda: EvalBatch(model, x, y, {"m": maps}, explainers={"m": ex})  # noqa: E731
    q = quantus.MPRT(layer_order=order, abs=True, normalise=False, disable_warnings=True)
    fn = explain_func_for(ex)
    run_q = lambda: q(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.numpy()[:, None],  # noqa: E731
                      explain_func=fn, batch_size=N)
    n_layers = len(execution_order(model, x[:1]))
    ours = _best(lambda: ev.evaluate(batch()))
    ref = _best(run_q)
    floor = _best(lambda: [ex(model, x, y) for _ in range(n_layers)])  # L randomised models
    _report(benchmark, f"MPRT {order} ({n_layers} layers, {N} images {SIZE}x{SIZE})", ours, ref, floor)
    benchmark.pedantic(lambda: ev.evaluate(batch()), rounds=1, iterations=1)


def test_bench_mprt_all_similarities(benchmark, work):
    """Our default (five similarities + random-pair floor): the cost of the extra similarities."""
    model, x, y, ex, maps = work
    ev = create_evaluator("mprt_cascading", target="batch")
    lean = create_evaluator("mprt_cascading", similarities=["spearman_abs"], floor=False, target="batch")
    batch = lambda: EvalBatch(model, x, y, {"m": maps}, explainers={"m": ex})  # noqa: E731
    full = _best(lambda: ev.evaluate(batch()))
    one = _best(lambda: lean.evaluate(batch()))
    benchmark.extra_info.update({"all_similarities_s": full, "spearman_only_s": one})
    print(f"\nMPRT cascading, five similarities + floor {full:.3f} s vs Spearman only {one:.3f} s")
    benchmark.pedantic(lambda: ev.evaluate(batch()), rounds=1, iterations=1)
