"""The whole leaderboard against a competent Captum + Quantus script, on identical work.

Work: 16 test images of the embedded default model (predicted classes), six methods
(saliency, input x gradient, Integrated Gradients 20 steps, SmoothGrad 10 samples, Grad-CAM at
the model's CAM layer, Guided Backprop) and six metrics (pixel flipping, region perturbation,
faithfulness correlation, cascading MPRT over every parameterised layer, sparseness, relevance
mass accuracy). The suite runs its methods and evaluators on one ``EvalBatch`` (shared memo);
the script contained here runs Captum's attribution classes and Quantus 0.6.0's metrics, one
call per (metric, method), as their documentation shows.

The suite is configured to Quantus's conventions where they differ (our defaults in brackets):

* pixel flipping: 28 steps of 448 pixels, no unperturbed point, baseline = the image's minimum,
  softmax output, AUC by the trapezoid rule with unit spacing (``auc="rise"``); Quantus counts a
  channel element as a feature, so it is handed the map repeated over the three channels and
  flips ``3 x 448`` channel elements per step (a pixel's three equal values sort next to each
  other and are flipped together). The same repeated map goes to region perturbation (patch
  sums x 3, same order) and faithfulness correlation. Quantus asserts that ``features_in_step``
  divides H x W, not the 3 H W channel elements it flips; the script switches that one check
  off (``3 x 448`` cannot divide 112 x 112 = 2^8 7^2).
* region perturbation: 8x8 patches (112 = 14 x 8, no padding), 20 regions, baseline = image
  minimum, no random control [9x9, 100 regions, uniform noise, random control].
* faithfulness correlation: 100 runs of 224 pixels, baseline = image minimum; Quantus draws its
  subsets from NumPy's global RNG: it is handed the suite's subsets (each pixel as its three
  channel elements; Pearson is invariant to the factor 3 on the attribution sums).
* MPRT: every parameterised layer, Quantus's per-layer reset seed (``seed + 1``) substituted for
  ours, ``spearman_abs`` only, no random-pair floor, the supplied classes, NaN kept where a map is
  constant (Quantus's Spearman gives NaN; ours defaults to ``constant_maps="zero_unless_equal"``,
  which matters for Grad-CAM on randomised models); the registration order
  of the default model equals its execution order (checked below).
* relevance mass accuracy: Quantus sums raw values, so it is handed ``max(a, 0)`` (our
  ``relevance="positive"``); images without evidence (unaffected faces) are compared where both
  are defined (ours NaN, Quantus 0).
* Both sides get the same maps with ties broken the same way (a fixed ramp, :func:`tiebreak`):
  Quantus sorts with NumPy's unstable quicksort and the suite with a stable sort, so tied pixels
  (Grad-CAM's zeros) would otherwise be visited in different orders.
* SmoothGrad: Captum's NoiseTunnel draws its own noise; the script computes the same statistic as
  NoiseTunnel (mean of signed Saliency over the noisy copies) on the suite's noise draws.

Numbers: maps equal to the Captum parity tolerances; metric values recomputed by the suite on the
script's (Captum) maps equal the script's values to the Quantus parity tolerances (untimed).
Timing: ``ROUNDS`` interleaved rounds (suite, script, suite, ...) in one process, one torch
thread, wall time and CPU time (``time.process_time``), minimum over rounds.
Run: ``python -m pytest benchmarks/test_bench_leaderboard.py -s`` (``GMXAI_BENCH_ROUNDS=3``).
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

quantus = pytest.importorskip("quantus")
captum_attr = pytest.importorskip("captum.attr")
qasserts = pytest.importorskip("quantus.helpers.asserts")

import gmxai_eval.functional.randomisation as frand  # noqa: E402
from gmxai_eval.evaluators.base import EVALUATORS, EvalBatch  # noqa: E402
from gmxai_eval.functional import perturbation as P  # noqa: E402
from gmxai_eval.functional.randomisation import execution_order  # noqa: E402
from gmxai_eval.methods import create_method  # noqa: E402

ROUNDS = int(os.environ.get("GMXAI_BENCH_ROUNDS", "1"))
N = int(os.environ.get("GMXAI_BENCH_IMAGES", "16"))  # fewer for a smoke run
STEP_PIXELS, RUNS, SUBSET, PATCH, REGIONS, QSEED = 448, 100, 224, 8, 20, 42

METHODS = {"saliency": {}, "input_x_gradient": {}, "integrated_gradients": {"n_steps": 20},
           "smoothgrad": {"n_samples": 10}, "grad_cam": {}, "guided_backprop": {}}
EVALS = {
    "pixel_flipping": {"steps": None, "features_in_step": STEP_PIXELS, "include_start": False,
                       "baseline": "sample_min", "output": "probability", "auc": "trapz_unit"},
    "region_perturbation": {"patch_size": PATCH, "regions": REGIONS, "baseline": "sample_min",
                            "output": "probability", "random_control": False},
    "faithfulness_correlation": {"nr_runs": RUNS, "subset_size": SUBSET, "baseline": "sample_min",
                                 "output": "logit"},
    "mprt_cascading": {"target": "batch", "similarities": ["spearman_abs"], "floor": False, "constant_maps": "nan"},
    "sparseness": {"eps": 1e-7},
    "relevance_mass_accuracy": {"on_empty": "nan", "per_region": False},
}
MAP_RTOL, MAP_ATOL = 1e-4, 1e-6  # relative to each map's max |a| (atol)
METRIC_RTOL = {"pixel_flipping": 1e-5, "region_perturbation": 1e-5, "faithfulness_correlation": 1e-4,
               "mprt_cascading": 1e-4, "sparseness": 1e-5, "relevance_mass_accuracy": 1e-5}
METRIC_ATOL = {"region_perturbation": 1e-5}  # Quantus's float32 drops f(x) - f(x_k) (see the parity test)


@pytest.fixture(scope="module")
def problem():
    from gmxai_eval.runner.context import RunContext, StageTimer
    from gmxai_eval.runner.spec import preset_spec
    from gmxai_eval.runner.stages.load import load

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    spec = preset_spec("default").replace(n_images=N, batch_size=N, sections=())
    ctx = RunContext(spec=spec, timer=StageTimer(False), progress=False, out_root=None, cache_root=None,
                     run_id="bench", counts={})
    load(ctx)
    model = ctx.model
    layers = execution_order(model, ctx.images[:1])
    registered = [n for n, m in model.named_modules() if hasattr(m, "reset_parameters")]
    assert layers == registered, "Quantus walks registration order: the comparison needs it to equal execution order"
    yield model, ctx.images, ctx.target, list(ctx.image_ids), ctx.masks
    torch.set_num_threads(threads)


def tiebreak(maps: torch.Tensor) -> torch.Tensor:
    """The same maps with ties broken by a fixed ramp: ``a + 4e-3 max|a| rank/(H W)`` with a fixed
    random ranking of the pixels (steps of ~5 float32 ulps at ``max|a|``, so tied values, e.g.
    Grad-CAM's zeros and its upsampled plateaus, become distinct)."""
    n = maps.shape[-2] * maps.shape[-1]
    rank = torch.randperm(n, generator=torch.Generator().manual_seed(7)).view(maps.shape[1:]).float() / n
    scale = maps.abs().flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1)
    return maps + 4e-3 * scale * rank


