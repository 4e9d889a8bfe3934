"""Control "methods" (``card.control=True``): reference points every ranking should include.

* ``random``: i.i.d. uniform [0, 1) or standard normal values per pixel, drawn per image from a
  generator keyed on ``(seed, image content)`` (deterministic, independent of chunking).
* ``sobel``: Sobel edge magnitude of the gray image (ITU-R 601 luma for RGB, channel mean
  otherwise; replicate padding); the ROAR paper's model-free control.
* ``centre_bias``: an isotropic Gaussian centred on the image, ``sigma`` a fraction of
  ``min(H, W)``; the same map for every image (the eye-tracking floor).
* ``oracle``: the ground-truth evidence mask itself (an upper reference for localisation
  metrics). It needs masks, which a target cannot carry; pass them explicitly::

      oracle = create_method("oracle")
      maps = oracle(model, x, target, masks=masks)        # masks (B, H, W), aligned with x
      bound = oracle.with_masks(masks); maps = bound(model, x, target)

  ``OracleMap.needs_masks`` is True (runners check ``getattr(explainer, "needs_masks", False)``
  and pass the dataset's evidence masks). Calling it without masks raises ``ConfigError``.
  The map is the mask as float32 (1 inside, 0 outside; soft masks keep their values).

None of these looks at the model (``random``/``sobel``/``centre_bias`` ignore the target).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.methods._common import sample_generators
from gmxai_eval.methods.base import Explainer, Target, as_target_fn, register_method
from gmxai_eval.types import MethodCard


@register_method
class RandomMap(Explainer):
    """Random map. Config: ``distribution`` (``"uniform"`` | ``"normal"``)."""

    card = MethodCard(
        name="random", family="control", signed=False, control=True,
        paper="Hooker et al., NeurIPS 2019 (random baseline)",
        default_config={"distribution": "uniform"},
        description="i.i.d. random values per pixel, seeded per image")

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.config["distribution"] not in ("uniform", "normal"):
            raise ConfigError(f"expected distribution 'uniform' or 'normal', got {self.config['distribution']!r}")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        draw: Callable[..., torch.Tensor] = torch.rand if self.config["distribution"] == "uniform" else torch.randn
        gens = sample_generators(x, int(self.config["seed"]), self.card.name)
        return torch.stack([draw(tuple(x.shape[-2:]), generator=g) for g in gens]).to(x.device)


def gray(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, 1, H, W)``: ITU-R 601 luma for 3 channels, else the channel mean."""
    if x.shape[1] == 3:
        return (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude ``(B, H, W)`` of the gray image (replicate padding).

    Computed in float64 and returned in ``x``'s dtype: in flat regions the float32 convolution's
    rounding (which depends on the kernel the backend picks for a given batch slice) would be
    blown up by the square root into noise that reorders ties between runs."""
    xd = x.double()
    kx = xd.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    k = torch.stack([kx, kx.t()]).unsqueeze(1)                      # (2, 1, 3, 3)
    g = F.conv2d(F.pad(gray(xd), (1, 1, 1, 1), mode="replicate"), k)
    return g.pow(2).sum(1).sqrt().to(x.dtype)


@register_method
class SobelMap(Explainer):
    """Edge magnitude of the input (model-independent control)."""

    card = MethodCard(
        name="sobel", family="control", signed=False, control=True,
        paper="Hooker et al., NeurIPS 2019 (Sobel edge control)",
        description="Sobel edge magnitude of the gray input")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        return sobel_magnitude(x)


def centre_gaussian(size: tuple[int, int], sigma: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(H, W)`` Gaussian ``exp(-d² / 2 s²)`` centred on the image, ``s = sigma * min(H, W)``."""
    h, w = size
    s = sigma * min(h, w)
    yy = torch.arange(h, dtype=torch.float32, device=device) - (h - 1) / 2
    xx = torch.arange(w, dtype=torch.float32, device=device) - (w - 1) / 2
    return torch.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / (2 * s * s))


@register_method
class CentreBias(Explainer):
    """Centred Gaussian. Config: ``sigma`` (fraction of ``min(H, W)``)."""

    card = MethodCard(
        name="centre_bias", family="control", signed=False, control=True,
        paper="Judd et al., ICCV 2009 (centre bias)", default_config={"sigma": 0.25},
        description="Gaussian centred on the image")

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if float(self.config["sigma"]) <= 0:
            raise ConfigError(f"expected sigma > 0, got {self.config['sigma']!r}")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        m = centre_gaussian(tuple(x.shape[-2:]), float(self.config["sigma"]), x.device)
        return m.expand(x.shape[0], -1, -1).clone()


class _MaskedTarget:
    """Internal carrier: the user's target plus the masks, narrowed together per chunk."""

    def __init__(self, target: Target, masks: torch.Tensor) -> None:
        self.target, self.masks = target, masks

    def __call__(self, out: torch.Tensor) -> torch.Tensor:  # never used as a score
        raise ConfigError("the oracle's internal target is not a score")

    def select(self, index: torch.Tensor) -> "_MaskedTarget":
        return _MaskedTarget(self.target, self.masks[index.to(self.masks.device)])


@register_method
class OracleMap(Explainer):
    """The ground-truth evidence mask as the map (see the module docstring for passing masks)."""

    card = MethodCard(
        name="oracle", family="control", signed=False, control=True, reference="evidence",
        paper="ground-truth evidence regions (upper reference for localisation metrics)",
        description="the evidence mask itself; needs masks=")

    #: Runners pass the dataset's evidence masks to explainers with this flag.
    needs_masks = True

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self._bound: torch.Tensor | None = None

    def with_masks(self, masks: torch.Tensor) -> "OracleMap":
        """A copy bound to ``masks (B, H, W)``; its calls need no ``masks=``."""
        bound = copy.copy(self)
        bound._bound = masks
        return bound

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Target, *,  # type: ignore[override]
                 masks: torch.Tensor | None = None) -> torch.Tensor:
        masks = masks if masks is not None else self._bound
        if masks is None:
            raise ConfigError("method 'oracle': expected evidence masks (B, H, W) via masks= or "
                              "with_masks(), got none")
        if not isinstance(masks, torch.Tensor):
            raise ShapeError(f"method 'oracle': expected masks as a tensor, got {type(masks).__name__}")
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if not isinstance(x, torch.Tensor) or masks.shape != (x.shape[0], *x.shape[-2:]):
            raise ShapeError(f"method 'oracle': expected masks of shape (B, H, W) = "
                             f"{(x.shape[0], *x.shape[-2:]) if isinstance(x, torch.Tensor) else '?'}, "
                             f"got {tuple(masks.shape)}")
        if isinstance(target, torch.Tensor):
            as_target_fn(target, x.shape[0])  # same validation as every other method
        return super().__call__(model, x, _MaskedTarget(target, masks))

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        if not isinstance(target, _MaskedTarget):
            raise ConfigError("method 'oracle': expected masks, got a plain target")
        return target.masks.to(device=x.device, dtype=torch.float32)
