"""Perturbation methods over superpixels: LIME, KernelSHAP, Shapley value sampling and feature
ablation (all four wrap Captum on a SLIC segmentation).

Every image is segmented on its own with :func:`gmxai_eval.functional.superpixels.slic_segments`
(``n_segments``, ``compactness``, ``sigma``); a superpixel is one interpretable feature, "off"
means replaced by the ``baseline``: ``"segment_mean"`` (each superpixel filled with its mean
colour, the ``lime`` package's ``hide_color=None``) or any
:func:`~gmxai_eval.functional.baselines.make_baseline` spec (``0.0`` = black, ``"blur"``, ...).
The value of a superpixel is given to each of its pixels (the maps are piecewise constant and
``(B, H, W)``: a superpixel spans all channels, so ``reduce`` does not apply).

Captum draws the coalitions (LIME, KernelSHAP) and permutations (Shapley sampling) from the
global torch RNG; each image is explained on its own under
:class:`~gmxai_eval.methods._common.seeded_global_rngs`, seeded from ``(seed, method, image
content)``: maps are deterministic given ``seed``, independent of batch size, chunking and
order, and the caller's global RNG state is left untouched. ``max_batch`` is Captum's
``perturbations_per_eval`` (perturbed copies per forward pass), a speed/memory setting that does
not change the maps.

Forward passes per image: LIME and KernelSHAP ``n_samples``; Shapley value sampling
``n_samples * (S + 1)``; feature ablation ``S + 1`` (``S`` superpixels of the image).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import FeatureAblation, KernelShap, Lime, ShapleyValueSampling
from torch import nn

from gmxai_eval.errors import ConfigError
from gmxai_eval.functional.baselines import make_baseline
from gmxai_eval.functional.superpixels import segment_mean_image, slic_segments
from gmxai_eval.methods._common import captum_call, captum_forward, image_seeds, seeded_global_rngs
from gmxai_eval.methods.base import Explainer, Target, _select_target, register_method
from gmxai_eval.types import MethodCard

#: Segmentation options shared by the four methods: 50 SLIC segments, compactness 30, sigma 3
#: (the SHAP package's image example, also used here for LIME and ablation so that the four
#: methods explain the same features).
SEGMENTATION = {"n_segments": 50, "compactness": 30.0, "sigma": 3.0}


def superpixel_baseline(spec: Any, x: torch.Tensor, segments: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Replacement values ``(B, C, H, W)``: ``"segment_mean"`` or a ``make_baseline`` spec."""
    if isinstance(spec, str) and spec == "segment_mean":
        return segment_mean_image(x, segments)
    return make_baseline(spec, x, seed=seed)


