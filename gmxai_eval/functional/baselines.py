"""Composable perturbation pieces: baselines (what a removed feature becomes) and orderings
(in which order features are removed). Pure functions of tensors.

Baselines (``make_baseline(spec, x)`` -> ``(B, C, H, W)`` replacement values):

* ``"black"`` / ``"zero"``: 0 in pixel space (a black image).
* ``"input_zero"``: the pixel values the model maps to 0 in its own input space (RISE's
  deletion substrate, "zeros in normalised space"); needs ``input_zero`` (C,), see
  :func:`input_zero_of`.
* ``"sample_min"``: per-sample minimum (Quantus's "black").
* ``"image_mean"``: per-image, per-channel mean.
* ``"dataset_mean"``: needs ``channel_mean`` (C,) passed in.
* ``"blur"``: Gaussian blur of the image (RISE insertion substrate: kernel 11, sigma 5).
* ``"uniform"``: uniform noise in [0, 1] (Samek et al.), drawn per sample from ``rng_for``.
* a float (constant), a ``(C,)`` / ``(B, C, H, W)`` tensor, or a callable ``x -> (B, C, H, W)``.

Orderings (``order_pixels(maps, mode, ...)`` -> ``(B, H*W)`` pixel indices, first removed first):

* ``"morf"``: most relevant first (descending map value);
* ``"lerf"``: least relevant first;
* ``"random"``: a random permutation keyed on ``(seed, sample_id)``.

Ties are broken by pixel index (stable sort), so orderings are deterministic.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F

from gmxai_eval.errors import ConfigError, ShapeError
from gmxai_eval.utils import rng_for

BaselineSpec = Union[str, float, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]

BASELINES = ("black", "zero", "input_zero", "sample_min", "image_mean", "dataset_mean", "blur", "uniform")
ORDERINGS = ("morf", "lerf", "random")


def gaussian_blur(x: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflect padding."""
    if kernel_size % 2 != 1:
        raise ConfigError(f"expected an odd kernel_size, got {kernel_size}")
    r = kernel_size // 2
    t = torch.arange(kernel_size, dtype=x.dtype, device=x.device) - r
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    y = F.pad(x, (r, r, 0, 0), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode=mode)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def make_baseline(spec: BaselineSpec, x: torch.Tensor, *, sample_ids: Sequence[str] | None = None,
                  seed: int = 0, channel_mean: torch.Tensor | None = None,
                  blur_kernel: int = 11, blur_sigma: float = 5.0,
                  input_zero: torch.Tensor | None = None) -> torch.Tensor:
    """Replacement values ``(B, C, H, W)`` for ``x (B, C, H, W)``; see the module docstring."""
    if x.ndim != 4:
        raise ShapeError(f"expected x (B, C, H, W), got {tuple(x.shape)}")
    if callable(spec) and not isinstance(spec, torch.Tensor):
        out = spec(x)
        if tuple(out.shape) != tuple(x.shape):
            raise ShapeError(f"baseline callable returned {tuple(out.shape)}, expected {tuple(x.shape)}")
        return out
    if isinstance(spec, torch.Tensor):
        t = spec.to(x.device, x.dtype)
        if t.ndim == 1 and t.shape[0] == x.shape[1]:
            return t.view(1, -1, 1, 1).expand_as(x).clone()
        if tuple(t.shape) == tuple(x.shape):
            return t.clone()
        raise ShapeError(f"expected a baseline tensor (C,) or {tuple(x.shape)}, got {tuple(t.shape)}")
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return torch.full_like(x, float(spec))
    if spec in ("black", "zero"):
        return torch.zeros_like(x)
    if spec == "input_zero":
        if input_zero is None:
            raise ConfigError("baseline 'input_zero' needs the model's input zero (C,) "
                              "(a model with a Preprocess module); pass a float baseline otherwise")
        z = torch.as_tensor(input_zero, dtype=x.dtype, device=x.device).reshape(-1)
        if z.numel() == 1:
            z = z.expand(x.shape[1])
        return make_baseline(z, x)
    if spec == "sample_min":
        return x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x).clone()
    if spec == "image_mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if spec == "dataset_mean":
        if channel_mean is None:
            raise ConfigError("baseline 'dataset_mean' needs channel_mean (C,)")
        return make_baseline(channel_mean, x)
    if spec == "blur":
        return gaussian_blur(x, blur_kernel, blur_sigma)
    if spec == "uniform":
        ids = sample_ids if sample_ids is not None else [str(i) for i in range(x.shape[0])]
        return torch.stack([torch.rand(x.shape[1:], generator=rng_for(seed, "uniform", i)) for i in ids]).to(x)
    raise ConfigError(f"expected a baseline in {BASELINES}, a float, a tensor or a callable, got {spec!r}")


def input_zero_of(model: torch.nn.Module) -> torch.Tensor | None:
    """Pixel values ``(C,)`` that ``model.preprocess`` (a :class:`~gmxai_eval.models.base.Preprocess`)
    maps to zero: its per-channel mean (also correct through its grayscale conversion, whose
    weights sum to 1). ``None`` when the model has no such module."""
    pre = getattr(model, "preprocess", None)
    mean = getattr(pre, "mean", None)
    if not isinstance(mean, torch.Tensor):
        return None
    return mean.detach().reshape(-1)


def order_pixels(maps: torch.Tensor, mode: str = "morf", *, sample_ids: Sequence[str] | None = None,
                 seed: int = 0) -> torch.Tensor:
    """Pixel order ``(B, H*W)`` int64 for ``maps (B, H, W)``; first index is removed first."""
    if maps.ndim != 3:
        raise ShapeError(f"expected maps (B, H, W), got {tuple(maps.shape)}")
    flat = maps.reshape(maps.shape[0], -1)
    if mode == "morf":
        return torch.sort(flat, dim=1, descending=True, stable=True).indices
    if mode == "lerf":
        return torch.sort(flat, dim=1, descending=False, stable=True).indices
    if mode == "random":
        ids = sample_ids if sample_ids is not None else [str(i) for i in range(maps.shape[0])]
        n = flat.shape[1]
        return torch.stack([torch.randperm(n, generator=rng_for(seed, "order", i)) for i in ids]).to(maps.device)
    raise ConfigError(f"expected ordering in {ORDERINGS}, got {mode!r}")


def order_patches(maps: torch.Tensor, patch: int, mode: str = "morf", *, sample_ids: Sequence[str] | None = None,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Order non-overlapping ``patch x patch`` regions by summed relevance.

    Returns ``(order (B, P), patch_index (H, W))``: the patch order and the patch id of every
    pixel (partial patches at the border are their own patches)."""
    b, h, w = maps.shape
    ph, pw = -(-h // patch), -(-w // patch)
    rows = torch.arange(h, device=maps.device) // patch
    cols = torch.arange(w, device=maps.device) // patch
    pid = rows[:, None] * pw + cols[None, :]
    sums = torch.zeros(b, ph * pw, dtype=maps.dtype, device=maps.device)
    sums.index_add_(1, pid.reshape(-1), maps.reshape(b, -1))
    return order_pixels(sums.view(b, ph, pw), mode, sample_ids=sample_ids, seed=seed), pid
