"""The counterfactual truth as a method: ``counterfactual_oracle``.

The ``oracle`` control is the evidence mask: uniform inside it, so it says *where* the planted
evidence is but not *how much* the model uses each part of it. ``counterfactual_oracle`` is the
interventional truth of :mod:`gmxai_eval.functional.counterfactual` drawn as a map: for each
image and the explained class, every planted trait's pixels carry the drop in the class score
when that trait alone is re-rendered away in distribution (:func:`interventional_importance`),
spread evenly over the trait's pixels (:func:`importance_map`), so a trait's mass is its
importance. The map depends on the model and the target (a randomised model or another class
gets its own truth), never on the pixels of ``x``: the renders come from the sample id.

It needs, per row of ``x``, the sample id and the dataset's counterfactual renderer (an object
with ``cache_key``, ``traits(id)``, ``trait_masks(id) -> (T, H, W) bool`` and
``render(ids, off) -> (B, C, H, W)``, e.g. :class:`gmxai_eval.data.synth.CounterfactualRenderer`)::

    truth = create_method("counterfactual_oracle")
    maps = truth(model, x, target, samples=ids, renderer=renderer)     # ids: B sample ids
    bound = truth.with_samples(ids, renderer); maps = bound(model, x, target)

``CounterfactualOracle.needs_samples`` is True: runners bind the batch's sample ids and the
renderer (:func:`gmxai_eval.runner.context.bind_masks`), and evaluators that re-explain pass the
ids of the rows they explain (:meth:`gmxai_eval.evaluators.base.EvalBatch.explain`). Calling it
without them raises :class:`ConfigError`. Its card is a reference (``reference =
"counterfactual"``): the leaderboard shows it as a reference row, like the ``oracle``. It is
not a ``control`` in the card's sense (controls never look at the model or the target; this
map is computed from both, by in-distribution perturbation: family ``"perturbation"``).

Renders (not scores: those depend on the model) are memoised per bound copy, keyed by
``(cache_key, sample id, traits off)``, so the evaluators that re-explain one batch render each
image's ``1 + T`` counterfactuals once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.functional.counterfactual import (OUTPUTS, check_renderer, class_score, importance_map,
                                                  interventional_importance)
from gmxai_eval.methods.base import Explainer, Target, _select_target, as_target_fn, register_method
from gmxai_eval.types import MethodCard

#: what a renderer must have
#: renders kept per bound copy (a batch of 64 images with 4 traits needs 320)
MEMO_SIZE = 1024


class _SampleTarget:
    """Internal carrier: the user's target plus the rows' sample ids and the renderer, narrowed
    together per chunk."""

    def __init__(self, target: Target, samples: Sequence[str], renderer: Any, memo: dict) -> None:
        self.target, self.samples, self.renderer, self.memo = target, list(samples), renderer, memo

    def __call__(self, out: torch.Tensor) -> torch.Tensor:  # never used as a score
        raise ConfigError("the counterfactual oracle's internal target is not a score")

    def select(self, index: torch.Tensor) -> "_SampleTarget":
        return _SampleTarget(_select_target(self.target, index), [self.samples[i] for i in index.tolist()],
                             self.renderer, self.memo)




@register_method
class CounterfactualOracle(Explainer):
    """The interventional importance of the planted traits as a map (see the module docstring).

    Config: ``output`` (``"probability"``: softmax of the logits, the counterfactual
    evaluators' default; ``"logit"``), ``max_batch`` (renders per forward pass). A callable
    target (similarity to a reference embedding) is applied to the raw model output."""

    card = MethodCard(
        name="counterfactual_oracle", family="perturbation", signed=True, reference="counterfactual",
        paper="Hesse, Schaub-Meyer & Roth, FunnyBirds, ICCV 2023 (interventional part importance)",
        default_config={"output": "probability", "max_batch": 32},
        description="each planted trait's mask weighted by the drop in the class score when that trait "
                    "alone is re-rendered away; needs samples= and renderer=")

    #: Runners bind the sample ids of the rows and the dataset's counterfactual renderer.
    needs_samples = True

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config["output"] not in OUTPUTS:
            raise ConfigError(f"method 'counterfactual_oracle': expected output in {OUTPUTS}, got "
                              f"{self.config['output']!r}")
        mb = self.config["max_batch"]
        if not isinstance(mb, int) or isinstance(mb, bool) or mb < 1:
            raise ConfigError(f"method 'counterfactual_oracle': expected max_batch as a positive int, got {mb!r}")
        self._samples: list[str] | None = None
        self._renderer: Any = None
        self._memo: dict = {}

    def with_samples(self, samples: Sequence[str], renderer: Any) -> "CounterfactualOracle":
        """A copy bound to the sample ids of ``x``'s rows and ``renderer`` (with its own memo of
        renders); its calls need no ``samples=`` / ``renderer=``."""
        bound = copy.copy(self)
        bound._samples = [str(s) for s in samples]
        bound._renderer = check_renderer(renderer, "method 'counterfactual_oracle'")
        bound._memo = {}
        return bound

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Target, *,  # type: ignore[override]
                 samples: Sequence[str] | None = None, renderer: Any = None) -> torch.Tensor:
        samples = list(samples) if samples is not None else self._samples
        renderer = renderer if renderer is not None else self._renderer
        owner = "method 'counterfactual_oracle'"
        if samples is None:
            raise ConfigError(f"{owner}: expected the sample ids of x's rows via samples= or with_samples(), got none")
        check_renderer(renderer, owner)
        n = x.shape[0] if isinstance(x, torch.Tensor) and x.ndim >= 1 else None
        if len(samples) != n:
            raise ShapeError(f"{owner}: expected one sample id per row of x ({n}), got {len(samples)}")
        if isinstance(target, torch.Tensor):
            as_target_fn(target, x.shape[0])  # same validation as every other method
        memo = self._memo if renderer is self._renderer else {}
        return super().__call__(model, x, _SampleTarget(target, samples, renderer, memo))

    def _render(self, r: Any, memo: dict, keys: list[tuple[str, tuple[str, ...]]],
                like: torch.Tensor) -> torch.Tensor:
        todo = [k for k in dict.fromkeys(keys) if (r.cache_key, *k) not in memo]
        if todo:
            x = torch.as_tensor(r.render([k[0] for k in todo], [k[1] for k in todo]))
            if tuple(x.shape) != (len(todo), *like.shape[1:]):
                raise ShapeError(f"method 'counterfactual_oracle': expected renders of shape "
                                 f"{(len(todo), *like.shape[1:])}, got {tuple(x.shape)}")
            for k, xi in zip(todo, x.to("cpu", torch.float32)):
                memo[(r.cache_key, *k)] = xi
            while len(memo) > MEMO_SIZE:
                memo.pop(next(iter(memo)))
        return torch.stack([memo[(r.cache_key, *k)] for k in keys]).to(like.device, like.dtype)

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        if not isinstance(target, _SampleTarget):
            raise ConfigError("method 'counterfactual_oracle': expected sample ids, got a plain target")
        r, ids, inner = target.renderer, target.samples, target.target
        names = [tuple(r.traits(s)) for s in ids]
        h, w = x.shape[-2:]
        t = max([len(n) for n in names] + [1])
        masks = torch.zeros((len(ids), t, h, w), dtype=torch.bool)
        valid = torch.zeros((len(ids), t), dtype=torch.bool)
        for i, (sid, nm) in enumerate(zip(ids, names)):
            m = torch.as_tensor(r.trait_masks(sid))
            if m.dtype != torch.bool or tuple(m.shape) != (len(nm), h, w):
                raise ShapeError(f"method 'counterfactual_oracle': expected trait_masks({sid!r}) bool of shape "
                                 f"{(len(nm), h, w)}, got {m.dtype} {tuple(m.shape)}")
            masks[i, :len(nm)], valid[i, :len(nm)] = m, True
        score_of = as_target_fn(inner, len(ids)) if isinstance(inner, torch.Tensor) else inner
        step, output = int(self.config["max_batch"]), self.config["output"]

        def subset_score(rows: Sequence[int], off: Sequence[frozenset]) -> torch.Tensor:
            keys = [(ids[i], tuple(sorted(names[i][j] for j in o))) for i, o in zip(rows, off)]
            out = []
            for a in range(0, len(keys), step):
                xr = self._render(r, target.memo, keys[a:a + step], x)
                with torch.no_grad():
                    z = model(xr)
                rows_t = torch.as_tensor(list(rows[a:a + step]), dtype=torch.long)
                if isinstance(inner, torch.Tensor):
                    out.append(class_score(z, inner.to(z.device)[rows_t.to(z.device)], output).cpu())
                else:  # a callable target of the whole chunk: score every render against its row
                    out.append(_callable_rows(score_of, z, rows_t, len(ids)))
            return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

        imp = interventional_importance(subset_score, valid)
        return importance_map(masks, valid, imp).to(x.device)


def _callable_rows(score: Any, z: torch.Tensor, rows: torch.Tensor, b: int) -> torch.Tensor:
    """Scores of outputs ``z (n, ...)`` whose row ``k`` belongs to batch row ``rows[k]``, for a
    callable target defined on ``b`` rows (e.g. a reference embedding per row): each output is
    placed in a ``b``-row block at its own row and scored there."""
    out = torch.empty(len(rows), dtype=torch.float64)
    for k, i in enumerate(rows.tolist()):
        block = z[k:k + 1].expand(b, *z.shape[1:])
        out[k] = score(block)[i].to(torch.float64)
    return out
