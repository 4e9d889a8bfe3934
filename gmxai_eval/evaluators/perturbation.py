"""Pixel-perturbation evaluators (faithfulness by removing what the map calls important).

Registered names: ``deletion``, ``insertion``, ``pixel_flipping``, ``region_perturbation``,
``faithfulness_correlation``, ``faithfulness_estimate``, ``monotonicity_correlation``,
``monotonicity_arya``, ``sensitivity_n``, ``infidelity``, ``sufficiency``. Each metric's whole
definition is one function of :mod:`gmxai_eval.functional.perturbation` with the evaluator's name
(``deletion``, ``insertion``, ``pixel_flipping``, ``region_perturbation``,
``faithfulness_correlation``, ``faithfulness_estimate``, ``monotonicity_correlation``,
``monotonicity_arya``, ``sensitivity_n``, ``infidelity``, ``sufficiency``); the model enters it
through callbacks (``CurveFn``, ``SubsetFn``, ``WindowFn``) that the classes here implement:
they validate, batch the forward passes, share method-independent work and pack
:class:`EvalResult`. The module docstring of the kernels defines the shared conventions (pixel
space, ordering unit, ties, output). Every result carries them in ``conventions``.

Inputs (an :class:`EvalBatch`)
------------------------------
``model`` (eval mode, pixel space -> logits), ``x (B, C, H, W)`` in [0, 1], ``target (B,)``,
``maps {method: (B, H, W)}``, ``sample_ids`` (stable, unique ids: they key all randomness),
``seed``; ``extra["channel_mean"] (C,)`` only for ``baseline="dataset_mean"``. Every evaluator
here, ``sufficiency`` included, scores each image independently of the other images of the batch
(``sufficiency(estimator="quantus_batch")``, kept for parity with Quantus, is the one exception).

Sharing and batching
--------------------
* Every evaluator scores all methods of a batch together: the perturbed images of all methods,
  steps and draws are built on the device and evaluated in forward passes of ``max_batch``
  images (``None``: 16 on CPU, where small batches are faster, 256 on accelerators).
* Method-independent work is computed once per batch through ``batch.shared``: clean outputs,
  the output of the fully replaced image, random subsets and their outputs (faithfulness
  correlation, sensitivity-n), the Gaussian perturbations of infidelity, the random-order control
  of region perturbation.
* Cumulative curves are cached per batch under
  ``(method, order, unit, patch, abs, baseline, counts, output, restore)``: ``deletion`` and
  ``pixel_flipping`` with the same settings (the defaults) share one MoRF curve; 1x1 regions are
  pixels, so ``region_perturbation(patch_size=1)`` shares a pixel curve with the same schedule.
* Randomness is keyed on ``(seed, sample_id)`` (never on batch position), so results do not
  depend on batch size, chunking or order.
* Maps are never normalised. Orderings, Pearson/Spearman correlations and infidelity with
  ``normalize=True`` are invariant to a positive per-sample rescaling of the map (so Quantus's
  max-normalisation changes nothing); infidelity with ``normalize=False`` and ``sufficiency(estimator="quantus_batch")``
  (distances between maps of different images) are not. ``abs`` takes magnitudes first.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import torch

from gmxai_eval.errors import ConfigError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.functional import perturbation as P
from gmxai_eval.functional.baselines import input_zero_of, make_baseline
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import device_chunk

_COMMON = {"output": "probability", "max_batch": None, "abs": False}
#: ``max_batch=None``: images per forward pass by device (:func:`gmxai_eval.utils.device_chunk`).


def _spec_key(spec: Any) -> Hashable:
    if isinstance(spec, (str, int, float)):
        return spec
    return ("object", id(spec))



def _input_zero(batch: EvalBatch) -> torch.Tensor:
    """The ``input_zero`` substrate ``(C,)``: what the model's ``Preprocess`` maps to 0 (RISE's
    "zero in normalised space"); for any other ``nn.Module`` its input space *is* the pixel space
    the suite feeds it, so zero there is 0 (black). Model-agnostic by construction: a plain
    module needs no property for the default deletion substrate."""
    z = input_zero_of(batch.model)
    return z if z is not None else torch.zeros(batch.x.shape[1], dtype=batch.x.dtype)

class _PerturbationEvaluator(Evaluator):
    """Shared plumbing: map preparation, baselines, cached cumulative curves."""

    #: fixed conventions of the subclass (merged into :meth:`conventions`).
    fixed: dict[str, Any] = {}

    def conventions(self) -> dict[str, Any]:
        conv = {**super().conventions(), "space": "pixel space [0, 1] (the model normalises); never clamped",
                "map_normalisation": "none (scores are invariant to positive per-sample scaling)",
                "channel_reduction": "maps are (B, H, W); unit 'pixel'/'patch' replaces all channels of a "
                                     "pixel, unit 'element' broadcasts the map over channels (Quantus)",
                "baseline_names": "'black' = 0 in pixel space; 'sample_min' = Quantus's 'black'; "
                                  "'input_zero' = what the model's Preprocess maps to 0 (0 in pixel space for "
                                  "a model without one)",
                "ties": "broken by flat index (stable sort)",
                "randomness": "keyed on (seed, sample_id)", **self.fixed}
        return {k: (v if isinstance(v, (str, int, float, bool, type(None), tuple, list)) else repr(v))
                for k, v in conv.items()}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if "output" in c and c["output"] not in P.OUTPUTS:
            raise ConfigError(f"evaluator {self.name!r}: expected output in {P.OUTPUTS}, got {c['output']!r}")
        if "unit" in c and c["unit"] not in P.UNITS:
            raise ConfigError(f"evaluator {self.name!r}: expected unit in {P.UNITS}, got {c['unit']!r}")
        mb = c.get("max_batch")
        if mb is not None and (not isinstance(mb, int) or isinstance(mb, bool) or mb < 1):
            raise ConfigError(f"evaluator {self.name!r}: expected max_batch as a positive int or None, got {mb!r}")

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        one = EvalBatch(batch.model, batch.x, batch.target, {method: batch.maps[method]}, batch.sample_ids,
                        seed=batch.seed, extra=batch.extra, _shared=batch._shared)
        return self._evaluate_methods(one)[method]

    # -- helpers -----------------------------------------------------------------------------
    def _mb(self, batch: EvalBatch) -> int:
        """Images per forward pass (``max_batch``, or the device default when ``None``)."""
        return device_chunk(batch.x.device, self.config["max_batch"])

    def _unit(self) -> str:
        return str(self.config.get("unit", "pixel"))

    def _map(self, batch: EvalBatch, method: str) -> torch.Tensor:
        a = batch.maps[method].to(batch.x.device, torch.float32)
        return a.abs() if self.config["abs"] else a

    def _patch(self) -> int:
        return int(self.config.get("patch_size", 1)) if self._unit() == "patch" else 1

    def _fill_key(self, spec: Any) -> Hashable:
        c = self.config
        blur = (c.get("blur_kernel", 11), c.get("blur_sigma", 5.0)) if spec == "blur" else ()
        return (_spec_key(spec), blur)

    def _fill(self, batch: EvalBatch, spec: Any, draw: int | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` replacement values (shared per batch)."""
        c = self.config

        def compute() -> torch.Tensor:
            seed = batch.seed if draw is None else (batch.seed, "draw", draw)
            return make_baseline(spec, batch.x, sample_ids=batch.sample_ids, seed=seed,  # type: ignore[arg-type]
                                 channel_mean=batch.extra.get("channel_mean"),
                                 blur_kernel=c.get("blur_kernel", 11), blur_sigma=c.get("blur_sigma", 5.0),
                                 input_zero=_input_zero(batch) if spec == "input_zero" else None)
        return batch.shared(("perturbation_fill", self._fill_key(spec), draw), compute)

    def _clean_output(self, batch: EvalBatch) -> torch.Tensor:
        out = self.config["output"]
        return batch.shared(("clean_output", out), lambda: P.select_output(
            batch.clean_logits(), batch.target, out).to(batch.x.device))

    def _fill_output(self, batch: EvalBatch, spec: Any) -> torch.Tensor:
        """Output of the fully replaced image ``(B,)`` (method-independent)."""
        out, mb = self.config["output"], self._mb(batch)

        def compute() -> torch.Tensor:
            fill = self._fill(batch, spec)
            return P.batched_outputs(batch.model, fill.shape[0], lambda j: fill[j], lambda j: batch.target.to(j.device)[j],
                                     out, mb, batch.x.device)
        return batch.shared(("fill_output", self._fill_key(spec), out), compute)

    def _cumulative_curves(self, batch: EvalBatch, methods: Sequence[str | None], order: str,
                           counts: torch.Tensor, spec: Any, restore: bool = False) -> dict[str | None, torch.Tensor]:
        """Cumulative curves ``{method: (B, T)}`` at ``counts (T,)`` removed units (cached per batch).

        ``method=None`` stands for a method-independent (random-order) control. Points with
        nothing or everything replaced are taken from the clean and fully replaced outputs."""
        c = self.config
        unit, patch = self._unit(), self._patch()
        if unit == "patch" and patch == 1:  # 1x1 patches are pixels: share the pixel curve
            unit = "pixel"
        n_units = P.unit_count(batch.x.shape[1:], unit, patch)
        cache = batch.shared("perturbation_curves", dict)
        key = lambda m: (m, order, unit, patch, c["abs"] if m is not None else None,  # noqa: E731
                         self._fill_key(spec), tuple(counts.tolist()), c["output"], restore)
        todo = [m for m in dict.fromkeys(methods) if key(m) not in cache]
        if todo:
            inner = counts[(counts > 0) & (counts < n_units)].unique()
            x = batch.x
            if len(inner):
                maps = [self._map(batch, m) if m is not None else x.new_zeros(x.shape[0], *x.shape[2:]) for m in todo]
                ranks = torch.stack([P.rank_map(a, order, unit=unit, patch=patch, channels=x.shape[1],
                                                sample_ids=batch.sample_ids, seed=batch.seed) for a in maps])
                vals = P.window_outputs(batch.model, x, batch.target, ranks, torch.zeros_like(inner), inner,
                                        self._fill(batch, spec)[None], output=c["output"],
                                        max_batch=self._mb(batch), restore=restore)[:, 0]
            clean = lambda: self._clean_output(batch)  # noqa: E731  (computed only if needed)
            full = lambda: self._fill_output(batch, spec)  # noqa: E731
            none_val, all_val = (full, clean) if restore else (clean, full)
            for gi, m in enumerate(todo):
                curve = torch.empty(x.shape[0], len(counts), dtype=torch.float64, device=x.device)
                for ti, k in enumerate(counts.tolist()):
                    if k == 0:
                        curve[:, ti] = none_val()
                    elif k >= n_units:
                        curve[:, ti] = all_val()
                    else:
                        curve[:, ti] = vals[gi, :, int((inner == k).nonzero()[0, 0])]
                cache[key(m)] = curve
        return {m: cache[key(m)] for m in methods}


    def _curve_fn(self, batch: EvalBatch, method: str) -> P.CurveFn:
        """The kernels' :data:`~gmxai_eval.functional.perturbation.CurveFn` for ``method``: the
        curves of every method of the batch are computed together on the first call (cached)."""
        spec = self.config["baseline"]
        return lambda order, counts, restore: self._cumulative_curves(
            batch, list(batch.maps), order, counts, spec, restore)[method]


