"""Layer-wise relevance propagation with composites (Captum ``LRP`` and its rules).

A *composite* assigns a rule to every layer (the zennit vocabulary, Montavon et al. 2019):

===================== ==================== ======================= ===========================
composite             first layer          other convolutions      linear layers, pools
===================== ==================== ======================= ===========================
``lrp_epsilon``       epsilon              epsilon                 epsilon
``lrp_epsilon_plus``  flat                 z+ (alpha 1, beta 0)    epsilon
``lrp_epsilon_gamma`` flat                 gamma (0.25)            epsilon
===================== ==================== ======================= ===========================

``epsilon`` = 1e-6 (zennit's default) in every epsilon rule; the *first layer* is the first
convolution or linear layer the input reaches. z+ drops the bias (zennit's ``ZPlus``); gamma
keeps it (Captum's ``GammaRule``). The flat rule (:class:`FlatRule`) spreads a neuron's
relevance uniformly over its receptive field, ignoring input and weights (zennit's ``Flat``).
Max-pools and average pools take the epsilon rule (winner-takes-all and proportional); ReLU and
dropout pass relevance through.

The model is never modified: LRP runs on a **safe copy** (``copy.deepcopy``) in which

* a module registered under several names (GestaltMatcher's shared max-pool) is replaced by one
  copy per name, and every ``inplace=True`` activation is made out-of-place (REFERENCE: Captum's
  LRP and DeepLIFT break on both);
* BatchNorm following a convolution is folded into it (canonisation, as zennit's
  ``SequentialMergeBatchNorm``; ``canonize=False`` keeps BatchNorm under the epsilon rule);
* the preprocessing (``Preprocess``) takes :class:`PreprocessRule` (relevance passes its
  per-channel normalisation unchanged and its grayscale conversion / resize by the z-rule),
  ``Identity`` (and a folded BatchNorm) passes relevance through, ``Flatten`` takes the epsilon rule (exact: no bias);
* a :class:`~gmxai_eval.models.base.GalleryHead` (cosine similarity to centroids) is replaced by
  the same computation with the embedding's norm held constant, which is linear in the
  embedding and takes the epsilon rule (LRP has no rule for a normalisation).

A module still called twice per forward pass raises
:class:`~gmxai_eval.errors.ModelStateError`, and so does any layer type without a rule here
(``PReLU`` of the iResNet backbones, for instance). On a bias-free ReLU network relevance is
conserved: the map sums to the explained output (tested).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F
from captum.attr import LRP
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule, GammaRule, IdentityRule, PropagationRule
from torch import nn

from gmxai_eval.errors import ConfigError, ModelStateError
from gmxai_eval.methods._common import captum_call, captum_forward, check_hook_safe
from gmxai_eval.methods.base import Explainer, Target, register_method
from gmxai_eval.models.base import GalleryHead, Preprocess
from gmxai_eval.types import MethodCard
from gmxai_eval.utils import hooks, module_by_name


class FlatRule(PropagationRule):
    """Flat rule: ``R_i = sum_j R_j / n_j`` over the outputs ``j`` whose receptive field holds
    ``i`` (``n_j`` = the number of inputs of ``j``, padding excluded): weights set to one, bias
    to zero, the input replaced by ones in the relevance computation."""

    def _manipulate_weights(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        module.weight.data = torch.ones_like(module.weight.data)
        if getattr(module, "bias", None) is not None:
            module.bias.data = torch.zeros_like(module.bias.data)

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: torch.Tensor) -> torch.Tensor:
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        with torch.no_grad():
            ones, w = torch.ones_like(x), torch.ones_like(module.weight)
            if isinstance(module, nn.Conv2d):
                self._counts = F.conv2d(ones, w, None, module.stride, module.padding, module.dilation, module.groups)
            else:
                self._counts = F.linear(ones, w)
        return super().forward_hook(module, inputs, outputs)

    def _create_backward_hook_output(self, outputs: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        counts = self._counts

        def hook(grad: torch.Tensor) -> torch.Tensor:
            self.relevance_output[grad.device] = grad.data
            return grad / counts

        return hook

    def _create_backward_hook_input(self, inputs: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        def hook(grad: torch.Tensor) -> torch.Tensor:
            self.relevance_input[grad.device] = grad.data
            grad.replace_out = grad  # type: ignore[attr-defined]
            return grad

        return hook


class PreprocessRule(EpsilonRule):
    """Relevance through :class:`~gmxai_eval.models.base.Preprocess` ``(L(x) - mean) / std``
    (``L`` = the optional grayscale conversion and resize, both linear without bias): the z-rule
    of ``L`` (``R_i = x_i * dL/dx_i * R / L(x)``), so the normalisation's shift absorbs nothing.
    Without grayscale or resize it is the identity."""

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self._linear = outputs.detach() + module.mean / module.std     # = L(x) / std
        return super().forward_hook(module, inputs, outputs)

    def _create_backward_hook_output(self, outputs: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        div = self._linear

        def hook(grad: torch.Tensor) -> torch.Tensor:
            sign = torch.sign(div)
            sign[sign == 0] = 1
            self.relevance_output[grad.device] = grad.data
            return grad / (div + sign * self.STABILITY_FACTOR)

        return hook


class _ConstantNormGallery(nn.Module):
    """``scale * (z / ||z||) @ centroids.T`` with ``||z||`` detached: equal to
    :class:`GalleryHead` in value, linear in ``z`` for relevance propagation."""

    def __init__(self, head: GalleryHead) -> None:
        super().__init__()
        self.fc = nn.Linear(head.centroids.shape[1], head.centroids.shape[0], bias=False)
        self.fc.weight.data = (head.scale * F.normalize(head.centroids, dim=1)).detach().clone()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z / z.norm(dim=1, keepdim=True).clamp_min(1e-12).detach())


class _PassThrough(nn.Module):
    """``x -> x.clone()``: stands for ``nn.Identity`` and for a folded BatchNorm in the copy.
    (Captum's rules hook a layer's input and output tensors; ``Identity`` returns its input
    object, so both hooks would sit on one tensor and fire in the wrong order.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(module_by_name(root, parent) if parent else root, leaf, module)


def _unshare(model: nn.Module) -> None:
    """One module object per registered name; no in-place activation."""
    seen: set[int] = set()
    for name, m in list(model.named_modules(remove_duplicate=False)):
        if not name:
            continue
        if id(m) in seen:
            _set(model, name, copy.deepcopy(m))
        seen.add(id(m))
    for m in model.modules():
        if getattr(m, "inplace", False):
            m.inplace = False


def _execution_order(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, Any, Any]]:
    """``(name, module, input, output)`` of every leaf module in the order they run on ``x[:1]``."""
    calls: list[tuple[str, nn.Module, Any, Any]] = []
    with hooks() as hs, torch.no_grad():
        for name, m in model.named_modules():
            if not list(m.children()):
                hs.append(m.register_forward_hook(
                    lambda mod, i, o, name=name: calls.append((name, mod, i[0] if i else None, o))))
        model(x[:1])
    return calls


