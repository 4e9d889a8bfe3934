"""Private helpers shared by the method implementations (not a registration module).

* :class:`TargetOutput` / :func:`captum_forward`: Captum needs integer targets; a callable
  target is folded into the forward function, which then has one output (target index 0).
* :func:`check_hook_safe`: methods that replace module gradients (DeepLIFT, guided backprop,
  deconvolution) refuse models whose modules are reused, in place, or called twice.
* :func:`resolve_layer`, :func:`capture_layer`: CAM plumbing (the layer must fire once).
* :func:`sample_generators`: per-image random generators keyed on image content, so stochastic
  methods are deterministic given ``seed`` and independent of chunking and batch order.
* :func:`upsample`: bilinear resize of layer maps to the input size.
* :class:`CaptumMap`: base of the methods that are one Captum ``attribute`` call on the chunk.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gmxai_eval.errors import ConfigError, ModelStateError
from gmxai_eval.methods.base import Explainer, Target, as_target_fn
from gmxai_eval.utils import hooks, module_by_name, rng_for, stable_hash


class TargetOutput(nn.Module):
    """``x -> target_fn(model(x)).unsqueeze(1)``: a one-output model for Captum (target 0).

    Captum expands a batch of ``b`` images block-wise (``[step 0 images; step 1 images; ...]``
    for Integrated Gradients, ``[inputs; baselines]`` for DeepLIFT); an output of ``m * b``
    rows is therefore scored block by block, so per-sample callables (``select``-able
    similarity targets) stay aligned with their images."""

    def __init__(self, model: nn.Module, target_fn: Callable[[torch.Tensor], torch.Tensor],
                 batch_size: int) -> None:
        super().__init__()
        self.model = model
        self.target_fn = target_fn
        self.batch_size = batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        b = self.batch_size
        if out.shape[0] == b or out.shape[0] % b:
            return self.target_fn(out).unsqueeze(1)
        return torch.cat([self.target_fn(blk) for blk in out.split(b)]).unsqueeze(1)


def captum_forward(model: nn.Module, target: Target, batch_size: int) -> tuple[nn.Module, Any]:
    """``(forward_module, captum_target)`` for a chunk's index tensor or callable target."""
    if isinstance(target, torch.Tensor):
        return model, target.long()
    return TargetOutput(model, target, batch_size), 0


