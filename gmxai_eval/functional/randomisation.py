"""Kernels of the randomisation sanity checks (Adebayo et al. 2018; Sixt et al. 2020;
Hedström et al. 2023).

* :func:`execution_order`: the parameterised layers of a model in the order a forward pass
  runs them.
* :func:`reinit_layer`: re-initialise one layer reproducibly (seeded, global RNG untouched).
* :func:`randomised_models`: the sequence of progressively (cascading) or individually
  (independent) randomised copies of a model; the user's model is never modified.
* :func:`randomisation_steps` / :func:`randomise`: the same states named by *which* layers are
  re-initialised, and one state built on its own. A state is a pure function of
  ``(model, seed, set of re-initialised layers)`` (each layer is re-initialised from its own
  :func:`layer_seed`), so cascading, independent and eMPRT states that coincide (e.g. the output
  layer alone, or every layer) are the same model and their maps can be shared.
* :func:`random_other_class`, :func:`random_pairs`: seeded class and image-pair draws.
* :func:`discrete_entropy`: entropy of the value histogram of each map (eMPRT's complexity).

A *layer* is a module with parameters of its own (``module.parameters(recurse=False)`` not
empty) that runs in the forward pass; a module that runs several times is counted once, at its
first call. Containers (``Sequential``, blocks) without own parameters are not layers. A layer is
re-initialised with its ``reset_parameters()`` (PyTorch's default initialisation; for BatchNorm
this sets weight 1, bias 0 and resets the running statistics, which is what Quantus 0.6.0 does
too and makes the layer the identity in eval mode).
"""

from __future__ import annotations

import copy
from typing import Iterator, Literal, Sequence

import torch
from torch import nn

from gmxai_eval.errors import ConfigError, ModelStateError, ShapeError
from gmxai_eval.utils import hooks, stable_hash

Order = Literal["top_down", "bottom_up", "independent"]
ORDERS: tuple[str, ...] = ("top_down", "bottom_up", "independent")


