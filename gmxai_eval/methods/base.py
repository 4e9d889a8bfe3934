"""The :class:`Explainer` base: one interface for every attribution method.

Contract::

    maps = explainer(model, x, target)

* ``model``: ``nn.Module`` in eval mode, ``(B, C, H, W) -> (B, K)`` (a :class:`GMXModel`
  takes pixel-space input in ``[0, 1]``).
* ``x``: ``(B, C, H, W)`` float.
* ``target``: ``(B,)`` int64 class indices, or a callable ``output (b, K) -> (b,)`` scalar per
  sample (logit, probability, cosine similarity ...). A callable target with a
  ``select(index: LongTensor) -> callable`` method is narrowed to each chunk (for per-sample
  references); otherwise the same callable is applied to every chunk.
* ``maps``: ``(B, H, W)`` float32 at input resolution, **signed and unnormalised**.

A method implements only :meth:`Explainer._attribute`, which may return ``(b, C, H, W)``
(reduced over channels by the ``reduce`` option) or ``(b, H, W)``. The base owns validation,
device placement, chunking (a memory bound), restoring ``training`` / ``requires_grad`` flags.
Hooks must be registered inside :func:`gmxai_eval.utils.hooks` so none survives an error.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Literal, Union

import torch
from torch import nn

from gmxai_eval.errors import ConfigError, NonFiniteError, ShapeError
from gmxai_eval.models.base import require_eval_mode
from gmxai_eval.registry import Registry
from gmxai_eval.types import MethodCard
from gmxai_eval.utils import merge_config, preserved_model_state

#: Attribution methods: ``METHODS.create(name, **config) -> Explainer``.
METHODS: Registry = Registry("method", entry_point_group="gmxai_eval.methods")

Target = Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]
Reduce = Literal["sum", "sum_abs", "max_abs", "mean"]
#: The one set of channel reductions (``Reduce`` and :func:`reduce_channels` agree on it).
REDUCTIONS: tuple[str, ...] = ("sum", "sum_abs", "max_abs", "mean")

#: Options every explainer accepts, on top of its card's ``default_config``.
BASE_CONFIG: dict[str, Any] = {
    "reduce": "sum",        # channel reduction of (b, C, H, W) maps: one of REDUCTIONS
    "chunk_size": None,     # max images per _attribute call (memory bound); None = whole batch
    "seed": 0,              # for stochastic methods (SmoothGrad, random control, ...)
}


def reduce_channels(a: torch.Tensor, how: str) -> torch.Tensor:
    """``(b, C, H, W) -> (b, H, W)``.

    ``sum`` keeps the sign (the attribution of a pixel is the sum over its channels);
    ``sum_abs`` sums magnitudes; ``max_abs`` is Simonyan et al.'s max over channels of
    ``|a|``; ``mean`` averages signed values.
    """
    if a.ndim == 3:
        return a
    if a.ndim != 4:
        raise ShapeError(f"expected attributions (b, C, H, W) or (b, H, W), got {tuple(a.shape)}")
    if how == "sum":
        return a.sum(1)
    if how == "sum_abs":
        return a.abs().sum(1)
    if how == "max_abs":
        return a.abs().amax(1)
    if how == "mean":
        return a.mean(1)
    raise ConfigError(f"expected reduce in {REDUCTIONS}, got {how!r}")


def as_target_fn(target: Target, batch_size: int, num_outputs: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Validate ``target`` and return ``fn(output (B, K)) -> (B,)`` for the whole batch."""
    if callable(target) and not isinstance(target, torch.Tensor):
        return target
    if not isinstance(target, torch.Tensor):
        raise ShapeError(f"expected target as a (B,) int64 tensor or a callable, got {type(target).__name__}")
    if target.ndim != 1 or target.shape[0] != batch_size:
        raise ShapeError(f"expected target of shape ({batch_size},), got {tuple(target.shape)}")
    if target.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16):
        raise ShapeError(f"expected integer class indices as target, got dtype {target.dtype}")
    if num_outputs is not None and len(target) and (int(target.min()) < 0 or int(target.max()) >= num_outputs):
        raise ShapeError(f"expected target indices in [0, {num_outputs}), got range "
                         f"[{int(target.min())}, {int(target.max())}]")
    idx = target.long()
    return lambda out: out.gather(1, idx.to(out.device).view(-1, 1)).squeeze(1)


