"""Methods from what users already have: a Quantus-style ``explain_func`` or a Captum attribution.

::

    from gmxai_eval.methods.interop import from_captum, from_explain_func, as_maps

    ig = from_captum(captum.attr.IntegratedGradients, attribute_kwargs={"n_steps": 32})
    gc = from_captum(captum.attr.LayerGradCam, layer="backbone.base.6")     # or a module object
    mine = from_explain_func(my_explain, name="mine", numpy=True)           # Quantus convention
    maps = ig(model, x, target)                                             # (B, H, W) float32

Every wrapper is an ordinary :class:`~gmxai_eval.methods.base.Explainer` (validation, eval-mode
check, chunking, channel reduction, model state restored), so it goes anywhere a registered
method goes: the one-call :func:`gmxai_eval.evaluators.api.evaluate`, ``EvalBatch.explainers``,
or a spec once registered (``register=True`` puts a factory under ``name`` in ``METHODS``).
Nothing assumes gradients: ``explain_func`` may be gradient-free; Captum classes get exactly the
calls Captum documents (``Cls(forward_func)`` or ``Cls(forward_func, layer)``, then
``attribute(inputs, target=..., **attribute_kwargs)``).

Maps may come back as ``(B, C, H, W)``, ``(B, 1, H, W)`` or ``(B, H, W)`` tensors or NumPy
arrays, any real dtype (cast to float32); channels are reduced by ``reduce`` (default ``"sum"``:
the attribution of a pixel is the sum over its channels, Captum's and Quantus' usual
convention), layer-resolution maps (CAMs) are upsampled bilinearly to the input size.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from gmxai_eval.errors import ConfigError, NonFiniteError, ShapeError
from gmxai_eval.methods._common import captum_call, captum_forward, upsample
from gmxai_eval.methods.base import METHODS, Explainer, Target, reduce_channels
from gmxai_eval.types import MethodCard
from gmxai_eval.utils import module_by_name

_REDUCE = ("sum", "sum_abs", "max_abs", "mean")


def as_maps(maps: Any, batch_size: int, size: tuple[int, int], *, reduce: str = "sum",
            owner: str = "maps", upsample_small: bool = False) -> torch.Tensor:
    """User maps -> ``(B, H, W)`` float32 (CPU tensors stay on their device).

    Accepts a tensor or NumPy array of shape ``(B, C, H, W)``, ``(B, 1, H, W)`` or ``(B, H, W)``
    of any real or bool dtype. ``reduce`` (sum | sum_abs | max_abs | mean) reduces channels;
    ``upsample_small=True`` resizes smaller maps bilinearly to ``size`` (layer attributions).

    Raises:
        ShapeError: not an array, complex, wrong batch size or spatial size.
        NonFiniteError: NaN or inf values.
    """
    if reduce not in _REDUCE:
        raise ConfigError(f"{owner}: expected reduce in {'|'.join(_REDUCE)}, got {reduce!r}")
    if isinstance(maps, np.ndarray):
        if maps.dtype == object or not (np.issubdtype(maps.dtype, np.number) or maps.dtype == bool):
            raise ShapeError(f"{owner}: expected a numeric array, got dtype {maps.dtype}")
        maps = torch.from_numpy(np.ascontiguousarray(maps))
    if not isinstance(maps, torch.Tensor):
        raise ShapeError(f"{owner}: expected a tensor or NumPy array of maps, got {type(maps).__name__}")
    if maps.is_complex():
        raise ShapeError(f"{owner}: expected real-valued maps, got dtype {maps.dtype}")
    a = maps.detach().to(torch.float32)
    if a.ndim not in (3, 4) or a.shape[0] != batch_size:
        raise ShapeError(f"{owner}: expected maps of shape ({batch_size}, [C,] H, W), got {tuple(maps.shape)}")
    if a.ndim == 4:
        a = reduce_channels(a, reduce)
    if tuple(a.shape[-2:]) != tuple(size):
        if not upsample_small:
            raise ShapeError(f"{owner}: expected maps at the input size {tuple(size)}, got {tuple(a.shape[-2:])}")
        a = upsample(a, tuple(size))
    if not torch.isfinite(a).all():
        raise NonFiniteError(f"{owner}: expected finite maps, got NaN/inf values")
    return a


class _Wrapped(Explainer):
    """Shared plumbing of the wrappers: an instance-level card and the map conversion."""

    card: MethodCard  # set per instance (the wrapped callable defines what the method is)

    def __init__(self, card: MethodCard, **config: Any) -> None:
        self.card = card
        super().__init__(**config)

    def _maps(self, out: Any, x: torch.Tensor, upsample_small: bool) -> torch.Tensor:
        if isinstance(out, (tuple, list)) and len(out) == 1:
            out = out[0]
        a = as_maps(out, x.shape[0], tuple(x.shape[-2:]), reduce=self.config["reduce"],
                    owner=f"method {self.card.name!r}", upsample_small=upsample_small)
        return a.to(x.device)


class FunctionExplainer(_Wrapped):
    """A Quantus-style ``explain_func(model, inputs, targets, **kwargs)`` as an :class:`Explainer`.

    ``numpy=True`` calls it the way Quantus does (``inputs`` ``(B, C, H, W)`` and ``targets``
    ``(B,)`` as NumPy arrays); otherwise it gets torch tensors on the model's device. Targets
    must be class indices (a callable target has no NumPy form and raises).
    """

    def __init__(self, fn: Callable[..., Any], card: MethodCard, *, numpy: bool = False,
                 kwargs: Mapping[str, Any] | None = None, **config: Any) -> None:
        if not callable(fn):
            raise ConfigError(f"expected a callable explain_func(model, inputs, targets, **kwargs), got "
                              f"{type(fn).__name__}")
        self.fn, self.numpy, self.kwargs = fn, bool(numpy), dict(kwargs or {})
        super().__init__(card, **config)

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        if not isinstance(target, torch.Tensor):
            raise ConfigError(f"method {self.card.name!r}: expected class-index targets for an "
                              f"explain_func, got a callable target")
        if self.numpy:
            out = self.fn(model, x.detach().cpu().numpy(), target.detach().cpu().numpy(), **self.kwargs)
        else:
            out = self.fn(model, x, target.to(x.device), **self.kwargs)
        return self._maps(out, x, upsample_small=False)


class CaptumExplainer(_Wrapped):
    """A Captum attribution class (or a ready instance) as an :class:`Explainer`.

    ``attribution``: a class such as ``captum.attr.Saliency`` / ``LayerGradCam`` (constructed per
    call on the model, with ``layer`` for layer methods: a dotted name or the module object), or
    an instance already built on this model. ``attribute_kwargs`` go to ``attribute`` (e.g.
    ``n_steps``, ``baselines``, ``sliding_window_shapes``). Layer attributions are upsampled
    bilinearly to the input size (``relu=True`` clips them at zero first, as Grad-CAM does).
    """

    def __init__(self, attribution: Any, card: MethodCard, *, layer: str | nn.Module | None = None,
                 attribute_kwargs: Mapping[str, Any] | None = None, relu: bool = False,
                 **config: Any) -> None:
        cls = attribution if inspect.isclass(attribution) else type(attribution)
        if not callable(getattr(cls, "attribute", None)):
            raise ConfigError(f"expected a Captum attribution class or instance (with .attribute), got "
                              f"{getattr(cls, '__name__', cls)!r}")
        self.attribution, self.layer = attribution, layer
        self.attribute_kwargs, self.relu = dict(attribute_kwargs or {}), bool(relu)
        self.is_layer = "layer" in inspect.signature(cls.__init__).parameters
        if self.is_layer and inspect.isclass(attribution) and layer is None:
            raise ConfigError(f"method {card.name!r}: {cls.__name__} is a layer attribution; expected "
                              f"layer= (a dotted module name or the module), got None")
        super().__init__(card, **config)

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        fwd, t = captum_forward(model, target, x.shape[0])
        if inspect.isclass(self.attribution):
            if self.is_layer:
                layer = (self.layer if isinstance(self.layer, nn.Module)
                         else module_by_name(model, str(self.layer)))
                attr = self.attribution(fwd, layer)
            else:
                attr = self.attribution(fwd)
        else:
            attr = self.attribution
            if not isinstance(target, torch.Tensor):
                raise ConfigError(f"method {self.card.name!r}: a ready Captum instance is bound to its own "
                                  f"forward function; expected class-index targets, got a callable")
        out = captum_call(attr.attribute, x, target=t, **self.attribute_kwargs)
        if self.relu:
            out = out.clamp_min(0)
        return self._maps(out, x, upsample_small=self.is_layer)


def _card(name: str, signed: bool, description: str, paper: str) -> MethodCard:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"expected a non-empty method name, got {name!r}")
    return MethodCard(name=name, family="user", signed=signed, paper=paper, description=description)


def _register(name: str, card: MethodCard, factory: Callable[..., Explainer]) -> None:
    METHODS.register(factory, name=name, card=card)


def from_explain_func(fn: Callable[..., Any], *, name: str | None = None, signed: bool = True,
                      numpy: bool = False, kwargs: Mapping[str, Any] | None = None,
                      register: bool = False, **config: Any) -> FunctionExplainer:
    """Wrap ``explain_func(model, inputs, targets, **kwargs) -> maps`` as a method.

    Args:
        fn: the explanation function (Quantus convention when ``numpy=True``).
        name: method label (default: the function's ``__name__``).
        signed: whether its maps carry a meaningful sign (recorded on the card).
        kwargs: fixed keyword arguments passed on every call.
        register: also register a factory under ``name`` (``METHODS.create(name)``, specs).
        **config: base options (``reduce``, ``chunk_size``, ``seed``).
    """
    name = name or getattr(fn, "__name__", None) or "explain_func"
    card = _card(name, signed, f"user explain_func {getattr(fn, '__qualname__', fn)!r}",
                 "user-supplied explanation function")
    if register:
        _register(name, card, lambda **c: FunctionExplainer(fn, card, numpy=numpy, kwargs=kwargs, **c))
    return FunctionExplainer(fn, card, numpy=numpy, kwargs=kwargs, **config)


def from_captum(attribution: Any, *, name: str | None = None, layer: str | nn.Module | None = None,
                attribute_kwargs: Mapping[str, Any] | None = None, relu: bool = False,
                signed: bool = True, register: bool = False, **config: Any) -> CaptumExplainer:
    """Wrap a Captum attribution class (``Saliency``, ``LayerGradCam``, ...) or instance.

    Args:
        attribution: the Captum class (built on each model it is called with) or an instance.
        name: method label (default: the class name in snake case).
        layer: for layer attributions, a dotted module name or the module object.
        attribute_kwargs: keyword arguments of ``attribute`` (``n_steps``, ``baselines``, ...).
        relu: clip the (upsampled) map at zero (Grad-CAM's convention).
        register: also register a factory under ``name``.
        **config: base options (``reduce``, ``chunk_size``, ``seed``).
    """
    cls = attribution if inspect.isclass(attribution) else type(attribution)
    if name is None:
        n = getattr(cls, "__name__", "captum")
        name = "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(n))
    card = _card(name, signed, f"Captum {getattr(cls, '__name__', cls)}", "Captum (Kokhlikyan et al., 2020)")
    kw = dict(layer=layer, attribute_kwargs=attribute_kwargs, relu=relu)
    if register:
        _register(name, card, lambda **c: CaptumExplainer(attribution, card, **kw, **c))
    return CaptumExplainer(attribution, card, **kw, **config)