def target_scores(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``(b,)`` explained scalar of every image (differentiable)."""
    out = model(x)
    return as_target_fn(target, x.shape[0])(out)


def count_calls(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Run one no-grad forward on ``x[:1]`` and count how often each named module fires."""
    counts: dict[str, int] = {}
    with hooks() as hs, torch.no_grad():
        for name, m in model.named_modules():
            def hook(_m: nn.Module, _i: Any, _o: Any, name: str = name) -> None:
                counts[name] = counts.get(name, 0) + 1
            hs.append(m.register_forward_hook(hook))
        model(x[:1])
    return counts


def check_hook_safe(model: nn.Module, x: torch.Tensor, method: str,
                    kinds: tuple[type[nn.Module], ...] | None = None) -> None:
    """Raise :class:`ModelStateError` unless every module (or, with ``kinds``, every module of
    those types) is registered once, not in place, and runs at most once per forward pass.

    Methods that override the backward pass module by module give silently wrong maps (or
    fail deep inside Captum) otherwise: DeepLIFT hooks every non-linearity and pooling layer
    (``kinds=None``); guided backprop and deconvolution hook only ``nn.ReLU``
    (``kinds=(nn.ReLU,)``), so a shared max-pool (GestaltMatcher) does not concern them."""
    what = "module" if kinds is None else "/".join(k.__name__ for k in kinds) + " module"
    why = (f"method {method!r} replaces the backward pass of each {what} and needs each used once; "
           f"give every such layer its own non-in-place module")
    named = [(n, m) for n, m in model.named_modules(remove_duplicate=False)
             if (kinds is None or isinstance(m, kinds)) and not isinstance(m, nn.Identity)]
    ids: dict[int, list[str]] = {}
    for n, m in named:
        ids.setdefault(id(m), []).append(n)
    reused = [names for names in ids.values() if len(names) > 1]
    if reused:
        raise ModelStateError(f"{why}: expected every module registered once, got one module under "
                              f"several names: {reused[0][:6]}")
    inplace = [n for n, m in named if getattr(m, "inplace", False)]
    if inplace:
        raise ModelStateError(f"{why}: expected no in-place activations, got inplace=True at {inplace[:6]}")
    relevant = {n for n, m in named if not list(m.children())}
    twice = sorted(n for n, c in count_calls(model, x).items() if c > 1 and n in relevant)
    if twice:
        raise ModelStateError(f"{why}: expected each module called once per forward, got "
                              f"modules called several times: {twice[:6]}")


def resolve_layer(model: nn.Module, layer: str | nn.Module | None, method: str) -> nn.Module:
    """The layer: a dotted name, a submodule object of ``model`` (as Captum takes it), or the
    model's ``cam_layer`` attribute when ``layer`` is None."""
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ConfigError(f"method {method!r}: expected layer to be a submodule of the explained "
                              f"{type(model).__name__}, got a {type(layer).__name__} that is not part of it")
        return layer
    if layer is not None and not isinstance(layer, str):
        raise ConfigError(f"method {method!r}: expected layer as a dotted module name or an nn.Module, "
                          f"got {type(layer).__name__}")
    name = layer if layer is not None else getattr(model, "cam_layer", None)
    if not name:
        raise ConfigError(f"method {method!r}: expected layer='dotted.module.name' or a model with a "
                          f"cam_layer attribute, got layer=None and {type(model).__name__} without cam_layer")
    return module_by_name(model, name)


def capture_layer(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: Target,
                  method: str, grads: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Forward ``x``, return ``(activations A (b, K, h, w), dscore/dA or None, scores (b,))``.

    The layer must fire exactly once per forward (a reused layer has no single activation)."""
    acts: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if not isinstance(out, torch.Tensor):
            raise ModelStateError(f"method {method!r}: expected the layer to output a tensor, "
                                  f"got {type(out).__name__}")
        acts.append(out)

    with hooks() as hs:
        hs.append(layer.register_forward_hook(hook))
        ctx = torch.enable_grad() if grads else torch.no_grad()
        with ctx:
            scores = target_scores(model, x, target)
    if len(acts) != 1:
        raise ModelStateError(f"method {method!r}: expected the CAM layer to run once per forward, "
                              f"got {len(acts)} calls")
    a = acts[0]
    if a.ndim != 4:
        raise ModelStateError(f"method {method!r}: expected a (b, K, h, w) layer output, got "
                              f"{tuple(a.shape)}; pick a convolutional layer")
    g = None
    if grads:
        (g,) = torch.autograd.grad(scores.sum(), a)
    return a.detach(), g, scores.detach()


def upsample(maps: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of ``(b, h, w)`` or ``(b, K, h, w)`` maps to ``size``."""
    squeeze = maps.ndim == 3
    m = maps.unsqueeze(1) if squeeze else maps
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=align_corners)
    return m.squeeze(1) if squeeze else m


def sample_generators(x: torch.Tensor, seed: int, tag: str) -> list[torch.Generator]:
    """One generator per image, keyed on ``(seed, tag, content hash of the image)``.

    Keying on content (not on the position in the batch) makes random draws independent of
    batch size, chunking and order; two identical images get the same draws."""
    return [rng_for(seed, tag, stable_hash(img)) for img in x.detach().cpu()]


def randn_like_per_sample(x: torch.Tensor, gens: list[torch.Generator], n: int) -> torch.Tensor:
    """``(n, b, *x.shape[1:])`` standard normal draws, image ``i`` from ``gens[i]``."""
    draws = [torch.randn((n, *x.shape[1:]), generator=g) for g in gens]
    return torch.stack(draws, 1).to(x.device, x.dtype)


def check_layer_once(model: nn.Module, layer: nn.Module, x: torch.Tensor, method: str) -> None:
    """Raise :class:`ModelStateError` unless ``layer`` fires exactly once in a forward pass."""
    calls = [0]

    def hook(*_: Any) -> None:
        calls[0] += 1

    with hooks() as hs, torch.no_grad():
        hs.append(layer.register_forward_hook(hook))
        model(x[:1])
    if calls[0] != 1:
        raise ModelStateError(f"method {method!r}: expected the CAM layer to run once per forward, "
                              f"got {calls[0]} calls (a reused module has no single activation)")


@torch.no_grad()
def score_copies(model: nn.Module, make: Callable[[torch.Tensor], torch.Tensor], owners: torch.Tensor,
                 target: Target, max_batch: int,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Scores ``(N,)`` of ``N`` perturbed copies, evaluated ``max_batch`` at a time.

    ``make(j)`` builds the copies ``(n, C, H, W)`` for copy indices ``j (n,)``; ``owners (N,)``
    is the chunk-local image index of each copy (selects its target). ``transform`` is applied
    to the model output before the target (e.g. softmax)."""
    from gmxai_eval.methods.base import _select_target

    n_total = owners.shape[0]
    out = torch.empty(n_total, dtype=torch.float32, device=owners.device)
    for start in range(0, n_total, max_batch):
        j = torch.arange(start, min(start + max_batch, n_total), device=owners.device)
        logits = model(make(j))
        if transform is not None:
            logits = transform(logits)
        tj = _select_target(target, owners[j].cpu())
        out[j] = as_target_fn(tj, j.shape[0])(logits).float()
    return out


_CAPTUM_NOISE = ("did not already require gradients", "Setting backward hooks on ReLU",
                 "Setting forward, backward hooks and attributes on non-linear")


def captum_call(fn: Callable[..., Any], x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Call a Captum ``attribute`` on a grad-requiring copy of ``x``, silencing only Captum's
    informational warnings (scoped; other warnings pass through)."""
    import warnings

    with warnings.catch_warnings():
        for msg in _CAPTUM_NOISE:
            warnings.filterwarnings("ignore", message=f".*{msg}.*")
        return fn(x.detach().clone().requires_grad_(True), **kwargs)


class CaptumMap(Explainer):
    """A method that is ``captum_class(forward).attribute(x, target=..., **captum_kwargs())``
    on the whole chunk, after :func:`check_hook_safe` over ``hook_kinds`` when it replaces the
    backward pass of modules of those types."""

    captum_class: ClassVar[type]
    hook_kinds: ClassVar[tuple[type[nn.Module], ...]] = ()

    def captum_kwargs(self) -> dict[str, Any]:
        return {}

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        if self.hook_kinds:
            check_hook_safe(model, x, self.card.name, kinds=self.hook_kinds)
        fwd, t = captum_forward(model, target, x.shape[0])
        return captum_call(self.captum_class(fwd).attribute, x, target=t, **self.captum_kwargs())


def image_seeds(x: torch.Tensor, seed: int, tag: str) -> list[int]:
    """One integer seed per image, keyed on ``(seed, tag, content hash of the image)`` (the
    integer form of :func:`sample_generators`, for libraries that draw from global RNGs)."""
    return [int(g.initial_seed()) for g in sample_generators(x, seed, tag)]


class seeded_global_rngs:
    """Context manager: seed torch's CPU generator and NumPy's global generator with ``seed``
    and restore both on exit, so a library that draws from the global RNGs (Captum's Lime,
    KernelShap, ShapleyValueSampling, GradientShap) is deterministic without side effects."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def __enter__(self) -> "seeded_global_rngs":
        import numpy as np

        self._np_state = np.random.get_state()
        self._torch_state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % (2 ** 32))
        return self

    def __exit__(self, *exc: Any) -> None:
        import numpy as np

        np.random.set_state(self._np_state)
        torch.random.set_rng_state(self._torch_state)