# =============================================================================================
# RISE deletion / insertion and pixel flipping
# =============================================================================================
class _CurveEvaluator(_PerturbationEvaluator):

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        P.step_counts(10**6, steps=c["steps"], features_in_step=c.get("features_in_step"))  # validates the schedule
        if "auc" in c and c["auc"] not in P.AUC_RULES:
            raise ConfigError(f"evaluator {self.name!r}: expected auc in {P.AUC_RULES}, got {c['auc']!r}")

    def _counts(self, batch: EvalBatch) -> torch.Tensor:
        c = self.config
        n = P.unit_count(batch.x.shape[1:], c["unit"], self._patch())
        return P.step_counts(n, steps=c["steps"], features_in_step=c.get("features_in_step"),
                             include_start=c.get("include_start", True))

    #: the metric's kernel: ``(curve_fn, n_units, **schedule) -> (scores, curves, curve_x)``.
    kernel: Any = staticmethod(P.deletion)

    def _kernel_options(self) -> dict[str, Any]:
        c = self.config
        return {"steps": c["steps"], "features_in_step": c.get("features_in_step"),
                "include_start": c.get("include_start", True), "auc": c["auc"]}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        n = P.unit_count(batch.x.shape[1:], self.config["unit"], self._patch())
        out = {}
        for m in batch.maps:
            scores, cv, cx = self.kernel(self._curve_fn(batch, m), n, **self._kernel_options())
            out[m] = EvalResult(scores, cv, cx)
        return out