class _SuperpixelExplainer(Explainer):
    """Shared plumbing: segment each image, call Captum (``captum_class``, with ``n_samples``
    where the method has it) once per image under its own seed."""

    captum_class: ClassVar[type]

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if int(self.config["n_segments"]) < 2:
            raise ConfigError(f"method {self.card.name!r}: expected n_segments >= 2, got {self.config['n_segments']!r}")
        if int(self.config["max_batch"]) < 1:
            raise ConfigError(f"method {self.card.name!r}: expected max_batch >= 1, got {self.config['max_batch']!r}")
        if "n_samples" in self.config and int(self.config["n_samples"]) < 1:
            raise ConfigError(f"method {self.card.name!r}: expected n_samples >= 1, got {self.config['n_samples']!r}")

    def segments(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` superpixel labels ``0..S_b-1`` of every image."""
        c = self.config
        return slic_segments(x, n_segments=int(c["n_segments"]), compactness=float(c["compactness"]),
                             sigma=float(c["sigma"])).to(x.device)

    def _captum(self, fwd: nn.Module) -> Any:
        return self.captum_class(fwd)

    def _kwargs(self) -> dict[str, Any]:
        n = {"n_samples": int(self.config["n_samples"])} if "n_samples" in self.config else {}
        return {"perturbations_per_eval": int(self.config["max_batch"]), **n}

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        seg = self.segments(x)
        base = superpixel_baseline(self.config["baseline"], x, seg, int(self.config["seed"]))
        seeds = image_seeds(x, int(self.config["seed"]), self.card.name)
        out = []
        for i in range(x.shape[0]):
            ti = _select_target(target, torch.tensor([i]))
            fwd, t = captum_forward(model, ti, 1)
            with seeded_global_rngs(seeds[i]):
                a = captum_call(self._captum(fwd).attribute, x[i:i + 1], baselines=base[i:i + 1], target=t,
                                feature_mask=seg[i:i + 1].unsqueeze(1).expand_as(x[i:i + 1]).contiguous(),
                                **self._kwargs())
            out.append(a.detach()[:, 0])   # the mask covers every channel: channel 0 holds the value
        return torch.cat(out)


_COMMON = {**SEGMENTATION, "max_batch": 64}


class _RecordingRidge(SkLearnRidge):
    """Captum's ``SkLearnRidge`` that also records the weighted R² of its fit on the training
    samples (the ``score`` the ``lime`` package reports for its surrogate)."""

    def __init__(self, sink: list[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sink = sink

    def fit(self, train_data: Any, **kwargs: Any) -> Any:
        xs, ys, ws = [], [], []
        for batch in train_data:
            xs.append(batch[0])
            ys.append(batch[1])
            ws.append(batch[2] if len(batch) > 2 else torch.ones_like(batch[1]))
        out = super().fit(train_data, **kwargs)
        xd, yd, wd = (torch.cat(v).double().reshape(len(torch.cat(v)), -1) for v in (xs, ys, ws))
        pred = xd @ self.representation().double().reshape(-1, 1)
        if self.bias() is not None:
            pred = pred + self.bias().double().reshape(1, -1)
        w = wd[:, :1]
        y = yd[:, :1]
        ybar = (w * y).sum() / w.sum()
        ss_tot = float((w * (y - ybar) ** 2).sum())
        ss_res = float((w * (y - pred[:, :1]) ** 2).sum())
        self._sink.append(1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"))
        return out


def lime_kernel(kernel_width: float) -> Any:
    """The ``lime`` package's image similarity: ``sqrt(exp(-d² / width²))`` with ``d`` the cosine
    distance between the coalition's binary vector and the all-ones vector (the original
    image); an empty coalition has distance 1."""
    import math

    def similarity(_orig: Any, _pert: Any, z: torch.Tensor, **_: Any) -> float:
        z = z.double().flatten()
        on = float(z.sum())
        d = 1.0 if on == 0 else 1.0 - on / (math.sqrt(on) * math.sqrt(z.numel()))
        return math.sqrt(math.exp(-(d ** 2) / kernel_width ** 2))

    return similarity


@register_method
class LimeMap(_SuperpixelExplainer):
    """LIME over SLIC superpixels (Captum ``Lime``) with the ``lime`` package's image settings:
    ``n_samples`` coalitions (each superpixel on with probability 1/2), weighted by
    :func:`lime_kernel` with ``kernel_width`` 0.25, a ridge surrogate (``alpha`` 1, intercept),
    superpixels "off" filled with their mean colour.

    The surrogate's fit is recorded: after a call, ``explainer.surrogate_r2`` is the ``(B,)``
    weighted R² of each image's surrogate on its own samples (the ``score`` the ``lime`` package
    reports; low values mean the linear surrogate explains little of the model's behaviour).
    """

    card = MethodCard(
        name="lime", family="perturbation", signed=True,
        paper="Ribeiro, Singh & Guestrin, KDD 2016",
        default_config={**_COMMON, "n_samples": 1000, "kernel_width": 0.25, "alpha": 1.0,
                        "baseline": "segment_mean"},
        description="weighted ridge surrogate on random superpixel coalitions; surrogate R² recorded")

    #: ``(B,)`` weighted R² of the surrogates of the last call (``None`` before the first).
    surrogate_r2: torch.Tensor | None = None

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:  # type: ignore[override]
        self._all_r2: list[float] = []
        maps = super().__call__(model, x, target)
        self.surrogate_r2 = torch.tensor(self._all_r2, dtype=torch.float64)
        return maps

    def _captum(self, fwd: nn.Module) -> Any:
        sink = getattr(self, "_all_r2", [])
        return Lime(fwd, interpretable_model=_RecordingRidge(sink, alpha=float(self.config["alpha"])),
                    similarity_func=lime_kernel(float(self.config["kernel_width"])))


@register_method
class KernelShapMap(_SuperpixelExplainer):
    """KernelSHAP over SLIC superpixels (Captum ``KernelShap``): ``n_samples`` coalitions drawn
    from the Shapley kernel, weighted least squares with the efficiency constraint
    (``sum = f(x) - f(baseline)``). 50 superpixels and 1000 samples follow the SHAP package's
    image example (``KernelExplainer`` on 50 SLIC segments, ``nsamples=1000``)."""

    card = MethodCard(
        name="kernel_shap", family="perturbation", signed=True,
        paper="Lundberg & Lee, NeurIPS 2017",
        default_config={**_COMMON, "n_samples": 1000, "baseline": "segment_mean"},
        description="Shapley values of superpixels, Shapley-kernel weighted regression")
    captum_class = KernelShap


@register_method
class ShapleySamplingMap(_SuperpixelExplainer):
    """Shapley value sampling over SLIC superpixels (Captum ``ShapleyValueSampling``, Castro et
    al.'s permutation estimator): ``n_samples`` random orders (Captum's default 25), each
    superpixel's marginal contribution when it is switched on after its predecessors."""

    card = MethodCard(
        name="shapley_sampling", family="perturbation", signed=True,
        paper="Castro, Gómez & Tejada, Computers & Operations Research 2009",
        default_config={**_COMMON, "n_samples": 25, "baseline": "segment_mean"},
        description="Shapley values of superpixels by permutation sampling")
    captum_class = ShapleyValueSampling


@register_method
class FeatureAblationMap(_SuperpixelExplainer):
    """Superpixel ablation (Captum ``FeatureAblation``): each superpixel alone replaced by the
    baseline (Captum's default 0, a black superpixel); its value is the drop ``f(x) - f(x
    without it)``."""

    card = MethodCard(
        name="feature_ablation", family="perturbation", signed=True,
        paper="Kokhlikyan et al., Captum, arXiv 2020 (FeatureAblation), over superpixels",
        default_config={**_COMMON, "baseline": 0.0},
        description="score drop when one superpixel is replaced by a baseline")
    captum_class = FeatureAblation