def _select_target(target: Target, index: torch.Tensor) -> Target:
    if isinstance(target, torch.Tensor):
        return target[index.to(target.device)]
    select = getattr(target, "select", None)
    return select(index) if callable(select) else target


def check_inputs(model: nn.Module, x: torch.Tensor, owner: str = "explainer") -> None:
    """Shared validation: 4-D float finite ``x``, every module of the model in eval mode (a
    dropout or batch-norm left in training mode under an eval-mode parent is refused with a
    :class:`~gmxai_eval.errors.ModelStateError` naming it: its maps would change from call to call)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ShapeError(f"{owner}: expected x of shape (B, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not x.is_floating_point():
        raise ShapeError(f"{owner}: expected floating-point x, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise NonFiniteError(f"{owner}: expected finite x, got NaN/inf values")
    require_eval_mode(model, owner=owner)


class Explainer:
    """Base class of every attribution method. Subclasses set ``card`` and implement
    :meth:`_attribute`. Configuration is keyword-only; unknown keywords raise
    :class:`ConfigError`. ``self.config`` is the merged configuration (read-only by convention).
    """

    card: ClassVar[MethodCard]

    def __init__(self, **config: Any) -> None:
        defaults = {**BASE_CONFIG, **self.card.default_config}
        self.config: dict[str, Any] = merge_config(f"method {self.card.name!r}", defaults, config)
        if self.config["chunk_size"] is not None and int(self.config["chunk_size"]) < 1:
            raise ConfigError(f"expected chunk_size >= 1 or None, got {self.config['chunk_size']!r}")

    @property
    def name(self) -> str:
        return self.card.name

    def __repr__(self) -> str:
        diff = {k: v for k, v in self.config.items()
                if k in self.card.default_config and v != self.card.default_config[k]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in diff.items())})"

    # -- the one override point -----------------------------------------------------------
    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        """Return ``(b, C, H, W)`` or ``(b, H, W)`` attributions for one chunk.

        ``target`` is the chunk's ``(b,)`` index tensor or its callable; use
        :func:`as_target_fn` to get ``output -> (b,)`` either way."""
        raise NotImplementedError

    # -- the public call --------------------------------------------------------------------
    def __call__(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        check_inputs(model, x, owner=f"method {self.card.name!r}")
        b = x.shape[0]
        if isinstance(target, torch.Tensor):
            as_target_fn(target, b)  # validate shape/dtype before any forward pass
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = x.device
        x = x.detach().to(device=device, dtype=torch.float32)
        chunk = int(self.config["chunk_size"] or b) or 1
        outs = []
        with preserved_model_state(model), torch.enable_grad():
            for start in range(0, b, chunk):
                index = torch.arange(start, min(start + chunk, b))
                xc = x[start:start + chunk]
                tc = _select_target(target, index)
                a = self._attribute(model, xc, tc)
                a = reduce_channels(a.detach(), self.config["reduce"]).float()
                if a.shape != (xc.shape[0], *x.shape[-2:]):
                    raise ShapeError(f"method {self.card.name!r} produced maps of shape {tuple(a.shape)}, "
                                     f"expected {(xc.shape[0], *x.shape[-2:])}")
                outs.append(a)
        maps = torch.cat(outs)
        if not torch.isfinite(maps).all():
            raise NonFiniteError(f"method {self.card.name!r} produced NaN/inf values")
        return maps


def register_method(cls: type[Explainer]) -> type[Explainer]:
    """Decorator: register a user :class:`Explainer` subclass (its ``card.name`` is the key)."""
    if not (isinstance(cls, type) and issubclass(cls, Explainer)):
        raise TypeError(f"expected an Explainer subclass, got {cls!r}")
    if not isinstance(getattr(cls, "card", None), MethodCard):
        raise TypeError(f"expected {cls.__name__}.card to be a MethodCard")
    return METHODS.register(cls)


def create_method(name: str, **config: Any) -> Explainer:
    """``METHODS.create(name, **config)``."""
    return METHODS.create(name, **config)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching ``pattern`` (shell wildcard)."""
    return METHODS.list(pattern)


def method_card(name: str) -> MethodCard:
    return METHODS.card(name)