_CURVE_DEFAULTS = {"steps": 28, "unit": "pixel", "patch_size": 1, "auc": "rise", **_COMMON}


@register_evaluator
class Deletion(_CurveEvaluator):
    """RISE deletion (Petsiuk et al. 2018): remove pixels most relevant first, cumulatively, into
    the substrate ``baseline`` (default ``"input_zero"``: zero in the model's normalised input space,
    RISE's substrate; 0.5 grey for the default model; ``"black"`` is 0 in pixel space); score = area under the target
    probability curve of ``steps + 1`` points (start included), RISE rule
    ``(sum s - s_0/2 - s_n/2) / n``. Lower is better. ``curves (B, steps+1)``, ``curve_x`` =
    fraction removed."""

    card = EvaluatorCard(
        name="deletion", category="perturbation", higher_is_better=False,
        paper="Petsiuk, Das, Saenko. RISE: Randomized Input Sampling for Explanation of Black-box Models. BMVC 2018",
        default_config={**_CURVE_DEFAULTS, "baseline": "input_zero"},
        description="MoRF deletion curve AUC (target probability), RISE substrate: zero in the "
                    "model's normalised input space",
        degenerate=Degenerate("map-independent", "map-independent", "ties broken by flat index: the raster order is scored"))
    quick_config = {"steps": 8}
    fixed = {"ordering": "morf", "cumulative": True, "schedule": "round(k*N/steps), k=0..steps",
             "auc_rule": "rise: (sum s - s0/2 - sn/2)/n on [0,1]"}


