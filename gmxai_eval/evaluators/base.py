"""Evaluator base classes.

An evaluator scores attribution maps of one or several methods on a batch::

    ev = create_evaluator("deletion", steps=28)
    res = ev(model, x, target, maps)                  # one method -> EvalResult
    out = ev.evaluate(EvalBatch(model, x, target,      # several methods -> {name: EvalResult}
                                maps={"saliency": m1, "gradcam": m2}, sample_ids=ids))

* ``model``: eval mode, pixel space ``(B, C, H, W)`` -> logits ``(B, K)``.
* ``x``: ``(B, C, H, W)`` in ``[0, 1]``; ``target``: ``(B,)`` int64.
* ``maps``: ``{method: (B, H, W)}`` signed, unnormalised, finite.
* :class:`EvalResult`: ``scores (B,)`` float64, optional ``curves (B, T)`` with ``curve_x (T,)``,
  ``extras {name: (B, ...)}`` and the ``conventions`` used.

Subclasses set ``card`` and implement :meth:`Evaluator._evaluate` (one method) and may override
:meth:`Evaluator._evaluate_methods` to share method-independent work (clean predictions,
random subsets, random-order controls) across methods. Method-independent work shared across
evaluators goes through :meth:`EvalBatch.shared`. Randomness is keyed on ``(seed, sample_id)``
via :func:`gmxai_eval.utils.rng_for` so results do not depend on batch size or order.

Like torchmetrics, evaluators also accumulate: ``update(batch)`` ... ``compute()``.

Degenerate maps (all zero, constant) never give +-inf. What each evaluator returns for them is
a field of its card, ``card.degenerate`` (:class:`gmxai_eval.types.Degenerate`: NaN, counted in
``n_nan``, or a defined value), shown by ``gmxai-eval evaluators NAME [--json]``; the contract test
feeds every registered batch evaluator an all-zero and a constant map and checks the scores
against its card. A non-finite score is turned into NaN and counted.

Dataset-scope evaluators (ROAR/KAR retraining) subclass :class:`DatasetEvaluator` and implement
``run(job, executor)``: they receive the whole dataset, a model factory and a trainer, and hand
each retraining to an :class:`~gmxai_eval.execution.Executor` (local or a cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ModelStateError, NonFiniteError, ShapeError
from gmxai_eval.execution import Executor
from gmxai_eval.methods.base import Explainer, check_inputs
from gmxai_eval.registry import Registry
from gmxai_eval.types import Degenerate, EvaluatorCard
from gmxai_eval.utils import merge_config

#: ``EvalBatch.extra`` keys every evaluator accepts as keywords of :meth:`Evaluator.__call__`
#: (besides the names in its card's ``needs``): the dataset channel mean of
#: ``baseline="dataset_mean"``.
COMMON_EXTRA_KEYS: frozenset[str] = frozenset({"channel_mean"})

#: Image dtypes evaluators accept; they are cast to float32 like methods do
#: (:meth:`gmxai_eval.methods.base.Explainer.__call__`). Other dtypes raise ShapeError.
CAST_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@contextlib.contextmanager
def eval_scope(model: nn.Module) -> Iterator[nn.Module]:
    """Restore each module's own training flag after the block, also when the body raises (an
    evaluator that switches a module's mode cannot leak it). A model with a module in training
    mode never gets here: :meth:`Evaluator.validate` refuses it (:func:`check_inputs`); the
    block only keeps every module in eval mode while scoring."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in modes:
            if m.training:
                m.training = False
        yield model
    finally:
        for m, t in modes:
            m.training = t

#: Evaluators: ``EVALUATORS.create(name, **config) -> Evaluator``.
EVALUATORS: Registry = Registry("evaluator", entry_point_group="gmxai_eval.evaluators")