def execution_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the layers of ``model`` (modules with own parameters) in the order a forward
    pass on ``x (b, C, H, W)`` first calls them. Parameterised modules that never run are left
    out."""
    order: list[str] = []
    seen: set[str] = set()

    def make(name: str):
        def hook(_m: nn.Module, _i: object) -> None:
            if name not in seen:
                seen.add(name)
                order.append(name)
        return hook

    with hooks() as hs, torch.no_grad():
        for name, m in model.named_modules():
            if name and any(True for _ in m.parameters(recurse=False)):
                hs.append(m.register_forward_pre_hook(make(name)))
        model(x)
    return order


def layer_seed(seed: int, name: str) -> int:
    """The RNG seed used to re-initialise layer ``name`` (a pure function of both)."""
    return int(stable_hash(seed, "reinit", name), 16) % (2**63 - 1)


def reinit_layer(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters with ``reset_parameters()`` under ``seed``,
    leaving the global RNG state as it was."""
    reset = getattr(module, "reset_parameters", None)
    if not callable(reset):
        raise ModelStateError(f"expected a layer with reset_parameters() to re-initialise, got "
                              f"{type(module).__name__}; restrict the layers with the `layers` option")
    devices = [p.device for p in module.parameters(recurse=False) if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        reset()


def randomised_models(model: nn.Module, layers: Sequence[str], order: Order, seed: int,
                      ) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(layer_name, randomised_model)`` for each step of the randomisation.

    ``layers`` are in execution order (input to output). ``top_down``: cascading from the output
    layer towards the input, cumulatively (Adebayo's cascading randomisation); ``bottom_up``:
    cumulatively from the input; ``independent``: one layer at a time, all others trained.
    The yielded model is one deep copy, re-used (and modified) between steps: consume each before
    advancing. Layer ``l`` is re-initialised with :func:`layer_seed` ``(seed, l)``, so the same
    layer gets the same random weights in every order.
    """
    if order not in ORDERS:
        raise ConfigError(f"expected order in {ORDERS}, got {order!r}")
    work = copy.deepcopy(model)
    work.eval()
    steps = list(layers)[::-1] if order == "top_down" else list(layers)
    original = {k: v.clone() for k, v in work.state_dict().items()} if order == "independent" else None
    prev: str | None = None
    for name in steps:
        if original is not None and prev is not None:
            m = work.get_submodule(prev)
            with torch.no_grad():
                for k, v in m.state_dict().items():
                    v.copy_(original[f"{prev}.{k}"])
        reinit_layer(work.get_submodule(name), layer_seed(seed, name))
        prev = name
        yield name, work


def randomisation_steps(layers: Sequence[str], order: Order) -> list[tuple[str, frozenset[str]]]:
    """``[(layer_name, re-initialised layers)]`` per step of :func:`randomised_models` with the
    same ``layers`` (execution order, input to output) and ``order``: ``top_down`` and
    ``bottom_up`` accumulate, ``independent`` holds one layer."""
    if order not in ORDERS:
        raise ConfigError(f"expected order in {ORDERS}, got {order!r}")
    steps = list(layers)[::-1] if order == "top_down" else list(layers)
    out: list[tuple[str, frozenset[str]]] = []
    done: set[str] = set()
    for name in steps:
        done = {name} if order == "independent" else done | {name}
        out.append((name, frozenset(done)))
    return out


def randomise(model: nn.Module, layers: Sequence[str] | frozenset[str], seed: int) -> nn.Module:
    """A deep copy of ``model`` in eval mode with exactly ``layers`` re-initialised, layer ``l``
    from :func:`layer_seed` ``(seed, l)``: the same weights as the step of
    :func:`randomised_models` that has re-initialised the same set of layers (in any order)."""
    work = copy.deepcopy(model)
    work.eval()
    for name in sorted(layers):
        reinit_layer(work.get_submodule(name), layer_seed(seed, name))
    return work


def fully_randomised(model: nn.Module, layers: Sequence[str], seed: int) -> nn.Module:
    """A deep copy of ``model`` with every layer in ``layers`` re-initialised."""
    last = None
    for _, m in randomised_models(model, layers, "bottom_up", seed):
        last = m
    if last is None:
        raise ModelStateError("expected at least one layer to randomise, got none")
    return last


def random_other_class(target: torch.Tensor, num_classes: int, offsets: torch.Tensor) -> torch.Tensor:
    """The ``offsets``-th class other than ``target``: ``(B,)`` int64 with
    ``offsets in [0, num_classes - 2]`` -> ``offsets + (offsets >= target)``."""
    if num_classes < 2:
        raise ShapeError(f"expected at least 2 classes to draw another class, got {num_classes}")
    if offsets.shape != target.shape or int(offsets.min()) < 0 or int(offsets.max()) > num_classes - 2:
        raise ShapeError(f"expected offsets {tuple(target.shape)} in [0, {num_classes - 2}], got "
                         f"{tuple(offsets.shape)}")
    t = target.to(offsets.device).long()
    return offsets.long() + (offsets.long() >= t).long()


def random_pairs(sample_ids: Sequence[str], seed: int) -> torch.Tensor:
    """``(B,)`` index of the partner of each sample for the random-pair floor: samples are put on
    a cycle in the order of ``hash(seed, id)`` and each is paired with its successor, so the
    pairing does not depend on the order of the batch (it does depend on its membership).
    A batch of one sample is paired with itself."""
    keys = [stable_hash(seed, "pair", s) for s in sample_ids]
    cyc = sorted(range(len(keys)), key=lambda i: keys[i])
    partner = torch.empty(len(keys), dtype=torch.long)
    for j, i in enumerate(cyc):
        partner[i] = cyc[(j + 1) % len(cyc)]
    return partner


def discrete_entropy(a: torch.Tensor, n_bins: int = 100) -> torch.Tensor:
    """Shannon entropy (nats) of the ``n_bins``-bin histogram of each map's values between its
    minimum and maximum (``numpy.histogram`` bins; the maximum falls in the last bin):
    ``(B, ...) -> (B,)`` float64. A constant map has entropy 0."""
    flat = a.reshape(a.shape[0], -1).to(torch.float64)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    width = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    idx = ((flat - lo) / width * n_bins).floor().long().clamp(0, n_bins - 1)
    counts = torch.zeros(flat.shape[0], n_bins, dtype=torch.float64, device=flat.device)
    counts.scatter_add_(1, idx, torch.ones_like(flat))
    p = counts / counts.sum(1, keepdim=True)
    return -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)


def emprt_score(h_original: torch.Tensor, h_randomised: torch.Tensor) -> torch.Tensor:
    """eMPRT (Hedström et al. 2023): relative rise in complexity ``(H_rand - H_orig) / H_orig``,
    ``(B,)`` float64 from two ``(B,)`` entropies.

    Degenerate maps (never +-inf):

    =====================================  ===================================
    original map                           score
    =====================================  ===================================
    constant (``H_orig = 0``)              NaN (no complexity to rise from)
    varied, randomised map constant        -1.0 (complexity fell to 0)
    =====================================  ===================================
    """
    h0, h1 = h_original.double(), h_randomised.double()
    ok = h0 > 0
    return torch.where(ok, (h1 - h0) / torch.where(ok, h0, torch.ones_like(h0)), torch.full_like(h0, float("nan")))


#: ``constant_maps`` rules of the MPRT similarities (see :func:`constant_map_rule`).
CONSTANT_MAP_RULES = ("zero_unless_equal", "nan")


def constant_map_rule(similarity: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                      rule: str = "zero_unless_equal") -> torch.Tensor:
    """The MPRT convention for the NaN a rank correlation gives when a map is constant (e.g. a CAM
    that a randomised layer turns all-zero): ``similarity (B,)`` of maps ``a, b (B, ...)``.

    * ``"nan"``: keep the NaN (the sample is not scored).
    * ``"zero_unless_equal"``: a NaN where ``a`` or ``b`` is constant becomes 1.0 if the two maps
      are identical, else 0.0 (no similarity is left); other values are unchanged.
    """
    if rule == "nan":
        return similarity
    if rule != "zero_unless_equal":
        raise ConfigError(f"expected constant_maps in {CONSTANT_MAP_RULES}, got {rule!r}")
    fix = torch.isnan(similarity)
    if not fix.any():
        return similarity
    fa, fb = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    const = ((fa == fa[:, :1]).all(1) | (fb == fb[:, :1]).all(1)).to(similarity.device)
    same = (fa == fb).all(1).to(similarity.device, similarity.dtype)
    return torch.where(fix & const, same, similarity)
