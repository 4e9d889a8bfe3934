"""Run any Quantus metric as a gmxai_eval evaluator.

::

    import quantus
    ev = QuantusMetric(metric=quantus.FaithfulnessCorrelation(nr_runs=50, disable_warnings=True))
    ev = create_evaluator("quantus", metric="Sparseness", metric_kwargs={"disable_warnings": True})
    res = ev(model, x, target, maps, explainer=create_method("saliency"))

What the adapter does for each batch and method:

* ``x (B, C, H, W)`` -> NumPy float32 ``(B, C, H, W)``; ``maps (B, H, W)`` -> ``(B, 1, H, W)``;
  ``target`` -> ``(B,)`` int64; ``masks (B, H, W)`` (if any) -> ``s_batch (B, 1, H, W)``;
  ``channel_first=True``, ``batch_size=B`` (one Quantus batch per call).
* ``explain_func``: built from ``batch.explainers[method]`` (NumPy in, ``(b, 1, H, W)`` NumPy out)
  and passed whenever the batch has an explainer for the method; the adapter's card ``needs``
  ``"explainer"`` when the metric's preprocessing asserts an ``explain_func`` (randomisation,
  robustness, some axiomatic metrics).
* Quantus draws from NumPy's (and torch's) global RNG: the call runs with both seeded from
  ``(batch.seed, sample_ids)`` and both states restored afterwards, so results are reproducible
  and nothing leaks.
* The metric must return one score per sample (for MPRT-style metrics set
  ``return_average_correlation`` or ``return_last_correlation``); NaN scores are kept.
* Quantus keeps every result on the metric object (``all_evaluation_scores``); the adapter clears
  that list after each call.

The card (per instance) takes ``higher_is_better`` from the metric's ``score_direction``;
a metric that declares none needs ``higher_is_better=`` from the user, and a user value that
contradicts the metric raises. The category maps Quantus' ``evaluation_category``
(Faithfulness -> perturbation, Axiomatic -> perturbation unless ``category=`` is given).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
from typing import Any, Callable, Iterator

import numpy as np
import torch

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.base import EvalBatch, EvalResult, Evaluator, register_evaluator
from gmxai_eval.methods.base import Explainer
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import stable_hash

_CATEGORY = {"Faithfulness": "perturbation", "Robustness": "robustness", "Randomisation": "randomisation",
             "Complexity": "complexity", "Localisation": "localisation", "Axiomatic": "perturbation"}


def _quantus() -> Any:
    import quantus  # imported lazily: only this adapter needs it

    return quantus


def _resolve_metric(metric: Any, kwargs: dict[str, Any]) -> Any:
    q = _quantus()
    if isinstance(metric, str):
        names = [n for n in dir(q) if isinstance(getattr(q, n), type) and issubclass(getattr(q, n), q.Metric)]
        if metric not in names:
            close = difflib.get_close_matches(metric, names, n=5, cutoff=0.4)
            raise ConfigError(f"expected a Quantus metric class name, got {metric!r}; close matches: {close}")
        return getattr(q, metric)(**kwargs)
    if isinstance(metric, q.Metric):
        if kwargs:
            raise ConfigError(f"expected metric_kwargs only with a metric class name, got an instance and {sorted(kwargs)}")
        return metric
    raise ConfigError(f"expected a quantus.Metric instance or class name, got {type(metric).__name__}")


def _needs_explainer(metric: Any) -> bool:
    """Whether the metric's preprocessing asserts an ``explain_func``."""
    for klass in type(metric).__mro__:
        fn = klass.__dict__.get("custom_preprocess")
        if fn is not None:
            try:
                return "assert_explain_func" in inspect.getsource(fn)
            except (OSError, TypeError):  # source unavailable: be strict
                return True
    return False


def explain_func_for(explainer: Explainer, device: torch.device | str = "cpu",
                     masks: torch.Tensor | None = None) -> Callable[..., np.ndarray]:
    """A Quantus ``explain_func(model, inputs, targets, **kw) -> (b, 1, H, W)`` NumPy array that
    runs ``explainer``.

    An explainer with ``needs_masks`` (the ``oracle``) gets ``masks (B, H, W)``: Quantus calls
    ``explain_func`` with the whole batch (or perturbed copies of it) in batch order, so the
    inputs must have the batch's ``B`` rows; anything else raises ``ShapeError``."""
    needs = bool(getattr(explainer, "needs_masks", False))
    if needs and masks is None:
        raise ConfigError(f"explainer {type(explainer).__name__} needs evidence masks, got none")

    def explain(model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device)
        t = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=device).reshape(-1)
        if needs and x.shape[0] != masks.shape[0]:  # type: ignore[union-attr]
            raise ShapeError(f"explainer {type(explainer).__name__} needs masks: expected Quantus to explain "
                             f"the batch's {masks.shape[0]} rows in order, got {x.shape[0]} inputs")  # type: ignore[union-attr]
        was_training = model.training
        model.eval()
        try:
            a = explainer(model, x, t, masks=masks.to(x.device)) if needs else explainer(model, x, t)  # type: ignore[union-attr,call-arg]
        finally:
            model.train(was_training)
        return a[:, None].detach().cpu().numpy().astype(np.float32)
    return explain