# -- the suite ----------------------------------------------------------------------------------
def run_suite(model, x, t, ids, masks, maps=None):
    """Methods (unless ``maps`` are given) and evaluators -> ``({method: maps}, {ev: {method: scores}})``."""
    explainers = {m: create_method(m, **cfg) for m, cfg in METHODS.items()}
    if maps is None:
        maps = {m: tiebreak(e(model, x, t)) for m, e in explainers.items()}
    batch = EvalBatch(model, x, t, maps, ids, explainers, masks=masks, seed=0)
    scores = {}
    for name, cfg in EVALS.items():
        res = EVALUATORS.create(name, **cfg).evaluate(batch)
        scores[name] = {m: _numbers(name, r) for m, r in res.items()}
    return maps, scores


def _numbers(name, r):
    """What Quantus returns: MPRT's per-layer similarities, region perturbation's output drop per
    region (Quantus has no AOPC), otherwise the per-sample score."""
    if name == "mprt_cascading":
        return r.curves.numpy()
    if name == "region_perturbation":
        return r.curves[:, 1:].numpy()
    return r.scores.numpy()


# -- the Captum + Quantus script ----------------------------------------------------------------
def captum_explain(name, model, x, t, noise):
    """One Captum attribution ``(B, H, W)`` (channels reduced as the suite's method card says)."""
    A = captum_attr
    xr = x.clone().requires_grad_(True)
    if name == "saliency":
        return A.Saliency(model).attribute(xr, target=t, abs=True).amax(1)
    if name == "input_x_gradient":
        return A.InputXGradient(model).attribute(xr, target=t).sum(1)
    if name == "integrated_gradients":
        return A.IntegratedGradients(model).attribute(xr, baselines=torch.zeros_like(x), target=t, n_steps=20,
                                                      method="gausslegendre").sum(1)
    if name == "smoothgrad":  # NoiseTunnel's statistic on the suite's noise draws
        sal = A.Saliency(model)
        return torch.stack([sal.attribute((x + z).requires_grad_(True), target=t, abs=False)
                            for z in noise]).mean(0).sum(1)
    if name == "grad_cam":
        cam = A.LayerGradCam(model, model.get_submodule(model.cam_layer)).attribute(xr, target=t,
                                                                                    relu_attributions=True)
        return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    if name == "guided_backprop":
        return A.GuidedBackprop(model).attribute(xr, target=t).sum(1)
    raise KeyError(name)


