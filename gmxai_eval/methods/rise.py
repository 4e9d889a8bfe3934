"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko, BMVC 2018).

``N`` random masks: a binary ``s x s`` grid (each cell on with probability ``p``), upsampled
bilinearly to ``(s + 1) * ceil(H / s)`` pixels per side and cropped at a random shift in
``[0, ceil(H / s))`` per axis (the paper's smooth masks). Each image is scored on every masked
copy ``M * x + (1 - M) * baseline``; the map is the score-weighted mean of the masks, divided
by ``p``::

    S(x) = 1 / (N p) * sum_i f(M_i * x + (1 - M_i) * b) * M_i

(the official implementation's normalisation), the Monte-Carlo estimate of
``E[f(x_M) M] / p``. The score ``f`` is the target's softmax probability for class-index
targets (``output="probability"``, as in the paper) or its logit (``output="logit"``); a
callable target is applied to the model's raw output. The masks depend only on ``seed``,
``N``, ``s``, ``p`` and the image size (one mask set for every image, as the official code does),
so maps are deterministic and independent of batching. The default substrate
``baseline="input_zero"`` is the pixel value the model's preprocessing maps to 0 (the paper masks
the normalised tensor, i.e. replaces by zeros there); a model without a ``Preprocess`` falls back
to black. Deviation: the upsampling is PyTorch's bilinear interpolation (edge values replicated)
where the official code uses scikit-image's ``resize`` (``mode="reflect"``).

Forward passes per image: ``n_masks`` (4000 in the paper's ResNet-50 experiments).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.functional.baselines import input_zero_of, make_baseline
from gmxai_eval.methods._common import score_copies
from gmxai_eval.methods.base import Explainer, Target, register_method
from gmxai_eval.types import MethodCard
from gmxai_eval.utils import check_chunk, device_chunk, rng_for


def rise_masks(n: int, size: tuple[int, int], grid: int, p: float, seed: int,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n, H, W)`` float masks in ``[0, 1]`` (see the module docstring)."""
    h, w = size
    g = rng_for(seed, "rise", n, h, w, grid, p)
    cell = (math.ceil(h / grid), math.ceil(w / grid))
    up = ((grid + 1) * cell[0], (grid + 1) * cell[1])
    cells = (torch.rand((n, 1, grid, grid), generator=g) < p).float()
    shifts = torch.stack([torch.randint(0, cell[0], (n,), generator=g),
                          torch.randint(0, cell[1], (n,), generator=g)], 1)
    out = torch.empty(n, h, w)
    for s in range(0, n, 256):   # 256 upsampled masks at a time bound the memory
        big = F.interpolate(cells[s:s + 256], size=up, mode="bilinear", align_corners=False)[:, 0]
        rows = shifts[s:s + 256, 0:1] + torch.arange(h).view(1, -1)            # (k, H)
        cols = shifts[s:s + 256, 1:2] + torch.arange(w).view(1, -1)            # (k, W)
        out[s:s + 256] = big[torch.arange(big.shape[0]).view(-1, 1, 1), rows.unsqueeze(2), cols.unsqueeze(1)]
    return out.to(device)


@register_method
class Rise(Explainer):
    """RISE (see the module docstring). Config: ``n_masks`` (N), ``grid`` (s), ``p`` (the
    probability of a cell being kept), ``output`` (``"probability"`` | ``"logit"``),
    ``baseline`` (``"input_zero"`` or a ``make_baseline`` spec), ``max_batch`` (masked copies
    per forward; ``None``: by device)."""

    card = MethodCard(
        name="rise", family="perturbation", signed=False,
        paper="Petsiuk, Das & Saenko, BMVC 2018",
        default_config={"n_masks": 4000, "grid": 7, "p": 0.5, "output": "probability",
                        "baseline": "input_zero", "max_batch": None},
        description="score-weighted mean of random smooth masks")

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        if int(c["n_masks"]) < 1 or int(c["grid"]) < 1 or not 0.0 < float(c["p"]) <= 1.0:
            raise ConfigError(f"method 'rise': expected n_masks >= 1, grid >= 1 and 0 < p <= 1, got "
                              f"{c['n_masks']!r}, {c['grid']!r}, {c['p']!r}")
        if c["output"] not in ("probability", "logit"):
            raise ConfigError(f"method 'rise': expected output in ('probability', 'logit'), got {c['output']!r}")
        check_chunk("method 'rise'", c["max_batch"])

    def masks(self, size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
        """The ``(n_masks, H, W)`` masks used for images of ``size``."""
        c = self.config
        return rise_masks(int(c["n_masks"]), size, int(c["grid"]), float(c["p"]), int(c["seed"]), device)

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        c = self.config
        b, n = x.shape[0], int(c["n_masks"])
        masks = self.masks(tuple(x.shape[-2:]), x.device)                    # (n, H, W)
        spec = c["baseline"]
        zero = input_zero_of(model) if spec == "input_zero" else None
        if spec == "input_zero" and zero is None:
            spec = 0.0
        base = make_baseline(spec, x, seed=int(c["seed"]), input_zero=zero)
        owners = torch.arange(b, device=x.device).repeat_interleave(n)

        def make(j: torch.Tensor) -> torch.Tensor:
            m = masks[j % n].unsqueeze(1)
            i = owners[j]
            return m * x[i] + (1 - m) * base[i]

        soft = c["output"] == "probability" and isinstance(target, torch.Tensor)
        scores = score_copies(model, make, owners, target, device_chunk(x.device, c["max_batch"]),
                              transform=(lambda o: torch.softmax(o, 1)) if soft else None)
        sal = scores.view(b, n) @ masks.flatten(1)                            # (b, H*W)
        return (sal / (n * float(c["p"]))).view(b, *x.shape[-2:])
