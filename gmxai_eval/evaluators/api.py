"""One call from model, images and maps (or methods) to scores, in the style Quantus users know.

::

    from gmxai_eval.evaluators.api import evaluate

    scores = evaluate(model, x, y, maps={"mine": my_maps},           # or methods=[...]
                      evaluators=["deletion", "insertion", "sparseness"])
    scores.to_frame()      # long DataFrame: evaluator, method, sample_id, score
    scores.summary()       # mean per evaluator (rows) and method (columns)

Inputs follow the suite's batch-first contract, converted where the conversion is unambiguous:

* ``x``: ``(B, C, H, W)`` tensor or NumPy array in pixel space ``[0, 1]``; other float dtypes are
  cast to float32, ``uint8`` is divided by 255; anything else raises :class:`ShapeError`.
* ``y``: ``(B,)`` class indices (tensor, array or list) — the explained class.
* ``maps``: ``{label: maps}`` (or one array, labelled ``"maps"``) of shape ``(B, C, H, W)``,
  ``(B, 1, H, W)`` or ``(B, H, W)``, channels reduced by ``reduce`` (default ``"sum"``).
* ``methods``: registered names, :class:`Explainer` instances, or ``{label: name | Explainer |
  explain_func}`` (a plain callable is wrapped with
  :func:`gmxai_eval.methods.interop.from_explain_func`). Methods give maps and, for evaluators
  that re-explain (randomisation, robustness), the explainer.
* ``evaluators``: registered names, :class:`Evaluator` instances, or ``{label: name | Evaluator}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.evaluators.base import EVALUATORS, EvalBatch, EvalResult, Evaluator
from gmxai_eval.methods.base import METHODS, Explainer
from gmxai_eval.methods.interop import as_maps, from_explain_func


@dataclass
class Scores:
    """Per-sample results of :func:`evaluate`.

    Attributes:
        results: ``{(evaluator label, method label): EvalResult}``.
        sample_ids: the ``B`` sample ids, in input order.
        higher_is_better: ``{evaluator label: bool}`` from the cards.
    """

    results: dict[tuple[str, str], EvalResult]
    sample_ids: list[str]
    higher_is_better: dict[str, bool] = field(default_factory=dict)

    def to_frame(self) -> Any:
        """Long ``pandas.DataFrame``: ``evaluator, method, sample_id, score, higher_is_better``."""
        import pandas as pd

        rows = [{"evaluator": e, "method": m, "sample_id": sid, "score": float(s),
                 "higher_is_better": self.higher_is_better.get(e)}
                for (e, m), r in self.results.items() for sid, s in zip(self.sample_ids, r.scores.tolist())]
        return pd.DataFrame(rows, columns=["evaluator", "method", "sample_id", "score", "higher_is_better"])

    def summary(self) -> Any:
        """Mean score per evaluator (rows) and method (columns); NaN scores are left out."""
        df = self.to_frame()
        return df.pivot_table(index="evaluator", columns="method", values="score", aggfunc="mean", sort=False)


def as_images(x: Any) -> torch.Tensor:
    """``(B, C, H, W)`` float32 in [0, 1] from a tensor or NumPy array (see the module docstring)."""
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.floating) or x.dtype == np.uint8):
            raise ShapeError(f"x: expected float or uint8 images, got dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"x: expected a (B, C, H, W) tensor or NumPy array, got {type(x).__name__}")
    if x.ndim != 4:
        raise ShapeError(f"x: expected shape (B, C, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise ShapeError(f"x: expected float or uint8 images, got dtype {x.dtype}")
    return x.detach().float()


def as_targets(y: Any, batch_size: int) -> torch.Tensor:
    """``(B,)`` int64 class indices from a tensor, array or sequence of integers."""
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ShapeError(f"y: expected integer class indices, got dtype {t.dtype}")
    if t.ndim != 1 or t.shape[0] != batch_size:
        raise ShapeError(f"y: expected shape ({batch_size},), got {tuple(t.shape)}")
    return t.long()


def _methods(methods: Any) -> dict[str, Explainer]:
    if methods is None:
        return {}
    if isinstance(methods, (str, Explainer)):
        methods = [methods]
    items: Sequence[tuple[str, Any]]
    if isinstance(methods, Mapping):
        items = list(methods.items())
    else:
        items = [(m if isinstance(m, str) else m.name, m) for m in methods]
    out: dict[str, Explainer] = {}
    for label, m in items:
        if isinstance(m, str):
            m = METHODS.create(m)
        elif not isinstance(m, Explainer):
            if not callable(m):
                raise ConfigError(f"methods[{label!r}]: expected a method name, an Explainer or an "
                                  f"explain_func, got {type(m).__name__}")
            m = from_explain_func(m, name=str(label))
        out[str(label)] = m
    return out


def _evaluators(evaluators: Any) -> dict[str, Evaluator]:
    if isinstance(evaluators, (str, Evaluator)):
        evaluators = [evaluators]
    if isinstance(evaluators, Mapping):
        items = list(evaluators.items())
    else:
        items = [(e if isinstance(e, str) else e.name, e) for e in evaluators]
    if not items:
        raise ConfigError("evaluators: expected at least one evaluator, got none")
    out: dict[str, Evaluator] = {}
    for label, e in items:
        ev = EVALUATORS.create(e) if isinstance(e, str) else e
        if not isinstance(ev, Evaluator):
            raise ConfigError(f"evaluators[{label!r}]: expected an evaluator name or instance, got "
                              f"{type(e).__name__}")
        if EVALUATORS.card(ev.name).scope != "batch":
            raise ConfigError(f"evaluators[{label!r}]: expected a batch-scope evaluator, got the "
                              f"dataset-scope {ev.name!r} (run it from a spec)")
        out[str(label)] = ev
    return out


def evaluate(model: nn.Module, x: Any, y: Any, *, maps: Any = None, methods: Any = None,
             evaluators: Any = ("deletion",), masks: Any = None, sample_ids: Sequence[str] | None = None,
             seed: int = 0, reduce: str = "sum", batch_size: int | None = None,
             extra: Mapping[str, Any] | None = None) -> Scores:
    """Score maps (given, or computed by ``methods``) with ``evaluators`` on ``(x, y)``.

    Args:
        model: eval-mode ``nn.Module``, pixel-space ``(B, C, H, W) -> (B, K)``.
        x, y: images and explained classes (see the module docstring for accepted forms).
        maps: precomputed maps ``{label: (B, [C,] H, W)}`` or one array.
        methods: methods to compute maps with (see the module docstring); a label given in both
            ``maps`` and ``methods`` uses the given maps and the method as its explainer.
        evaluators: which evaluators (default: deletion).
        masks: ``(B, H, W)`` ground-truth masks for localisation evaluators (bool after ``!= 0``).
        sample_ids: ``B`` unique ids keying per-sample randomness (default ``"0".."B-1"``).
        seed: the run seed of stochastic evaluators.
        reduce: channel reduction of user maps.
        batch_size: images per evaluator call (default: all); scores do not depend on it.
        extra: ``EvalBatch.extra`` entries (e.g. fixations for gaze evaluators).

    Returns:
        :class:`Scores` with one :class:`EvalResult` per (evaluator, method).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    xs = as_images(x)
    b = int(xs.shape[0])
    ts = as_targets(y, b)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = xs.device
    xs, ts = xs.to(device), ts.to(device)
    ids = [str(i) for i in range(b)] if sample_ids is None else [str(s) for s in sample_ids]
    if len(ids) != b or len(set(ids)) != b:
        raise ShapeError(f"sample_ids: expected {b} unique ids, got {len(set(ids))} unique of {len(ids)}")
    given = maps if isinstance(maps, Mapping) else ({} if maps is None else {"maps": maps})
    all_maps = {str(k): as_maps(v, b, tuple(xs.shape[-2:]), reduce=reduce, owner=f"maps[{k!r}]").to(device)
                for k, v in given.items()}
    explainers = _methods(methods)
    for label, ex in explainers.items():
        if label not in all_maps:
            all_maps[label] = ex(model, xs, ts)
    if not all_maps:
        raise ConfigError("expected maps= or methods=, got neither")
    m = None
    if masks is not None:
        m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks)
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if tuple(m.shape) != (b, *xs.shape[-2:]):
            raise ShapeError(f"masks: expected shape {(b, *xs.shape[-2:])}, got {tuple(m.shape)}")
        m = (m != 0).to(device)
    evs = _evaluators(evaluators)
    step = int(batch_size or b)
    if step < 1:
        raise ConfigError(f"batch_size: expected >= 1, got {batch_size}")
    results: dict[tuple[str, str], EvalResult] = {}
    for elab, ev in evs.items():
        parts: dict[str, list[EvalResult]] = {}
        for s in range(0, b, step):
            sl = slice(s, min(s + step, b))
            batch = EvalBatch(model, xs[sl], ts[sl], {k: v[sl] for k, v in all_maps.items()}, ids[sl],
                              explainers, None if m is None else m[sl], seed=seed, extra=dict(extra or {}))
            for mlab, r in ev.evaluate(batch).items():
                parts.setdefault(mlab, []).append(r)
        for mlab, rs in parts.items():
            results[(elab, mlab)] = EvalResult.cat(rs)
    hib = {elab: bool(ev.higher_is_better) for elab, ev in evs.items()}
    return Scores(results, ids, hib)