def _fold_batchnorm(model: nn.Module, x: torch.Tensor) -> None:
    """Fold every BatchNorm2d whose input is a Conv2d's output into that convolution."""
    calls = _execution_order(model, x)
    for (_, conv, _, out), (bn_name, bn, bn_in, _) in zip(calls, calls[1:]):
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn_in is out:
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.data = conv.weight.detach() * scale.view(-1, 1, 1, 1)
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
            _set(model, bn_name, _PassThrough())


_PASS = (nn.ReLU, nn.Dropout, nn.Tanh)
_EPSILON_ONLY = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm2d, nn.Flatten, nn.Linear)


def _attach_rules(model: nn.Module, x: torch.Tensor, composite: str, eps: float, gamma: float, method: str) -> None:
    first = True
    for name, m, _, _ in _execution_order(model, x):
        if isinstance(m, _PASS):
            continue
        if isinstance(m, Preprocess):
            m.rule = PreprocessRule()
        elif isinstance(m, _PassThrough):
            m.rule = IdentityRule()
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and first and composite != "epsilon":
            m.rule = FlatRule()
        elif isinstance(m, nn.Conv2d) and composite == "epsilon_plus":
            m.rule = Alpha1_Beta0_Rule(set_bias_to_zero=True)
        elif isinstance(m, nn.Conv2d) and composite == "epsilon_gamma":
            m.rule = GammaRule(gamma=gamma)
        elif isinstance(m, (nn.Conv2d,) + _EPSILON_ONLY):
            m.rule = EpsilonRule(epsilon=eps)
        else:
            raise ModelStateError(f"method {method!r}: expected layers with an LRP rule (conv, linear, "
                                  f"batch norm, pooling, ReLU, dropout, flatten), got {type(m).__name__} at {name!r}")
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            first = False