@contextlib.contextmanager
def _seeded_global_rngs(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


@register_evaluator
class QuantusMetric(Evaluator):
    """A Quantus 0.6 metric as an evaluator (registered as ``"quantus"``). See the module docstring.

    Degenerate maps: Quantus refuses a batch whose maps all hold one single value (all zero, one
    constant), so the adapter gives NaN for every sample of such a batch (counted as missing) without calling Quantus; other degenerate
    maps score whatever the Quantus metric defines (``+-inf`` becomes NaN)."""

    card = EvaluatorCard(
        name="quantus", category="perturbation", higher_is_better=True,
        paper="Hedström et al., Quantus: An Explainable AI Toolkit, JMLR 2023",
        default_config={"metric": None, "metric_kwargs": {}, "higher_is_better": None, "category": None,
                        "softmax": False, "call_kwargs": {}},
        description="any Quantus metric; direction and category taken from the metric (instance card)",
        degenerate=Degenerate("nan", "nan", "NaN when every map of the batch is one value"))
    quick_config = {"metric": "Sparseness"}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config["metric"] is None:
            raise ConfigError("evaluator 'quantus': expected metric= a quantus.Metric instance or class name, got None")
        self.metric = _resolve_metric(self.config["metric"], dict(self.config["metric_kwargs"]))
        direction = getattr(type(self.metric), "score_direction", None)
        declared = None if direction is None else str(getattr(direction, "value", direction)).lower() == "higher"
        user = self.config["higher_is_better"]
        if declared is None and user is None:
            raise ConfigError(f"evaluator 'quantus': {type(self.metric).__name__} declares no score_direction; "
                              "expected higher_is_better=True/False, got None")
        if declared is not None and user is not None and bool(user) != declared:
            raise ConfigError(f"evaluator 'quantus': expected higher_is_better={declared} as "
                              f"{type(self.metric).__name__} declares, got {user}")
        hib = declared if declared is not None else bool(user)
        cat = self.config["category"]
        if cat is None:
            qcat = getattr(getattr(type(self.metric), "evaluation_category", None), "value", None)
            cat = _CATEGORY.get(qcat, "perturbation")
        needs = {"explainer"} if _needs_explainer(self.metric) else set()
        if "localisation" == cat:
            needs.add("masks")
        self.card = dataclasses.replace(  # type: ignore[misc]
            type(self).card, category=cat, higher_is_better=hib,
            needs=frozenset(needs), description=f"Quantus {type(self.metric).__name__}")

    def conventions(self) -> dict[str, Any]:
        m = self.metric
        return {"evaluator": "quantus", "metric": type(m).__name__,
                "metric_config": {k: repr(v) for k, v in sorted(vars(m).items())
                                  if not k.startswith("_") and k not in ("all_evaluation_scores", "evaluation_scores")
                                  and isinstance(v, (bool, int, float, str, type(None)))},
                "softmax": self.config["softmax"], "channel_first": True, "maps_shape": "(B, 1, H, W)",
                "rng": "numpy/torch global RNG seeded from (seed, sample_ids), restored after"}

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        a_all = batch.maps[method]
        if a_all.numel() and bool(a_all.eq(a_all.reshape(-1)[0]).all()):
            # Quantus refuses a batch whose maps hold one single value (an assert): NaN, counted
            return EvalResult(torch.full((batch.x.shape[0],), float("nan"), dtype=torch.float64),
                              conventions={"degenerate": "every map of the batch is one constant: NaN"})
        x = batch.x.detach().cpu().numpy().astype(np.float32)
        y = batch.target.detach().cpu().numpy().astype(np.int64)
        a = batch.maps[method].detach().cpu().numpy().astype(np.float32)[:, None]
        s = None if batch.masks is None else batch.masks.detach().cpu().numpy()[:, None].astype(np.float32)
        ex = batch.explainers.get(method)
        device = batch.x.device
        kwargs = dict(self.config["call_kwargs"])
        seed = int(stable_hash(batch.seed, "quantus", type(self.metric).__name__, list(batch.sample_ids or [])), 16)
        with _seeded_global_rngs(seed):
            out = self.metric(model=batch.model, x_batch=x, y_batch=y, a_batch=a, s_batch=s, channel_first=True,
                              explain_func=None if ex is None else explain_func_for(ex, device, batch.masks),
                              softmax=self.config["softmax"], device=str(device), batch_size=max(1, x.shape[0]),
                              **kwargs)
        self.metric.all_evaluation_scores = []
        if isinstance(out, dict) or np.ndim(out) != 1 or len(out) != x.shape[0]:
            raise ShapeError(f"evaluator 'quantus': expected {x.shape[0]} per-sample scores from "
                             f"{type(self.metric).__name__}, got {type(out).__name__}"
                             f"{'' if isinstance(out, dict) else ' of shape ' + str(np.shape(out))}; for MPRT-style "
                             "metrics set return_average_correlation or return_last_correlation")
        return EvalResult(torch.as_tensor(np.asarray(out, dtype=np.float64)))
