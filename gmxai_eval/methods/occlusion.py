"""Occlusion (Zeiler & Fergus 2014), batched.

A ``patch`` (all channels) slides over the image with ``stride``; each window is replaced by
the ``baseline`` and the drop of the target score ``f(x) - f(x_occluded)`` is given to every
pixel of the window. A pixel's attribution is the mean drop over the windows that cover it.
Window positions follow Captum's ``Occlusion``: ``ceil((H - patch) / stride) + 1`` positions per
axis, the last one clipped at the border, so every pixel is covered (same numbers as Captum).

All occluded copies of a chunk are evaluated in large forward passes of at most ``max_batch``
images (the memory bound), instead of one pass per window.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.functional.baselines import make_baseline
from gmxai_eval.methods._common import score_copies, target_scores
from gmxai_eval.methods.base import Explainer, Target, register_method
from gmxai_eval.types import MethodCard
from gmxai_eval.utils import check_chunk, device_chunk


def _pair(v: Any, what: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) and i >= 1 for i in t):
        raise ConfigError(f"expected {what} as a positive int or (h, w), got {v!r}")
    return t  # type: ignore[return-value]


def window_masks(size: tuple[int, int], patch: tuple[int, int], stride: tuple[int, int],
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n_windows, H, W)`` bool masks of the occlusion windows, row-major order."""
    axes = []
    for n, p, s in zip(size, patch, stride):
        if p > n:
            raise ConfigError(f"expected a patch no larger than the image, got patch {patch} for {size}")
        if s > p and n > p:
            raise ConfigError(f"expected stride <= patch (gaps leave pixels unexplained), got stride "
                              f"{stride} and patch {patch}")
        starts = [i * s for i in range(math.ceil((n - p) / s) + 1)]
        m = torch.zeros(len(starts), n, dtype=torch.bool, device=device)
        for i, st in enumerate(starts):
            m[i, st:st + p] = True
        axes.append(m)
    rows, cols = axes
    return (rows[:, None, :, None] & cols[None, :, None, :]).flatten(0, 1)


@register_method
class Occlusion(Explainer):
    """Sliding-window occlusion.

    Config: ``patch`` (int or (h, w); the study used a 10x10 black patch), ``stride``,
    ``baseline`` (a float pixel value, 0.0 = black, or any
    :func:`~gmxai_eval.functional.baselines.make_baseline` spec such as ``"blur"``),
    ``max_batch`` (occluded copies per forward pass; ``None``: by device,
    :func:`gmxai_eval.utils.device_chunk`)."""

    card = MethodCard(
        name="occlusion", family="perturbation", signed=True,
        paper="Zeiler & Fergus, ECCV 2014",
        default_config={"patch": 10, "stride": 5, "baseline": 0.0, "max_batch": None},
        description="score drop when a sliding patch is replaced by a baseline")

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        _pair(self.config["patch"], "patch")
        _pair(self.config["stride"], "stride")
        check_chunk(f"method {self.card.name!r}", self.config["max_batch"])

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        b = x.shape[0]
        wins = window_masks(tuple(x.shape[-2:]), _pair(self.config["patch"], "patch"),
                            _pair(self.config["stride"], "stride"), x.device)
        n_win = wins.shape[0]
        base = make_baseline(self.config["baseline"], x, seed=int(self.config["seed"]))
        with torch.no_grad():
            full = target_scores(model, x, target).float()
        owners = torch.arange(b, device=x.device).repeat_interleave(n_win)

        def make(j: torch.Tensor) -> torch.Tensor:
            i, w = owners[j], j % n_win
            return torch.where(wins[w].unsqueeze(1), base[i], x[i])

        occluded = score_copies(model, make, owners, target, device_chunk(x.device, self.config["max_batch"]))
        drops = full.repeat_interleave(n_win) - occluded               # (b * n_win,)
        w = wins.float().flatten(1)                                      # (n_win, H*W)
        total = drops.view(b, n_win) @ w                                # (b, H*W)
        return (total / w.sum(0)).view(b, *x.shape[-2:])