def lrp_copy(model: nn.Module, x: torch.Tensor, composite: str, *, epsilon: float = 1e-6, gamma: float = 0.25,
             canonize: bool = True, method: str = "lrp") -> nn.Module:
    """The safe copy of ``model`` with the composite's rules attached (see the module docstring)."""
    net = copy.deepcopy(model).eval()
    for m in net.modules():   # hooks of the caller's model are not part of the copy's computation
        for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks):
            d.clear()
    for p in net.parameters():
        p.requires_grad_(False)
    _unshare(net)
    for name, m in list(net.named_modules()):
        if name and isinstance(m, GalleryHead):
            _set(net, name, _ConstantNormGallery(m))
        elif name and isinstance(m, nn.Identity):
            _set(net, name, _PassThrough())
    if canonize:
        _fold_batchnorm(net, x)
    check_hook_safe(net, x, method)
    _attach_rules(net, x, composite, epsilon, gamma, method)
    return net


COMPOSITES = ("epsilon", "epsilon_plus", "epsilon_gamma")


class _Lrp(Explainer):
    composite: str

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if float(self.config["epsilon"]) <= 0:
            raise ConfigError(f"method {self.card.name!r}: expected epsilon > 0, got {self.config['epsilon']!r}")

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
        c = self.config
        net = lrp_copy(model, x, self.composite, epsilon=float(c["epsilon"]), gamma=float(c.get("gamma", 0.25)),
                       canonize=bool(c["canonize"]), method=self.card.name)
        fwd, t = captum_forward(net, target, x.shape[0])
        return captum_call(LRP(fwd).attribute, x, target=t)


_PAPER = "Bach et al., PLoS ONE 2015; composites: Montavon et al., LNCS 11700, 2019 (zennit's vocabulary)"


@register_method
class LrpEpsilon(_Lrp):
    """LRP-epsilon on every layer (see the module docstring)."""

    card = MethodCard(name="lrp_epsilon", family="propagation", signed=True, paper=_PAPER,
                      default_config={"epsilon": 1e-6, "canonize": True},
                      description="LRP, epsilon rule everywhere (BatchNorm folded into convolutions)")
    composite = "epsilon"


@register_method
class LrpEpsilonPlus(_Lrp):
    """LRP composite epsilon-plus-flat: flat first layer, z+ convolutions, epsilon dense layers."""

    card = MethodCard(name="lrp_epsilon_plus", family="propagation", signed=True, paper=_PAPER,
                      default_config={"epsilon": 1e-6, "canonize": True},
                      description="LRP composite: flat first layer, z+ convolutions, epsilon dense layers")
    composite = "epsilon_plus"


@register_method
class LrpEpsilonGamma(_Lrp):
    """LRP composite epsilon-gamma-flat: flat first layer, gamma convolutions, epsilon dense."""

    card = MethodCard(name="lrp_epsilon_gamma", family="propagation", signed=True, paper=_PAPER,
                      default_config={"epsilon": 1e-6, "gamma": 0.25, "canonize": True},
                      description="LRP composite: flat first layer, gamma (0.25) convolutions, epsilon dense layers")
    composite = "epsilon_gamma"