@register_evaluator
class Insertion(_CurveEvaluator):
    """RISE insertion: start from the blurred image (Gaussian, kernel 11, sigma 5) and restore
    pixels most relevant first; score = AUC of the target probability (RISE rule). Higher is
    better."""

    card = EvaluatorCard(
        name="insertion", category="perturbation", higher_is_better=True,
        paper="Petsiuk, Das, Saenko. RISE: Randomized Input Sampling for Explanation of Black-box Models. BMVC 2018",
        default_config={**_CURVE_DEFAULTS, "baseline": "blur", "blur_kernel": 11, "blur_sigma": 5.0},
        description="MoRF insertion curve AUC (target probability) from a blurred substrate",
        degenerate=Degenerate("map-independent", "map-independent", "ties broken by flat index: the raster order is scored"))
    quick_config = {"steps": 8}
    kernel = staticmethod(P.insertion)
    fixed = {"ordering": "morf", "cumulative": True, "restores": True,
             "schedule": "round(k*N/steps), k=0..steps", "auc_rule": "rise: (sum s - s0/2 - sn/2)/n on [0,1]"}


@register_evaluator
class PixelFlipping(_CurveEvaluator):
    """Pixel flipping (Bach et al. 2015): flip pixels most relevant first, cumulatively, to
    ``baseline``; score = area under the output curve, lower is better.

    Schedule: ``steps`` (``round(k*N/steps)``) or ``features_in_step`` (Quantus: ``k*f``; set
    ``steps=None``); ``include_start`` adds the unperturbed point (Quantus omits it).
    ``auc``: ``"rise"`` (normalised trapezoid, default), ``"trapz_unit"`` (Quantus's
    ``np.trapz(dx=1)``) or ``"mean"`` (mean of the curve). With the defaults the curve is the
    deletion curve and is shared with ``deletion`` on the same batch."""

    card = EvaluatorCard(
        name="pixel_flipping", category="perturbation", higher_is_better=False,
        paper="Bach et al. On pixel-wise explanations for non-linear classifier decisions by layer-wise "
              "relevance propagation. PLoS ONE 2015",
        default_config={**_CURVE_DEFAULTS, "baseline": "input_zero", "features_in_step": None, "include_start": True},
        description="MoRF pixel-flipping curve AUC",
        degenerate=Degenerate("map-independent", "map-independent", "ties broken by flat index: the raster order is scored"))
    quick_config = {"steps": 8}
    kernel = staticmethod(P.pixel_flipping)
    fixed = {"ordering": "morf", "cumulative": True}


# =============================================================================================
# Region perturbation / AOPC
# =============================================================================================
@register_evaluator
class RegionPerturbation(_PerturbationEvaluator):
    """Region perturbation with AOPC (Samek et al. 2017).

    Non-overlapping ``patch_size`` squares (default 9x9) ranked by summed relevance are replaced
    most relevant first, cumulatively, by ``baseline`` (default uniform noise in [0, 1], one noise
    image per sample keyed on ``(seed, sample_id)``). ``curves (B, L+1)`` are the drops
    ``f(x) - f(x^(k))`` for ``k = 0..L`` (``L = min(regions, #patches)``) and
    ``score = AOPC = 1/(L+1) sum_k drop_k``, higher is better.

    Extras: ``aopc_random`` (the same with a random region order, computed once per image and
    shared by all methods) and ``aopc_minus_random``. With ``patch_size=1`` and the same
    baseline/output the MoRF curve is shared with ``deletion``/``pixel_flipping``."""

    card = EvaluatorCard(
        name="region_perturbation", category="perturbation", higher_is_better=True,
        paper="Samek et al. Evaluating the visualization of what a deep neural network has learned. IEEE TNNLS 2017",
        default_config={"patch_size": 9, "regions": 100, "baseline": "uniform", "random_control": True,
                        **_COMMON},
        description="AOPC of MoRF region perturbation (9x9 regions, uniform noise) and its random control",
        degenerate=Degenerate("finite", "finite", "ties broken by flat index; the summed patch relevance of a "
                              "constant map ranks the full patches before the clipped edge patches (after them "
                              "for a negative map)"))
    quick_config = {"regions": 8}
    fixed = {"ordering": "morf", "unit": "patch", "cumulative": True,
             "score": "AOPC = 1/(L+1) sum_{k=0..L} [f(x) - f(x^(k))]"}

    def _unit(self) -> str:
        return "patch"

    def _patch(self) -> int:
        return int(self.config["patch_size"])

    def _counts(self, batch: EvalBatch) -> torch.Tensor:
        n = P.unit_count(batch.x.shape[1:], "patch", self._patch())
        return torch.arange(min(int(self.config["regions"]), n) + 1)

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        c = self.config
        n = P.unit_count(batch.x.shape[1:], "patch", self._patch())
        rnd = None
        if c["random_control"]:
            rnd = lambda counts: self._cumulative_curves(  # noqa: E731
                batch, [None], "random", counts, c["baseline"])[None]
        res = {}
        for m in batch.maps:
            scores, drops, cx, extras = P.region_perturbation(self._curve_fn(batch, m), n, regions=int(c["regions"]),
                                                              random_curve=rnd)
            res[m] = EvalResult(scores, drops, cx, extras)
        return res