@dataclass
class EvalBatch:
    """Everything an evaluator may need for one batch of images.

    Attributes:
        model: eval-mode model, pixel space -> logits ``(B, K)``.
        x: ``(B, C, H, W)`` float in ``[0, 1]``.
        target: ``(B,)`` int64 explained class.
        maps: ``{method: (B, H, W)}`` attributions.
        sample_ids: ``B`` unique ids (keys per-sample randomness); default ``"0".."B-1"``.
        explainers: ``{method: Explainer}`` for evaluators that recompute maps.
        masks: ``(B, H, W)`` bool ground-truth evidence masks.
        region_masks: ``(B, R, H, W)`` bool named facial regions, names in ``region_names``.
        seed: run seed.
        extra: anything else (fixations, ...), keyed by name.
    """

    model: nn.Module
    x: torch.Tensor
    target: torch.Tensor
    maps: Mapping[str, torch.Tensor]
    sample_ids: Sequence[str] | None = None
    explainers: Mapping[str, Explainer] = field(default_factory=dict)
    masks: torch.Tensor | None = None
    region_masks: torch.Tensor | None = None
    region_names: tuple[str, ...] = ()
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    _shared: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.sample_ids is None:
            self.sample_ids = [str(i) for i in range(int(self.x.shape[0]))]
        self.sample_ids = list(self.sample_ids)

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Memoise method-independent work (e.g. clean logits) for every evaluator of this batch."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    @torch.no_grad()
    def clean_logits(self) -> torch.Tensor:
        """``(B, K)`` logits of the unperturbed images (computed once per batch)."""
        return self.shared("clean_logits", lambda: self.model(self.x).detach())

    def explain(self, method: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                rows: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """Maps ``(N, H, W)`` of ``x (N, C, H, W)`` by ``self.explainers[method]`` for ``model``.

        Every evaluator that re-explains calls this, so explainers that need the ground truth
        get it for the right images, also when ``x`` holds perturbed or repeated copies of the
        batch: ``needs_masks`` (the ``oracle``) the evidence masks of the rows, ``needs_samples``
        (the ``counterfactual_oracle``) the rows' sample ids and ``extra["counterfactual"]``.

        Args:
            rows: ``(N,)`` the batch row each row of ``x`` comes from (repeats allowed, e.g.
                ``arange(B).repeat_interleave(n)`` for ``n`` noisy copies per image); default
                ``0..B-1`` when ``N == B``.
        """
        ex = self.explainers.get(method)
        if ex is None:
            raise ConfigError(f"expected an explainer for method {method!r} in the batch, got none "
                              f"(have {sorted(self.explainers)})")
        masks_, samples_ = bool(getattr(ex, "needs_masks", False)), bool(getattr(ex, "needs_samples", False))
        if not (masks_ or samples_):
            return ex(model, x, target)
        b, n = int(self.x.shape[0]), int(x.shape[0])
        if rows is None:
            if n != b:
                raise ShapeError(f"method {method!r} needs masks: expected rows= for {n} inputs that "
                                 f"are not the batch's {b} rows, got none")
            rows = torch.arange(b)
        rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        if rows.shape[0] != n or (n and (int(rows.min()) < 0 or int(rows.max()) >= b)):
            raise ShapeError(f"method {method!r}: expected rows of length {n} with values in [0, {b}), "
                             f"got {rows.shape[0]} rows")
        kw: dict[str, Any] = {}
        if masks_:
            if self.masks is None:
                raise ConfigError(f"method {method!r} needs evidence masks, but the batch has none")
            kw["masks"] = self.masks[rows.to(self.masks.device)]
        if samples_:
            kw["samples"] = [self.sample_ids[i] for i in rows.tolist()]  # type: ignore[index]
            if self.extra.get("counterfactual") is not None:  # else the explainer's bound renderer
                kw["renderer"] = self.extra["counterfactual"]
        return ex(model, x, target, **kw)

    def subset(self, index: torch.Tensor) -> "EvalBatch":
        """The rows ``index`` of this batch (for chunking)."""
        ix = index.to(self.x.device)
        take = lambda t: None if t is None else t[ix.to(t.device)]  # noqa: E731
        return EvalBatch(self.model, self.x[ix], self.target[ix.to(self.target.device)],
                         {k: v[ix.to(v.device)] for k, v in self.maps.items()},
                         [self.sample_ids[i] for i in index.tolist()], self.explainers,
                         take(self.masks), take(self.region_masks), self.region_names, self.seed,
                         dict(self.extra))


@dataclass
class EvalResult:
    """Per-sample results of one evaluator for one method.

    Attributes:
        scores: ``(B,)`` float64, the number the leaderboard aggregates.
        curves: optional ``(B, T)`` float64 (perturbation curves, per-layer similarities).
        curve_x: optional ``(T,)`` x-axis of ``curves`` (fraction perturbed, layer index).
        extras: named per-sample tensors ``(B, ...)`` (sub-scores, per-region values).
        conventions: the conventions used (ordering unit, baseline, output, AUC rule, ...).
    """

    scores: torch.Tensor
    curves: torch.Tensor | None = None
    curve_x: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    conventions: dict[str, Any] = field(default_factory=dict)
    curve_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.scores = torch.as_tensor(self.scores).detach().to("cpu", torch.float64).reshape(-1)
        if self.curves is not None:
            self.curves = torch.as_tensor(self.curves).detach().to("cpu", torch.float64)
            if self.curves.shape[0] != self.scores.shape[0]:
                raise ShapeError(f"expected curves with {self.scores.shape[0]} rows, got {tuple(self.curves.shape)}")
        if self.curve_x is not None:
            self.curve_x = torch.as_tensor(self.curve_x).detach().to("cpu", torch.float64)
        self.extras = {k: torch.as_tensor(v).detach().cpu() for k, v in self.extras.items()}

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_nan(self) -> int:
        """Number of samples without a score (NaN: degenerate map, non-finite model output...)."""
        return int(torch.isnan(self.scores).sum())

    @classmethod
    def cat(cls, results: Sequence["EvalResult"]) -> "EvalResult":
        """Concatenate per-sample results of several batches (same conventions)."""
        if not results:
            raise ShapeError("cannot concatenate zero results")
        r0 = results[0]
        curves = None if r0.curves is None else torch.cat([r.curves for r in results])  # type: ignore[misc]
        extras = {k: torch.cat([r.extras[k] for r in results]) for k in r0.extras}
        return cls(torch.cat([r.scores for r in results]), curves, r0.curve_x, extras,
                   dict(r0.conventions), r0.curve_labels)


class Evaluator:
    """Base of every batch-scope evaluator. See the module docstring."""

    card: ClassVar[EvaluatorCard]
    #: Whether the score depends on the model's outputs. Evaluators that score the maps alone
    #: (localisation, complexity) set False: they run no forward pass, not even the clean-logit check.
    uses_model: ClassVar[bool] = True
    #: Small settings (overrides of the card's defaults) for the registry-wide contract test and
    #: smoke runs, where the defaults are slow or need a value (``quantus`` needs a metric).
    #: Never used by a benchmark: leaderboards use the card's defaults or the spec's config.
    quick_config: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = merge_config(f"evaluator {self.card.name!r}",
                                                   dict(self.card.default_config), config)
        self._results: dict[str, list[EvalResult]] = {}

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def higher_is_better(self) -> bool:
        return self.card.higher_is_better

    def conventions(self) -> dict[str, Any]:
        """Every convention this evaluator uses (its full config plus fixed choices).
        Subclasses extend this; it is written next to every result."""
        return {"evaluator": self.card.name, **self.config}

    def __repr__(self) -> str:
        diff = {k: v for k, v in self.config.items() if v != self.card.default_config.get(k)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in diff.items())})"

    # -- override points -------------------------------------------------------------------
    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        """Score ``batch.maps[method]`` (and ``batch.explainers[method]`` if needed)."""
        raise NotImplementedError

    def _evaluate_methods(self, batch: EvalBatch) -> dict[str, EvalResult]:
        """Score every method of the batch; override to share method-independent work."""
        return {m: self._evaluate(batch, m) for m in batch.maps}

    # -- validation --------------------------------------------------------------------------
    def validate(self, batch: EvalBatch) -> None:
        """Typed errors before any forward pass (the clean-logit check of :meth:`evaluate` runs
        after this, inside the eval scope)."""
        owner = f"evaluator {self.card.name!r}"
        if isinstance(batch.x, torch.Tensor) and batch.x.is_floating_point() and batch.x.dtype not in CAST_DTYPES:
            raise ShapeError(f"{owner}: expected x as float16/bfloat16/float32/float64, got {batch.x.dtype}")
        check_inputs(batch.model, batch.x, owner=owner)
        b, _, h, w = batch.x.shape
        t = batch.target
        if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.shape[0] != b or t.is_floating_point():
            raise ShapeError(f"{owner}: expected target as int64 tensor of shape ({b},), got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
        k = getattr(batch.model, "num_classes", None)
        if isinstance(k, int) and b and (int(t.min()) < 0 or int(t.max()) >= k):
            raise ShapeError(f"{owner}: expected target indices in [0, {k}), got "
                             f"[{int(t.min())}, {int(t.max())}]")
        if len(batch.sample_ids) != b or len(set(batch.sample_ids)) != b:  # type: ignore[arg-type]
            raise ShapeError(f"{owner}: expected {b} unique sample_ids, got {len(set(batch.sample_ids))}")  # type: ignore[arg-type]
        if not batch.maps:
            raise ShapeError(f"{owner}: expected at least one map, got none")
        for m, a in batch.maps.items():
            if not isinstance(a, torch.Tensor) or tuple(a.shape) != (b, h, w):
                raise ShapeError(f"{owner}: expected maps[{m!r}] of shape {(b, h, w)}, got "
                                 f"{tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__}")
            if not torch.isfinite(a).all():
                raise NonFiniteError(f"{owner}: maps[{m!r}] has NaN/inf values")
        if "explainer" in self.card.needs:
            missing = [m for m in batch.maps if m not in batch.explainers]
            if missing:
                raise ConfigError(f"{owner}: needs an explainer for every method, missing for {missing}")
        if "masks" in self.card.needs:
            if batch.masks is None and batch.region_masks is None:
                raise ShapeError(f"{owner}: needs ground-truth masks, got none")
            if batch.masks is not None and (tuple(batch.masks.shape) != (b, h, w) or batch.masks.dtype != torch.bool):
                raise ShapeError(f"{owner}: expected masks bool {(b, h, w)}, got "
                                 f"{batch.masks.dtype} {tuple(batch.masks.shape)}")

    # -- public API ----------------------------------------------------------------------------
    def evaluate(self, batch: EvalBatch) -> dict[str, EvalResult]:
        """Validate and score every method of ``batch`` -> ``{method: EvalResult}``.

        * ``x`` of another floating dtype (float64, float16, bfloat16) is cast to float32, as
          methods cast it; integer images raise :class:`ShapeError` (see :func:`check_inputs`).
        * A model with any module in training mode (a dropout or batch-norm under an eval-mode
          parent included) is refused with :class:`ModelStateError` naming the module, as by
          methods (never silently switched to eval mode); the model runs inside
          :func:`eval_scope`, which gives every module its own mode back afterwards.
        * The clean batch's logits must be finite: :class:`NonFiniteError` naming the model
          class and the sample ids otherwise (no score is produced from a broken model); skipped
          by evaluators that never run the model (``uses_model = False``).
        """
        self.validate(batch)
        if batch.x.dtype != torch.float32:  # a copy: the caller's batch is not changed
            batch = dataclasses.replace(batch, x=batch.x.to(torch.float32), _shared={})
        with eval_scope(batch.model), torch.no_grad():  # explainers re-enable grad for themselves
            if self.uses_model:
                self.check_clean_logits(batch)
            out = self._evaluate_methods(batch)
        conv = self.conventions()
        for r in out.values():
            r.conventions = {**conv, **r.conventions}
            # never +-inf: an undefined score is NaN (counted by the report), never a number
            r.scores = torch.where(torch.isinf(r.scores), torch.full_like(r.scores, float("nan")), r.scores)
        return out

    def check_clean_logits(self, batch: EvalBatch) -> None:
        """:class:`NonFiniteError` if the clean batch's logits are NaN/inf (computed once per
        batch and shared through :meth:`EvalBatch.clean_logits`)."""
        logits = batch.clean_logits()
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != batch.x.shape[0]:
            raise ShapeError(f"evaluator {self.card.name!r}: expected logits ({batch.x.shape[0]}, K) from "
                             f"{type(batch.model).__name__}, got "
                             f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
        bad = ~torch.isfinite(logits).all(1)
        if bool(bad.any()):
            ids = [batch.sample_ids[i] for i in bad.nonzero().flatten().tolist()]  # type: ignore[index]
            raise NonFiniteError(f"evaluator {self.card.name!r}: expected finite logits from model "
                                 f"{type(batch.model).__name__} on the clean images, got NaN/inf for sample(s) "
                                 f"{ids[:10]}{' ...' if len(ids) > 10 else ''}")

    def extra_keys(self) -> frozenset[str]:
        """Keywords :meth:`__call__` accepts into ``EvalBatch.extra``: :data:`COMMON_EXTRA_KEYS`
        and the inputs named in the card's ``needs`` (e.g. ``fixations``)."""
        return COMMON_EXTRA_KEYS | (self.card.needs - {"explainer", "masks", "dataset"})

    def __call__(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, maps: torch.Tensor, *,
                 explainer: Explainer | None = None, masks: torch.Tensor | None = None,
                 region_masks: torch.Tensor | None = None, region_names: Sequence[str] = (),
                 sample_ids: Sequence[str] | None = None, seed: int = 0, **extra: Any) -> EvalResult:
        """Score one method's ``maps (B, H, W)``.

        ``extra`` keywords go to ``EvalBatch.extra``; only :meth:`extra_keys` are accepted (an
        unknown or mistyped keyword raises :class:`ConfigError` naming it and close matches)."""
        allowed = self.extra_keys()
        unknown = sorted(set(extra) - allowed)
        if unknown:
            known = sorted(allowed | {"explainer", "masks", "region_masks", "region_names", "sample_ids", "seed"})
            close = {k: difflib.get_close_matches(k, known, n=3, cutoff=0.5) for k in unknown}
            raise ConfigError(f"evaluator {self.card.name!r}: unknown keyword(s) {unknown}; expected a subset of "
                              f"{known}; close matches: {close}")
        label = explainer.name if explainer is not None else "maps"  # the name errors show the user
        batch = EvalBatch(model, x, target, {label: maps}, sample_ids,
                          {label: explainer} if explainer is not None else {}, masks, region_masks,
                          tuple(region_names), seed=seed, extra=extra)
        return self.evaluate(batch)[label]

    # -- torchmetrics-style accumulation -----------------------------------------------------------
    def update(self, batch: EvalBatch) -> dict[str, EvalResult]:
        out = self.evaluate(batch)
        for m, r in out.items():
            self._results.setdefault(m, []).append(r)
        return out

    def compute(self) -> dict[str, EvalResult]:
        return {m: EvalResult.cat(rs) for m, rs in self._results.items()}

    def reset(self) -> None:
        self._results = {}


@dataclass
class DatasetJob:
    """Inputs of a dataset-scope (retraining) evaluator.

    Attributes:
        train_data / test_data: datasets of :class:`gmxai_eval.data.Sample`.
        model_factory: ``() -> nn.Module`` a fresh, untrained model.
        train_fn: ``(model, dataset, seed) -> model`` trains from scratch.
        explainers: ``{method: Explainer}``.
        reference_model: the trained model whose maps define the rankings.
        seeds: independent retraining seeds.
        samples: the run's selected samples in run order (evaluators that score the run's own
            images, such as the surrogate evaluators, use them instead of ``test_data``).
    """

    train_data: Any
    test_data: Any
    model_factory: Callable[[], nn.Module]
    train_fn: Callable[[nn.Module, Any, int], nn.Module]
    explainers: Mapping[str, Explainer]
    reference_model: nn.Module
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    samples: Sequence[Any] = ()


class DatasetEvaluator(Evaluator):
    """Base of dataset-scope evaluators (ROAR/KAR): ``run(job, executor) -> {method: EvalResult}``
    where each result's ``scores`` are per retraining seed and ``curves`` per threshold."""

    def run(self, job: DatasetJob, executor: Executor) -> dict[str, EvalResult]:
        raise NotImplementedError

    def _evaluate(self, batch: EvalBatch, method: str) -> EvalResult:
        raise ModelStateError(f"evaluator {self.card.name!r} is dataset-scope: call run(job, executor)")


def register_evaluator(cls: type[Evaluator]) -> type[Evaluator]:
    """Decorator: register an :class:`Evaluator` subclass under ``cls.card.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Evaluator)):
        raise TypeError(f"expected an Evaluator subclass, got {cls!r}")
    if not isinstance(getattr(cls, "card", None), EvaluatorCard):
        raise TypeError(f"expected {cls.__name__}.card to be an EvaluatorCard")
    degenerate = cls.card.degenerate
    if degenerate is not None:
        if not isinstance(degenerate, Degenerate):
            raise ConfigError(f"expected {cls.__name__}.card.degenerate to be a Degenerate, got {degenerate!r}")
        if degenerate.problem():
            raise ConfigError(f"{cls.__name__}.card: {degenerate.problem()}")
    return EVALUATORS.register(cls)


def create_evaluator(name: str, **config: Any) -> Evaluator:
    return EVALUATORS.create(name, **config)


def list_evaluators(pattern: str = "*") -> list[str]:
    return EVALUATORS.list(pattern)


def evaluator_card(name: str) -> EvaluatorCard:
    return EVALUATORS.card(name)