def run_script(model, x, t, ids, masks, subsets, noise):
    """Captum maps and Quantus metrics, one call per (metric, method)."""
    xn, yn = x.numpy(), t.numpy()
    sn = masks[:, None].numpy().astype(np.float32)
    maps = {m: tiebreak(captum_explain(m, model, x, t, noise).detach()) for m in METHODS}
    out: dict[str, dict[str, np.ndarray]] = {k: {} for k in EVALS}
    orig_choice, orig_check = np.random.choice, qasserts.assert_features_in_step
    qasserts.assert_features_in_step = lambda **_: None  # see the module docstring
    try:
        _quantus_metrics(model, x, t, maps, noise, subsets, out, xn, yn, sn, orig_choice)
    finally:
        qasserts.assert_features_in_step = orig_check
    return maps, out


def _quantus_metrics(model, x, t, maps, noise, subsets, out, xn, yn, sn, orig_choice):
    """Every Quantus metric for every method into ``out[metric][method]``."""
    q = dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)
    hw = x.shape[-2] * x.shape[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m, a in maps.items():
            an = a[:, None].numpy()
            a3 = np.ascontiguousarray(np.repeat(an, 3, 1))  # every channel element carries its pixel's value
            kw = dict(model=model, x_batch=xn, y_batch=yn, a_batch=a3, device="cpu", batch_size=N)
            out["pixel_flipping"][m] = np.asarray(quantus.PixelFlipping(
                features_in_step=3 * STEP_PIXELS, perturb_baseline="black", return_auc_per_sample=True, **q)(
                **kw, softmax=True))
            out["region_perturbation"][m] = np.asarray(quantus.RegionPerturbation(
                patch_size=PATCH, order="morf", regions_evaluation=REGIONS, perturb_baseline="black", **q)(
                **kw, softmax=True))
            # the suite's pixel subsets as channel elements, in Quantus's (run, sample) order
            queue = [np.concatenate([subsets[b, r].numpy() + c * hw for c in range(3)])
                     for r in range(RUNS) for b in range(N)]
            np.random.choice = lambda *a_, queue=queue, **k_: queue.pop(0)
            try:
                out["faithfulness_correlation"][m] = np.asarray(quantus.FaithfulnessCorrelation(
                    nr_runs=RUNS, subset_size=3 * SUBSET, perturb_baseline="black", return_aggregate=False, **q)(
                    **kw, softmax=False))
            finally:
                np.random.choice = orig_choice
            explain = (lambda model, inputs, targets, m=m, **_: captum_explain(
                m, model, torch.as_tensor(inputs), torch.as_tensor(targets), noise).detach()[:, None].numpy())
            ref = quantus.MPRT(layer_order="top_down", seed=QSEED, abs=True, normalise=False, disable_warnings=True,
                               display_progressbar=False)(model=model, x_batch=xn, y_batch=yn, a_batch=an,
                                                          explain_func=explain, batch_size=N, device="cpu")
            out["mprt_cascading"][m] = np.stack([np.asarray(ref[k]) for k in ref if k != "original"], 1)
            out["sparseness"][m] = np.asarray(quantus.Sparseness(**{**q, "abs": True})(
                model=model, x_batch=xn, y_batch=yn, a_batch=an.copy()))
            out["relevance_mass_accuracy"][m] = np.asarray(quantus.RelevanceMassAccuracy(**q, return_aggregate=False)(
                model=None, x_batch=xn, y_batch=yn, a_batch=a.clamp_min(0)[:, None].numpy(), s_batch=sn,
                channel_first=True, batch_size=N))


def _timed(fn):
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c, time.perf_counter() - w, out


def test_bench_leaderboard_vs_captum_quantus(benchmark, problem, monkeypatch):
    model, x, t, ids, masks = problem
    monkeypatch.setattr(frand, "layer_seed", lambda seed, name: QSEED + 1)  # Quantus's reset seed
    subsets = P.random_subsets(x.shape[-2] * x.shape[-1], SUBSET, RUNS, ids, seed=0)  # the suite's draws
    noise = create_method("smoothgrad", **METHODS["smoothgrad"]).noise(x)
    suite_t, script_t = [], []
    for _ in range(ROUNDS):  # interleaved
        c, w, (ours_maps, ours) = _timed(lambda: run_suite(model, x, t, ids, masks))
        suite_t.append((c, w))
        c, w, (cap_maps, ref) = _timed(lambda: run_script(model, x, t, ids, masks, subsets, noise))
        script_t.append((c, w))

    # numbers: maps, then metric values on identical (Captum) maps
    for m in METHODS:
        scale = ours_maps[m].abs().flatten(1).amax(1).view(-1, 1, 1)
        torch.testing.assert_close(ours_maps[m] / scale, cap_maps[m] / scale, rtol=MAP_RTOL, atol=MAP_ATOL,
                                   msg=lambda s, m=m: f"{m}: {s}")
    _, on_captum = run_suite(model, x, t, ids, masks, maps=cap_maps)
    for name in EVALS:
        for m in METHODS:
            a, b = on_captum[name][m], ref[name][m]
            ok = ~np.isnan(a) if name == "relevance_mass_accuracy" else np.ones_like(a, bool)
            np.testing.assert_allclose(a[ok], b[ok], rtol=METRIC_RTOL[name], atol=METRIC_ATOL.get(name, 1e-7),
                                       err_msg=f"{name} / {m}")

    cpu_s, wall_s = min(c for c, _ in suite_t), min(w for _, w in suite_t)
    cpu_q, wall_q = min(c for c, _ in script_t), min(w for _, w in script_t)
    info = {"suite_cpu_s": cpu_s, "suite_wall_s": wall_s, "script_cpu_s": cpu_q, "script_wall_s": wall_q,
            "speedup_cpu": cpu_q / cpu_s, "speedup_wall": wall_q / wall_s, "rounds": ROUNDS,
            "load": os.getloadavg(), "threads": torch.get_num_threads()}
    benchmark.extra_info.update(info)
    print(f"\nwhole leaderboard ({N} images, {len(METHODS)} methods, {len(EVALS)} metrics, {ROUNDS} rounds): "
          f"suite {cpu_s:.1f} s CPU / {wall_s:.1f} s wall, Captum + Quantus {cpu_q:.1f} s CPU / {wall_q:.1f} s "
          f"wall -> {cpu_q / cpu_s:.2f}x CPU, {wall_q / wall_s:.2f}x wall; load {os.getloadavg()}")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