# =============================================================================================
# Random-subset correlations: faithfulness correlation, sensitivity-n
# =============================================================================================
class _SubsetEvaluator(_PerturbationEvaluator):
    def _subset_data(self, batch: EvalBatch, size: int, runs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``mask weights (B, R, H*W)`` (masked channels per pixel) and output drops ``(B, R)``
        for random subsets (shared by all methods and evaluators of the batch)."""
        c = self.config
        shape = tuple(batch.x.shape[1:])
        n = P.unit_count(shape, c["unit"], self._patch())

        def masks() -> torch.Tensor:
            sub = P.random_subsets(n, size, runs, batch.sample_ids, batch.seed)  # type: ignore[arg-type]
            return P.subset_masks(sub.to(batch.x.device), shape, c["unit"], self._patch())

        mk = batch.shared(("subset_masks", c["unit"], self._patch(), size, runs), masks)

        def drops() -> torch.Tensor:
            out = P.masked_outputs(batch.model, batch.x, batch.target, mk, self._fill(batch, c["baseline"]),
                                   output=c["output"], max_batch=self._mb(batch))
            return self._clean_output(batch)[:, None] - out

        dr = batch.shared(("subset_drops", c["unit"], self._patch(), size, runs, self._fill_key(c["baseline"]),
                           c["output"]), drops)
        w = batch.shared(("subset_weights", c["unit"], self._patch(), size, runs), lambda: P.mask_weights(mk))
        return w, dr


@register_evaluator
class FaithfulnessCorrelation(_SubsetEvaluator):
    """Faithfulness correlation (Bhatt et al. 2020): ``nr_runs`` random subsets of
    ``subset_size`` units, drawn once per image (keyed on ``(seed, sample_id)``) and shared by all
    methods, are replaced by ``baseline``; score = Pearson correlation, over runs, between the
    attribution sum of the subset and the output drop ``f(x) - f(x_S)``. Higher is better.
    A constant map scores 0 (documented; SciPy/Quantus return NaN). Quantus's defaults:
    ``subset_size=224`` elements, logit output (``softmax=False``)."""

    card = EvaluatorCard(
        name="faithfulness_correlation", category="perturbation", higher_is_better=True,
        paper="Bhatt, Weller, Moura. Evaluating and Aggregating Feature-based Model Explanations. IJCAI 2020",
        default_config={"nr_runs": 100, "subset_size": 224, "unit": "pixel", "patch_size": 1, "baseline": "black",
                        **{**_COMMON, "output": "logit"}},
        description="Pearson(attribution sum of random subset, output drop)",
        degenerate=Degenerate("0", "0", "constant='zero': the correlation with a constant is 0"))
    quick_config = {"nr_runs": 10, "subset_size": 64}
    fixed = {"similarity": "pearson", "constant_map_score": 0.0}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        c = self.config
        out = {}
        for m in batch.maps:
            scores, sums, dr = P.faithfulness_correlation(
                self._map(batch, m), lambda size, runs: self._subset_data(batch, size, runs),
                subset_size=int(c["subset_size"]), nr_runs=int(c["nr_runs"]))
            out[m] = EvalResult(scores, extras={"attribution_sums": sums, "drops": dr})
        return out


@register_evaluator
class SensitivityN(_SubsetEvaluator):
    """Sensitivity-n (Ancona et al. 2018): for each subset size ``n`` (``subset_fractions`` of the
    units), ``nr_runs`` random subsets per image (shared by all methods) are replaced by
    ``baseline``; the Pearson correlation between the attribution sum of the subset and the output
    drop is computed per image and per ``n``. ``curves (B, len(n))``; score = mean over ``n``.
    Higher is better.

    Quantus 0.6.0's SensitivityN differs: it removes features cumulatively in MoRF order,
    correlates across the *samples of a batch* per step, and keeps only the first mini-batch
    (a known defect); its per-n values are dataset-level, ours are per image as in the paper."""

    card = EvaluatorCard(
        name="sensitivity_n", category="perturbation", higher_is_better=True,
        paper="Ancona, Ceolini, Oztireli, Gross. Towards better understanding of gradient-based attribution "
              "methods for deep neural networks. ICLR 2018",
        default_config={"subset_fractions": (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8), "nr_runs": 32,
                        "unit": "pixel", "patch_size": 1, "baseline": "black", **_COMMON},
        description="per-image Pearson(attribution sum, output drop) for random subsets of size n",
        degenerate=Degenerate("0", "0", "constant='zero': the correlation with a constant is 0"))
    quick_config = {"nr_runs": 4, "subset_fractions": (0.05, 0.2)}
    fixed = {"similarity": "pearson", "constant_map_score": 0.0, "score": "mean over n"}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        c = self.config
        n_units = P.unit_count(batch.x.shape[1:], c["unit"], self._patch())
        out = {}
        for m in batch.maps:
            scores, cv, sizes = P.sensitivity_n(self._map(batch, m), lambda size, runs: self._subset_data(batch, size, runs),
                                                n_units, subset_fractions=c["subset_fractions"], nr_runs=int(c["nr_runs"]))
            out[m] = EvalResult(scores, cv, sizes)
        return out


# =============================================================================================
# Window correlations: faithfulness estimate, monotonicity correlation
# =============================================================================================
class _WindowEvaluator(_PerturbationEvaluator):
    def _window_fns(self, batch: EvalBatch, fill: torch.Tensor) -> dict[str, P.WindowFn]:
        """Per method, the kernels' :data:`~gmxai_eval.functional.perturbation.WindowFn`: the
        windows of every method of the batch are scored together on the first call (one
        :func:`~gmxai_eval.functional.perturbation.window_outputs` over all methods)."""
        c = self.config
        unit, patch, x = c["unit"], self._patch(), batch.x
        cache: dict[Any, tuple[torch.Tensor, torch.Tensor]] = {}

        def all_methods(order: str, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            key = (order, tuple(lo.tolist()), tuple(hi.tolist()))
            if key not in cache:
                ranks = torch.stack([P.rank_map(self._map(batch, m), order, unit=unit, patch=patch,
                                                channels=x.shape[1], sample_ids=batch.sample_ids, seed=batch.seed)
                                     for m in batch.maps])
                cache[key] = ranks, P.window_outputs(batch.model, x, batch.target, ranks, lo, hi, fill,
                                                     output=c["output"], max_batch=self._mb(batch))
            return cache[key]

        def one(gi: int) -> P.WindowFn:
            def fn(order: str, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                ranks, vals = all_methods(order, lo, hi)
                return ranks[gi], vals[gi]
            return fn
        return {m: one(gi) for gi, m in enumerate(batch.maps)}


@register_evaluator
class FaithfulnessEstimate(_WindowEvaluator):
    """Faithfulness estimate (Alvarez-Melis & Jaakkola 2018): units are taken in MoRF order in
    windows of ``features_in_step``; each window alone (not cumulatively) is replaced by
    ``baseline``; score = Pearson correlation, over windows, between the window's attribution sum
    and the output drop. Higher is better. Quantus's defaults: logit output, black baseline."""

    card = EvaluatorCard(
        name="faithfulness_estimate", category="perturbation", higher_is_better=True,
        paper="Alvarez-Melis, Jaakkola. Towards robust interpretability with self-explaining neural networks. "
              "NeurIPS 2018",
        default_config={"features_in_step": 256, "unit": "pixel", "patch_size": 1, "baseline": "black",
                        **{**_COMMON, "output": "logit"}},
        description="Pearson(attribution sum of a MoRF window, output drop when it alone is removed)",
        degenerate=Degenerate("0", "0", "constant='zero': the correlation with a constant is 0"))
    fixed = {"ordering": "morf", "cumulative": False, "similarity": "pearson", "constant_map_score": 0.0}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        c = self.config
        fns = self._window_fns(batch, self._fill(batch, c["baseline"])[None])
        clean = self._clean_output(batch)
        n = P.unit_count(batch.x.shape[1:], c["unit"], self._patch())
        out = {}
        for m, fn in fns.items():
            scores, drops, cx, sums = P.faithfulness_estimate(self._map(batch, m), fn, clean, n,
                                                              features_in_step=int(c["features_in_step"]))
            out[m] = EvalResult(scores, drops, cx, {"attribution_sums": sums})
        return out


@register_evaluator
class MonotonicityCorrelation(_WindowEvaluator):
    """Monotonicity correlation (Nguyen & Martinez 2020): units in ascending order of the map
    (``abs`` by default), windows of ``features_in_step`` replaced one at a time by
    ``nr_samples`` draws of ``baseline`` (uniform noise, drawn per sample and draw from
    ``(seed, sample_id)``; a deterministic baseline uses one draw). Per window
    ``v = mean_s (f(x_s) - f(x))^2 / f(x)^2`` (the ``1/f(x)^2`` factor only when
    ``|f(x)| >= eps``, as in Quantus); score = Spearman correlation between window attribution
    sums and ``v``. Higher is better."""

    card = EvaluatorCard(
        name="monotonicity_correlation", category="perturbation", higher_is_better=True,
        paper="Nguyen, Martinez. On quantitative aspects of model interpretability. arXiv:2007.07584, 2020",
        default_config={"features_in_step": 256, "nr_samples": 10, "eps": 1e-5, "unit": "pixel", "patch_size": 1,
                        "baseline": "uniform", **{**_COMMON, "abs": True}},
        description="Spearman(attribution sum of a LeRF window, output variance when it is noised)",
        degenerate=Degenerate("0", "0", "constant='zero': the correlation with a constant is 0"))
    quick_config = {"nr_samples": 2}
    fixed = {"ordering": "lerf (ascending)", "cumulative": False, "similarity": "spearman (average ranks)",
             "constant_map_score": 0.0}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        c = self.config
        stochastic = c["baseline"] == "uniform"
        draws = int(c["nr_samples"]) if stochastic else 1
        fill = torch.stack([self._fill(batch, c["baseline"], draw=s if stochastic else None) for s in range(draws)])
        fns = self._window_fns(batch, fill)
        y = self._clean_output(batch)
        n = P.unit_count(batch.x.shape[1:], c["unit"], self._patch())
        out = {}
        for m, fn in fns.items():
            scores, v, cx, sums = P.monotonicity_correlation(self._map(batch, m), fn, y, n,
                                                             features_in_step=int(c["features_in_step"]),
                                                             eps=float(c["eps"]))
            out[m] = EvalResult(scores, v, cx, {"attribution_sums": sums})
        return out


# =============================================================================================
# Infidelity
# =============================================================================================
@register_evaluator
class Infidelity(_PerturbationEvaluator):
    """Infidelity (Yeh et al. 2019) in Captum's definition:
    ``INFD = mean_I (beta * I^T phi - (f(x) - f(x - I)))^2`` over ``n_perturb_samples``
    perturbations ``I ~ N(0, noise_std^2)`` per channel element (pixel space, not clamped; drawn
    once per image from ``(seed, sample_id)`` and shared by all methods, so the forward passes are
    method-independent). The map (one value per pixel) is broadcast over channels:
    ``I^T phi = sum_{c,h,w} I_chw phi_hw``. ``normalize=True`` (default, scale invariant) uses
    Captum's optimal ``beta``; ``normalize=False`` uses ``beta = 1``. Output: the target logit by
    default (Captum scores the forward output). Lower is better.

    Quantus 0.6.0's Infidelity is a different quantity (cumulative patch replacement by a
    baseline, MSE over patches) and fails when the image size is not a multiple of the patch."""

    card = EvaluatorCard(
        name="infidelity", category="perturbation", higher_is_better=False,
        paper="Yeh et al. On the (In)fidelity and Sensitivity of Explanations. NeurIPS 2019",
        default_config={"n_perturb_samples": 16, "noise_std": 0.1, "normalize": True,
                        **{**_COMMON, "output": "logit"}},
        description="Captum infidelity with Gaussian perturbations, optimally rescaled map",
        degenerate=Degenerate("finite", "finite", "the optimal scale beta fits the constant map"))
    quick_config = {"n_perturb_samples": 4}
    fixed = {"perturbation": "I ~ N(0, noise_std^2) per element; x - I", "map_broadcast": "over channels"}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        c = self.config
        n, x = int(c["n_perturb_samples"]), batch.x
        noise = batch.shared(("infidelity_noise", n, float(c["noise_std"])), lambda: P.gaussian_perturbations(
            tuple(x.shape[1:]), n, float(c["noise_std"]), batch.sample_ids, batch.seed).to(x.device, x.dtype))  # type: ignore[arg-type]

        flat = noise.flatten(0, 1)  # job j = (image j // n, draw j % n)
        buf = x.new_empty(min(self._mb(batch), len(flat)), *x.shape[1:])

        def drops() -> torch.Tensor:
            def build(j: torch.Tensor) -> torch.Tensor:
                return torch.sub(x[j // n], flat[int(j[0]): int(j[-1]) + 1], out=buf[: len(j)])  # j is a range
            tgt = batch.target.to(x.device)
            vals = P.batched_outputs(batch.model, x.shape[0] * n, build, lambda j: tgt[j // n], c["output"],
                                     self._mb(batch), x.device).view(-1, n)
            return self._clean_output(batch)[:, None] - vals

        dr = batch.shared(("infidelity_drops", n, float(c["noise_std"]), c["output"]), drops)
        isum = batch.shared(("infidelity_noise_channel_sum", n, float(c["noise_std"])),
                            lambda: noise.sum(2).flatten(2).double())  # (B, n, H*W): map broadcast over C
        out = {}
        for m in batch.maps:
            scores, p = P.infidelity(self._map(batch, m), isum, dr, normalize=bool(c["normalize"]))
            out[m] = EvalResult(scores, extras={"a_dot_i": p, "drops": dr})
        return out


# =============================================================================================
# Sufficiency
# =============================================================================================
@register_evaluator
class Sufficiency(_PerturbationEvaluator):
    """Sufficiency (Dasgupta et al. 2022): does keeping only what the map highlights keep the
    prediction? Higher is better.

    ``estimator="keep"`` (default, :func:`gmxai_eval.functional.perturbation.sufficiency`): per
    image, keep the ``floor(p H W)`` highest pixels of the map (``abs`` by default) for each
    ``keep`` level ``p``, replace the rest by ``baseline`` (``nr_samples`` draws of a random
    baseline keyed on ``(seed, sample_id)``, one draw of a deterministic one), and score the share
    of draws whose arg-max equals the clean prediction, averaged over levels (``curves (B, P)``).
    This is the paper's definition for feature-highlighting explanations (an input that agrees
    with ``x`` on the highlighted features should get the same prediction) and depends on no other
    image: scores do not change with batch size, composition or order.

    ``estimator="quantus_batch"``: Quantus 0.6.0's estimator (standardised Euclidean distances
    between maps, divided by the largest distance of the batch; the share of the other samples
    within ``threshold`` that have the same predicted class, 0 without neighbours). Its
    neighbourhood is the batch, so its scores depend on which images are evaluated together: kept
    for parity only, not for leaderboards.

    Degenerate maps: a constant map keeps the first ``floor(p H W)`` pixels by index (a defined,
    map-independent score, like the random control); non-finite model outputs give NaN."""

    card = EvaluatorCard(
        name="sufficiency", category="perturbation", higher_is_better=True,
        paper="Dasgupta, Frost, Moshkovitz. Framework for Evaluating Faithfulness of Local Explanations. ICML 2022",
        default_config={"estimator": "keep", "keep": (0.1, 0.2, 0.3, 0.4, 0.5), "baseline": "blur",
                        "blur_kernel": 11, "blur_sigma": 5.0, "nr_samples": 4, "threshold": 0.6, "abs": True,
                        "max_batch": None},
        description="share of inputs keeping only the map's top pixels that keep the clean prediction",
        degenerate=Degenerate("map-independent", "map-independent", "ties broken by flat index: the raster order is scored"))
    quick_config = {"keep": (0.2, 0.5)}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if c["estimator"] not in P.SUFFICIENCY_ESTIMATORS:
            raise ConfigError(f"evaluator {self.name!r}: expected estimator in {P.SUFFICIENCY_ESTIMATORS}, "
                              f"got {c['estimator']!r}")
        c["keep"] = tuple(float(p) for p in c["keep"])
        if not c["keep"] or not all(0.0 < p <= 1.0 for p in c["keep"]):
            raise ConfigError(f"evaluator {self.name!r}: expected keep fractions in (0, 1], got {c['keep']}")
        n = c["nr_samples"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"evaluator {self.name!r}: expected nr_samples as a positive int, got {n!r}")

    @property
    def fixed(self) -> dict[str, Any]:  # type: ignore[override]
        if self.config["estimator"] == "quantus_batch":
            return {"distance": "seuclidean / max over batch", "neighbourhood": "the evaluated batch",
                    "prediction": "argmax of the clean logits", "batch_invariant": False}
        return {"neighbourhood": "the image with all but the map's top-p pixels replaced",
                "prediction": "argmax of the clean logits", "ties": "by flat index",
                "score": "mean over keep levels of the share of draws keeping the prediction",
                "batch_invariant": True}

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        c = self.config
        pred = batch.clean_logits().argmax(1).to(batch.x.device)
        if c["estimator"] == "quantus_batch":
            return {m: EvalResult(P.sufficiency_scores(self._map(batch, m), pred, float(c["threshold"])))
                    for m in batch.maps}
        stochastic = c["baseline"] == "uniform"
        draws = int(c["nr_samples"]) if stochastic else 1
        fills = torch.stack([self._fill(batch, c["baseline"], draw=s if stochastic else None) for s in range(draws)])
        out = {}
        for m in batch.maps:
            scores, curves = P.sufficiency(batch.model, batch.x, pred, self._map(batch, m), fills, keep=c["keep"],
                                           max_batch=self._mb(batch))
            out[m] = EvalResult(scores, curves, torch.tensor(c["keep"], dtype=torch.float64))
        return out


# =============================================================================================
# Monotonicity (Arya et al.)
# =============================================================================================
@register_evaluator
class MonotonicityArya(_CurveEvaluator):
    """Monotonicity (Arya et al. 2019, AIX360): start from ``baseline`` (default black) and
    restore units in *ascending* order of the map (``abs`` by default), cumulatively; the
    explanation is monotonic when the output never decreases along the curve.
    ``score="all"`` (default, the paper): 1.0 if every step is non-decreasing else 0.0;
    ``score="fraction"``: the share of non-decreasing steps. Higher is better.

    Quantus 0.6.0's ``Monotonicity`` writes the *baseline* (not the image) into the indices at
    every step, so its image never changes and it returns True for every input (a known defect)."""

    card = EvaluatorCard(
        name="monotonicity_arya", category="perturbation", higher_is_better=True,
        paper="Arya et al. One Explanation Does Not Fit All: A Toolkit and Taxonomy of AI Explainability "
              "Techniques. arXiv:1909.03012, 2019",
        default_config={**{k: v for k, v in _CURVE_DEFAULTS.items() if k != "auc"}, "baseline": "black",
                        "features_in_step": None, "include_start": True, "score": "all", "abs": True},
        description="is the output non-decreasing when features are restored least relevant first",
        degenerate=Degenerate("map-independent", "map-independent", "ties broken by flat index: the raster order is scored"))
    quick_config = {"steps": 8}
    kernel = staticmethod(P.monotonicity_arya)
    fixed = {"ordering": "lerf (ascending)", "cumulative": True, "restores": True}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config["score"] not in ("all", "fraction"):
            raise ConfigError(f"evaluator {self.name!r}: expected score in ('all', 'fraction'), got "
                              f"{self.config['score']!r}")

    def _kernel_options(self) -> dict[str, Any]:
        c = self.config
        return {"steps": c["steps"], "features_in_step": c.get("features_in_step"),
                "include_start": c.get("include_start", True), "score": c["score"]}
